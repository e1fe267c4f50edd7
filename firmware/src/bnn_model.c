/* Whole-network forward pass driven by a layer table (bnn_model.h). The table is checked
 * field by field before anything runs: a malformed table gives an error, never a crash. */
#include "bnn_model.h"
#include "bnn_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const bnn_layer_desc *d;
    void *prep;                   /* bnn_bconv or bnn_mbconv */
    int ho, wo;                   /* compute output size */
    int po, pw;                   /* after the pool */
} bnn_stage;

struct bnn_net {
    const bnn_model_desc *m;
    int kernel;                   /* enum bnn_kernel */
    bnn_stage *st;
    void *mem;                    /* everything below, in one block */
    uint8_t *buf[2];              /* ping-pong activations */
    uint8_t *scratch;
    uint64_t *flat;
    int32_t *ints;
};

static void *aligned_block(size_t n, void **base)
{
    *base = malloc(n + 16);
    return *base ? bnn__align16(*base) : NULL;
}

static size_t al16(size_t n) { return (n + 15) & ~(size_t)15; }

#define FAIL(...) do { bnn_set_error(__VA_ARGS__); goto fail; } while (0)

bnn_net *bnn_net_create(const bnn_model_desc *m, int kernel)
{
    bnn_net *n = NULL;
    int i, c, h, w, kind_in; /* the shape and kind (0 bits, 1 codes) flowing in */
    size_t act = 0, scratch = 0, flat = 0, prep = 0, ints = 0;
    unsigned char *p;
    if (!bnn_kernel_supported(kernel)) {
        bnn_set_error("kernel path %d (%s) is not available in this build on this CPU "
                      "(available: %s)", kernel, bnn_kernel_name(kernel) ? bnn_kernel_name(kernel)
                      : "unknown", bnn_kernel_list());
        return NULL;
    }
    if (!m || m->magic != BNN_MODEL_MAGIC || m->version != BNN_MODEL_VERSION) {
        bnn_set_error("model header: bad magic or version (want magic 0x%08x version %d)",
                      BNN_MODEL_MAGIC, BNN_MODEL_VERSION);
        return NULL;
    }
    if (m->in_c < 1 || m->in_h < 1 || m->in_w < 1 || m->in_c > 4096 || m->in_h > 16384 ||
        m->in_w > 16384) {
        bnn_set_error("model header: input shape %dx%dx%d is not valid", m->in_c, m->in_h,
                      m->in_w);
        return NULL;
    }
    if (m->quant == BNN_Q_CODES) {
        if (!m->lut || m->lut_len != 256) {
            bnn_set_error("model header: the input code table must have 256 entries, not %ld",
                          m->lut ? m->lut_len : 0L);
            return NULL;
        }
    } else if (m->quant != BNN_Q_THRESHOLD || m->quant_thr < 0 || m->quant_thr > 256) {
        bnn_set_error("model header: input quantizer %d (threshold %d) is not valid", m->quant,
                      m->quant_thr);
        return NULL;
    }
    if (m->n_layers < 1 || m->n_layers > 1024 || !m->layers) {
        bnn_set_error("model header: layer count %d is not valid", m->n_layers);
        return NULL;
    }
    n = (bnn_net *)calloc(1, sizeof *n);
    if (!n || !(n->st = (bnn_stage *)calloc((size_t)m->n_layers, sizeof *n->st))) {
        bnn_set_error("out of memory");
        free(n);
        return NULL;
    }
    n->m = m;
    n->kernel = kernel;
    c = m->in_c;
    h = m->in_h;
    w = m->in_w;
    kind_in = m->quant == BNN_Q_CODES;
    if (m->layers[0].kind == BNN_L_BDENSE) {
        /* a dense first layer gets the whole image packed as one vector (HWC order) */
        c = c * h * w;
        h = w = 1;
    }
    act = al16((size_t)h * w * c);
    for (i = 0; i < m->n_layers; i++) {
        const bnn_layer_desc *d = &m->layers[i];
        bnn_stage *s = &n->st[i];
        bnn_conv_shape sh;
        const char *name = d->name ? d->name : "?";
        int last = i == m->n_layers - 1;
        s->d = d;
        if (d->kind != BNN_L_MBCONV && d->kind != BNN_L_BCONV && d->kind != BNN_L_BDENSE)
            FAIL("model header: layer %d (%s): kind %d is not valid", i, name, d->kind);
        if ((d->kind == BNN_L_MBCONV) != (kind_in == 1))
            FAIL("model header: layer %d (%s): a %s layer cannot take %s input", i, name,
                 d->kind == BNN_L_MBCONV ? "multi-bit" : "binary",
                 kind_in ? "multi-bit codes" : "binary");
        if (d->kind == BNN_L_BDENSE) {
            if (d->flatten != (h * w > 1))
                FAIL("model header: layer %d (%s): flatten %d for a %dx%d map", i, name,
                     d->flatten, h, w);
            if (d->c != c * h * w || d->h != 1 || d->w != 1 || d->kh != 1 || d->kw != 1 ||
                d->stride != 1 || d->pad != 0)
                FAIL("model header: layer %d (%s): dense input %dx%dx%d does not match the "
                     "%dx%dx%d map before it", i, name, d->c, d->h, d->w, c, h, w);
            if (d->flatten && (d->fc != c || d->fh != h || d->fw != w))
                FAIL("model header: layer %d (%s): flatten shape does not match", i, name);
        } else if (d->c != c || d->h != h || d->w != w) {
            FAIL("model header: layer %d (%s): input %dx%dx%d does not match the %dx%dx%d "
                 "before it", i, name, d->c, d->h, d->w, c, h, w);
        }
        if (d->out != (last ? BNN_OUT_INT32 : BNN_OUT_BITS))
            FAIL("model header: layer %d (%s): output mode %d (only the last layer gives "
                 "integers)", i, name, d->out);
        sh.c = d->c; sh.h = d->h; sh.w = d->w; sh.oc = d->oc; sh.kh = d->kh; sh.kw = d->kw;
        sh.stride = d->stride; sh.pad = d->pad; sh.pad_value = d->pad_value;
        if (d->oc < 1 || d->oc > (1 << 20) || d->kh < 1 || d->kw < 1 || d->kh > 64 ||
            d->kw > 64 || d->c < 1 || d->c > (1 << 20))
            FAIL("model header: layer %d (%s): shape is not valid", i, name);
        if (d->out == BNN_OUT_BITS && (!d->thr || !d->neg || d->thr_len != d->oc))
            FAIL("model header: layer %d (%s): %ld thresholds for %d channels", i, name,
                 d->thr ? d->thr_len : 0L, d->oc);
        if (d->kind == BNN_L_MBCONV) {
            long want = (long)d->oc * d->c * d->kh * d->kw, j;
            if (!d->wcodes || d->wcodes_len != want)
                FAIL("model header: layer %d (%s): %ld weights, expected %ld", i, name,
                     d->wcodes ? d->wcodes_len : 0L, want);
            for (j = 0; j < want; j++)
                if (d->wcodes[j] != 1 && d->wcodes[j] != -1)
                    FAIL("model header: layer %d (%s): weight %ld is %d, not +1 or -1", i, name,
                         j, d->wcodes[j]);
            prep += al16(bnn_mbconv_size(&sh));
        } else {
            long want = (long)d->oc * d->kh * d->kw * bnn_words_for(d->c);
            if (!d->wbits || d->wbits_len != want)
                FAIL("model header: layer %d (%s): %ld weight words, expected %ld", i, name,
                     d->wbits ? d->wbits_len : 0L, want);
            prep += al16(bnn_bconv_size(&sh));
        }
        if (d->h + 2 * d->pad < d->kh || d->w + 2 * d->pad < d->kw || d->stride < 1 ||
            d->pad < 0 || d->pad > 64)
            FAIL("model header: layer %d (%s): kernel does not fit", i, name);
        s->ho = (d->h + 2 * d->pad - d->kh) / d->stride + 1;
        s->wo = (d->w + 2 * d->pad - d->kw) / d->stride + 1;
        s->po = s->ho;
        s->pw = s->wo;
        if (d->pool_k || d->pool_s) {
            if (d->pool_k < 1 || d->pool_s < 1 || d->pool_k > s->ho || d->pool_k > s->wo ||
                d->out != BNN_OUT_BITS)
                FAIL("model header: layer %d (%s): pool %d stride %d does not fit %dx%d", i,
                     name, d->pool_k, d->pool_s, s->ho, s->wo);
            s->po = (s->ho - d->pool_k) / d->pool_s + 1;
            s->pw = (s->wo - d->pool_k) / d->pool_s + 1;
        }
        if (d->flatten)
            flat = flat > al16((size_t)bnn_words_for(d->c) * 8) ? flat
                                                                 : al16((size_t)bnn_words_for(d->c) * 8);
        c = d->oc;
        h = s->po;
        w = s->pw;
        kind_in = 0;
        {
            size_t a = (size_t)s->ho * s->wo * bnn_words_for(d->oc) * 8;
            act = act > al16(a) ? act : al16(a);
            if (last)
                ints = al16((size_t)s->ho * s->wo * d->oc * 4);
        }
    }
    if (h != 1 || w != 1 || c != m->classes)
        FAIL("model header: the last layer gives %dx%dx%d values for %d classes", c, h, w,
             m->classes);
    if (m->rule != BNN_RULE_POPCOUNT && m->rule != BNN_RULE_CLIPPED && m->rule != BNN_RULE_MARGIN)
        FAIL("model header: output rule %d is not valid", m->rule);
    if (m->rule == BNN_RULE_MARGIN && (!m->out_thr || !m->out_neg))
        FAIL("model header: margin scores need the last thresholds");
    /* scratch: the largest padded input plus window */
    {
        /* one block: prepared layers, two activation buffers, scratch, flatten, ints */
        size_t total;
        for (i = 0; i < m->n_layers; i++) {
            const bnn_layer_desc *d = &m->layers[i];
            size_t hp = (size_t)d->h + 2 * d->pad, wp = (size_t)d->w + 2 * d->pad, sc;
            if (d->kind == BNN_L_MBCONV)
                sc = hp * wp * d->c + al16((size_t)d->kh * d->kw * d->c + 16) + 64;
            else
                sc = hp * wp * bnn_words_for(d->c) * 8 +
                     al16((size_t)d->kh * d->kw * bnn_words_for(d->c) * 16) + 64;
            scratch = scratch > sc ? scratch : sc;
        }
        /* the raw-image conversions also land in an activation buffer */
        {
            size_t raw = al16((size_t)m->in_c * m->in_h * m->in_w * 8 + 64);
            act = act > raw ? act : raw;
        }
        total = prep + 2 * act + al16(scratch) + flat + ints + 64;
        p = (unsigned char *)aligned_block(total, &n->mem);
        if (!p)
            FAIL("out of memory (%lu bytes)", (unsigned long)total);
        memset(p, 0, total);
    }
    for (i = 0; i < m->n_layers; i++) {
        const bnn_layer_desc *d = &m->layers[i];
        bnn_conv_shape sh;
        int rc;
        sh.c = d->c; sh.h = d->h; sh.w = d->w; sh.oc = d->oc; sh.kh = d->kh; sh.kw = d->kw;
        sh.stride = d->stride; sh.pad = d->pad; sh.pad_value = d->pad_value;
        n->st[i].prep = p;
        if (d->kind == BNN_L_MBCONV) {
            rc = bnn_mbconv_prepare(&sh, d->wcodes, d->thr, d->neg, d->out, p);
            p += al16(bnn_mbconv_size(&sh));
        } else {
            rc = bnn_bconv_prepare(&sh, d->wbits, d->thr, d->neg, d->out, d->sat, d->clip, p);
            p += al16(bnn_bconv_size(&sh));
        }
        if (rc) {
            char msg[256];
            strncpy(msg, bnn_last_error(), sizeof msg - 1);
            msg[sizeof msg - 1] = 0;
            FAIL("model header: layer %d (%s): %s", i, d->name ? d->name : "?", msg);
        }
    }
    n->buf[0] = p; p += act;
    n->buf[1] = p; p += act;
    n->scratch = p; p += al16(scratch);
    n->flat = (uint64_t *)p; p += flat;
    n->ints = (int32_t *)p;
    return n;
fail:
    bnn_net_free(n);
    return NULL;
}

