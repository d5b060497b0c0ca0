/* The `packed` codec's transform (included once, by _kernels.c, after _kernels_planes.h): `plain`'s
 * rotation and byte planes, except that the last plane (the rotated word's low byte) is stored as two
 * bit-packed planes, its top 6 bits (4 values in 3 bytes) and its low 2 bits (4 values in 1 byte). What it computes is specified by reference.split_packed/merge_packed.
 *
 * Why: with skip=3 a BF16 word's low byte is the low 5 mantissa bits and the sign (near-random) over the
 * top two exponent bits (near-constant). `plain` must Huffman-code that byte to save the constant bits,
 * and that second Huffman plane is half of the decode time; here the random 6 bits are stored as they
 * are and the constant 2 bits compress to almost nothing, so only the first plane is Huffman-coded. */
#ifndef DELTAHUB_KERNELS_PACKED_H
#define DELTAHUB_KERNELS_PACKED_H

/* Layout of the two packed planes of n words, in quarters: m = ceil(n / 4), and element q*m + i (quarter
 * q, column i; columns past n are zero) gives its 6-bit value v_q and 2-bit value t_q to column i. The
 * 6-bit plane is three rows of m bytes, the bytes of the 24-bit v0 | v1 << 6 | v2 << 12 | v3 << 18; the
 * 2-bit plane is one row, t0 | t1 << 2 | t2 << 4 | t3 << 6. Every row is read and written in order, a
 * byte per column, so both loops vectorise (bytes of consecutive elements would need a shuffle). */
static inline size_t quarter(size_t n) { return (n + 3) / 4; }
static inline size_t six_bytes(size_t n) { return 3 * quarter(n); }
static inline size_t two_bytes(size_t n) { return quarter(n); }

/* Column i's four low bytes from its three 6-bit-plane bytes and its 2-bit-plane byte. */
static inline void column_lows(uint8_t a, uint8_t b, uint8_t c, uint8_t t, uint8_t low[4])
{
    low[0] = (uint8_t)((a << 2) | (t & 3));
    low[1] = (uint8_t)((((a >> 6) | (b << 2)) << 2) | ((t >> 2) & 3));
    low[2] = (uint8_t)((((b >> 4) | (c << 4)) << 2) | ((t >> 4) & 3));
    low[3] = (uint8_t)((c & 0xFC) | (t >> 6));
}

/* Each loop runs in two parts: the columns whose four elements all exist (all but at most 3), with no
 * test per element, so it vectorises; then the last columns, which skip the elements past n. */
#define DEFINE_PACKED(T, B)                                                                                 \
    KERNEL void take_##B(const uint8_t *src, uint8_t *restrict dst, size_t n, size_t e, unsigned s,         \
                         uint8_t *v, uint8_t *t, int q)                                                     \
    {                                                                                                       \
        T w;                                                                                                \
        memcpy(&w, src + e * B, B);                                                                         \
        w = ROTL(T, w, s);                                                                                  \
        for (int k = 0; k < B - 1; k++)                                                                     \
            dst[(size_t)k * n + e] = (uint8_t)(w >> (8 * (B - 1 - k)));                                     \
        v[q] = (uint8_t)((uint8_t)w >> 2);                                                                  \
        *t = (uint8_t)(*t | (w & 3) << (2 * q));                                                            \
    }                                                                                                       \
    KERNEL void split_packed_##B(const uint8_t *restrict src, uint8_t *restrict dst, size_t n, unsigned s)   \
    {                                                                                                       \
        size_t m = quarter(n), full = n > 3 * m ? n - 3 * m : 0;                                            \
        uint8_t *six = dst + (size_t)(B - 1) * n, *two = six + 3 * m;                                       \
        for (size_t i = 0; i < m; i++) {                                                                    \
            uint8_t v[4] = {0, 0, 0, 0}, t = 0;                                                             \
            if (i < full)                                                                                   \
                for (int q = 0; q < 4; q++)                                                                 \
                    take_##B(src, dst, n, q * m + i, s, v, &t, q);                                          \
            else                                                                                            \
                for (int q = 0; q < 4; q++)                                                                 \
                    if (q * m + i < n)                                                                      \
                        take_##B(src, dst, n, q * m + i, s, v, &t, q);                                      \
            six[i] = (uint8_t)(v[0] | v[1] << 6);                                                           \
            six[m + i] = (uint8_t)(v[1] >> 2 | v[2] << 4);                                                  \
            six[2 * m + i] = (uint8_t)(v[2] >> 4 | v[3] << 2);                                              \
            two[i] = t;                                                                                     \
        }                                                                                                   \
    }                                                                                                       \
    KERNEL void put_##B(const uint8_t *const *p, uint8_t *restrict dst, size_t e, uint8_t low, unsigned s)   \
    {                                                                                                       \
        T w = low;                                                                                          \
        for (int k = 0; k < B - 1; k++)                                                                     \
            w |= (T)((T)p[k][e] << (8 * (B - 1 - k)));                                                      \
        w = ROTR(T, w, s);                                                                                  \
        memcpy(dst + e * B, &w, B);                                                                         \
    }                                                                                                       \
    KERNEL void merge_packed_##B(const uint8_t *const *planes, uint8_t *restrict dst, size_t n, unsigned s) \
    {                                                                                                       \
        const uint8_t *p[B];                                                                                \
        for (int k = 0; k < B; k++)                                                                         \
            p[k] = planes[k];                                                                               \
        size_t m = quarter(n), full = n > 3 * m ? n - 3 * m : 0, i = 0;                                     \
        const uint8_t *s0 = planes[B - 1], *s1 = s0 + m, *s2 = s1 + m, *two = planes[B];                   \
        uint8_t low[4];                                                                                     \
        for (; i < full; i++) {                                                                             \
            column_lows(s0[i], s1[i], s2[i], two[i], low);                                                  \
            for (size_t q = 0; q < 4; q++)                                                                  \
                put_##B(p, dst, q * m + i, low[q], s);                                                      \
        }                                                                                                   \
        for (; i < m; i++) {                                                                                \
            column_lows(s0[i], s1[i], s2[i], two[i], low);                                                  \
            for (size_t q = 0; q < 4; q++)                                                                  \
                if (q * m + i < n)                                                                          \
                    put_##B(p, dst, q * m + i, low[q], s);                                                  \
        }                                                                                                   \
    }

