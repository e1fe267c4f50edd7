/* Packing, layer preparation (weights, folded thresholds), scores and errors: shared by the
 * scalar and NEON kernels. Plain C99, no floating point. */
#include "bnn.h"
#include "bnn_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static char bnn_error[256];

void bnn_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(bnn_error, sizeof bnn_error, fmt, ap);
    va_end(ap);
}

const char *bnn_last_error(void) { return bnn_error; }

int bnn_words_for(int n) { return (n + 63) / 64; }

/* ---- packing ---------------------------------------------------------------------------- */

void bnn_pack_bits(const uint8_t *bits, int n, uint64_t *out)
{
    int nw = bnn_words_for(n), i;
    for (i = 0; i < nw; i++)
        out[i] = 0;
    for (i = 0; i < n; i++)
        if (bits[i])
            out[i >> 6] |= (uint64_t)1 << (i & 63);
}

void bnn_pack_feature_map(const uint8_t *hwc, int h, int w, int c, uint64_t *out)
{
    int cw = bnn_words_for(c), p;
    for (p = 0; p < h * w; p++)
        bnn_pack_bits(hwc + (size_t)p * c, c, out + (size_t)p * cw);
}

void bnn_unpack_feature_map(const uint64_t *in, int h, int w, int c, uint8_t *hwc)
{
    int cw = bnn_words_for(c), p, i;
    for (p = 0; p < h * w; p++)
        for (i = 0; i < c; i++)
            hwc[(size_t)p * c + i] = (uint8_t)((in[(size_t)p * cw + (i >> 6)] >> (i & 63)) & 1);
}

void bnn_pack_conv_weights(const int8_t *w, int oc, int c, int kh, int kw, uint64_t *out)
{
    int cw = bnn_words_for(c), o, y, x, i;
    memset(out, 0, sizeof(uint64_t) * (size_t)oc * kh * kw * cw);
    for (o = 0; o < oc; o++)
        for (i = 0; i < c; i++)
            for (y = 0; y < kh; y++)
                for (x = 0; x < kw; x++)
                    if (w[(((size_t)o * c + i) * kh + y) * kw + x] > 0)
                        out[(((size_t)o * kh + y) * kw + x) * cw + (i >> 6)] |=
                            (uint64_t)1 << (i & 63);
}

void bnn_pack_dense_weights(const int8_t *w, int oc, int k, uint64_t *out)
{
    int kw = bnn_words_for(k), o, i;
    memset(out, 0, sizeof(uint64_t) * (size_t)oc * kw);
    for (o = 0; o < oc; o++)
        for (i = 0; i < k; i++)
            if (w[(size_t)o * k + i] > 0)
                out[(size_t)o * kw + (i >> 6)] |= (uint64_t)1 << (i & 63);
}

void bnn_flatten_bits(const uint64_t *in, int h, int w, int c, uint64_t *out)
{
    int cw = bnn_words_for(c), p, i;
    size_t n = (size_t)h * w * c, b;
    for (b = 0; b < (n + 63) / 64; b++)
        out[b] = 0;
    for (p = 0; p < h * w; p++)
        for (i = 0; i < c; i++) {
            b = (size_t)p * c + i;
            out[b >> 6] |= ((in[(size_t)p * cw + (i >> 6)] >> (i & 63)) & 1) << (b & 63);
        }
}

void bnn_chw_to_hwc_lut(const uint8_t *chw, int c, int h, int w, const int8_t *lut,
                        int8_t *hwc)
{
    int i, p;
    for (i = 0; i < c; i++)
        for (p = 0; p < h * w; p++)
            hwc[(size_t)p * c + i] = lut[chw[(size_t)i * h * w + p]];
}

/* ---- preparation --------------------------------------------------------------------------- */

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

/* floor(a / 2) and ceil(a / 2) for any sign (C division truncates toward zero). */
static int64_t floor_half(int64_t a) { return (a >= 0) ? a / 2 : -((-a + 1) / 2); }
static int64_t ceil_half(int64_t a) { return -floor_half(-a); }

