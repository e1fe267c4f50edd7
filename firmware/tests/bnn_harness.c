/* Test harness: runs ONE kernel on data from a request file and writes its raw output.
 *
 *   bnn_harness REQUEST OUTPUT
 *   bnn_harness --kernels        (prints the kernel paths it can run here, best first)
 *
 * REQUEST (little-endian): int32 op, int32 impl (the kernel path, enum bnn_kernel: 0 scalar,
 * 1 NEON, 2 AVX2, 3 AVX-512 BW, 4 AVX-512 VPOPCNTDQ), int32 nparams,
 * int32 params[nparams], then the op's arrays back to back (see the table in run()).
 * The Python tests (tests/firmware/) build requests from random and corner-case data and
 * compare the output with the golden model or an independent slow reference.
 * Exit 0, or 3 with a one-line message when the kernel rejects its parameters. */
#include "bnn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char *req;
static size_t req_len, pos;

static void fail(const char *what)
{
    fprintf(stderr, "bnn_harness: %s\n", what);
    exit(2);
}

static const void *take(size_t bytes)
{
    const void *p = req + pos;
    if (bytes > req_len - pos)
        fail("request too short");
    pos += bytes;
    return p;
}

static void *copy(size_t bytes)
{
    /* aligned copy (the request gives no alignment guarantee) */
    void *p = malloc(bytes + 16);
    if (!p)
        fail("out of memory");
    memcpy(p, take(bytes), bytes);
    return p;
}

static void *alloc16(size_t bytes, void **base)
{
    *base = calloc(1, bytes + 32);
    if (!*base)
        fail("out of memory");
    return (void *)(((uintptr_t)*base + 15) & ~(uintptr_t)15);
}

