/* x86-64 AVX-512 kernels without VPOPCNTDQ (AVX-512 F/BW/VL: Skylake-SP and later): the binary
 * convolution of bnn_avx512_body.h with the nibble-table popcount, and the multi-bit first layer
 * (the AVX2 scheme of bnn_avx2.c on 512-bit registers: 16 channels x 4 codes per vpmaddubsw).
 * Compiled for these instructions by the pragma below; bnn_dispatch.c calls them only when the
 * CPU has them. */
#include "bnn.h"
#include "bnn_internal.h"

#ifdef BNN_HAVE_X86

#include <immintrin.h>
#include <string.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx2,popcnt"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,popcnt")
#endif

#define BNN_AI static inline __attribute__((always_inline))
#define BNN_VP 0
#define BNN_FN(name) name##_avx512bw
#include "bnn_avx512_body.h"

/* ---- multi-bit first layer --------------------------------------------------------------- */

void bnn_mbconv_avx512(const bnn_mbconv *l, const int8_t *in, void *out, void *scratch)
{
    const int ocp = l->ocp, rw4 = l->rw4, oc = l->s.oc, kh = l->s.kh, c = l->s.c;
    const size_t wpc = (size_t)(l->s.w + 2 * l->s.pad) * c, step = (size_t)ocp * 4;
    const uint8_t *map = bnn__mb_offset_map(l, in, scratch);
    const __m512i ones = _mm512_set1_epi16(1);
    int oy, ox, o0, g, ky, s, n16;
    for (oy = 0; oy < l->ho; oy++)
        for (ox = 0; ox < l->wo; ox++) {
            const size_t pix = (size_t)oy * l->wo + ox;
            const uint8_t *base = map + (size_t)oy * l->s.stride * wpc + (size_t)ox * l->s.stride * c;
            uint64_t *obits = (uint64_t *)out + pix * l->ocw;
            /* 64 channels (four registers of 16) per pass over the window: one output word */
            for (o0 = 0; o0 < ocp; o0 += 64) {
                const int ng = (ocp - o0) / 16 < 4 ? (ocp - o0) / 16 : 4;
                uint64_t word = 0;
                __m512i y[4], a[4];
                for (g = 0; g < 4; g++)
                    y[g] = a[g] = _mm512_setzero_si512();
                n16 = 0;
                for (ky = 0; ky < kh; ky++) {
                    const uint8_t *row = base + ky * wpc;
                    const int8_t *wr = l->w4 + ((size_t)ky * rw4 * ocp + o0) * 4;
                    for (s = 0; s < rw4; s++, wr += step) {
                        int32_t q4;
                        __m512i x;
                        memcpy(&q4, row + 4 * s, 4);
                        x = _mm512_set1_epi32(q4);
                        for (g = 0; g < ng; g++)
                            a[g] = _mm512_add_epi16(
                                a[g], _mm512_maddubs_epi16(
                                          x, _mm512_loadu_si512((const void *)(wr + 64 * g))));
                        /* int16 sums of at most 64 steps: |sum| <= 64 * 2 * 255 < 2^15 */
                        if (++n16 == 64) {
                            for (g = 0; g < ng; g++) {
                                y[g] = _mm512_add_epi32(y[g], _mm512_madd_epi16(a[g], ones));
                                a[g] = _mm512_setzero_si512();
                            }
                            n16 = 0;
                        }
                    }
                }
                for (g = 0; g < ng; g++) {
                    const int og = o0 + 16 * g;
                    const int n = oc - og;
                    const __mmask16 valid = (__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1);
                    __m512i v = _mm512_add_epi32(y[g], _mm512_madd_epi16(a[g], ones));
                    v = _mm512_sub_epi32(v, _mm512_loadu_si512((const void *)(l->wofs + og)));
                    if (l->mode == BNN_OUT_BITS)
                        word |= (uint64_t)(_mm512_cmpge_epi32_mask(
                                               v, _mm512_loadu_si512((const void *)(l->t + og))) &
                                           valid)
                                << (16 * g);
                    else
                        _mm512_mask_storeu_epi32((int32_t *)out + pix * oc + og, valid, v);
                }
                if (l->mode == BNN_OUT_BITS)
                    obits[o0 >> 6] = word;
            }
        }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
typedef int bnn_avx512bw_unused; /* ISO C: a translation unit must not be empty */
#endif /* BNN_HAVE_X86 */
