/* The whole-network runner: raw input bytes from a file -> scores to a file.
 *
 *   bnn_runner [-k KERNEL] [-32] [-r REPEAT] INPUT OUTPUT
 *   bnn_runner [-k KERNEL] -q        (print the kernel path it would use, and exit)
 *   bnn_runner -l                    (print the paths this build runs on this CPU, best first)
 *
 * KERNEL: auto (the default: the BNNHW_KERNEL environment variable when set, else the fastest
 * path this build and CPU support), scalar, neon, avx2, avx512bw or avx512vpopcnt.
 *
 * INPUT: "BNNHWIN1", the model fingerprint (16 ASCII hex digits), uint32 N, uint32 bytes per
 * image (C*H*W), then N images of raw bytes, channels first; all integers little-endian.
 * OUTPUT: "BNNHWSC1", uint32 N, uint32 classes, uint32 bytes per score (8, or 4 with -32),
 * uint32 0, then N * classes little-endian signed scores. It is written to OUTPUT.tmp and
 * renamed, so a failed run leaves no partial output.
 * -r REPEAT runs the batch REPEAT more times and prints the median time per image (host
 * wall time, for benchmarks) on stderr. Errors: one line on stderr, exit 2 (usage, input),
 * 3 (model table), 4 (files). */
#define _POSIX_C_SOURCE 200809L
#include "bnn_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bnn_model_data.h"

#define HEADER_BYTES 32

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}