void bnn_net_free(bnn_net *n)
{
    if (!n)
        return;
    free(n->mem);
    free(n->st);
    free(n);
}

void bnn_net_forward(bnn_net *n, const uint8_t *raw, int64_t *scores)
{
    const bnn_model_desc *m = n->m;
    int cur = 0, i;
    if (m->quant == BNN_Q_CODES) {
        bnn_chw_to_hwc_lut(raw, m->in_c, m->in_h, m->in_w, m->lut, (int8_t *)n->buf[0]);
    } else {
        int flat = m->layers[0].kind == BNN_L_BDENSE;
        bnn_quant_pack_run(n->kernel, raw, m->in_c, m->in_h, m->in_w, m->quant_thr, flat,
                           (uint64_t *)n->buf[0]);
    }
    for (i = 0; i < m->n_layers; i++) {
        const bnn_stage *s = &n->st[i];
        const bnn_layer_desc *d = s->d;
        const void *in = n->buf[cur];
        void *out = d->out == BNN_OUT_BITS ? (void *)n->buf[1 - cur] : (void *)n->ints;
        if (d->flatten) {
            if (d->fc % 64) {
                bnn_flatten_bits((const uint64_t *)in, d->fh, d->fw, d->fc, n->flat);
                in = n->flat;
            } /* whole words per pixel: the HWC map already is the flat vector */
        }
        if (d->kind == BNN_L_MBCONV)
            bnn_mbconv_run(n->kernel, (const bnn_mbconv *)s->prep, (const int8_t *)in, out,
                           n->scratch);
        else
            bnn_bconv_run(n->kernel, (const bnn_bconv *)s->prep, (const uint64_t *)in, out,
                          n->scratch);
        if (d->out != BNN_OUT_BITS)
            break;
        cur = 1 - cur;
        if (d->pool_k) {
            bnn_maxpool_run(n->kernel, (const uint64_t *)n->buf[cur], s->ho, s->wo, d->oc,
                            d->pool_k, d->pool_s, (uint64_t *)n->buf[1 - cur]);
            cur = 1 - cur;
        }
    }
    {
        const bnn_layer_desc *d = &m->layers[m->n_layers - 1];
        bnn_scores(m->rule, m->classes, n->ints, d->kh * d->kw * d->c, m->out_thr, m->out_neg,
                   scores);
    }
}
