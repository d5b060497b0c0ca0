/* Fused per-element kernels of deltahub's tensor codecs: one pass over a frame's words each way.
 *
 * What each kernel computes is specified by the numpy reference in storage/codecs/reference.py and
 * docs/codecs.md; the tests check both agree byte for byte. This file only makes it one pass:
 *
 *   split       words (XOR base words) -> rotate left by skip -> byte planes, most significant first
 *   merge       the inverse, written straight into the caller's buffer (or a new bytes object)
 *   split_diff  float key (optional) -> wrapping difference to the base -> zigzag -> byte planes,
 *               optionally in a stable counting-sort order of the base's exponent byte (group)
 *   merge_diff  the inverse
 *
 * A plane buffer is the word planes back to back (each `count` bytes) followed by the tail: the bytes
 * past the last whole word, XORed with the base's tail when there is a base. Words are little-endian
 * (as in safetensors); the GIL is released while the loops run, so frames decode in parallel threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "deltahub's kernels read words as little-endian integers (the safetensors byte order)"
#endif

#define MAX_WORD 8

/* Kernels are inlined into each call site, where the flags (base or not, float key, group) are
 * constants: the compiler then emits one straight, vectorised loop per case, not a branch per element. */
#if defined(__GNUC__)
#define KERNEL static inline __attribute__((always_inline))
#else
#define KERNEL static inline
#endif

typedef struct {
    size_t count;     /* whole words */
    size_t tail;      /* bytes past the last whole word */
    int word;         /* word size in bytes: 1, 2, 4 or 8 */
} Shape;

/* ---- plain and bitx: XOR with the base (when given), rotate, cut into planes ------------------------ */

#define ROTL(T, w, s) ((T)(((w) << (s)) | ((w) >> ((sizeof(T) * 8 - (s)) & (sizeof(T) * 8 - 1)))))
#define ROTR(T, w, s) ((T)(((w) >> (s)) | ((w) << ((sizeof(T) * 8 - (s)) & (sizeof(T) * 8 - 1)))))

#define DEFINE_PLANES(T, B)                                                                             \
    KERNEL void split_##B(const uint8_t *restrict src, const uint8_t *restrict base, uint8_t *restrict dst, \
                          size_t n, unsigned s)                                                  \
    {                                                                                                  \
        for (size_t i = 0; i < n; i++) {                                                               \
            T w;                                                                                       \
            memcpy(&w, src + i * B, B);                                                                \
            if (base) {                                                                                \
                T b;                                                                                   \
                memcpy(&b, base + i * B, B);                                                           \
                w ^= b;                                                                                \
            }                                                                                          \
            w = ROTL(T, w, s);                                                                         \
            for (int k = 0; k < B; k++)                                                                \
                dst[(size_t)k * n + i] = (uint8_t)(w >> (8 * (B - 1 - k)));                            \
        }                                                                                              \
    }                                                                                                  \
    KERNEL void merge_##B(const uint8_t *const *planes, const uint8_t *restrict base, uint8_t *restrict dst, \
                          size_t n, unsigned s)                                                        \
    {                                                                                                  \
        const uint8_t *p[B];                                                                           \
        for (int k = 0; k < B; k++)                                                                    \
            p[k] = planes[k];                                                                          \
        for (size_t i = 0; i < n; i++) {                                                               \
            T w = 0;                                                                                   \
            for (int k = 0; k < B; k++)                                                                \
                w |= (T)p[k][i] << (8 * (B - 1 - k));                                                  \
            w = ROTR(T, w, s);                                                                         \
            if (base) {                                                                                \
                T b;                                                                                   \
                memcpy(&b, base + i * B, B);                                                           \
                w ^= b;                                                                                \
            }                                                                                          \
            memcpy(dst + i * B, &w, B);                                                                \
        }                                                                                              \
    }

DEFINE_PLANES(uint16_t, 2)
DEFINE_PLANES(uint32_t, 4)
DEFINE_PLANES(uint64_t, 8)

/* The `if (base)` and rotation tests are loop-invariant: each call site below passes constants so the
 * compiler emits a specialised, vectorised loop per case instead of a branch per element. */
static void split_words(Shape sh, const uint8_t *src, const uint8_t *base, uint8_t *dst, unsigned skip)
{
    size_t n = sh.count;
    switch (sh.word) {
    case 1:
        if (base)
            for (size_t i = 0; i < n; i++) dst[i] = src[i] ^ base[i];
        else
            memcpy(dst, src, n);
        break;
    case 2: base ? split_2(src, base, dst, n, skip % 16) : split_2(src, NULL, dst, n, skip % 16); break;
    case 4: base ? split_4(src, base, dst, n, skip % 32) : split_4(src, NULL, dst, n, skip % 32); break;
    case 8: base ? split_8(src, base, dst, n, skip % 64) : split_8(src, NULL, dst, n, skip % 64); break;
    }
}