static int check_shape(const bnn_conv_shape *s, int binary)
{
    if (s->c < 1 || s->h < 1 || s->w < 1 || s->oc < 1) {
        bnn_set_error("shape must have positive sizes, not c=%d h=%d w=%d oc=%d",
                      s->c, s->h, s->w, s->oc);
        return -1;
    }
    if (s->kh < 1 || s->kw < 1 || s->stride < 1 || s->pad < 0) {
        bnn_set_error("kernel %dx%d, stride %d, pad %d is not valid", s->kh, s->kw,
                      s->stride, s->pad);
        return -1;
    }
    if (s->h + 2 * s->pad < s->kh || s->w + 2 * s->pad < s->kw) {
        bnn_set_error("kernel %dx%d does not fit the %dx%d input with pad %d", s->kh, s->kw,
                      s->h, s->w, s->pad);
        return -1;
    }
    if (s->c > 1 << 20 || s->h > 1 << 14 || s->w > 1 << 14 || s->oc > 1 << 20 ||
        s->kh > 64 || s->kw > 64 || s->pad > 64) {
        bnn_set_error("shape too large for the firmware (c=%d h=%d w=%d oc=%d kernel %dx%d)",
                      s->c, s->h, s->w, s->oc, s->kh, s->kw);
        return -1;
    }
    if (binary && s->pad_value != 1 && s->pad_value != -1) {
        bnn_set_error("binary pad_value must be +1 or -1, not %d", s->pad_value);
        return -1;
    }
    if (!binary && (s->pad_value < -128 || s->pad_value > 127)) {
        bnn_set_error("multi-bit pad_value must be an 8-bit code, not %d", s->pad_value);
        return -1;
    }
    return 0;
}

size_t bnn_bconv_size(const bnn_conv_shape *s)
{
    size_t cw = (size_t)bnn_words_for(s->c), nw = (size_t)s->kh * s->kw * cw;
    size_t groups = ((size_t)s->oc + BNN_GROUP - 1) / BNN_GROUP;
    return align16(sizeof(bnn_bconv)) + align16(groups * nw * BNN_GROUP * 8) +
           align16(groups * BNN_GROUP * 2) + align16(cw * 8);
}

int bnn_bconv_prepare(const bnn_conv_shape *s, const uint64_t *w, const int32_t *thr,
                      const uint8_t *neg, int mode, int sat, int clip, void *mem)
{
    bnn_bconv *l = (bnn_bconv *)mem;
    unsigned char *p = (unsigned char *)mem;
    int g, j, i;
    if (check_shape(s, 1))
        return -1;
    memset(l, 0, sizeof *l);
    l->s = *s;
    l->ho = (s->h + 2 * s->pad - s->kh) / s->stride + 1;
    l->wo = (s->w + 2 * s->pad - s->kw) / s->stride + 1;
    l->cw = bnn_words_for(s->c);
    l->ocw = bnn_words_for(s->oc);
    l->nw = s->kh * s->kw * l->cw;
    l->k = s->kh * s->kw * s->c;
    l->groups = (s->oc + BNN_GROUP - 1) / BNN_GROUP;
    l->mode = mode;
    l->sat = sat;
    l->clip = clip;
    if (l->k > BNN_MAX_K) {
        bnn_set_error("fan-in K=%d exceeds the 16-bit accumulators' limit %d", l->k, BNN_MAX_K);
        return -1;
    }
    if (mode != BNN_OUT_BITS && mode != BNN_OUT_INT8 && mode != BNN_OUT_INT32) {
        bnn_set_error("output mode must be 0 (bits), 1 (int8) or 2 (int32), not %d", mode);
        return -1;
    }
    if (sat < 0 || sat > l->k) {
        bnn_set_error("popcount cap must be in [0, K=%d], not %d", l->k, sat);
        return -1;
    }
    if (mode == BNN_OUT_INT8 && (clip < 1 || clip > 127)) {
        bnn_set_error("int8 output needs a clip limit in [1, 127], not %d", clip);
        return -1;
    }
    if (mode == BNN_OUT_INT32 && clip < 0) {
        bnn_set_error("clip limit must be non-negative, not %d", clip);
        return -1;
    }
    if (mode == BNN_OUT_BITS && (!thr || !neg)) {
        bnn_set_error("thresholded output needs thresholds and polarities");
        return -1;
    }
    p += align16(sizeof(bnn_bconv));
    l->w = (uint64_t *)p;
    p += align16((size_t)l->groups * l->nw * BNN_GROUP * 8);
    l->c1 = (uint16_t *)p;
    p += align16((size_t)l->groups * BNN_GROUP * 2);
    l->padpix = (uint64_t *)p;
    for (j = 0; j < l->cw; j++) {
        int bits = s->c - 64 * j;
        uint64_t ones = bits >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << bits) - 1);
        l->padpix[j] = s->pad_value > 0 ? ones : 0;
    }
    for (g = 0; g < l->groups; g++)
        for (i = 0; i < BNN_GROUP; i++) {
            int o = g * BNN_GROUP + i;
            int negate = (o < s->oc && mode == BNN_OUT_BITS && neg[o]);
            for (j = 0; j < l->nw; j++) {
                uint64_t word = 0;
                if (o < s->oc) {
                    word = w[(size_t)o * l->nw + j];
                    if (negate) {
                        /* Negate the real bits only: padding bits stay 0 (see bnn.h). */
                        int bits = s->c - 64 * (j % l->cw);
                        uint64_t real = bits >= 64 ? ~(uint64_t)0
                                                   : (((uint64_t)1 << bits) - 1);
                        word = ~word & real;
                    }
                }
                l->w[bnn__widx(l->nw, g, i, j)] = word;
            }
            if (mode == BNN_OUT_BITS) {
                /* Fold the threshold into the mismatch domain: bit = (M < c1).
                 * y = 2 min(P, S) - K with P = K - M (S = cap, K when none).
                 * neg 0: y >= T <=> min(P,S) >= t = ceil((T+K)/2) <=> M <= K - t (and S >= t).
                 * neg 1: the weights are negated, so M' = P; y <= T <=> min(P,S) <= u =
                 *        floor((T+K)/2) <=> M' <= u (or always, when S <= u). */
                int64_t k = l->k, cap = sat ? sat : l->k, c1 = 0;
                if (o < s->oc) {
                    int64_t t = thr[o];
                    if (!neg[o]) {
                        int64_t tt = ceil_half(t + k);
                        c1 = (tt > cap) ? 0 : k - tt + 1;
                    } else {
                        int64_t u = floor_half(t + k);
                        c1 = (cap <= u) ? k + 1 : u + 1;
                    }
                    if (c1 < 0)
                        c1 = 0;
                    if (c1 > k + 1)
                        c1 = k + 1;
                }
                /* padding channels never fire: their output bits stay 0 */
                l->c1[o] = (uint16_t)c1;
            }
        }
    return 0;
}

