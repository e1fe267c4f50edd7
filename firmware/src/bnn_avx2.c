/* x86-64 AVX2 kernels. The whole file is compiled for AVX2 + POPCNT by the pragma below (the
 * rest of the library stays at the baseline x86-64), and bnn_dispatch.c calls these functions
 * only when the CPU has both, so one binary runs everywhere.
 *
 * Binary convolution: output channels in the vector lanes, as the NEON kernel, on the same
 * prepared weights ([group][half][window word][8 channels]): the 8 channels of one half are
 * two 256-bit registers, XORed with the window word broadcast to every lane. AVX2 has no vector
 * popcount: each byte's count comes from two 16-entry table look-ups (vpshufb on the low and the
 * high nibble), byte counts accumulate over up to 31 window words (8 * 31 < 256), and vpsadbw
 * sums each 64-bit lane's 8 bytes into that channel's mismatch count M. Blocks of 2 output
 * pixels x 2 halves (16 channels) share every weight load and every broadcast window word.
 * Thresholds are compared in the mismatch domain (bit = M < c1, batch norm folded, negative
 * channels folded into the weights) and 8 channels' bits are one byte of the packed output.
 *
 * Multi-bit first layer: codes q become bytes q + 128 (q XOR 0x80) in one padded copy of the
 * input, so that vpmaddubsw (unsigned x signed bytes, adjacent pairs summed into int16)
 * multiplies 4 consecutive codes of a window row, read straight from that copy and broadcast,
 * with those positions' +-1 weights of 8 channels at once (prepared layout w4, rows padded to
 * 4 codes with zero weights); int16 sums of up to 64 steps, then vpmaddwd widens to int32, and
 * y = sum - 128 * sum(w) (wofs). */
#include "bnn.h"
#include "bnn_internal.h"

#ifdef BNN_HAVE_X86

#include <immintrin.h>
#include <string.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,popcnt"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,popcnt")
#endif

#define BNN_AI static inline __attribute__((always_inline))

/* popcount of every byte */
BNN_AI __m256i bytecount(__m256i v, __m256i lut, __m256i m4)
{
    __m256i lo = _mm256_and_si256(v, m4);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

/* two registers of 4 x 64-bit counts (channels 0-3, 4-7; each < 2^31) -> 8 x int32 in order */
BNN_AI __m256i counts32(__m256i a, __m256i b)
{
    __m256 s = _mm256_shuffle_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b),
                                 _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_permute4x64_epi64(_mm256_castps_si256(s), _MM_SHUFFLE(3, 1, 2, 0));
}

#define PXMAX 2
#define NHMAX 2

/* Mismatch counts of NP pixels x NH halves (8 channels each, halves hh0...): m[p][h] = 8 x int32.
 * x0: the first window word of pixel 0; pixel p's window starts pstep words later. */
BNN_AI void counts_block(const bnn_bconv *l, const uint64_t *x0, size_t pstep,
                         const ptrdiff_t *off, int hh0, const int NP, const int NH,
                         __m256i m[PXMAX][NHMAX])
{
    const int nw = l->nw;
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1,
                                         1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i m4 = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    const uint64_t *wb = l->w + (size_t)hh0 * nw * 8;
    __m256i s[PXMAX][NHMAX][2];
    int p, h, q, j0, j;
    for (p = 0; p < NP; p++)
        for (h = 0; h < NH; h++)
            s[p][h][0] = s[p][h][1] = zero;
    for (j0 = 0; j0 < nw; j0 += 31) {
        const int j1 = j0 + 31 < nw ? j0 + 31 : nw;
        __m256i a[PXMAX][NHMAX][2];
        for (p = 0; p < NP; p++)
            for (h = 0; h < NH; h++)
                a[p][h][0] = a[p][h][1] = zero;
        for (j = j0; j < j1; j++) {
            const uint64_t *wj = wb + (size_t)j * 8;
            for (p = 0; p < NP; p++) {
                __m256i x = _mm256_set1_epi64x((long long)x0[p * pstep + off[j]]);
                for (h = 0; h < NH; h++)
                    for (q = 0; q < 2; q++) {
                        __m256i w = _mm256_loadu_si256((const __m256i *)(wj + (size_t)h * nw * 8
                                                                         + 4 * q));
                        a[p][h][q] = _mm256_add_epi8(a[p][h][q],
                                                     bytecount(_mm256_xor_si256(x, w), lut, m4));
                    }
            }
        }
        for (p = 0; p < NP; p++)
            for (h = 0; h < NH; h++)
                for (q = 0; q < 2; q++)
                    s[p][h][q] = _mm256_add_epi64(s[p][h][q], _mm256_sad_epu8(a[p][h][q], zero));
    }
    for (p = 0; p < NP; p++)
        for (h = 0; h < NH; h++)
            m[p][h] = counts32(s[p][h][0], s[p][h][1]);
}