static void merge_words(Shape sh, const uint8_t *const *planes, const uint8_t *base, uint8_t *dst,
                        unsigned skip)
{
    size_t n = sh.count;
    switch (sh.word) {
    case 1:
        if (base)
            for (size_t i = 0; i < n; i++) dst[i] = planes[0][i] ^ base[i];
        else
            memcpy(dst, planes[0], n);
        break;
    case 2: base ? merge_2(planes, base, dst, n, skip % 16) : merge_2(planes, NULL, dst, n, skip % 16); break;
    case 4: base ? merge_4(planes, base, dst, n, skip % 32) : merge_4(planes, NULL, dst, n, skip % 32); break;
    case 8: base ? merge_8(planes, base, dst, n, skip % 64) : merge_8(planes, NULL, dst, n, skip % 64); break;
    }
}

/* ---- diff: order-preserving float key, wrapping difference, zigzag, optional grouping --------------- */

#define TOP(T) ((T)((T)1 << (sizeof(T) * 8 - 1)))
#define SIGN_MASK(T, w) ((T)(-(T)((w) >> (sizeof(T) * 8 - 1))))
#define KEY(T, w) ((T)((w) ^ (SIGN_MASK(T, w) | TOP(T))))
#define UNKEY(T, k) ((T)((k) ^ ((T)(-(T)(((k) >> (sizeof(T) * 8 - 1)) ^ 1)) | TOP(T))))
/* The base's byte just under the sign bit: the exponent of BF16 and F32, the whole word for 1 byte. */
#define CONTEXT(T, b) (sizeof(T) == 1 ? (uint8_t)(b) : (uint8_t)((b) >> (sizeof(T) * 8 - 9)))

/* Grouping is a stable counting sort by context: a histogram gives each context's first position, and
 * element i goes to `cursor[context_i]++`. That cursor walk is scalar, so it runs in blocks of BLOCK
 * elements as its own pass, with the arithmetic (key, difference, zigzag) in a separate vectorised pass
 * over the block: measured 1.6 GB/s against 0.95 GB/s for one fused scalar loop (BF16, 4 MiB frame). */
#define BLOCK 2048

