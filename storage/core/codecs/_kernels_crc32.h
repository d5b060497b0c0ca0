#ifndef DELTAHUB_KERNELS_CRC32_H
#define DELTAHUB_KERNELS_CRC32_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

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
 * bit-reflected over 33 bits (P = 0x104C11DB7). tests/storage/core/codecs/test_kernels.py derives them from
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

#endif