/* Output of half hh (channels 8 hh ... 8 hh + 7) of pixel pix from its mismatch counts. */
BNN_AI void store_half(const bnn_bconv *l, __m256i m, int hh, size_t pix, void *out)
{
    int n = l->s.oc - 8 * hh;
    __m256i p, y;
    if (l->mode == BNN_OUT_BITS) {
        __m256i c1 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(l->c1 + 8 * hh)));
        int bits = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(c1, m)));
        ((uint8_t *)((uint64_t *)out + pix * l->ocw))[hh] = (uint8_t)bits;
        return;
    }
    if (n <= 0)
        return;
    if (n > 8)
        n = 8;
    p = _mm256_sub_epi32(_mm256_set1_epi32(l->k), m);
    if (l->sat)
        p = _mm256_min_epi32(p, _mm256_set1_epi32(l->sat));
    y = _mm256_sub_epi32(_mm256_slli_epi32(p, 1), _mm256_set1_epi32(l->k));
    if (l->clip)
        y = _mm256_max_epi32(_mm256_min_epi32(y, _mm256_set1_epi32(l->clip)),
                             _mm256_set1_epi32(-l->clip));
    if (l->mode == BNN_OUT_INT8) {
        __m128i z = _mm_packs_epi32(_mm256_castsi256_si128(y), _mm256_extracti128_si256(y, 1));
        int8_t *dst = (int8_t *)out + pix * l->s.oc + 8 * hh;
        z = _mm_packs_epi16(z, z);
        if (n == 8) {
            _mm_storel_epi64((__m128i *)dst, z);
        } else {
            int8_t t[16];
            _mm_storeu_si128((__m128i *)t, z);
            memcpy(dst, t, (size_t)n);
        }
    } else {
        int32_t *dst = (int32_t *)out + pix * l->s.oc + 8 * hh;
        if (n == 8) {
            _mm256_storeu_si256((__m256i *)dst, y);
        } else {
            __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            _mm256_maskstore_epi32(dst, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane), y);
        }
    }
}

BNN_AI void block(const bnn_bconv *l, const uint64_t *src, size_t row_stride,
                  const ptrdiff_t *off, int oy, int ox, const int NP, void *out)
{
    const int halves = 2 * l->groups, cw = l->cw, stride = l->s.stride;
    const uint64_t *x0 = src + (size_t)oy * stride * row_stride + (size_t)ox * stride * cw;
    const size_t pix = (size_t)oy * l->wo + ox;
    __m256i m[PXMAX][NHMAX];
    int hh = 0, p;
    for (; hh + 2 <= halves; hh += 2) {
        counts_block(l, x0, (size_t)stride * cw, off, hh, NP, 2, m);
        for (p = 0; p < NP; p++) {
            store_half(l, m[p][0], hh, pix + p, out);
            store_half(l, m[p][1], hh + 1, pix + p, out);
        }
    }
    if (l->mode == BNN_OUT_BITS)
        for (p = 0; p < NP; p++) {
            /* bytes of the output words no half reaches */
            uint8_t *b = (uint8_t *)((uint64_t *)out + (pix + p) * l->ocw);
            int i;
            for (i = halves; i < 8 * l->ocw; i++)
                b[i] = 0;
        }
}

void bnn_bconv_avx2(const bnn_bconv *l, const uint64_t *in, void *out, void *scratch)
{
    size_t row_stride;
    const ptrdiff_t *off;
    const uint64_t *src = bnn__bconv_setup(l, in, scratch, &row_stride, &off);
    int oy, ox;
    for (oy = 0; oy < l->ho; oy++) {
        for (ox = 0; ox + 2 <= l->wo; ox += 2)
            block(l, src, row_stride, off, oy, ox, 2, out);
        if (ox < l->wo)
            block(l, src, row_stride, off, oy, ox, 1, out);
    }
}

/* ---- multi-bit first layer ------------------------------------------------------------- */