#define DEFINE_DIFF(T, B)                                                                               \
    KERNEL T zigzag_##B(T x, T b, int fkey)                                                            \
    {                                                                                                  \
        T d = fkey ? (T)(KEY(T, x) - KEY(T, b)) : (T)(x - b);                                          \
        return (T)((T)(d << 1) ^ SIGN_MASK(T, d));                                                     \
    }                                                                                                  \
    KERNEL T unzigzag_##B(T z, T b, int fkey)                                                          \
    {                                                                                                  \
        T d = (T)((z >> 1) ^ (T)(-(T)(z & 1)));                                                        \
        return fkey ? UNKEY(T, (T)(d + KEY(T, b))) : (T)(d + b);                                       \
    }                                                                                                  \
    KERNEL uint8_t context_##B(const uint8_t *base, size_t i)                                          \
    {                                                                                                  \
        T b;                                                                                           \
        memcpy(&b, base + i * B, B);                                                                   \
        return CONTEXT(T, b);                                                                          \
    }                                                                                                  \
    /* cursor[c] = how many elements have a smaller context: where context c's run starts. */          \
    KERNEL void buckets_##B(const uint8_t *base, size_t n, size_t *cursor)                             \
    {                                                                                                  \
        /* Four counters per context so consecutive equal contexts do not wait on each other. */      \
        size_t counts[4][256];                                                                         \
        memset(counts, 0, sizeof counts);                                                              \
        size_t i = 0;                                                                                  \
        for (; i + 4 <= n; i += 4)                                                                     \
            for (int l = 0; l < 4; l++)                                                                \
                counts[l][context_##B(base, i + l)]++;                                                 \
        for (; i < n; i++)                                                                             \
            counts[0][context_##B(base, i)]++;                                                         \
        size_t start = 0;                                                                              \
        for (int c = 0; c < 256; c++) {                                                                \
            cursor[c] = start;                                                                         \
            start += counts[0][c] + counts[1][c] + counts[2][c] + counts[3][c];                        \
        }                                                                                              \
    }                                                                                                  \
    KERNEL void split_diff_##B(const uint8_t *restrict src, const uint8_t *restrict base,              \
                               uint8_t *restrict dst, size_t n, int fkey, int group)                   \
    {                                                                                                  \
        if (!group) {                                                                                  \
            for (size_t i = 0; i < n; i++) {                                                           \
                T x, b;                                                                                \
                memcpy(&x, src + i * B, B);                                                            \
                memcpy(&b, base + i * B, B);                                                           \
                T z = zigzag_##B(x, b, fkey);                                                          \
                for (int k = 0; k < B; k++)                                                            \
                    dst[(size_t)k * n + i] = (uint8_t)(z >> (8 * (B - 1 - k)));                        \
            }                                                                                          \
            return;                                                                                    \
        }                                                                                              \
        size_t cursor[256];                                                                            \
        T z[BLOCK];                                                                                    \
        buckets_##B(base, n, cursor);                                                                  \
        for (size_t s = 0; s < n; s += BLOCK) {                                                        \
            size_t m = n - s < BLOCK ? n - s : BLOCK;                                                  \
            for (size_t j = 0; j < m; j++) {                                                           \
                T x, b;                                                                                \
                memcpy(&x, src + (s + j) * B, B);                                                      \
                memcpy(&b, base + (s + j) * B, B);                                                     \
                z[j] = zigzag_##B(x, b, fkey);                                                         \
            }                                                                                          \
            for (size_t j = 0; j < m; j++) {                                                           \
                size_t at = cursor[context_##B(base, s + j)]++;                                        \
                for (int k = 0; k < B; k++)                                                            \
                    dst[(size_t)k * n + at] = (uint8_t)(z[j] >> (8 * (B - 1 - k)));                    \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
    KERNEL void merge_diff_##B(const uint8_t *const *planes, const uint8_t *restrict base,             \
                               uint8_t *restrict dst, size_t n, int fkey, int group)                   \
    {                                                                                                  \
        const uint8_t *p[B];                                                                           \
        for (int k = 0; k < B; k++)                                                                    \
            p[k] = planes[k];                                                                          \
        if (!group) {                                                                                  \
            for (size_t i = 0; i < n; i++) {                                                           \
                T b, z = 0;                                                                            \
                memcpy(&b, base + i * B, B);                                                           \
                for (int k = 0; k < B; k++)                                                            \
                    z |= (T)p[k][i] << (8 * (B - 1 - k));                                              \
                T x = unzigzag_##B(z, b, fkey);                                                        \
                memcpy(dst + i * B, &x, B);                                                            \
            }                                                                                          \
            return;                                                                                    \
        }                                                                                              \
        size_t cursor[256];                                                                            \
        T z[BLOCK];                                                                                    \
        buckets_##B(base, n, cursor);                                                                  \
        for (size_t s = 0; s < n; s += BLOCK) {                                                        \
            size_t m = n - s < BLOCK ? n - s : BLOCK;                                                  \
            for (size_t j = 0; j < m; j++) {                                                           \
                size_t at = cursor[context_##B(base, s + j)]++;                                        \
                T w = 0;                                                                               \
                for (int k = 0; k < B; k++)                                                            \
                    w |= (T)p[k][at] << (8 * (B - 1 - k));                                             \
                z[j] = w;                                                                              \
            }                                                                                          \
            for (size_t j = 0; j < m; j++) {                                                           \
                T b;                                                                                   \
                memcpy(&b, base + (s + j) * B, B);                                                     \
                T x = unzigzag_##B(z[j], b, fkey);                                                     \
                memcpy(dst + (s + j) * B, &x, B);                                                      \
            }                                                                                          \
        }                                                                                              \
    }

DEFINE_DIFF(uint8_t, 1)
DEFINE_DIFF(uint16_t, 2)
DEFINE_DIFF(uint32_t, 4)
DEFINE_DIFF(uint64_t, 8)

/* Constant flags at each call, as above, so every combination gets its own straight loop. */
#define DISPATCH_DIFF(dir, B)                                                                           \
    (fkey ? (group ? dir##_##B(first, base, dst, n, 1, 1) : dir##_##B(first, base, dst, n, 1, 0))       \
          : (group ? dir##_##B(first, base, dst, n, 0, 1) : dir##_##B(first, base, dst, n, 0, 0)))

static void split_diff_words(Shape sh, const uint8_t *first, const uint8_t *base, uint8_t *dst, int fkey, int group)
{
    size_t n = sh.count;
    switch (sh.word) {
    case 1: DISPATCH_DIFF(split_diff, 1); break;
    case 2: DISPATCH_DIFF(split_diff, 2); break;
    case 4: DISPATCH_DIFF(split_diff, 4); break;
    case 8: DISPATCH_DIFF(split_diff, 8); break;
    }
}

static void merge_diff_words(Shape sh, const uint8_t *const *first, const uint8_t *base, uint8_t *dst, int fkey,
                             int group)
{
    size_t n = sh.count;
    switch (sh.word) {
    case 1: DISPATCH_DIFF(merge_diff, 1); break;
    case 2: DISPATCH_DIFF(merge_diff, 2); break;
    case 4: DISPATCH_DIFF(merge_diff, 4); break;
    case 8: DISPATCH_DIFF(merge_diff, 8); break;
    }
}

/* ---- crc32 (zlib's polynomial), the frame checksum ------------------------------------------------ */

/* zlib's crc32 runs at ~4-6 GB/s here, 15% of a frame's decode. This one folds 64 bytes per step with
 * carry-less multiplication where the CPU has it (x86-64 PCLMULQDQ; measured ~4x zlib) and uses
 * slicing-by-8 tables otherwise and for the last < 16 bytes. Folding keeps a 128-bit value congruent,
 * modulo the CRC polynomial, to the bytes folded so far, so the table CRC of those 16 bytes followed by
 * the rest is the CRC of the whole buffer: no Barrett reduction is needed. */

static uint32_t crc_table[8][256];

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
        crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int t = 1; t < 8; t++)
            crc_table[t][n] = (crc_table[t - 1][n] >> 8) ^ crc_table[0][crc_table[t - 1][n] & 0xff];
}

/* The CRC register (no pre- or post-inversion) after `n` more bytes. */
static uint32_t crc_tables(uint32_t crc, const uint8_t *p, size_t n)
{
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= crc;
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^ crc_table[5][(lo >> 16) & 0xff] ^
              crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
              crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
    }
    for (; n; p++, n--)
        crc = crc_table[0][(crc ^ *p) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_CLMUL 1

/* Fold constants for a fold over D bits: (low, high) = (x^(D+32) mod P, x^(D-32) mod P), each residue
 * bit-reflected over 33 bits (P = 0x104C11DB7). tests/storage/codecs/test_kernels.py derives them from
 * that formula and checks this path against zlib for every length up to a few folds. */
#define FOLD_512_LOW 0x154442bd4ull
#define FOLD_512_HIGH 0x1c6e41596ull
#define FOLD_128_LOW 0x1751997d0ull
#define FOLD_128_HIGH 0x0ccaa009eull

__attribute__((target("pclmul,sse2"))) static inline __m128i fold(__m128i x, __m128i k)
{
    return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

__attribute__((target("pclmul,sse2"))) static uint32_t crc_clmul(uint32_t crc, const uint8_t *p, size_t n)
{
    const __m128i k512 = _mm_set_epi64x((long long)FOLD_512_HIGH, (long long)FOLD_512_LOW);
    const __m128i k128 = _mm_set_epi64x((long long)FOLD_128_HIGH, (long long)FOLD_128_LOW);
    __m128i x0 = _mm_loadu_si128((const __m128i *)p), x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32)), x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)crc));
    for (p += 64, n -= 64; n >= 64; p += 64, n -= 64) {
        x0 = _mm_xor_si128(fold(x0, k512), _mm_loadu_si128((const __m128i *)p));
        x1 = _mm_xor_si128(fold(x1, k512), _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = _mm_xor_si128(fold(x2, k512), _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = _mm_xor_si128(fold(x3, k512), _mm_loadu_si128((const __m128i *)(p + 48)));
    }
    __m128i x = _mm_xor_si128(fold(x0, k128), x1);
    x = _mm_xor_si128(fold(x, k128), x2);
    x = _mm_xor_si128(fold(x, k128), x3);
    for (; n >= 16; p += 16, n -= 16)
        x = _mm_xor_si128(fold(x, k128), _mm_loadu_si128((const __m128i *)p));
    uint8_t folded[16];
    _mm_storeu_si128((__m128i *)folded, x);
    return crc_tables(crc_tables(0, folded, 16), p, n);
}
#endif

static int use_clmul;

/* zlib.crc32(data, value) */
static uint32_t crc32_of(uint32_t value, const uint8_t *p, size_t n)
{
    uint32_t crc = ~value;
#ifdef HAVE_CLMUL
    if (use_clmul && n >= 64)
        return ~crc_clmul(crc, p, n);
#endif
    return ~crc_tables(crc, p, n);
}

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
    if (out_obj == Py_None) {
        result = PyBytes_FromStringAndSize(NULL, raw_size);
        if (!result)
            goto done;
        dst = (uint8_t *)PyBytes_AS_STRING(result);
    } else {
        if (PyObject_GetBuffer(out_obj, &out_view, PyBUF_WRITABLE) < 0)
            goto done;
        if (out_view.len != raw_size) {
            PyErr_Format(PyExc_ValueError, "output has %zd bytes, the data %zd", out_view.len, raw_size);
            goto done;
        }
        dst = out_view.buf;
        Py_INCREF(out_obj);
        result = out_obj;
    }
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
    use_clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse2");
#endif
    return PyModule_Create(&module);
}
