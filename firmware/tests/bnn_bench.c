/* Benchmark of one layer: host wall time (median of repeated calls) and, under qemu-insn,
 * executed instructions (run with -r 0 and -r N: the difference over N is one call).
 *
 *   bnn_bench [-k KERNEL] [-r REPEAT] [-c] [-o OUT] [-p] [-f] bconv C H W OC KH KW S PAD PADV MODE
 *   bnn_bench [-k ...] [-r ...] [-c] [-o OUT] mbconv C H W OC KH KW S PAD PADV
 *
 * -k: kernel path (auto = BNNHW_KERNEL or the fastest; scalar, neon, avx2, avx512bw,
 *     avx512vpopcnt); -f needs the NEON path;
 * -l: print the kernel paths this build runs on this CPU (best first) and exit;
 * -c: count mode, for qemu-insn: REPEAT calls with no clock reads, no sorting, no printing, so
 *     that count(-r 1) - count(-r 0) is one call exactly (the printed median's formatting costs
 *     a value-dependent number of instructions, which would otherwise be counted with it);
 * -p: the timed call also packs the input from bytes (one byte per binary value, HWC);
 * -f: ablation, batch norm in float after an int32 output instead of the folded threshold
 *     (needs a build with -DBNN_ABLATION and MODE 0);
 * -o: write the last call's output (to compare variants bit for bit).
 * Data are pseudo-random and deterministic; the float batch-norm parameters are multiples of
 * 1/64 so that float arithmetic is exact and the folded thresholds give the same bits. */
#define _POSIX_C_SOURCE 200809L
#include "bnn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t lcg = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(void)
{
    lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(lcg >> 33);
}

static void *alloc16(size_t bytes)
{
    void *base = calloc(1, bytes + 16);
    if (!base) {
        fprintf(stderr, "bnn_bench: out of memory\n");
        exit(2);
    }
    return (void *)(((uintptr_t)base + 15) & ~(uintptr_t)15); /* leaked on purpose */
}

static struct {
    int op, kernel, pack, fbn;
    const void *layer;
    const uint8_t *bytes;
    uint64_t *in;
    const int8_t *codes;
    void *out, *scratch;
    int32_t *yint;
    const float *scale, *bias;
    int h, w, c, npix, oc;
} B;

