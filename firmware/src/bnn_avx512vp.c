/* x86-64 AVX-512 binary convolution with VPOPCNTQ (AVX512_VPOPCNTDQ: Ice Lake and later, Zen 4
 * and later): the kernel of bnn_avx512_body.h compiled for F/BW/VL + VPOPCNTDQ by the pragma
 * below. bnn_dispatch.c calls it only when the CPU has these instructions. */
#include "bnn.h"
#include "bnn_internal.h"

#ifdef BNN_HAVE_X86

#include <immintrin.h>
#include <string.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512vpopcntdq,avx2,popcnt"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vpopcntdq,avx2,popcnt")
#endif

#define BNN_AI static inline __attribute__((always_inline))
#define BNN_VP 1
#define BNN_FN(name) name##_avx512vp
#include "bnn_avx512_body.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
typedef int bnn_avx512vp_unused; /* ISO C: a translation unit must not be empty */
#endif /* BNN_HAVE_X86 */
