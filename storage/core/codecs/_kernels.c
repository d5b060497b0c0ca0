/* Fused per-element kernels of deltahub's tensor codecs: one pass over a frame's words each way.
 *
 * What each kernel computes is specified by the numpy reference in storage/core/codecs/reference.py and
 * docs/codecs.md; the tests check both agree byte for byte. This file only makes it one pass:
 *
 *   split       words (XOR base words) -> rotate left by skip -> byte planes, most significant first
 *   merge       the inverse, written straight into the caller's buffer (or a new bytes object)
 *   split_diff  float key (optional) -> wrapping difference to the base -> zigzag -> byte planes,
 *               optionally in a stable counting-sort order of the base's exponent byte (group)
 *   merge_diff  the inverse
 *   split_packed / merge_packed  `plain`'s planes with the last one bit-packed as 6 + 2 bits (packed.py)
 *
 * A plane buffer is the word planes back to back (each `count` bytes) followed by the tail: the bytes
 * past the last whole word, XORed with the base's tail when there is a base. Words are little-endian
 * (as in safetensors); the GIL is released while the loops run, so frames decode in parallel threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_kernels_planes.h"
#include "_kernels_packed.h"
#include "_kernels_crc32.h"

/* ---- Python glue ----------------------------------------------------------------------------------- */

static int shape_of(Py_ssize_t raw_size, int word, Shape *sh)
{
    if (word != 1 && word != 2 && word != 4 && word != 8) {
        PyErr_Format(PyExc_ValueError, "word size %d is not 1, 2, 4 or 8", word);
        return -1;
    }
    if (raw_size < 0) {
        PyErr_SetString(PyExc_ValueError, "negative raw size");
        return -1;
    }
    sh->word = word;
    sh->count = (size_t)raw_size / (size_t)word;
    sh->tail = (size_t)raw_size % (size_t)word;
    return 0;
}

/* The base as a buffer of exactly `size` bytes, or none when `obj` is None and a base is optional. */
static int base_buffer(PyObject *obj, Py_ssize_t size, int required, Py_buffer *view)
{
    view->obj = NULL;
    if (obj == Py_None) {
        if (!required)
            return 0;
        PyErr_SetString(PyExc_ValueError, "this kernel needs the base's bytes");
        return -1;
    }
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0)
        return -1;
    if (view->len != size) {
        PyErr_Format(PyExc_ValueError, "base has %zd bytes, the data %zd", view->len, size);
        PyBuffer_Release(view);
        view->obj = NULL;
        return -1;
    }
    return 0;
}

static void release(Py_buffer *view)
{
    if (view->obj)
        PyBuffer_Release(view);
}

/* Where a kernel writes its `size` output bytes (`*dst`): a new bytes object when `out_obj` is None, else
   the caller's writable buffer of exactly that size, held in `view` (released by the caller). `*result` is
   what the kernel returns (a new reference). */
static int output_buffer(PyObject *out_obj, Py_ssize_t size, Py_buffer *view, PyObject **result, uint8_t **dst)
{
    if (out_obj == Py_None) {
        *result = PyBytes_FromStringAndSize(NULL, size);
        if (!*result)
            return -1;
        *dst = (uint8_t *)PyBytes_AS_STRING(*result);
        return 0;
    }
    if (PyObject_GetBuffer(out_obj, view, PyBUF_WRITABLE) < 0)
        return -1;
    if (view->len != size) {
        PyErr_Format(PyExc_ValueError, "output has %zd bytes, the data %zd", view->len, size);
        return -1;
    }
    *dst = view->buf;
    Py_INCREF(out_obj);
    *result = out_obj;
    return 0;
}

static void xor_tail(Shape sh, const uint8_t *src, const uint8_t *base, uint8_t *dst)
{
    size_t whole = sh.count * (size_t)sh.word;
    for (size_t i = 0; i < sh.tail; i++)
        dst[whole + i] = src[i] ^ (base ? base[whole + i] : 0);
}

