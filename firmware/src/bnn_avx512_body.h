/* The AVX-512 binary convolution, included by bnn_avx512bw.c (BNN_VP 0: AVX-512 F/BW/VL,
 * nibble-table popcount) and bnn_avx512vp.c (BNN_VP 1: + VPOPCNTDQ), each compiled for its
 * instruction set by its own target pragma. BNN_FN(name) gives the file's function names.
 *
 * The 8 channels of one half of a prepared group ([group][half][window word][8 channels]) are
 * exactly one 512-bit register: XOR with the window word broadcast to all 8 lanes, and the
 * popcount of each 64-bit lane is that channel's mismatch count for this word. With VPOPCNTQ
 * the counts add up in 64-bit lanes directly (3 instructions per 512 binary MACs: vpxorq,
 * vpopcntq, vpaddq); without it, bytes are counted by two vpshufb look-ups, accumulate over up
 * to 31 words and vpsadbw sums each lane's bytes. Blocks of 4 output pixels x 4 halves (32
 * channels) share each weight load across 4 pixels and each broadcast window word across 4
 * halves: 16 accumulators + 4 weights of the 32 registers. The mismatch counts are compared
 * with c1 in 64-bit lanes (one vpcmpuq gives the 8 bits of a half, one byte of the packed
 * output), or turned into y = 2 min(K - M, S) - K, clipped, and stored as int8 or int32
 * (masked stores for a partial last half). */

#define NPX 4 /* pixels per block */
#define NHB 4 /* halves (8 channels each) per block */

BNN_AI __m512i lane_counts(__m512i v)
{
#if BNN_VP
    return _mm512_popcnt_epi64(v);
#else
    const __m512i lut = _mm512_set4_epi32(0x04030302, 0x03020201, 0x03020201, 0x02010100);
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512i lo = _mm512_and_si512(v, m4);
    __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    /* byte counts (summed per lane later) */
    return _mm512_add_epi8(_mm512_shuffle_epi8(lut, lo), _mm512_shuffle_epi8(lut, hi));
#endif
}

/* Words summed in one accumulator before it is widened: VPOPCNTQ counts are 64-bit already. */
#if BNN_VP
#define CHUNK 0x7fffffff
#else
#define CHUNK 31
#endif

/* Mismatch counts m[p][h] (8 x uint64) of NP pixels x NH halves starting at half hh0. */
BNN_AI void BNN_FN(counts)(const bnn_bconv *l, const uint64_t *x0, size_t pstep,
                           const ptrdiff_t *off, int hh0, const int NP, const int NH,
                           __m512i m[NPX][NHB])
{
    const int nw = l->nw;
    const uint64_t *wb = l->w + (size_t)hh0 * nw * 8;
    int p, h, j0, j;
    for (p = 0; p < NP; p++)
        for (h = 0; h < NH; h++)
            m[p][h] = _mm512_setzero_si512();
    for (j0 = 0; j0 < nw; j0 += CHUNK) {
        const int j1 = nw - j0 > CHUNK ? j0 + CHUNK : nw;
        __m512i a[NPX][NHB];
        for (p = 0; p < NP; p++)
            for (h = 0; h < NH; h++)
                a[p][h] = _mm512_setzero_si512();
        for (j = j0; j < j1; j++) {
            const uint64_t *wj = wb + (size_t)j * 8;
            __m512i w[NHB];
            for (h = 0; h < NH; h++)
                w[h] = _mm512_loadu_si512((const void *)(wj + (size_t)h * nw * 8));
            for (p = 0; p < NP; p++) {
                __m512i x = _mm512_set1_epi64((long long)x0[p * pstep + off[j]]);
                for (h = 0; h < NH; h++)
#if BNN_VP
                    a[p][h] = _mm512_add_epi64(a[p][h], lane_counts(_mm512_xor_si512(x, w[h])));
#else
                    a[p][h] = _mm512_add_epi8(a[p][h], lane_counts(_mm512_xor_si512(x, w[h])));
#endif
            }
        }
        for (p = 0; p < NP; p++)
            for (h = 0; h < NH; h++)
#if BNN_VP
                m[p][h] = _mm512_add_epi64(m[p][h], a[p][h]);
#else
                m[p][h] = _mm512_add_epi64(m[p][h],
                                           _mm512_sad_epu8(a[p][h], _mm512_setzero_si512()));
#endif
    }
}