__attribute__((noinline)) void bench_call(void)
{
    if (B.op == 1) {
        const bnn_bconv *l = (const bnn_bconv *)B.layer;
        if (B.pack)
            bnn_pack_feature_map_run(B.kernel, B.bytes, B.h, B.w, B.c, B.in);
        bnn_bconv_run(B.kernel, l, B.in, B.fbn ? (void *)B.yint : B.out, B.scratch);
#if defined(BNN_ABLATION) && defined(BNN_HAVE_NEON)
        if (B.fbn)
            bnn_bn_float_pack_neon(B.yint, B.npix, B.oc, B.scale, B.bias, B.out);
#endif
    } else {
        bnn_mbconv_run(B.kernel, (const bnn_mbconv *)B.layer, B.codes, B.out, B.scratch);
    }
}

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int i = 1, repeat = 1, r, p[10], count_only = 0;
    const char *outpath = NULL, *kern = NULL;
    size_t out_len;
    bnn_conv_shape s;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-k") && i + 1 < argc)
            kern = argv[++i];
        else if (!strcmp(argv[i], "-r") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-o") && i + 1 < argc)
            outpath = argv[++i];
        else if (!strcmp(argv[i], "-c"))
            count_only = 1;
        else if (!strcmp(argv[i], "-l")) {
            printf("%s\n", bnn_kernel_list());
            return 0;
        }
        else if (!strcmp(argv[i], "-p"))
            B.pack = 1;
        else if (!strcmp(argv[i], "-f"))
            B.fbn = 1;
        else {
            fprintf(stderr, "bnn_bench: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (B.fbn && !kern)
        kern = "neon"; /* the float batch-norm ablation exists for the NEON path only */
    B.kernel = bnn_kernel_choose(kern);
    if (B.kernel < 0) {
        fprintf(stderr, "bnn_bench: %s\n", bnn_last_error());
        return 2;
    }
#ifndef BNN_ABLATION
    if (B.fbn) {
        fprintf(stderr, "bnn_bench: -f needs a build with -DBNN_ABLATION\n");
        return 2;
    }
#endif
    if (B.fbn && B.kernel != BNN_K_NEON) {
        fprintf(stderr, "bnn_bench: -f needs the NEON kernel path\n");
        return 2;
    }
    if (argc - i < 10 || (strcmp(argv[i], "bconv") && strcmp(argv[i], "mbconv"))) {
        fprintf(stderr, "usage: bnn_bench [options] bconv|mbconv C H W OC KH KW S PAD PADV "
                        "[MODE]\n");
        return 2;
    }
    B.op = strcmp(argv[i], "bconv") ? 2 : 1;
    for (r = 0; r < 9; r++)
        p[r] = atoi(argv[i + 1 + r]);
    p[9] = argc - i > 10 ? atoi(argv[i + 10]) : BNN_OUT_BITS;
    s.c = p[0]; s.h = p[1]; s.w = p[2]; s.oc = p[3]; s.kh = p[4]; s.kw = p[5];
    s.stride = p[6]; s.pad = p[7]; s.pad_value = p[8];
    B.h = s.h; B.w = s.w; B.c = s.c; B.oc = s.oc;
    {
        int32_t *thr = alloc16((size_t)s.oc * 4);
        uint8_t *neg = alloc16((size_t)s.oc);
        float *scale = alloc16((size_t)s.oc * 4), *bias = alloc16((size_t)s.oc * 4);
        int k = s.kh * s.kw * s.c, o;
        for (o = 0; o < s.oc; o++) {
            /* BN as scale * y + bias >= 0 with scale = +-(1..4)/64 and bias = j/64:
             * y >= -bias/scale (scale > 0) or y <= -bias/scale (scale < 0) */
            int a = 1 + (int)(rnd() % 4), sign = (rnd() & 3) ? 1 : -1;
            int j = (int)(rnd() % 41) - 20;
            scale[o] = (float)(sign * a) / 64.0f;
            bias[o] = (float)j / 64.0f;
            neg[o] = sign < 0;
            /* threshold t on y: a*y + j >= 0 <=> y >= ceil(-j / a) (sign +);
             * -a*y + j >= 0 <=> y <= floor(j / a) (sign -) */
            if (sign > 0)
                thr[o] = (-j >= 0) ? (-j + a - 1) / a : -((j) / a);
            else
                thr[o] = (j >= 0) ? j / a : -((-j + a - 1) / a);
            (void)k;
        }
        B.scale = scale;
        B.bias = bias;
        if (B.op == 1) {
            int cw = bnn_words_for(s.c), n, mode = p[9];
            uint64_t *w = alloc16((size_t)s.oc * s.kh * s.kw * cw * 8);
            uint8_t *bytes = alloc16((size_t)s.h * s.w * s.c);
            void *mem = alloc16(bnn_bconv_size(&s));
            bnn_bconv *l = mem;
            for (n = 0; n < s.h * s.w * s.c; n++)
                bytes[n] = (uint8_t)(rnd() & 1);
            {
                int8_t *wt = alloc16((size_t)s.oc * s.c * s.kh * s.kw);
                for (n = 0; n < s.oc * s.c * s.kh * s.kw; n++)
                    wt[n] = (rnd() & 1) ? 1 : -1;
                bnn_pack_conv_weights(wt, s.oc, s.c, s.kh, s.kw, w);
            }
            if (bnn_bconv_prepare(&s, w, thr, neg, B.fbn ? BNN_OUT_INT32 : mode, 0,
                                  mode == BNN_OUT_INT8 ? 127 : 0, mem)) {
                fprintf(stderr, "bnn_bench: %s\n", bnn_last_error());
                return 3;
            }
            B.layer = l;
            B.bytes = bytes;
            B.in = alloc16((size_t)s.h * s.w * cw * 8);
            bnn_pack_feature_map(bytes, s.h, s.w, s.c, B.in);
            B.scratch = alloc16(bnn_bconv_scratch(l));
            B.npix = l->ho * l->wo;
            B.yint = alloc16((size_t)B.npix * s.oc * 4);
            out_len = (size_t)B.npix * (mode == BNN_OUT_BITS ? (size_t)bnn_words_for(s.oc) * 8
                                        : (size_t)s.oc * (mode == BNN_OUT_INT8 ? 1 : 4));
        } else {
            int n;
            int8_t *wt = alloc16((size_t)s.oc * s.c * s.kh * s.kw);
            int8_t *codes = alloc16((size_t)s.h * s.w * s.c);
            void *mem = alloc16(bnn_mbconv_size(&s));
            for (n = 0; n < s.oc * s.c * s.kh * s.kw; n++)
                wt[n] = (rnd() & 1) ? 1 : -1;
            for (n = 0; n < s.h * s.w * s.c; n++)
                codes[n] = (int8_t)(rnd() & 0xff);
            for (n = 0; n < s.oc; n++)
                thr[n] = (int32_t)(rnd() % 2001) - 1000;
            if (bnn_mbconv_prepare(&s, wt, thr, neg, BNN_OUT_BITS, mem)) {
                fprintf(stderr, "bnn_bench: %s\n", bnn_last_error());
                return 3;
            }
            B.layer = mem;
            B.codes = codes;
            B.scratch = alloc16(bnn_mbconv_scratch(mem));
            out_len = (size_t)((bnn_mbconv *)mem)->ho * ((bnn_mbconv *)mem)->wo *
                      bnn_words_for(s.oc) * 8;
        }
        B.out = alloc16(out_len);
    }
    if (count_only) {
        for (r = 0; r < repeat; r++)
            bench_call();
    } else if (repeat > 0) {
        double *t = alloc16(sizeof(double) * (size_t)repeat);
        for (r = 0; r < repeat; r++) {
            double t0 = now_ns();
            bench_call();
            t[r] = now_ns() - t0;
        }
        qsort(t, (size_t)repeat, sizeof *t, cmp_double);
        printf("ns_median %.0f\n", t[repeat / 2]);
    }
    if (outpath) {
        FILE *f = fopen(outpath, "wb");
        if (!f || fwrite(B.out, 1, out_len, f) != out_len || fclose(f)) {
            fprintf(stderr, "bnn_bench: cannot write %s\n", outpath);
            return 4;
        }
    }
    return 0;
}
