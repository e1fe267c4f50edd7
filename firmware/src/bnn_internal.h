/* Helpers shared by the scalar and NEON kernels (not part of the public API). */
#ifndef BNN_INTERNAL_H
#define BNN_INTERNAL_H
#include "bnn.h"

/* The padded copy of a packed map (or the input itself when pad = 0). */
const uint64_t *bnn__pad_bits(const bnn_bconv *l, const uint64_t *in, uint64_t *buf);
const int8_t *bnn__pad_codes(const bnn_mbconv *l, const int8_t *in, int8_t *buf);

/* Index of the word of window position j, output channel g * 16 + i, in a prepared binary
 * layer: [group][half][j][8 channels]. Each 8-channel half is contiguous over the window, so a
 * kernel streams it with one pointer; two channels share a 128-bit register. */
static inline size_t bnn__widx(int nw, int g, int i, int j)
{
    return (((size_t)g * 2 + (size_t)(i >> 3)) * nw + j) * 8 + (size_t)(i & 7);
}

/* Portable 64-bit popcount: the compiler's builtin where there is one, else SWAR. */
static inline int bnn__popcount64(uint64_t x)
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_popcountll(x);
#else
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
    return (int)((x * 0x0101010101010101ULL) >> 56);
#endif
}

/* Scratch layout of a binary convolution: padded input, then one window of words. */
static inline void *bnn__align16(void *p)
{
    return (void *)(((uintptr_t)p + 15) & ~(uintptr_t)15);
}
#endif
