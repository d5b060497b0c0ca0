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

/* One column's packed bytes, written over its four low bytes (the same positions: q*m + i). */
static inline void pack_column(uint8_t *l0, uint8_t *l1, uint8_t *l2, uint8_t *l3)
{
    uint8_t v0 = *l0 >> 2, v1 = *l1 >> 2, v2 = *l2 >> 2, v3 = *l3 >> 2;
    uint8_t t = (uint8_t)((*l0 & 3) | (*l1 & 3) << 2 | (*l2 & 3) << 4 | (*l3 & 3) << 6);
    *l0 = (uint8_t)(v0 | v1 << 6);
    *l1 = (uint8_t)(v1 >> 2 | v2 << 4);
    *l2 = (uint8_t)(v2 >> 4 | v3 << 2);
    *l3 = t;
}

/* The low plane of n bytes at `low` (with room for 4m) becomes the 6-bit rows and the 2-bit row, in
 * place: column i reads and writes only positions q*m + i, so the four quarters are four restrict
 * streams and the loop vectorises. Encoding is `plain`'s split (one vectorised pass) and then this;
 * one fused pass writing 3 planes x 4 quarters at power-of-two strides thrashed the cache (F32: 0.17
 * GB/s, against 7.3 GB/s this way). The last columns (at most 3) read the bytes past n as zero. */
static void pack_quarters(uint8_t *restrict l0, uint8_t *restrict l1, uint8_t *restrict l2,
                          uint8_t *restrict l3, size_t columns)
{
    for (size_t i = 0; i < columns; i++)
        pack_column(l0 + i, l1 + i, l2 + i, l3 + i);
}

static void pack_low_plane(uint8_t *low, size_t n)
{
    size_t m = quarter(n), full = n > 3 * m ? n - 3 * m : 0;
    pack_quarters(low, low + m, low + 2 * m, low + 3 * m, full);
    for (size_t i = full; i < m; i++) {
        uint8_t l[4];
        for (size_t q = 0; q < 4; q++)
            l[q] = q * m + i < n ? low[q * m + i] : 0;
        pack_column(&l[0], &l[1], &l[2], &l[3]);
        for (size_t q = 0; q < 4; q++)
            low[q * m + i] = l[q];
    }
}

/* The inverse into a scratch low plane of 4m bytes (the bytes past n are don't-care). */
static void unpack_low_plane(const uint8_t *restrict six, const uint8_t *restrict two, uint8_t *restrict l0,
                             uint8_t *restrict l1, uint8_t *restrict l2, uint8_t *restrict l3, size_t m)
{
    for (size_t i = 0; i < m; i++) {
        uint8_t low[4];
        column_lows(six[i], six[m + i], six[2 * m + i], two[i], low);
        l0[i] = low[0];
        l1[i] = low[1];
        l2[i] = low[2];
        l3[i] = low[3];
    }
}

/* Bytes of the scratch low plane merge_packed_words needs for n words of `word` bytes (0: none). */
static size_t packed_scratch(int word, size_t n) { return word == 2 ? 0 : 4 * quarter(n); }

/* 16-bit words, fused: the columns whose four elements exist, with every stream a restrict pointer of
 * its own (measured, 4 MiB BF16 frame: 12 GB/s; unpacking to a scratch plane first and then `plain`'s
 * merge is a pass more, and BF16 is what this codec is for). */
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

static void merge_packed_2(const uint8_t *const *planes, uint8_t *dst, size_t n, unsigned s)
{
    size_t m = quarter(n), full = n > 3 * m ? n - 3 * m : 0;
    const uint8_t *hi = planes[0], *six = planes[1], *two = planes[2];
    merge_columns_2(hi, hi + m, hi + 2 * m, hi + 3 * m, six, six + m, six + 2 * m, two, dst, dst + 2 * m,
                    dst + 4 * m, dst + 6 * m, full, s);
    for (size_t i = full; i < m; i++) {
        uint8_t low[4];
        column_lows(six[i], six[m + i], six[2 * m + i], two[i], low);
        for (size_t q = 0; q < 4; q++) {
            size_t e = q * m + i;
            if (e < n) {
                uint16_t w = ROTR(uint16_t, (uint16_t)(hi[e] << 8 | low[q]), s);
                memcpy(dst + 2 * e, &w, 2);
            }
        }
    }
}

/* split_packed: `plain`'s planes (the buffer has room: 4m >= n), then the last plane packed in place. */
static void split_packed_words(Shape sh, const uint8_t *src, uint8_t *dst, unsigned skip)
{
    split_words(sh, src, NULL, dst, skip);
    pack_low_plane(dst + (size_t)(sh.word - 1) * sh.count, sh.count);
}

/* merge_packed: fused for 16-bit words; otherwise the low plane unpacked into `scratch` (4m bytes) and
 * `plain`'s merge of the word planes with it. */
static void merge_packed_words(Shape sh, const uint8_t *const *planes, uint8_t *dst, unsigned skip,
                               uint8_t *scratch)
{
    if (sh.word == 2) {
        merge_packed_2(planes, dst, sh.count, skip % 16);
        return;
    }
    size_t n = sh.count, m = quarter(n);
    const uint8_t *words[MAX_WORD];
    for (int k = 0; k < sh.word - 1; k++)
        words[k] = planes[k];
    unpack_low_plane(planes[sh.word - 1], planes[sh.word], scratch, scratch + m, scratch + 2 * m, scratch + 3 * m, m);
    words[sh.word - 1] = scratch;
    merge_words(sh, words, NULL, dst, skip);
}

#endif