size_t bnn_bconv_scratch(const bnn_bconv *l)
{
    size_t hp = (size_t)l->s.h + 2 * l->s.pad, wp = (size_t)l->s.w + 2 * l->s.pad;
    return (l->s.pad ? hp * wp * l->cw * 8 : 0) + align16((size_t)l->nw * 16) + 64;
}

size_t bnn_mbconv_size(const bnn_conv_shape *s)
{
    size_t k = (size_t)s->kh * s->kw * s->c, kp = (k + 15) & ~(size_t)15;
    size_t ocp = ((size_t)s->oc + 15) & ~(size_t)15;
    size_t rw4 = ((size_t)s->kw * s->c + 3) / 4;
    return align16(sizeof(bnn_mbconv)) + align16((size_t)s->oc * kp) + align16(ocp * 4) +
           align16(k * ocp) + align16((size_t)s->kh * rw4 * 4 * ocp) + align16(ocp * 4);
}

int bnn_mbconv_prepare(const bnn_conv_shape *s, const int8_t *w, const int32_t *thr,
                       const uint8_t *neg, int mode, void *mem)
{
    bnn_mbconv *l = (bnn_mbconv *)mem;
    unsigned char *p = (unsigned char *)mem;
    int o, i, y, x;
    if (check_shape(s, 0))
        return -1;
    memset(l, 0, sizeof *l);
    l->s = *s;
    l->ho = (s->h + 2 * s->pad - s->kh) / s->stride + 1;
    l->wo = (s->w + 2 * s->pad - s->kw) / s->stride + 1;
    l->ocw = bnn_words_for(s->oc);
    l->k = s->kh * s->kw * s->c;
    l->kp = (l->k + 15) & ~15;
    l->mode = mode;
    if (mode != BNN_OUT_BITS && mode != BNN_OUT_INT32) {
        bnn_set_error("multi-bit convolution output mode must be 0 (bits) or 2 (int32), not %d",
                      mode);
        return -1;
    }
    /* |y| <= 128 K must fit the int16 lanes of the NEON kernel's partial sums per chunk and
     * an int32 in the end; K <= 65534 keeps both comfortable. */
    if (l->k > BNN_MAX_K) {
        bnn_set_error("fan-in K=%d exceeds the firmware's limit %d", l->k, BNN_MAX_K);
        return -1;
    }
    if (mode == BNN_OUT_BITS && (!thr || !neg)) {
        bnn_set_error("thresholded output needs thresholds and polarities");
        return -1;
    }
    p += align16(sizeof(bnn_mbconv));
    l->w = (int8_t *)p;
    p += align16((size_t)s->oc * l->kp);
    l->ocp = (s->oc + 15) & ~15;
    l->t = (int32_t *)p;
    p += align16((size_t)l->ocp * 4);
    l->wt = (int8_t *)p;
    p += align16((size_t)l->k * l->ocp);
    l->rw4 = (s->kw * s->c + 3) / 4;
    l->w4 = (int8_t *)p;
    p += align16((size_t)s->kh * l->rw4 * 4 * l->ocp);
    l->wofs = (int32_t *)p;
    memset(l->wt, 0, (size_t)l->k * l->ocp);
    memset(l->w4, 0, (size_t)s->kh * l->rw4 * 4 * l->ocp);
    memset(l->wofs, 0, (size_t)l->ocp * 4);
    memset(l->t, 0, (size_t)l->ocp * 4);
    for (o = 0; o < s->oc; o++) {
        int negate = (mode == BNN_OUT_BITS && neg[o]);
        int8_t *row = l->w + (size_t)o * l->kp;
        memset(row, 0, (size_t)l->kp);
        /* window order [ky][kx][c]: the HWC input gives kw * c contiguous codes per row */
        for (y = 0; y < s->kh; y++)
            for (x = 0; x < s->kw; x++)
                for (i = 0; i < s->c; i++) {
                    int8_t v = w[(((size_t)o * s->c + i) * s->kh + y) * s->kw + x] > 0 ? 1 : -1;
                    int kk = (y * s->kw + x) * s->c + i;
                    if (negate)
                        v = (int8_t)-v;
                    row[kk] = v;
                    l->wt[(size_t)kk * l->ocp + o] = v;
                    int r = x * s->c + i; /* position in the window row */
                    l->w4[(((size_t)y * l->rw4 + (r >> 2)) * l->ocp + o) * 4 + (r & 3)] = v;
                    l->wofs[o] += 128 * v;
                }
        if (mode == BNN_OUT_BITS) {
            /* y <= T <=> -y >= -T; clamp so that -T cannot overflow */
            int64_t t = thr[o];
            if (t > (int64_t)128 * l->k + 1)
                t = (int64_t)128 * l->k + 1;
            if (t < -(int64_t)128 * l->k - 1)
                t = -(int64_t)128 * l->k - 1;
            l->t[o] = (int32_t)(negate ? -t : t);
        }
    }
    return 0;
}