int main(int argc, char **argv)
{
    FILE *f;
    long size = 0;
    int32_t op, impl, np, prm[32];
    int i;
    void *out = NULL;
    size_t out_len = 0;
    if (argc == 2 && !strcmp(argv[1], "--kernels")) {
        printf("%s\n", bnn_kernel_list());
        return 0;
    }
    if (argc != 3)
        fail("usage: bnn_harness REQUEST OUTPUT (or --kernels)");
    f = fopen(argv[1], "rb");
    if (!f || fseek(f, 0, SEEK_END) || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET))
        fail("cannot read request");
    req = malloc((size_t)size + 1);
    req_len = (size_t)size;
    if (!req || fread(req, 1, req_len, f) != req_len)
        fail("cannot read request");
    fclose(f);
    memcpy(&op, take(4), 4);
    memcpy(&impl, take(4), 4);
    memcpy(&np, take(4), 4);
    if (np < 0 || np > 32)
        fail("bad parameter count");
    for (i = 0; i < np; i++)
        memcpy(&prm[i], take(4), 4);
    if (!bnn_kernel_supported(impl)) {
        fprintf(stderr, "bnn_harness: kernel path %d is not available in this build on this CPU "
                        "(available: %s)\n", impl, bnn_kernel_list());
        exit(2);
    }
    switch (op) {
    case 1: { /* pack feature map: h w c; bytes [h][w][c] */
        int h = prm[0], w = prm[1], c = prm[2];
        const uint8_t *b = take((size_t)h * w * c);
        out_len = (size_t)h * w * bnn_words_for(c) * 8;
        out = malloc(out_len + 8);
        memset(out, 0xA5, out_len);
        bnn_pack_feature_map_run(impl, b, h, w, c, out);
        break;
    }
    case 2: { /* pack conv weights: oc c kh kw; int8 [oc][c][kh][kw] */
        int oc = prm[0], c = prm[1], kh = prm[2], kw = prm[3];
        const int8_t *w = take((size_t)oc * c * kh * kw);
        out_len = (size_t)oc * kh * kw * bnn_words_for(c) * 8;
        out = malloc(out_len + 8);
        bnn_pack_conv_weights(w, oc, c, kh, kw, out);
        break;
    }
    case 3: { /* pack dense weights: oc k */
        int oc = prm[0], k = prm[1];
        const int8_t *w = take((size_t)oc * k);
        out_len = (size_t)oc * bnn_words_for(k) * 8;
        out = malloc(out_len + 8);
        bnn_pack_dense_weights(w, oc, k, out);
        break;
    }
    case 4: { /* binary conv: c h w oc kh kw stride pad pad_value mode sat clip */
        bnn_conv_shape s;
        int mode = prm[9], sat = prm[10], clip = prm[11], cw, ho, wo;
        void *pb, *sb, *mem, *scratch;
        uint64_t *in, *wt;
        int32_t *thr;
        uint8_t *neg;
        s.c = prm[0]; s.h = prm[1]; s.w = prm[2]; s.oc = prm[3]; s.kh = prm[4]; s.kw = prm[5];
        s.stride = prm[6]; s.pad = prm[7]; s.pad_value = prm[8];
        cw = bnn_words_for(s.c);
        in = copy((size_t)s.h * s.w * cw * 8);
        wt = copy((size_t)s.oc * s.kh * s.kw * cw * 8);
        thr = copy((size_t)s.oc * 4);
        neg = copy((size_t)s.oc);
        mem = alloc16(bnn_bconv_size(&s), &pb);
        if (bnn_bconv_prepare(&s, wt, thr, neg, mode, sat, clip, mem)) {
            fprintf(stderr, "bnn_harness: %s\n", bnn_last_error());
            return 3;
        }
        ho = ((bnn_bconv *)mem)->ho;
        wo = ((bnn_bconv *)mem)->wo;
        scratch = alloc16(bnn_bconv_scratch(mem), &sb);
        out_len = (size_t)ho * wo *
                  (mode == BNN_OUT_BITS ? (size_t)bnn_words_for(s.oc) * 8
                                        : (size_t)s.oc * (mode == BNN_OUT_INT8 ? 1 : 4));
        out = malloc(out_len + 8);
        memset(out, 0xA5, out_len); /* every byte must be written */
        bnn_bconv_run(impl, mem, in, out, scratch);
        free(pb); free(sb); free(in); free(wt); free(thr); free(neg);
        break;
    }
    case 5: { /* multi-bit conv: c h w oc kh kw stride pad pad_value mode */
        bnn_conv_shape s;
        int mode = prm[9];
        void *pb, *sb, *mem, *scratch;
        int8_t *in, *wt;
        int32_t *thr;
        uint8_t *neg;
        bnn_mbconv *l;
        s.c = prm[0]; s.h = prm[1]; s.w = prm[2]; s.oc = prm[3]; s.kh = prm[4]; s.kw = prm[5];
        s.stride = prm[6]; s.pad = prm[7]; s.pad_value = prm[8];
        in = copy((size_t)s.h * s.w * s.c);
        wt = copy((size_t)s.oc * s.c * s.kh * s.kw);
        thr = copy((size_t)s.oc * 4);
        neg = copy((size_t)s.oc);
        mem = alloc16(bnn_mbconv_size(&s), &pb);
        if (bnn_mbconv_prepare(&s, wt, thr, neg, mode, mem)) {
            fprintf(stderr, "bnn_harness: %s\n", bnn_last_error());
            return 3;
        }
        l = mem;
        scratch = alloc16(bnn_mbconv_scratch(l), &sb);
        out_len = (size_t)l->ho * l->wo *
                  (mode == BNN_OUT_BITS ? (size_t)bnn_words_for(s.oc) * 8 : (size_t)s.oc * 4);
        out = malloc(out_len + 8);
        memset(out, 0xA5, out_len);
        bnn_mbconv_run(impl, l, in, out, scratch);
        free(pb); free(sb); free(in); free(wt); free(thr); free(neg);
        break;
    }
    case 6: { /* max-pool: h w c k s; packed words */
        int h = prm[0], w = prm[1], c = prm[2], k = prm[3], s = prm[4];
        int ho = (h - k) / s + 1, wo = (w - k) / s + 1;
        uint64_t *in = copy((size_t)h * w * bnn_words_for(c) * 8);
        out_len = (size_t)ho * wo * bnn_words_for(c) * 8;
        out = malloc(out_len + 8);
        memset(out, 0xA5, out_len);
        bnn_maxpool_run(impl, in, h, w, c, k, s, out);
        free(in);
        break;
    }
    case 7: { /* quantize + pack raw bytes: c h w thr flat */
        int c = prm[0], h = prm[1], w = prm[2], thr = prm[3], flat = prm[4];
        const uint8_t *raw = take((size_t)c * h * w);
        out_len = flat ? (size_t)bnn_words_for(c * h * w) * 8
                       : (size_t)h * w * bnn_words_for(c) * 8;
        out = malloc(out_len + 8);
        memset(out, 0xA5, out_len);
        bnn_quant_pack_run(impl, raw, c, h, w, thr, flat, out);
        break;
    }
    case 8: { /* flatten: h w c */
        int h = prm[0], w = prm[1], c = prm[2];
        uint64_t *in = copy((size_t)h * w * bnn_words_for(c) * 8);
        out_len = (size_t)bnn_words_for(h * w * c) * 8;
        out = malloc(out_len + 8);
        bnn_flatten_bits(in, h, w, c, out);
        free(in);
        break;
    }
    case 9: { /* scores: rule n k; int32 y[n], int64 thr[n], uint8 neg[n] */
        int rule = prm[0], n = prm[1], k = prm[2];
        int32_t *y = copy((size_t)n * 4);
        int64_t *thr = copy((size_t)n * 8);
        uint8_t *neg = copy((size_t)n);
        out_len = (size_t)n * 8;
        out = malloc(out_len + 8);
        bnn_scores(rule, n, y, k, thr, neg, out);
        free(y); free(thr); free(neg);
        break;
    }
    default:
        fail("unknown op");
    }
    if (pos != req_len)
        fail("request has trailing bytes");
    f = fopen(argv[2], "wb");
    if (!f || fwrite(out, 1, out_len, f) != out_len || fclose(f))
        fail("cannot write output");
    free(out);
    free(req);
    return 0;
}