/* split / split_diff: the plane buffer (a new bytearray) of raw bytes, with or without a base. */
static PyObject *split_common(PyObject *args, int diff)
{
    Py_buffer raw, base;
    PyObject *base_obj;
    int word, skip = 0, fkey = 0, group = 0;
    if (diff ? !PyArg_ParseTuple(args, "y*Oipp", &raw, &base_obj, &word, &fkey, &group)
             : !PyArg_ParseTuple(args, "y*iiO", &raw, &word, &skip, &base_obj))
        return NULL;
    PyObject *out = NULL;
    Shape sh;
    if (skip < 0) {
        PyErr_SetString(PyExc_ValueError, "negative skip");
        goto done_raw;
    }
    if (shape_of(raw.len, word, &sh) < 0 || base_buffer(base_obj, raw.len, diff, &base) < 0)
        goto done_raw;
    out = PyByteArray_FromStringAndSize(NULL, raw.len);
    if (out) {
        const uint8_t *src = raw.buf, *b = base.obj ? base.buf : NULL;
        uint8_t *dst = (uint8_t *)PyByteArray_AS_STRING(out);
        Py_BEGIN_ALLOW_THREADS
        if (diff)
            split_diff_words(sh, src, b, dst, fkey, group);
        else
            split_words(sh, src, b, dst, (unsigned)skip);
        xor_tail(sh, src + sh.count * (size_t)word, b, dst);
        Py_END_ALLOW_THREADS
    }
    release(&base);
done_raw:
    PyBuffer_Release(&raw);
    return out;
}

static PyObject *split(PyObject *self, PyObject *args) { return split_common(args, 0); }
static PyObject *split_diff(PyObject *self, PyObject *args) { return split_common(args, 1); }

/* merge / merge_diff: the raw bytes of a plane list, into `out` (a writable buffer) or a new bytes. */
static PyObject *merge_common(PyObject *args, int diff)
{
    PyObject *plane_list, *base_obj, *out_obj;
    Py_ssize_t raw_size;
    int word, skip = 0, fkey = 0, group = 0;
    if (diff ? !PyArg_ParseTuple(args, "OnOippO", &plane_list, &raw_size, &base_obj, &word, &fkey, &group, &out_obj)
             : !PyArg_ParseTuple(args, "OniiOO", &plane_list, &raw_size, &word, &skip, &base_obj, &out_obj))
        return NULL;
    Shape sh;
    if (skip < 0) {
        PyErr_SetString(PyExc_ValueError, "negative skip");
        return NULL;
    }
    if (shape_of(raw_size, word, &sh) < 0)
        return NULL;
    PyObject *seq = PySequence_Fast(plane_list, "planes must be a sequence of buffers");
    if (!seq)
        return NULL;
    Py_ssize_t expected = (sh.count ? word : 0) + (sh.tail ? 1 : 0);
    Py_buffer views[MAX_WORD + 1], base, out_view;
    Py_ssize_t held = 0;
    PyObject *result = NULL;
    base.obj = NULL;
    out_view.obj = NULL;
    if (PySequence_Fast_GET_SIZE(seq) != expected) {
        PyErr_Format(PyExc_ValueError, "%zd planes given, %zd expected", PySequence_Fast_GET_SIZE(seq), expected);
        goto done;
    }
    const uint8_t *planes[MAX_WORD + 1];
    for (; held < expected; held++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, held), &views[held], PyBUF_SIMPLE) < 0)
            goto done;
        size_t want = (sh.count && held < word) ? sh.count : sh.tail;
        if ((size_t)views[held].len != want) {
            PyErr_Format(PyExc_ValueError, "plane %zd has %zd bytes, expected %zu", held, views[held].len, want);
            held++;
            goto done;
        }
        planes[held] = views[held].buf;
    }
    if (base_buffer(base_obj, raw_size, diff, &base) < 0)
        goto done;
    uint8_t *dst;
    if (output_buffer(out_obj, raw_size, &out_view, &result, &dst) < 0)
        goto done;
    const uint8_t *b = base.obj ? base.buf : NULL;
    Py_BEGIN_ALLOW_THREADS
    if (sh.count && diff)
        merge_diff_words(sh, planes, b, dst, fkey, group);
    else if (sh.count)
        merge_words(sh, planes, b, dst, (unsigned)skip);
    if (sh.tail)
        xor_tail(sh, planes[expected - 1], b, dst);
    Py_END_ALLOW_THREADS