size_t bnn_mbconv_scratch(const bnn_mbconv *l)
{
    size_t hp = (size_t)l->s.h + 2 * l->s.pad, wp = (size_t)l->s.w + 2 * l->s.pad;
    return hp * wp * l->s.c + align16((size_t)l->kp) + 64;
}

/* ---- helpers shared by the kernels ------------------------------------------------------- */

const uint64_t *bnn__pad_bits(const bnn_bconv *l, const uint64_t *in, uint64_t *buf)
{
    const int pad = l->s.pad, h = l->s.h, w = l->s.w, cw = l->cw;
    const int hp = h + 2 * pad, wp = w + 2 * pad;
    int y, x, j;
    if (!pad)
        return in;
    /* the first padded row holds pad pixels only; the others copy it where they pad */
    for (x = 0; x < wp; x++)
        for (j = 0; j < cw; j++)
            buf[(size_t)x * cw + j] = l->padpix[j];
    for (y = 1; y < hp; y++) {
        uint64_t *dst = buf + (size_t)y * wp * cw;
        if (y < pad || y >= pad + h) {
            memcpy(dst, buf, (size_t)wp * cw * 8);
        } else {
            /* whole input rows are contiguous: one copy per row, pad pixels either side */
            memcpy(dst, buf, (size_t)pad * cw * 8);
            memcpy(dst + (size_t)pad * cw, in + (size_t)(y - pad) * w * cw, (size_t)w * cw * 8);
            memcpy(dst + (size_t)(pad + w) * cw, buf, (size_t)pad * cw * 8);
        }
    }
    return buf;
}

const int8_t *bnn__pad_codes(const bnn_mbconv *l, const int8_t *in, int8_t *buf)
{
    int hp = l->s.h + 2 * l->s.pad, wp = l->s.w + 2 * l->s.pad, c = l->s.c, y, x;
    if (!l->s.pad)
        return in;
    for (y = 0; y < hp; y++)
        for (x = 0; x < wp; x++) {
            int8_t *dst = buf + ((size_t)y * wp + x) * c;
            int iy = y - l->s.pad, ix = x - l->s.pad;
            if (iy < 0 || iy >= l->s.h || ix < 0 || ix >= l->s.w)
                memset(dst, (unsigned char)(int8_t)l->s.pad_value, (size_t)c);
            else
                memcpy(dst, in + ((size_t)iy * l->s.w + ix) * c, (size_t)c);
        }
    return buf;
}

void bnn_scores(int rule, int n, const int32_t *y, int k, const int64_t *thr,
                const uint8_t *neg, int64_t *out)
{
    int i;
    for (i = 0; i < n; i++) {
        int64_t v = y[i];
        if (rule == BNN_RULE_POPCOUNT)
            out[i] = (v + k) / 2; /* y + K = 2P is even and non-negative */
        else if (rule == BNN_RULE_MARGIN)
            out[i] = neg[i] ? thr[i] - v : v - thr[i];
        else
            out[i] = v;
    }
}