static int die(int code, const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "bnn_runner: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    return code;
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

#define FAIL(...) do { rc = die(__VA_ARGS__); goto done; } while (0)

static int run(bnn_net *net, const bnn_model_desc *m, const char *inpath, const char *outpath,
               int bytes32, int repeat);

int main(int argc, char **argv)
{
    const bnn_model_desc *m = &bnn_model_data;
    const char *inpath = NULL, *outpath = NULL, *kern = NULL;
    int bytes32 = 0, repeat = 0, i, kernel, query = 0;
    bnn_net *net;
    int rc;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-k") && i + 1 < argc)
            kern = argv[++i];
        else if (!strcmp(argv[i], "-32"))
            bytes32 = 1;
        else if (!strcmp(argv[i], "-q"))
            query = 1;
        else if (!strcmp(argv[i], "-l")) {
            printf("%s\n", bnn_kernel_list());
            return 0;
        }
        else if (!strcmp(argv[i], "-r") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (argv[i][0] == '-' && argv[i][1])
            return die(2, "unknown option %s%s", argv[i], "");
        else if (!inpath)
            inpath = argv[i];
        else if (!outpath)
            outpath = argv[i];
        else
            return die(2, "too many arguments (%s%s)", argv[i], "");
    }
    kernel = bnn_kernel_choose(kern);
    if (kernel < 0)
        return die(2, "%s%s", bnn_last_error(), "");
    if (query) {
        printf("%s\n", bnn_kernel_name(kernel));
        return 0;
    }
    if (!inpath || !outpath)
        return die(2, "usage: bnn_runner [-k KERNEL] [-32] [-r REPEAT] INPUT OUTPUT%s%s",
                   "", "");
    if (repeat < 0 || repeat > 100000)
        return die(2, "repeat count out of range%s%s", "", "");
    net = bnn_net_create(m, kernel);
    if (!net)
        return die(3, "%s%s", bnn_last_error(), "");
    rc = run(net, m, inpath, outpath, bytes32, repeat);
    bnn_net_free(net);
    return rc;
}

static int run(bnn_net *net, const bnn_model_desc *m, const char *inpath, const char *outpath,
               int bytes32, int repeat)
{
    unsigned char head[HEADER_BYTES], *data = NULL, *outbuf = NULL;
    uint32_t n, bpi, want_bpi;
    long size;
    FILE *f;
    int64_t *scores = NULL;
    char tmp[4096];
    int i, rc = 0;

    f = fopen(inpath, "rb");
    if (!f)
        FAIL(4, "cannot open input file %s%s", inpath, "");
    if (fseek(f, 0, SEEK_END) || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
        fclose(f);
        FAIL(4, "cannot read input file %s%s", inpath, "");
    }
    if (size < HEADER_BYTES || fread(head, 1, HEADER_BYTES, f) != HEADER_BYTES) {
        fclose(f);
        FAIL(2, "input file %s: too short for its %s-byte header", inpath, "32");
    }
    if (memcmp(head, "BNNHWIN1", 8)) {
        fclose(f);
        FAIL(2, "input file %s: bad magic (not a bnnhw input file)%s", inpath, "");
    }
    if (strlen(m->fingerprint) != 16 || memcmp(head + 8, m->fingerprint, 16)) {
        fclose(f);
        FAIL(2, "input file %s: made for another model (this runner is model %s)",
                   inpath, m->fingerprint);
    }
    n = rd32(head + 24);
    bpi = rd32(head + 28);
    want_bpi = (uint32_t)m->in_c * m->in_h * m->in_w;
    if (bpi != want_bpi) {
        fclose(f);
        sprintf(tmp, "%lu bytes per image, expected %lu", (unsigned long)bpi,
                (unsigned long)want_bpi);
        FAIL(2, "input file %s: %s", inpath, tmp);
    }
    if (n == 0 || n > (1u << 24)) {
        fclose(f);
        FAIL(2, "input file %s: image count must be 1 to 16777216%s", inpath, "");
    }
    if ((unsigned long)(size - HEADER_BYTES) != (unsigned long)n * bpi) {
        fclose(f);
        sprintf(tmp, "holds %ld data bytes, header says %lu images of %lu", size - HEADER_BYTES,
                (unsigned long)n, (unsigned long)bpi);
        FAIL(2, "input file %s: %s", inpath, tmp);
    }
    data = (unsigned char *)malloc((size_t)n * bpi);
    scores = (int64_t *)malloc((size_t)n * m->classes * sizeof(int64_t));
    outbuf = (unsigned char *)malloc(24 + (size_t)n * m->classes * 8);
    if (!data || !scores || !outbuf) {
        fclose(f);
        FAIL(4, "out of memory%s%s", "", "");
    }
    if (fread(data, 1, (size_t)n * bpi, f) != (size_t)n * bpi) {
        fclose(f);
        FAIL(4, "cannot read input file %s%s", inpath, "");
    }
    fclose(f);

    for (i = 0; i < (int)n; i++)
        bnn_net_forward(net, data + (size_t)i * bpi, scores + (size_t)i * m->classes);
    if (repeat) {
        double *t = (double *)malloc(sizeof(double) * (size_t)repeat);
        int r;
        if (!t)
            FAIL(4, "out of memory%s%s", "", "");
        for (r = 0; r < repeat; r++) {
            double t0 = now_ns();
            for (i = 0; i < (int)n; i++)
                bnn_net_forward(net, data + (size_t)i * bpi, scores + (size_t)i * m->classes);
            t[r] = (now_ns() - t0) / n;
        }
        qsort(t, (size_t)repeat, sizeof *t, cmp_double);
        fprintf(stderr, "time_per_image_ns_median %.1f\n", t[repeat / 2]);
        free(t);
    }

    {
        size_t k, bytes = bytes32 ? 4 : 8, total = (size_t)n * m->classes;
        unsigned char *q = outbuf + 24;
        memcpy(outbuf, "BNNHWSC1", 8);
        wr32(outbuf + 8, n);
        wr32(outbuf + 12, (uint32_t)m->classes);
        wr32(outbuf + 16, (uint32_t)bytes);
        wr32(outbuf + 20, 0);
        for (k = 0; k < total; k++, q += bytes) {
            uint64_t v = (uint64_t)scores[k];
            size_t b;
            if (bytes32 && (scores[k] > 2147483647LL || scores[k] < -2147483647LL - 1))
                FAIL(2, "a score does not fit 32 bits; drop -32%s%s", "", "");
            for (b = 0; b < bytes; b++)
                q[b] = (unsigned char)(v >> (8 * b));
        }
        if (strlen(outpath) > sizeof tmp - 8)
            FAIL(4, "output path too long%s%s", "", "");
        sprintf(tmp, "%s.tmp", outpath);
        f = fopen(tmp, "wb");
        if (!f)
            FAIL(4, "cannot write %s%s", tmp, "");
        if (fwrite(outbuf, 1, 24 + total * bytes, f) != 24 + total * bytes || fclose(f)) {
            remove(tmp);
            FAIL(4, "cannot write %s%s", tmp, "");
        }
        if (rename(tmp, outpath)) {
            remove(tmp);
            FAIL(4, "cannot rename %s to %s", tmp, outpath);
        }
    }
done:
    free(data);
    free(scores);
    free(outbuf);
    return rc;
}