done:
    for (Py_ssize_t i = 0; i < held; i++)
        PyBuffer_Release(&views[i]);
    release(&base);
    release(&out_view);
    Py_DECREF(seq);
    if (PyErr_Occurred()) {
        Py_XDECREF(result);
        return NULL;
    }
    return result;
}

static PyObject *merge(PyObject *self, PyObject *args) { return merge_common(args, 0); }
static PyObject *merge_diff(PyObject *self, PyObject *args) { return merge_common(args, 1); }

/* The planes of `packed` for a shape: the word planes but the last, the 6-bit and 2-bit planes, the
 * tail; an empty plane (no words, or no tail) is not listed, as for the other kernels. */
static Py_ssize_t packed_planes(Shape sh, size_t *sizes)
{
    Py_ssize_t k = 0;
    if (sh.count) {
        for (int i = 0; i < sh.word - 1; i++)
            sizes[k++] = sh.count;
        sizes[k++] = six_bytes(sh.count);
        sizes[k++] = two_bytes(sh.count);
    }
    if (sh.tail)
        sizes[k++] = sh.tail;
    return k;
}

static PyObject *split_packed(PyObject *self, PyObject *args)
{
    Py_buffer raw;
    int word, skip;
    if (!PyArg_ParseTuple(args, "y*ii", &raw, &word, &skip))
        return NULL;
    PyObject *out = NULL;
    Shape sh;
    size_t sizes[MAX_WORD + 2], total = 0;
    if (skip < 0) {
        PyErr_SetString(PyExc_ValueError, "negative skip");
        goto done;
    }
    if (shape_of(raw.len, word, &sh) < 0)
        goto done;
    Py_ssize_t planes = packed_planes(sh, sizes);
    for (Py_ssize_t k = 0; k < planes; k++)
        total += sizes[k];
    out = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (out) {
        const uint8_t *src = raw.buf;
        uint8_t *dst = (uint8_t *)PyByteArray_AS_STRING(out);
        Py_BEGIN_ALLOW_THREADS
        if (sh.count)
            split_packed_words(sh, src, dst, (unsigned)skip);
        memcpy(dst + total - sh.tail, src + sh.count * (size_t)word, sh.tail);
        Py_END_ALLOW_THREADS
    }
done:
    PyBuffer_Release(&raw);
    return out;
}

static PyObject *merge_packed(PyObject *self, PyObject *args)
{
    PyObject *plane_list, *out_obj;
    Py_ssize_t raw_size;
    int word, skip;
    if (!PyArg_ParseTuple(args, "OniiO", &plane_list, &raw_size, &word, &skip, &out_obj))
        return NULL;
    Shape sh;
    if (skip < 0) {
        PyErr_SetString(PyExc_ValueError, "negative skip");
        return NULL;
    }
    if (shape_of(raw_size, word, &sh) < 0)
        return NULL;
    PyObject *seq = PySequence_Fast(plane_list, "planes must be a sequence of buffers");
    if (!seq)
        return NULL;
    size_t sizes[MAX_WORD + 2];
    Py_ssize_t expected = packed_planes(sh, sizes), held = 0;
    Py_buffer views[MAX_WORD + 2], out_view;
    const uint8_t *planes[MAX_WORD + 2];
    PyObject *result = NULL;
    out_view.obj = NULL;
    if (PySequence_Fast_GET_SIZE(seq) != expected) {
        PyErr_Format(PyExc_ValueError, "%zd planes given, %zd expected", PySequence_Fast_GET_SIZE(seq), expected);
        goto done;
    }
    for (; held < expected; held++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, held), &views[held], PyBUF_SIMPLE) < 0)
            goto done;
        if ((size_t)views[held].len != sizes[held]) {
            PyErr_Format(PyExc_ValueError, "plane %zd has %zd bytes, expected %zu", held, views[held].len,
                         sizes[held]);
            held++;
            goto done;
        }
        planes[held] = views[held].buf;
    }
    uint8_t *dst;
    if (output_buffer(out_obj, raw_size, &out_view, &result, &dst) < 0)
        goto done;
    size_t scratch_size = sh.count ? packed_scratch(word, sh.count) : 0;
    uint8_t *scratch = scratch_size ? PyMem_RawMalloc(scratch_size) : NULL;
    if (scratch_size && !scratch) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    if (sh.count)
        merge_packed_words(sh, planes, dst, (unsigned)skip, scratch);
    if (sh.tail)
        memcpy(dst + sh.count * (size_t)word, planes[expected - 1], sh.tail);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(scratch);
