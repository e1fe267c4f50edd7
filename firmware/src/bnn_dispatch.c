/* Kernel paths: which ones this build holds and this CPU runs, the choice among them (a name,
 * the BNNHW_KERNEL environment variable, or the fastest), and the calls to the chosen path.
 * Plain C99 compiled for the baseline target: the CPU is asked (CPUID through GCC / Clang's
 * __builtin_cpu_supports, which also checks that the OS saves the AVX / AVX-512 registers)
 * before any AVX instruction runs. */
#include "bnn.h"

#include <stdlib.h>
#include <string.h>

static const char *const names[BNN_K_COUNT] = {"scalar", "neon", "avx2", "avx512bw",
                                                "avx512vpopcnt"};

const char *bnn_kernel_name(int kernel)
{
    return kernel >= 0 && kernel < BNN_K_COUNT ? names[kernel] : NULL;
}

int bnn_kernel_supported(int kernel)
{
    switch (kernel) {
    case BNN_K_SCALAR:
        return 1;
    case BNN_K_NEON:
#ifdef BNN_HAVE_NEON
        return 1;
#else
        return 0;
#endif
#ifdef BNN_HAVE_X86
    case BNN_K_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
    case BNN_K_AVX512BW:
        __builtin_cpu_init();
        return bnn_kernel_supported(BNN_K_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    case BNN_K_AVX512VP:
        __builtin_cpu_init();
        return bnn_kernel_supported(BNN_K_AVX512BW) &&
               __builtin_cpu_supports("avx512vpopcntdq");
#endif
    default:
        return 0;
    }
}

/* Fastest first. NEON through SIMDe (x86) ranks below the scalar twin: it emulates 128-bit
 * NEON with SSE2 and measured ~2x slower than the scalar twin (BENCHMARKS.md, Firmware). */
static const int order[] = {BNN_K_AVX512VP, BNN_K_AVX512BW, BNN_K_AVX2,
#ifndef BNN_SIMDE
                            BNN_K_NEON,
#endif
                            BNN_K_SCALAR,
#ifdef BNN_SIMDE
                            BNN_K_NEON
#endif
};

int bnn_kernel_best(void)
{
    size_t i;
    for (i = 0; i < sizeof order / sizeof order[0]; i++)
        if (bnn_kernel_supported(order[i]))
            return order[i];
    return BNN_K_SCALAR;
}

const char *bnn_kernel_list(void)
{
    static char buf[128];
    size_t i;
    buf[0] = 0;
    for (i = 0; i < sizeof order / sizeof order[0]; i++)
        if (bnn_kernel_supported(order[i])) {
            if (buf[0])
                strcat(buf, " ");
            strcat(buf, names[order[i]]);
        }
    return buf;
}

int bnn_kernel_choose(const char *name)
{
    const char *from = "kernel";
    int k;
    if (!name || !*name) {
        name = getenv("BNNHW_KERNEL");
        from = "BNNHW_KERNEL";
        if (!name || !*name)
            return bnn_kernel_best();
    }
    if (!strcmp(name, "auto"))
        return bnn_kernel_best();
    for (k = 0; k < BNN_K_COUNT; k++)
        if (!strcmp(name, names[k]))
            break;
    if (k == BNN_K_COUNT) {
        bnn_set_error("%s must be auto, scalar, neon, avx2, avx512bw or avx512vpopcnt, not '%s'",
                      from, name);
        return -1;
    }
    if (!bnn_kernel_supported(k)) {
        bnn_set_error("%s %s: not available in this build on this CPU (available: %s)", from,
                      name, bnn_kernel_list());
        return -1;
    }
    return k;
}

void bnn_bconv_run(int kernel, const bnn_bconv *l, const uint64_t *in, void *out, void *scratch)
{
    switch (kernel) {
#ifdef BNN_HAVE_NEON
    case BNN_K_NEON:
        bnn_bconv_neon(l, in, out, scratch);
        return;
#endif
#ifdef BNN_HAVE_X86
    case BNN_K_AVX2:
        bnn_bconv_avx2(l, in, out, scratch);
        return;
    case BNN_K_AVX512BW:
        bnn_bconv_avx512bw(l, in, out, scratch);
        return;
    case BNN_K_AVX512VP:
        bnn_bconv_avx512vp(l, in, out, scratch);
        return;
#endif
    default:
        bnn_bconv_scalar(l, in, out, scratch);
    }
}

void bnn_mbconv_run(int kernel, const bnn_mbconv *l, const int8_t *in, void *out, void *scratch)
{
    switch (kernel) {
#ifdef BNN_HAVE_NEON
    case BNN_K_NEON:
        bnn_mbconv_neon(l, in, out, scratch);
        return;
#endif
#ifdef BNN_HAVE_X86
    case BNN_K_AVX2:
        bnn_mbconv_avx2(l, in, out, scratch);
        return;
    case BNN_K_AVX512BW:
    case BNN_K_AVX512VP:
        bnn_mbconv_avx512(l, in, out, scratch);
        return;
#endif
    default:
        bnn_mbconv_scalar(l, in, out, scratch);
    }
}

void bnn_maxpool_run(int kernel, const uint64_t *in, int h, int w, int c, int k, int s,
                     uint64_t *out)
{
#ifdef BNN_HAVE_NEON
    if (kernel == BNN_K_NEON) {
        bnn_maxpool_neon(in, h, w, c, k, s, out);
        return;
    }
#endif
    /* x86: OR of a few words per pixel; the scalar twin compiles to the same loads and ORs */
    (void)kernel;
    bnn_maxpool_scalar(in, h, w, c, k, s, out);
}

void bnn_quant_pack_run(int kernel, const uint8_t *chw, int c, int h, int w, int thr, int flat,
                        uint64_t *out)
{
    switch (kernel) {
#ifdef BNN_HAVE_NEON
    case BNN_K_NEON:
        bnn_quant_pack_neon(chw, c, h, w, thr, flat, out);
        return;
#endif
#ifdef BNN_HAVE_X86
    case BNN_K_AVX2:
    case BNN_K_AVX512BW:
    case BNN_K_AVX512VP:
        bnn_quant_pack_avx2(chw, c, h, w, thr, flat, out);
        return;
#endif
    default:
        bnn_quant_pack_scalar(chw, c, h, w, thr, flat, out);
    }
}

void bnn_pack_feature_map_run(int kernel, const uint8_t *hwc, int h, int w, int c,
                              uint64_t *out)
{
    switch (kernel) {
#ifdef BNN_HAVE_NEON
    case BNN_K_NEON:
        bnn_pack_feature_map_neon(hwc, h, w, c, out);
        return;
#endif
#ifdef BNN_HAVE_X86
    case BNN_K_AVX2:
    case BNN_K_AVX512BW:
    case BNN_K_AVX512VP:
        bnn_pack_feature_map_avx2(hwc, h, w, c, out);
        return;
#endif
    default:
        bnn_pack_feature_map(hwc, h, w, c, out);
    }
}