/* Output of half hh (channels 8 hh ... 8 hh + 7) of pixel pix from its 8 mismatch counts. */
BNN_AI void BNN_FN(store_half)(const bnn_bconv *l, __m512i m, int hh, size_t pix, void *out)
{
    int n = l->s.oc - 8 * hh;
    __mmask8 valid;
    __m512i k, y;
    if (l->mode == BNN_OUT_BITS) {
        __m512i c1 = _mm512_cvtepu16_epi64(_mm_loadu_si128((const __m128i *)(l->c1 + 8 * hh)));
        ((uint8_t *)((uint64_t *)out + pix * l->ocw))[hh] =
            (uint8_t)_mm512_cmplt_epu64_mask(m, c1);
        return;
    }
    if (n <= 0)
        return;
    valid = (__mmask8)(n >= 8 ? 0xff : (1u << n) - 1);
    k = _mm512_set1_epi64(l->k);
    y = _mm512_sub_epi64(k, m);
    if (l->sat)
        y = _mm512_min_epu64(y, _mm512_set1_epi64(l->sat));
    y = _mm512_sub_epi64(_mm512_slli_epi64(y, 1), k);
    if (l->clip)
        y = _mm512_max_epi64(_mm512_min_epi64(y, _mm512_set1_epi64(l->clip)),
                             _mm512_set1_epi64(-(long long)l->clip));
    if (l->mode == BNN_OUT_INT8)
        _mm512_mask_cvtepi64_storeu_epi8((int8_t *)out + pix * l->s.oc + 8 * hh, valid, y);
    else
        _mm512_mask_cvtepi64_storeu_epi32((int32_t *)out + pix * l->s.oc + 8 * hh, valid, y);
}

/* NP output pixels starting at (oy, ox), all channels. */
BNN_AI void BNN_FN(pixels)(const bnn_bconv *l, const uint64_t *src, size_t row_stride,
                           const ptrdiff_t *off, int oy, int ox, const int NP, void *out)
{
    const int halves = 2 * l->groups, cw = l->cw, stride = l->s.stride;
    const uint64_t *x0 = src + (size_t)oy * stride * row_stride + (size_t)ox * stride * cw;
    const size_t pix = (size_t)oy * l->wo + ox, pstep = (size_t)stride * cw;
    __m512i m[NPX][NHB];
    int hh = 0, p, h;
    for (; hh + 4 <= halves; hh += 4) {
        BNN_FN(counts)(l, x0, pstep, off, hh, NP, 4, m);
        for (p = 0; p < NP; p++)
            for (h = 0; h < 4; h++)
                BNN_FN(store_half)(l, m[p][h], hh + h, pix + p, out);
    }
    if (hh < halves) { /* halves is even: two are left */
        BNN_FN(counts)(l, x0, pstep, off, hh, NP, 2, m);
        for (p = 0; p < NP; p++)
            for (h = 0; h < 2; h++)
                BNN_FN(store_half)(l, m[p][h], hh + h, pix + p, out);
    }
    if (l->mode == BNN_OUT_BITS && halves < 8 * l->ocw)
        for (p = 0; p < NP; p++) {
            /* bytes of the output words no half reaches */
            uint8_t *b = (uint8_t *)((uint64_t *)out + (pix + p) * l->ocw);
            memset(b + halves, 0, (size_t)(8 * l->ocw - halves));
        }
}

void BNN_FN(bnn_bconv)(const bnn_bconv *l, const uint64_t *in, void *out, void *scratch)
{
    size_t row_stride;
    const ptrdiff_t *off;
    const uint64_t *src = bnn__bconv_setup(l, in, scratch, &row_stride, &off);
    int oy, ox;
    for (oy = 0; oy < l->ho; oy++) {
        for (ox = 0; ox + NPX <= l->wo; ox += NPX)
            BNN_FN(pixels)(l, src, row_stride, off, oy, ox, NPX, out);
        for (; ox < l->wo; ox++)
            BNN_FN(pixels)(l, src, row_stride, off, oy, ox, 1, out);
    }
}

#undef CHUNK
#undef NPX
#undef NHB