done:
    for (Py_ssize_t i = 0; i < held; i++)
        PyBuffer_Release(&views[i]);
    release(&out_view);
    Py_DECREF(seq);
    if (PyErr_Occurred()) {
        Py_XDECREF(result);
        return NULL;
    }
    return result;
}

static PyObject *empty(PyObject *self, PyObject *arg)
{
    Py_ssize_t size = PyLong_AsSsize_t(arg);
    if (size == -1 && PyErr_Occurred())
        return NULL;
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "negative size");
        return NULL;
    }
    /* Unlike bytearray(n), no zero fill: every byte is about to be overwritten by a decoder. */
    return PyByteArray_FromStringAndSize(NULL, size);
}

static PyObject *crc32(PyObject *self, PyObject *args)
{
    Py_buffer data;
    unsigned int value = 0;
    if (!PyArg_ParseTuple(args, "y*|I", &data, &value))
        return NULL;
    uint32_t crc;
    Py_BEGIN_ALLOW_THREADS
    crc = crc32_of(value, data.buf, (size_t)data.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(crc);
}

static PyObject *crc32_portable(PyObject *self, PyObject *args)
{
    Py_buffer data;
    unsigned int value = 0;
    if (!PyArg_ParseTuple(args, "y*|I", &data, &value))
        return NULL;
    uint32_t crc = ~crc_tables(~(uint32_t)value, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(crc);
}

static PyObject *fold_constants(PyObject *self, PyObject *unused)
{
#ifdef HAVE_CLMUL
    return Py_BuildValue("KKKK", FOLD_512_LOW, FOLD_512_HIGH, FOLD_128_LOW, FOLD_128_HIGH);
#else
    Py_RETURN_NONE;
#endif
}

static PyMethodDef methods[] = {
    {"split", split, METH_VARARGS,
     "split(raw, word_size, skip, base) -> bytearray: planes of raw XOR base (base may be None), rotated left"},
    {"merge", merge, METH_VARARGS,
     "merge(planes, raw_size, word_size, skip, base, out) -> out or bytes: the inverse of split"},
    {"split_diff", split_diff, METH_VARARGS,
     "split_diff(raw, base, word_size, float_key, group) -> bytearray: planes of zigzag(key(raw) - key(base))"},
    {"merge_diff", merge_diff, METH_VARARGS,
     "merge_diff(planes, raw_size, base, word_size, float_key, group, out) -> out or bytes: inverse of split_diff"},
    {"split_packed", split_packed, METH_VARARGS,
     "split_packed(raw, word_size, skip) -> bytearray: plain's planes, the last one packed as 6 + 2 bits"},
    {"merge_packed", merge_packed, METH_VARARGS,
     "merge_packed(planes, raw_size, word_size, skip, out) -> out or bytes: the inverse of split_packed"},
    {"empty", empty, METH_O, "empty(size) -> bytearray of `size` bytes, not zero-filled"},
    {"crc32", crc32, METH_VARARGS, "crc32(data, value=0) -> int: zlib.crc32(data, value), faster"},
    {"crc32_portable", crc32_portable, METH_VARARGS, "crc32 by tables only (for tests of the fallback)"},
    {"fold_constants", fold_constants, METH_NOARGS, "the carry-less fold constants, or None (for tests)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_kernels",
    .m_doc = "Fused per-element kernels of deltahub's tensor codecs.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__kernels(void)
{
    crc_init();
#ifdef HAVE_CLMUL
    __builtin_cpu_init();
    use_clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse2");
#endif
    return PyModule_Create(&module);
}