void bnn_mbconv_avx2(const bnn_mbconv *l, const int8_t *in, void *out, void *scratch)
{
    const int ocp = l->ocp, rw4 = l->rw4, oc = l->s.oc, kh = l->s.kh, c = l->s.c;
    const size_t wpc = (size_t)(l->s.w + 2 * l->s.pad) * c, step = (size_t)ocp * 4;
    const uint8_t *map = bnn__mb_offset_map(l, in, scratch);
    const __m256i ones = _mm256_set1_epi16(1), lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int oy, ox, o0, g, ky, s, n16;
    for (oy = 0; oy < l->ho; oy++)
        for (ox = 0; ox < l->wo; ox++) {
            const size_t pix = (size_t)oy * l->wo + ox;
            const uint8_t *base = map + (size_t)oy * l->s.stride * wpc + (size_t)ox * l->s.stride * c;
            uint64_t *obits = (uint64_t *)out + pix * l->ocw;
            if (l->mode == BNN_OUT_BITS)
                memset(obits, 0, (size_t)l->ocw * 8);
            /* 32 channels (four registers of 8) per pass over the window */
            for (o0 = 0; o0 < ocp; o0 += 32) {
                const int ng = (ocp - o0) / 8 < 4 ? (ocp - o0) / 8 : 4;
                __m256i y[4], a[4];
                for (g = 0; g < 4; g++)
                    y[g] = a[g] = _mm256_setzero_si256();
                n16 = 0;
                for (ky = 0; ky < kh; ky++) {
                    const uint8_t *row = base + ky * wpc;
                    const int8_t *wr = l->w4 + ((size_t)ky * rw4 * ocp + o0) * 4;
                    for (s = 0; s < rw4; s++, wr += step) {
                        int32_t q4;
                        __m256i x;
                        memcpy(&q4, row + 4 * s, 4);
                        x = _mm256_set1_epi32(q4);
                        for (g = 0; g < ng; g++)
                            a[g] = _mm256_add_epi16(
                                a[g], _mm256_maddubs_epi16(
                                          x, _mm256_loadu_si256((const __m256i *)(wr + 32 * g))));
                        /* int16 sums of at most 64 steps: |sum| <= 64 * 2 * 255 < 2^15 */
                        if (++n16 == 64) {
                            for (g = 0; g < ng; g++) {
                                y[g] = _mm256_add_epi32(y[g], _mm256_madd_epi16(a[g], ones));
                                a[g] = _mm256_setzero_si256();
                            }
                            n16 = 0;
                        }
                    }
                }
                for (g = 0; g < ng; g++) {
                    const int og = o0 + 8 * g;
                    __m256i v = _mm256_add_epi32(y[g], _mm256_madd_epi16(a[g], ones));
                    v = _mm256_sub_epi32(v, _mm256_loadu_si256((const __m256i *)(l->wofs + og)));
                    if (l->mode == BNN_OUT_BITS) {
                        __m256i t = _mm256_loadu_si256((const __m256i *)(l->t + og));
                        /* y >= t: not (t > y); padding channels (o >= oc) are masked */
                        uint64_t bits = (uint64_t)(~_mm256_movemask_ps(
                                                       _mm256_castsi256_ps(
                                                           _mm256_cmpgt_epi32(t, v))) & 0xff);
                        if (og + 8 > oc)
                            bits &= og >= oc ? 0 : ((uint64_t)1 << (oc - og)) - 1;
                        obits[og >> 6] |= bits << (og & 63);
                    } else {
                        int32_t *dst = (int32_t *)out + pix * oc + og;
                        int n = oc - og;
                        if (n >= 8)
                            _mm256_storeu_si256((__m256i *)dst, v);
                        else if (n > 0)
                            _mm256_maskstore_epi32(dst,
                                                   _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane),
                                                   v);
                    }
                }
            }
        }
}

/* ---- input quantisation and packing ------------------------------------------------------ */

void bnn_quant_pack_avx2(const uint8_t *chw, int c, int h, int w, int thr, int flat,
                         uint64_t *out)
{
    const int n = h * w, nwords = bnn_words_for(n);
    __m256i t;
    int i;
    if (c != 1 || !flat || thr < 1 || thr > 255) {
        /* channel transposition or a constant quantizer: the scalar twin */
        bnn_quant_pack_scalar(chw, c, h, w, thr, flat, out);
        return;
    }
    t = _mm256_set1_epi8((char)thr);
    for (i = 0; i < nwords; i++)
        out[i] = 0;
    for (i = 0; i + 32 <= n; i += 32) {
        /* p >= thr (unsigned): max(p, thr) == p */
        __m256i p = _mm256_loadu_si256((const __m256i *)(chw + i));
        uint32_t bits = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_max_epu8(p, t), p));
        out[i >> 6] |= (uint64_t)bits << (i & 63);
    }
    for (; i < n; i++)
        if (chw[i] >= thr)
            out[i >> 6] |= (uint64_t)1 << (i & 63);
}

void bnn_pack_feature_map_avx2(const uint8_t *hwc, int h, int w, int c, uint64_t *out)
{
    const int cw = bnn_words_for(c);
    const __m256i zero = _mm256_setzero_si256();
    int p, i;
    if (c % 32) {
        bnn_pack_feature_map(hwc, h, w, c, out);
        return;
    }
    for (p = 0; p < h * w; p++) {
        const uint8_t *src = hwc + (size_t)p * c;
        uint64_t *dst = out + (size_t)p * cw;
        for (i = 0; i < cw; i++)
            dst[i] = 0;
        for (i = 0; i < c; i += 32) {
            /* nonzero byte = +1 = bit 1 */
            uint32_t zeros = (uint32_t)_mm256_movemask_epi8(
                _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)(src + i)), zero));
            dst[i >> 6] |= (uint64_t)(~zeros) << (i & 63);
        }
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
typedef int bnn_avx2_unused; /* ISO C: a translation unit must not be empty */
#endif /* BNN_HAVE_X86 */
