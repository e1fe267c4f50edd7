/* The portable scalar twin of every kernel: plain C99, 64-bit words, no floating point.
 * It reads the same prepared layers as the NEON kernels (bnn_common.c) and must give the same
 * bits; tests compare both with the golden model. */
#include "bnn.h"
#include "bnn_internal.h"

#include <string.h>

/* Value of one output channel in the integer modes, from its mismatch count. */
static int32_t int_value(const bnn_bconv *l, int m)
{
    int32_t p = l->k - m, y;
    if (l->sat && p > l->sat)
        p = l->sat;
    y = 2 * p - l->k;
    if (l->clip) {
        if (y > l->clip)
            y = l->clip;
        if (y < -l->clip)
            y = -l->clip;
    }
    return y;
}

void bnn_bconv_scalar(const bnn_bconv *l, const uint64_t *in, void *out, void *scratch)
{
    const int cw = l->cw, rw = l->s.kw * cw, nw = l->nw;
    const int wp = l->s.w + 2 * l->s.pad;
    const uint64_t *src = bnn__pad_bits(l, in, (uint64_t *)bnn__align16(scratch));
    int oy, ox, g, i, j, ky;
    for (oy = 0; oy < l->ho; oy++)
        for (ox = 0; ox < l->wo; ox++) {
            size_t pix = (size_t)oy * l->wo + ox;
            uint64_t *obits = (uint64_t *)out + pix * l->ocw;
            if (l->mode == BNN_OUT_BITS)
                for (j = 0; j < l->ocw; j++)
                    obits[j] = 0;
            for (g = 0; g < l->groups; g++)
                for (i = 0; i < BNN_GROUP; i++) {
                    int o = g * BNN_GROUP + i, m = 0;
                    const uint64_t *w = l->w + bnn__widx(nw, g, i, 0);
                    if (o >= l->s.oc)
                        break;
                    for (ky = 0; ky < l->s.kh; ky++) {
                        const uint64_t *row =
                            src + ((size_t)(oy * l->s.stride + ky) * wp + ox * l->s.stride) * cw;
                        for (j = 0; j < rw; j++)
                            m += bnn__popcount64(row[j] ^ w[(size_t)(ky * rw + j) * 8]);
                    }
                    if (l->mode == BNN_OUT_BITS) {
                        if (m < l->c1[o])
                            obits[o >> 6] |= (uint64_t)1 << (o & 63);
                    } else if (l->mode == BNN_OUT_INT8) {
                        ((int8_t *)out)[pix * l->s.oc + o] = (int8_t)int_value(l, m);
                    } else {
                        ((int32_t *)out)[pix * l->s.oc + o] = int_value(l, m);
                    }
                }
        }
}

void bnn_mbconv_scalar(const bnn_mbconv *l, const int8_t *in, void *out, void *scratch)
{
    const int c = l->s.c, rw = l->s.kw * c;
    const int wp = l->s.w + 2 * l->s.pad;
    const int8_t *src = bnn__pad_codes(l, in, (int8_t *)bnn__align16(scratch));
    int oy, ox, o, j, ky;
    for (oy = 0; oy < l->ho; oy++)
        for (ox = 0; ox < l->wo; ox++) {
            size_t pix = (size_t)oy * l->wo + ox;
            uint64_t *obits = (uint64_t *)out + pix * l->ocw;
            if (l->mode == BNN_OUT_BITS)
                for (j = 0; j < l->ocw; j++)
                    obits[j] = 0;
            for (o = 0; o < l->s.oc; o++) {
                const int8_t *w = l->w + (size_t)o * l->kp;
                int32_t y = 0;
                for (ky = 0; ky < l->s.kh; ky++) {
                    const int8_t *row =
                        src + ((size_t)(oy * l->s.stride + ky) * wp + ox * l->s.stride) * c;
                    for (j = 0; j < rw; j++)
                        y += (int32_t)row[j] * w[ky * rw + j];
                }
                if (l->mode == BNN_OUT_BITS) {
                    if (y >= l->t[o])
                        obits[o >> 6] |= (uint64_t)1 << (o & 63);
                } else {
                    ((int32_t *)out)[pix * l->s.oc + o] = y;
                }
            }
        }
}

void bnn_maxpool_scalar(const uint64_t *in, int h, int w, int c, int k, int s, uint64_t *out)
{
    int cw = bnn_words_for(c), ho = (h - k) / s + 1, wo = (w - k) / s + 1;
    int oy, ox, dy, dx, j;
    for (oy = 0; oy < ho; oy++)
        for (ox = 0; ox < wo; ox++) {
            uint64_t *dst = out + ((size_t)oy * wo + ox) * cw;
            for (j = 0; j < cw; j++)
                dst[j] = 0;
            for (dy = 0; dy < k; dy++)
                for (dx = 0; dx < k; dx++) {
                    const uint64_t *p = in + ((size_t)(oy * s + dy) * w + ox * s + dx) * cw;
                    for (j = 0; j < cw; j++)
                        dst[j] |= p[j];
                }
        }
}

void bnn_quant_pack_scalar(const uint8_t *chw, int c, int h, int w, int thr, int flat,
                           uint64_t *out)
{
    int cw = bnn_words_for(c), i, p;
    size_t total = flat ? (size_t)bnn_words_for(h * w * c) : (size_t)h * w * cw, b;
    for (b = 0; b < total; b++)
        out[b] = 0;
    for (i = 0; i < c; i++)
        for (p = 0; p < h * w; p++) {
            b = flat ? (size_t)p * c + i : (size_t)p * cw * 64 + i;
            if (chw[(size_t)i * h * w + p] >= thr)
                out[b >> 6] |= (uint64_t)1 << (b & 63);
        }
}