DEFINE_PACKED(uint8_t, 1)
DEFINE_PACKED(uint16_t, 2)
DEFINE_PACKED(uint32_t, 4)
DEFINE_PACKED(uint64_t, 8)

/* 16-bit words, the columns whose four elements exist, with every stream a restrict pointer of its
 * own: the generic loop above has too many possible overlaps for the compiler to version it, and BF16
 * is what this codec is for (measured, 4 MiB BF16 frame: 2.7 GB/s generic, 12 GB/s this one). */
static void merge_columns_2(const uint8_t *restrict h0, const uint8_t *restrict h1, const uint8_t *restrict h2,
                            const uint8_t *restrict h3, const uint8_t *restrict s0, const uint8_t *restrict s1,
                            const uint8_t *restrict s2, const uint8_t *restrict two, uint8_t *restrict d0,
                            uint8_t *restrict d1, uint8_t *restrict d2, uint8_t *restrict d3, size_t columns,
                            unsigned s)
{
    for (size_t i = 0; i < columns; i++) {
        uint8_t a = s0[i], b = s1[i], c = s2[i], t = two[i];
        uint16_t w0 = (uint16_t)(h0[i] << 8 | (uint8_t)((a << 2) | (t & 3)));
        uint16_t w1 = (uint16_t)(h1[i] << 8 | (uint8_t)((((a >> 6) | (b << 2)) << 2) | ((t >> 2) & 3)));
        uint16_t w2 = (uint16_t)(h2[i] << 8 | (uint8_t)((((b >> 4) | (c << 4)) << 2) | ((t >> 4) & 3)));
        uint16_t w3 = (uint16_t)(h3[i] << 8 | (uint8_t)((c & 0xFC) | (t >> 6)));
        w0 = ROTR(uint16_t, w0, s);
        w1 = ROTR(uint16_t, w1, s);
        w2 = ROTR(uint16_t, w2, s);
        w3 = ROTR(uint16_t, w3, s);
        memcpy(d0 + 2 * i, &w0, 2);
        memcpy(d1 + 2 * i, &w1, 2);
        memcpy(d2 + 2 * i, &w2, 2);
        memcpy(d3 + 2 * i, &w3, 2);
    }
}

static void merge_packed_fast_2(const uint8_t *const *planes, uint8_t *dst, size_t n, unsigned s)
{
    size_t m = quarter(n), full = n > 3 * m ? n - 3 * m : 0;
    const uint8_t *hi = planes[0], *six = planes[1];
    merge_columns_2(hi, hi + m, hi + 2 * m, hi + 3 * m, six, six + m, six + 2 * m, planes[2], dst, dst + 2 * m,
                    dst + 4 * m, dst + 6 * m, full, s);
    if (full < m) {
        /* The last columns (at most 3, unless n < 4 * 3): the generic loop, which checks each element. */
        uint8_t low[4];
        for (size_t i = full; i < m; i++) {
            column_lows(six[i], six[m + i], six[2 * m + i], planes[2][i], low);
            for (size_t q = 0; q < 4; q++)
                if (q * m + i < n)
                    put_2(planes, dst, q * m + i, low[q], s);
        }
    }
}


/* Rotation is none for 1-byte words (as in `plain`), modulo the width otherwise. */
static void split_packed_words(Shape sh, const uint8_t *src, uint8_t *dst, unsigned skip)
{
    switch (sh.word) {
    case 1: split_packed_1(src, dst, sh.count, 0); break;
    case 2: split_packed_2(src, dst, sh.count, skip % 16); break;
    case 4: split_packed_4(src, dst, sh.count, skip % 32); break;
    case 8: split_packed_8(src, dst, sh.count, skip % 64); break;
    }
}

static void merge_packed_words(Shape sh, const uint8_t *const *planes, uint8_t *dst, unsigned skip)
{
    switch (sh.word) {
    case 1: merge_packed_1(planes, dst, sh.count, 0); break;
    case 2: merge_packed_fast_2(planes, dst, sh.count, skip % 16); break;
    case 4: merge_packed_4(planes, dst, sh.count, skip % 32); break;
    case 8: merge_packed_8(planes, dst, sh.count, skip % 64); break;
    }
}

#endif
