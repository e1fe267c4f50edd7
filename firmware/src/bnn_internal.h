/* Helpers shared by the scalar and NEON kernels (not part of the public API). */
#ifndef BNN_INTERNAL_H
#define BNN_INTERNAL_H
#include "bnn.h"

#include <stddef.h>

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

/* x86 kernels' start of a binary convolution: the padded input (or the input itself), its row
 * stride in words, and in *off the word offset of each window word j = ky * kw * cw + t from
 * the window's first word (in the scratch after the padded copy: bnn_bconv_scratch has room). */
static inline const uint64_t *bnn__bconv_setup(const bnn_bconv *l, const uint64_t *in,
                                               void *scratch, size_t *row_stride,
                                               const ptrdiff_t **off)
{
    const int hp = l->s.h + 2 * l->s.pad, wp = l->s.w + 2 * l->s.pad, rw = l->s.kw * l->cw;
    unsigned char *base = (unsigned char *)bnn__align16(scratch);
    const uint64_t *src = bnn__pad_bits(l, in, (uint64_t *)base);
    ptrdiff_t *o;
    int ky, t;
    if (l->s.pad)
        base += (size_t)hp * wp * l->cw * 8;
    o = (ptrdiff_t *)bnn__align16(base);
    *row_stride = (size_t)wp * l->cw;
    for (ky = 0; ky < l->s.kh; ky++)
        for (t = 0; t < rw; t++)
            o[ky * rw + t] = (ptrdiff_t)(ky * *row_stride + t);
    *off = o;
    return src;
}

/* x86 multi-bit kernels: the input with its padding as bytes q + 128 (q XOR 0x80), [hp][wp][c],
 * then 3 zero bytes (4-code loads at a row's end read up to 3 bytes past it, with zero weights).
 * buf: bnn_mbconv_scratch bytes. Returns the copy's start (16-byte aligned). */
static inline const uint8_t *bnn__mb_offset_map(const bnn_mbconv *l, const int8_t *in,
                                                 void *buf)
{
    const int pad = l->s.pad, h = l->s.h, w = l->s.w, c = l->s.c;
    const int wp = w + 2 * pad, hp = h + 2 * pad;
    const uint8_t padc = (uint8_t)((uint8_t)(int8_t)l->s.pad_value ^ 0x80);
    uint8_t *map = (uint8_t *)bnn__align16(buf), *dst = map;
    const uint8_t *src = (const uint8_t *)in;
    int y, x;
    size_t j, row = (size_t)w * c;
    for (y = 0; y < hp; y++) {
        if (y < pad || y >= pad + h) {
            for (j = 0; j < (size_t)wp * c; j++)
                *dst++ = padc;
            continue;
        }
        for (x = 0; x < pad * c; x++)
            *dst++ = padc;
        for (j = 0; j < row; j++)
            *dst++ = (uint8_t)(*src++ ^ 0x80);
        for (x = 0; x < pad * c; x++)
            *dst++ = padc;
    }
    dst[0] = dst[1] = dst[2] = 0;
    return map;
}
#endif
