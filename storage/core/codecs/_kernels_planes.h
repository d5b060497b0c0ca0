/* Per-element transforms of the codecs (included once, by _kernels.c): byte planes with rotation and XOR,
 * and the diff mapping with its counting-sort grouping. Each function is one loop over a frame's words;
 * what it computes is specified by storage/core/codecs/reference.py. */
#ifndef DELTAHUB_KERNELS_PLANES_H
#define DELTAHUB_KERNELS_PLANES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "deltahub's kernels read words as little-endian integers (the safetensors byte order)"
#endif

#if defined(_MSC_VER) && !defined(restrict)
#define restrict __restrict
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

#define DEFINE_PLANES(T, B)                                                                                 \
    KERNEL void split_##B(const uint8_t *restrict src, const uint8_t *restrict base, uint8_t *restrict dst, \
                          size_t n, unsigned s)                                                             \
    {                                                                                                       \
        for (size_t i = 0; i < n; i++) {                                                                    \
            T w;                                                                                            \
            memcpy(&w, src + i * B, B);                                                                     \
            if (base) {                                                                                     \
                T b;                                                                                        \
                memcpy(&b, base + i * B, B);                                                                \
                w ^= b;                                                                                     \
            }                                                                                               \
            w = ROTL(T, w, s);                                                                              \
            for (int k = 0; k < B; k++)                                                                     \
                dst[(size_t)k * n + i] = (uint8_t)(w >> (8 * (B - 1 - k)));                                 \
        }                                                                                                   \
    }                                                                                                       \
    KERNEL void merge_##B(const uint8_t *const *planes, const uint8_t *restrict base, uint8_t *restrict dst, \
                          size_t n, unsigned s)                                                             \
    {                                                                                                       \
        const uint8_t *p[B];                                                                                \
        for (int k = 0; k < B; k++)                                                                         \
            p[k] = planes[k];                                                                               \
        for (size_t i = 0; i < n; i++) {                                                                    \
            T w = 0;                                                                                        \
            for (int k = 0; k < B; k++)                                                                     \
                w |= (T)p[k][i] << (8 * (B - 1 - k));                                                       \
            w = ROTR(T, w, s);                                                                              \
            if (base) {                                                                                     \
                T b;                                                                                        \
                memcpy(&b, base + i * B, B);                                                                \
                w ^= b;                                                                                     \
            }                                                                                               \
            memcpy(dst + i * B, &w, B);                                                                     \
        }                                                                                                   \
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

#define DEFINE_DIFF(T, B)                                                                                   \
    KERNEL T zigzag_##B(T x, T b, int fkey)                                                                 \
    {                                                                                                       \
        T d = fkey ? (T)(KEY(T, x) - KEY(T, b)) : (T)(x - b);                                               \
        return (T)((T)(d << 1) ^ SIGN_MASK(T, d));                                                          \
    }                                                                                                       \
    KERNEL T unzigzag_##B(T z, T b, int fkey)                                                               \
    {                                                                                                       \
        T d = (T)((z >> 1) ^ (T)(-(T)(z & 1)));                                                             \
        return fkey ? UNKEY(T, (T)(d + KEY(T, b))) : (T)(d + b);                                            \
    }                                                                                                       \
    KERNEL uint8_t context_##B(const uint8_t *base, size_t i)                                               \
    {                                                                                                       \
        T b;                                                                                                \
        memcpy(&b, base + i * B, B);                                                                        \
        return CONTEXT(T, b);                                                                               \
    }                                                                                                       \
    /* cursor[c] = how many elements have a smaller context: where context c's run starts. */               \
    KERNEL void buckets_##B(const uint8_t *base, size_t n, size_t *cursor)                                  \
    {                                                                                                       \
        /* Four counters per context so consecutive equal contexts do not wait on each other. */            \
        size_t counts[4][256];                                                                              \
        memset(counts, 0, sizeof counts);                                                                   \
        size_t i = 0;                                                                                       \
        for (; i + 4 <= n; i += 4)                                                                          \
            for (int l = 0; l < 4; l++)                                                                     \
                counts[l][context_##B(base, i + l)]++;                                                      \
        for (; i < n; i++)                                                                                  \
            counts[0][context_##B(base, i)]++;                                                              \
        size_t start = 0;                                                                                   \
        for (int c = 0; c < 256; c++) {                                                                     \
            cursor[c] = start;                                                                              \
            start += counts[0][c] + counts[1][c] + counts[2][c] + counts[3][c];                             \
        }                                                                                                   \
    }                                                                                                       \
    KERNEL void split_diff_##B(const uint8_t *restrict src, const uint8_t *restrict base,                   \
                               uint8_t *restrict dst, size_t n, int fkey, int group)                        \
    {                                                                                                       \
        if (!group) {                                                                                       \
            for (size_t i = 0; i < n; i++) {                                                                \
                T x, b;                                                                                     \
                memcpy(&x, src + i * B, B);                                                                 \
                memcpy(&b, base + i * B, B);                                                                \
                T z = zigzag_##B(x, b, fkey);                                                               \
                for (int k = 0; k < B; k++)                                                                 \
                    dst[(size_t)k * n + i] = (uint8_t)(z >> (8 * (B - 1 - k)));                             \
            }                                                                                               \
            return;                                                                                         \
        }                                                                                                   \
        size_t cursor[256];                                                                                 \
        T z[BLOCK];                                                                                         \
        buckets_##B(base, n, cursor);                                                                       \
        for (size_t s = 0; s < n; s += BLOCK) {                                                             \
            size_t m = n - s < BLOCK ? n - s : BLOCK;                                                       \
            for (size_t j = 0; j < m; j++) {                                                                \
                T x, b;                                                                                     \
                memcpy(&x, src + (s + j) * B, B);                                                           \
                memcpy(&b, base + (s + j) * B, B);                                                          \
                z[j] = zigzag_##B(x, b, fkey);                                                              \
            }                                                                                               \
            for (size_t j = 0; j < m; j++) {                                                                \
                size_t at = cursor[context_##B(base, s + j)]++;                                             \
                for (int k = 0; k < B; k++)                                                                 \
                    dst[(size_t)k * n + at] = (uint8_t)(z[j] >> (8 * (B - 1 - k)));                         \
            }                                                                                               \
        }                                                                                                   \
    }                                                                                                       \
    KERNEL void merge_diff_##B(const uint8_t *const *planes, const uint8_t *restrict base,                  \
                               uint8_t *restrict dst, size_t n, int fkey, int group)                        \
    {                                                                                                       \
        const uint8_t *p[B];                                                                                \
        for (int k = 0; k < B; k++)                                                                         \
            p[k] = planes[k];                                                                               \
        if (!group) {                                                                                       \
            for (size_t i = 0; i < n; i++) {                                                                \
                T b, z = 0;                                                                                 \
                memcpy(&b, base + i * B, B);                                                                \
                for (int k = 0; k < B; k++)                                                                 \
                    z |= (T)p[k][i] << (8 * (B - 1 - k));                                                   \
                T x = unzigzag_##B(z, b, fkey);                                                             \
                memcpy(dst + i * B, &x, B);                                                                 \
            }                                                                                               \
            return;                                                                                         \
        }                                                                                                   \
        size_t cursor[256];                                                                                 \
        T z[BLOCK];                                                                                         \
        buckets_##B(base, n, cursor);                                                                       \
        for (size_t s = 0; s < n; s += BLOCK) {                                                             \
            size_t m = n - s < BLOCK ? n - s : BLOCK;                                                       \
            for (size_t j = 0; j < m; j++) {                                                                \
                size_t at = cursor[context_##B(base, s + j)]++;                                             \
                T w = 0;                                                                                    \
                for (int k = 0; k < B; k++)                                                                 \
                    w |= (T)p[k][at] << (8 * (B - 1 - k));                                                  \
                z[j] = w;                                                                                   \
            }                                                                                               \
            for (size_t j = 0; j < m; j++) {                                                                \
                T b;                                                                                        \
                memcpy(&b, base + (s + j) * B, B);                                                          \
                T x = unzigzag_##B(z[j], b, fkey);                                                          \
                memcpy(dst + (s + j) * B, &x, B);                                                           \
            }                                                                                               \
        }                                                                                                   \
    }

DEFINE_DIFF(uint8_t, 1)
DEFINE_DIFF(uint16_t, 2)
DEFINE_DIFF(uint32_t, 4)
DEFINE_DIFF(uint64_t, 8)

/* Constant flags at each call, as above, so every combination gets its own straight loop. */
#define DISPATCH_DIFF(dir, B)                                                                               \
    (fkey ? (group ? dir##_##B(first, base, dst, n, 1, 1) : dir##_##B(first, base, dst, n, 1, 0))           \
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

#endif
