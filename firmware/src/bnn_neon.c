/* NEON kernels (paper 1, Vorabbi, Maltoni, Santi 2023: binary direct convolution with narrow
 * accumulators). Builds for AArch64, for ARMv7 (-mfpu=neon: no vaddv / vpaddq, so pairwise adds
 * on 64-bit halves), and on x86 through SIMDe for tests.
 *
 * Binary convolution: one output pixel at a time, BNN_GROUP = 16 output channels per block.
 * The 16 channels' weight words of one window word sit side by side (bnn_bconv_prepare), two
 * channels per 128-bit register; the input word is duplicated into both halves. Per 128 bits:
 * veor, vcnt (8-bit counts) and vpadal (pairwise add into 16-bit lanes): the accumulators are
 * 16 bits wide, which holds any K <= 65534. Three rounds of pairwise adds reduce the eight
 * accumulators to the 16 channels' mismatch counts M, which are thresholded in the mismatch
 * domain (bit = M < c1, batch norm folded, negative channels folded into the weights) and
 * packed straight into output bits; or, in the integer modes, turned into y and clipped.
 *
 * Ablation switches (paper 1, section "data flow"): BNN_ACC32 accumulates into 32-bit lanes
 * instead (an extra widening step per word). Both give the same bits. */
#include "bnn.h"
#include "bnn_internal.h"

#ifdef BNN_HAVE_NEON

#ifdef BNN_SIMDE
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/arm/neon.h>
#else
#include <arm_neon.h>
#endif

#include <string.h>

#if defined(__aarch64__) || (defined(BNN_SIMDE) && !defined(BNN_FORCE_V7))
#define BNN_A64 1
#else
#define BNN_A64 0
#endif

/* [a0+a1, a2+a3, a4+a5, a6+a7, b0+b1, ...]: vpaddq_u16 on AArch64, two vpadd on ARMv7. */
static inline uint16x8_t pairsum_u16(uint16x8_t a, uint16x8_t b)
{
#if BNN_A64
    return vpaddq_u16(a, b);
#else
    return vcombine_u16(vpadd_u16(vget_low_u16(a), vget_high_u16(a)),
                        vpadd_u16(vget_low_u16(b), vget_high_u16(b)));
#endif
}

static inline uint32x4_t pairsum_u32(uint32x4_t a, uint32x4_t b)
{
#if BNN_A64
    return vpaddq_u32(a, b);
#else
    return vcombine_u32(vpadd_u32(vget_low_u32(a), vget_high_u32(a)),
                        vpadd_u32(vget_low_u32(b), vget_high_u32(b)));
#endif
}

/* 16 comparison masks (0x00 / 0xff) -> 16 bits, lane i at bit i. */
static inline uint32_t masks_to_bits16(uint8x16_t m)
{
    static const uint8_t weights[16] = {1, 2, 4, 8, 16, 32, 64, 128,
                                        1, 2, 4, 8, 16, 32, 64, 128};
    uint8x16_t b = vandq_u8(m, vld1q_u8(weights));
    uint8x8_t s = vpadd_u8(vget_low_u8(b), vget_high_u8(b));
    s = vpadd_u8(s, s);
    s = vpadd_u8(s, s);
    return vget_lane_u16(vreinterpret_u16_u8(s), 0);
}

/* 64 comparison masks (4 x 16 lanes) -> one 64-bit word, mask i at bit i. */
static inline uint64_t masks_to_bits64(const uint8x16_t m[4])
{
    static const uint8_t weights[16] = {1, 2, 4, 8, 16, 32, 64, 128,
                                        1, 2, 4, 8, 16, 32, 64, 128};
    uint8x16_t wt = vld1q_u8(weights);
    uint8x16_t b0 = vandq_u8(m[0], wt), b1 = vandq_u8(m[1], wt);
    uint8x16_t b2 = vandq_u8(m[2], wt), b3 = vandq_u8(m[3], wt);
#if BNN_A64
    uint8x16_t s = vpaddq_u8(vpaddq_u8(b0, b1), vpaddq_u8(b2, b3));
    s = vpaddq_u8(s, s);
    return vgetq_lane_u64(vreinterpretq_u64_u8(s), 0);
#else
    uint8x8_t s0 = vpadd_u8(vpadd_u8(vget_low_u8(b0), vget_high_u8(b0)),
                            vpadd_u8(vget_low_u8(b1), vget_high_u8(b1)));
    uint8x8_t s1 = vpadd_u8(vpadd_u8(vget_low_u8(b2), vget_high_u8(b2)),
                            vpadd_u8(vget_low_u8(b3), vget_high_u8(b3)));
    return vget_lane_u64(vreinterpret_u64_u8(vpadd_u8(s0, s1)), 0);
#endif
}

static inline uint16x8x2_t load_u16x2(const uint16_t *p)
{
#if BNN_A64
    return vld1q_u16_x2(p);
#else
    uint16x8x2_t r;
    r.val[0] = vld1q_u16(p);
    r.val[1] = vld1q_u16(p + 8);
    return r;
#endif
}

static inline void load8(const uint64_t *w, uint8x16_t v[8])
{
    const uint8_t *p = (const uint8_t *)w;
#if BNN_A64
    uint8x16x4_t a = vld1q_u8_x4(p), b = vld1q_u8_x4(p + 64);
    v[0] = a.val[0]; v[1] = a.val[1]; v[2] = a.val[2]; v[3] = a.val[3];
    v[4] = b.val[0]; v[5] = b.val[1]; v[6] = b.val[2]; v[7] = b.val[3];
#else
    int i;
    for (i = 0; i < 8; i++)
        v[i] = vld1q_u8(p + 16 * i);
#endif
}

#if defined(__GNUC__) && !defined(__clang__)
#define BNN_UNROLL _Pragma("GCC unroll 36")
#else
#define BNN_UNROLL
#endif

static inline void load4(const uint8_t *p, uint8x16_t v[4])
{
#if BNN_A64
    uint8x16x4_t a = vld1q_u8_x4(p);
    v[0] = a.val[0]; v[1] = a.val[1]; v[2] = a.val[2]; v[3] = a.val[3];
#else
    int i;
    for (i = 0; i < 4; i++)
        v[i] = vld1q_u8(p + 16 * i);
#endif
}

#if defined(__aarch64__) && !defined(BNN_SIMDE) && !defined(BNN_NO_ASM) && !defined(BNN_ACC32)
/* AArch64, window of 9 words (3x3 with C <= 64, the commonest binary layer): the same
 * veor / vcnt / vpadal sequence as group16 below, written out in inline assembly because
 * GCC's register allocation of the intrinsics adds ~25 % moves and address arithmetic here.
 * The window stays in 9 registers, the 16 channels' weights stream through v16-v23 with
 * post-increment loads, the eight 16-bit accumulators are outputs. Disable with -DBNN_NO_ASM
 * (the intrinsics then run everywhere, as on ARMv7 and SIMDe). */
#define BNN_ASM9 1
#define BNN_LD8 "ld1 {v16.16b-v19.16b}, [%[wp]], #64\n\tld1 {v20.16b-v23.16b}, [%[wq]], #64\n\t"
#define BNN_EOR8(x)                                                                           \
    "eor v16.16b, v16.16b, " x ".16b\n\teor v17.16b, v17.16b, " x ".16b\n\t"                  \
    "eor v18.16b, v18.16b, " x ".16b\n\teor v19.16b, v19.16b, " x ".16b\n\t"                  \
    "eor v20.16b, v20.16b, " x ".16b\n\teor v21.16b, v21.16b, " x ".16b\n\t"                  \
    "eor v22.16b, v22.16b, " x ".16b\n\teor v23.16b, v23.16b, " x ".16b\n\t"
#define BNN_CNT8                                                                              \
    "cnt v16.16b, v16.16b\n\tcnt v17.16b, v17.16b\n\tcnt v18.16b, v18.16b\n\t"                \
    "cnt v19.16b, v19.16b\n\tcnt v20.16b, v20.16b\n\tcnt v21.16b, v21.16b\n\t"                \
    "cnt v22.16b, v22.16b\n\tcnt v23.16b, v23.16b\n\t"
#define BNN_ACC8(op)                                                                          \
    op " %[a0].8h, v16.16b\n\t" op " %[a1].8h, v17.16b\n\t" op " %[a2].8h, v18.16b\n\t"       \
    op " %[a3].8h, v19.16b\n\t" op " %[a4].8h, v20.16b\n\t" op " %[a5].8h, v21.16b\n\t"       \
    op " %[a6].8h, v22.16b\n\t" op " %[a7].8h, v23.16b\n\t"
#define BNN_STEP(x, op) BNN_LD8 BNN_EOR8(x) BNN_CNT8 BNN_ACC8(op)

static inline __attribute__((always_inline)) void group16_asm9(const uint8x16_t *xv,
                                                               const uint64_t *w,
                                                               uint16x8_t a[8])
{
    const uint64_t *wp = w, *wq = w + 9 * 8;
    __asm__(BNN_STEP("%[x0]", "uaddlp") BNN_STEP("%[x1]", "uadalp")
            BNN_STEP("%[x2]", "uadalp") BNN_STEP("%[x3]", "uadalp")
            BNN_STEP("%[x4]", "uadalp") BNN_STEP("%[x5]", "uadalp")
            BNN_STEP("%[x6]", "uadalp") BNN_STEP("%[x7]", "uadalp")
            BNN_STEP("%[x8]", "uadalp")
            : [a0] "=&w"(a[0]), [a1] "=&w"(a[1]), [a2] "=&w"(a[2]), [a3] "=&w"(a[3]),
              [a4] "=&w"(a[4]), [a5] "=&w"(a[5]), [a6] "=&w"(a[6]), [a7] "=&w"(a[7]),
              [wp] "+r"(wp), [wq] "+r"(wq)
            : [x0] "w"(xv[0]), [x1] "w"(xv[1]), [x2] "w"(xv[2]), [x3] "w"(xv[3]),
              [x4] "w"(xv[4]), [x5] "w"(xv[5]), [x6] "w"(xv[6]), [x7] "w"(xv[7]),
              [x8] "w"(xv[8]),
              /* the 9 x 16 weight words read (instead of a "memory" clobber, which would
               * make the compiler reload every field of the layer after each block) */
              "m"(*(const struct { uint64_t v[9 * BNN_GROUP]; } *)w)
            : "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23");
}

/* Two horizontally adjacent output pixels, all output channels, window of 9 words, thresholded:
 * one loop in assembly over the 8-channel halves. Each weight load feeds both pixels (24 vector
 * operations per 4-register load instead of 12). Registers: 18 window words (both pixels),
 * 4 weights (v16-v19), 2 temporaries (v20, v21), 8 accumulators: all 32. Per half: 9 steps,
 * reduction to 8 mismatch counts per pixel, comparison with the 8 thresholds (M < c1), and the
 * masks stored interleaved: 8 bytes pixel A, 8 bytes pixel B. */
#define BNN_PAIR_HALF(w, t, xa, xb, ia, ib, op)                                               \
    "eor " t ".16b, " w ".16b, " xa ".16b\n\teor " w ".16b, " w ".16b, " xb ".16b\n\t"        \
    "cnt " t ".16b, " t ".16b\n\tcnt " w ".16b, " w ".16b\n\t"                                \
    op " " ia ".8h, " t ".16b\n\t" op " " ib ".8h, " w ".16b\n\t"
#define BNN_PAIR_STEP(xa, xb, op)                                                             \
    "ld1 {v16.16b-v19.16b}, [%[wp]], #64\n\t"                                                 \
    BNN_PAIR_HALF("v16", "v20", xa, xb, "v22", "v26", op)                                     \
    BNN_PAIR_HALF("v17", "v21", xa, xb, "v23", "v27", op)                                     \
    BNN_PAIR_HALF("v18", "v20", xa, xb, "v24", "v28", op)                                     \
    BNN_PAIR_HALF("v19", "v21", xa, xb, "v25", "v29", op)

static inline __attribute__((always_inline)) void pair_asm9(const uint8x16_t *xa,
                                                            const uint8x16_t *xb,
                                                            const uint64_t *w,
                                                            const uint16_t *c1, int halves,
                                                            uint8_t *masks)
{
    const uint64_t *wp = w;
    const uint16_t *cp = c1;
    uint8_t *mp = masks;
    uint64_t n = (uint64_t)halves;
    __asm__ volatile(
        "1:\n\t"
        BNN_PAIR_STEP("%[p0]", "%[q0]", "uaddlp") BNN_PAIR_STEP("%[p1]", "%[q1]", "uadalp")
        BNN_PAIR_STEP("%[p2]", "%[q2]", "uadalp") BNN_PAIR_STEP("%[p3]", "%[q3]", "uadalp")
        BNN_PAIR_STEP("%[p4]", "%[q4]", "uadalp") BNN_PAIR_STEP("%[p5]", "%[q5]", "uadalp")
        BNN_PAIR_STEP("%[p6]", "%[q6]", "uadalp") BNN_PAIR_STEP("%[p7]", "%[q7]", "uadalp")
        BNN_PAIR_STEP("%[p8]", "%[q8]", "uadalp")
        "addp v22.8h, v22.8h, v23.8h\n\taddp v24.8h, v24.8h, v25.8h\n\t"
        "addp v26.8h, v26.8h, v27.8h\n\taddp v28.8h, v28.8h, v29.8h\n\t"
        "addp v22.8h, v22.8h, v24.8h\n\taddp v26.8h, v26.8h, v28.8h\n\t"
        "ld1 {v16.8h}, [%[cp]], #16\n\t"
        "cmhi v17.8h, v16.8h, v22.8h\n\tcmhi v18.8h, v16.8h, v26.8h\n\t"
        "xtn v17.8b, v17.8h\n\txtn v18.8b, v18.8h\n\t"
        "st1 {v17.8b}, [%[mp]], #8\n\tst1 {v18.8b}, [%[mp]], #8\n\t"
        "subs %[n], %[n], #1\n\t"
        "b.ne 1b\n\t"
        : [wp] "+r"(wp), [cp] "+r"(cp), [mp] "+r"(mp), [n] "+r"(n)
        : [p0] "w"(xa[0]), [p1] "w"(xa[1]), [p2] "w"(xa[2]), [p3] "w"(xa[3]),
          [p4] "w"(xa[4]), [p5] "w"(xa[5]), [p6] "w"(xa[6]), [p7] "w"(xa[7]), [p8] "w"(xa[8]),
          [q0] "w"(xb[0]), [q1] "w"(xb[1]), [q2] "w"(xb[2]), [q3] "w"(xb[3]),
          [q4] "w"(xb[4]), [q5] "w"(xb[5]), [q6] "w"(xb[6]), [q7] "w"(xb[7]), [q8] "w"(xb[8])
        : "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27",
          "v28", "v29", "cc", "memory");
}

/* 2x2 output pixels at once, 3x3 window of one word (C <= 64), stride 1, thresholded, all
 * output channels in blocks of 64 (groups % 4 == 0). The four windows overlap: a 4x4 patch of
 * input words (v0-v15, each duplicated into both halves) holds all four, so one weight load
 * (8 channels x 1 word, v16-v19) feeds 4 pixels x 4 registers. Per pixel and weight load:
 * 4 eor, 4 cnt, then the byte counts of the 8 channels are summed by a pairwise-add tree
 * (addp, addp, addp: 8 channels x 2 bytes) and widened into one 16-bit accumulator per pixel
 * (uadalp), whose lane i is channel i's mismatch count: no reduction after the window, 12
 * instructions per 8 channels per window word (the arithmetic floor of eor / cnt /
 * accumulate is 3 per 128 bits, i.e. the same 12). Per half (8 channels): the counts are
 * compared with c1 (cmhi), the 4 pixels' masks narrowed to bytes (uzp1), given their bit
 * weights and summed pairwise (addp) with the next half's; after 64 channels one table look-up
 * (tbl) puts each pixel's 8 bytes in channel order, stored as one word per pixel.
 * Registers: window v0-v15, weights v16-v19, accumulators v20-v23, temporaries v24-v26 and
 * v29-v31 (two pixels interleaved), bit weights v27, the first half's partial masks v28. */
/* Two pixels (window words xa, xb; accumulators a, b) of one weight load, interleaved so that
 * in-order cores find independent instructions (temporaries v24-v26 and v29-v31). */
#define BNN_Q_PIX2(xa, xb, a, b, op)                                                          \
    "eor v24.16b, v16.16b, " xa ".16b\n\teor v29.16b, v16.16b, " xb ".16b\n\t"                \
    "eor v25.16b, v17.16b, " xa ".16b\n\teor v30.16b, v17.16b, " xb ".16b\n\t"                \
    "cnt v24.16b, v24.16b\n\tcnt v29.16b, v29.16b\n\t"                                        \
    "cnt v25.16b, v25.16b\n\tcnt v30.16b, v30.16b\n\t"                                        \
    "eor v26.16b, v18.16b, " xa ".16b\n\teor v31.16b, v18.16b, " xb ".16b\n\t"                \
    "addp v24.16b, v24.16b, v25.16b\n\taddp v29.16b, v29.16b, v30.16b\n\t"                    \
    "eor v25.16b, v19.16b, " xa ".16b\n\teor v30.16b, v19.16b, " xb ".16b\n\t"                \
    "cnt v26.16b, v26.16b\n\tcnt v31.16b, v31.16b\n\t"                                        \
    "cnt v25.16b, v25.16b\n\tcnt v30.16b, v30.16b\n\t"                                        \
    "addp v26.16b, v26.16b, v25.16b\n\taddp v31.16b, v31.16b, v30.16b\n\t"                    \
    "addp v24.16b, v24.16b, v26.16b\n\taddp v29.16b, v29.16b, v31.16b\n\t"                    \
    op " " a ".8h, v24.16b\n\t" op " " b ".8h, v29.16b\n\t"
#define BNN_Q_STEP(x0, x1, x2, x3, op)                                                        \
    "ld1 {v16.16b-v19.16b}, [%[wp]], #64\n\t"                                                 \
    BNN_Q_PIX2(x0, x1, "v20", "v21", op) BNN_Q_PIX2(x2, x3, "v22", "v23", op)
/* One half (8 channels) of a block; the window registers of the 9 steps depend on where the
 * 4 columns of the patch sit (block A: columns 0-3 in v0-v3 / v4-v7 / ..., block B: columns 2,
 * 3, 0, 1 of those registers, so that the next block reloads 2 columns, not 4). */
#define BNN_Q_HALF_A                                                                          \
    BNN_Q_STEP("v0", "v1", "v4", "v5", "uaddlp") BNN_Q_STEP("v1", "v2", "v5", "v6", "uadalp")  \
    BNN_Q_STEP("v2", "v3", "v6", "v7", "uadalp") BNN_Q_STEP("v4", "v5", "v8", "v9", "uadalp")  \
    BNN_Q_STEP("v5", "v6", "v9", "v10", "uadalp")                                             \
    BNN_Q_STEP("v6", "v7", "v10", "v11", "uadalp")                                            \
    BNN_Q_STEP("v8", "v9", "v12", "v13", "uadalp")                                            \
    BNN_Q_STEP("v9", "v10", "v13", "v14", "uadalp")                                           \
    BNN_Q_STEP("v10", "v11", "v14", "v15", "uadalp") BNN_Q_MASKS
#define BNN_Q_HALF_B                                                                          \
    BNN_Q_STEP("v2", "v3", "v6", "v7", "uaddlp") BNN_Q_STEP("v3", "v0", "v7", "v4", "uadalp")  \
    BNN_Q_STEP("v0", "v1", "v4", "v5", "uadalp")                                              \
    BNN_Q_STEP("v6", "v7", "v10", "v11", "uadalp")                                            \
    BNN_Q_STEP("v7", "v4", "v11", "v8", "uadalp") BNN_Q_STEP("v4", "v5", "v8", "v9", "uadalp") \
    BNN_Q_STEP("v10", "v11", "v14", "v15", "uadalp")                                          \
    BNN_Q_STEP("v11", "v8", "v15", "v12", "uadalp")                                           \
    BNN_Q_STEP("v8", "v9", "v12", "v13", "uadalp") BNN_Q_MASKS
#define BNN_Q_MASKS                                                                           \
    "ld1 {v24.8h}, [%[cp]], #16\n\t"                                                          \
    "cmhi v20.8h, v24.8h, v20.8h\n\tcmhi v21.8h, v24.8h, v21.8h\n\t"                          \
    "cmhi v22.8h, v24.8h, v22.8h\n\tcmhi v23.8h, v24.8h, v23.8h\n\t"                          \
    "uzp1 v25.16b, v20.16b, v21.16b\n\tuzp1 v26.16b, v22.16b, v23.16b\n\t"                    \
    "and v25.16b, v25.16b, v27.16b\n\tand v26.16b, v26.16b, v27.16b\n\t"
/* All channel blocks of 64 of one 2x2 block of pixels, then the output pointers move on by
 * two pixels (they have moved one word per channel block already). */
#define BNN_Q_BLOCK(HALF)                                                                     \
    "mov %[wp], %[w0]\n\tmov %[cp], %[c0]\n\tmov %[nb], %[nblk]\n\t"                          \
    "1:\n\t"                                                                                  \
    "mov %[n], #4\n\t"                                                                        \
    "2:\n\t"                                                                                  \
    HALF                                                                                      \
    "addp v28.16b, v25.16b, v26.16b\n\t"                                                      \
    HALF                                                                                      \
    "addp v25.16b, v25.16b, v26.16b\n\taddp v25.16b, v28.16b, v25.16b\n\t"                    \
    "st1 {v25.16b}, [%[mp]], #16\n\t"                                                         \
    "subs %[n], %[n], #1\n\t"                                                                 \
    "b.ne 2b\n\t"                                                                             \
    "sub %[mp], %[mp], #64\n\t"                                                               \
    "ld1 {v16.16b-v19.16b}, [%[mp]]\n\t"                                                      \
    "addp v16.16b, v16.16b, v17.16b\n\taddp v17.16b, v18.16b, v19.16b\n\t"                    \
    "ldr q24, [%[k], #16]\n\tldr q25, [%[k], #32]\n\t"                                        \
    "tbl v18.16b, {v16.16b, v17.16b}, v24.16b\n\t"                                            \
    "tbl v19.16b, {v16.16b, v17.16b}, v25.16b\n\t"                                            \
    "st1 {v18.d}[0], [%[o0]], #8\n\tst1 {v18.d}[1], [%[o1]], #8\n\t"                          \
    "st1 {v19.d}[0], [%[o2]], #8\n\tst1 {v19.d}[1], [%[o3]], #8\n\t"                          \
    "subs %[nb], %[nb], #1\n\t"                                                               \
    "b.ne 1b\n\t"                                                                             \
    "add %[o0], %[o0], %[ob]\n\tadd %[o1], %[o1], %[ob]\n\t"                                  \
    "add %[o2], %[o2], %[ob]\n\tadd %[o3], %[o3], %[ob]\n\t"
/* two more columns of the patch (4 rows) into the registers of columns c and c + 1 */
#define BNN_Q_COLS(a0, a1, b0, b1, c0, c1, d0, d1)                                            \
    "ld1r {" a0 ".2d}, [%[r0]], #8\n\tld1r {" a1 ".2d}, [%[r0]], #8\n\t"                      \
    "ld1r {" b0 ".2d}, [%[r1]], #8\n\tld1r {" b1 ".2d}, [%[r1]], #8\n\t"                      \
    "ld1r {" c0 ".2d}, [%[r2]], #8\n\tld1r {" c1 ".2d}, [%[r2]], #8\n\t"                      \
    "ld1r {" d0 ".2d}, [%[r3]], #8\n\tld1r {" d1 ".2d}, [%[r3]], #8\n\t"

/* The 2x2 blocks of output pixels (oy, ox + 2b), (oy + 1, ...) for b < nquads: x is the input
 * word of the first block's window (padded input, row oy, column ox), o0 / o1 / o2 / o3 its
 * pixels' output words; ob = 2 pixels of output in bytes, minus the words already passed. */
static inline void quad_row_asm9(const uint64_t *x, size_t rowbytes, const uint64_t *w,
                                 const uint16_t *c1, uint64_t nblk, uint64_t nquads,
                                 uint64_t *o0, uint64_t *o2, uint64_t ob, uint8_t *buf)
{
    /* bit weight of byte i: 1 << (i % 8); tbl indices: pixel p's byte of half h sits at
     * 4 h + p of the two 16-byte partial-mask registers */
    static const uint8_t consts[48] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128,
                                       0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29,
                                       2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31};
    const uint64_t *r0 = x, *r1, *r2, *r3, *wp;
    const uint16_t *cp;
    uint64_t *o1, *o3;
    uint8_t *mp = buf;
    uint64_t n, nb, pairs = nquads / 2, tail = nquads & 1;
    __asm__ volatile(
        "add %[r1], %[r0], %[rb]\n\tadd %[r2], %[r1], %[rb]\n\tadd %[r3], %[r2], %[rb]\n\t"
        "add %[o1], %[o0], %[ob]\n\tadd %[o3], %[o2], %[ob]\n\t"
        BNN_Q_COLS("v0", "v1", "v4", "v5", "v8", "v9", "v12", "v13")
        BNN_Q_COLS("v2", "v3", "v6", "v7", "v10", "v11", "v14", "v15")
        "ld1 {v27.16b}, [%[k]]\n\t"
        "cbz %[pairs], 4f\n\t"
        "3:\n\t"
        BNN_Q_BLOCK(BNN_Q_HALF_A)
        BNN_Q_COLS("v0", "v1", "v4", "v5", "v8", "v9", "v12", "v13")
        BNN_Q_BLOCK(BNN_Q_HALF_B)
        "subs %[pairs], %[pairs], #1\n\t"
        "b.eq 4f\n\t"
        BNN_Q_COLS("v2", "v3", "v6", "v7", "v10", "v11", "v14", "v15")
        "b 3b\n\t"
        "4:\n\t"
        "cbz %[tail], 5f\n\t"
        "cmp %[nquads], #1\n\t"
        "b.eq 6f\n\t"
        BNN_Q_COLS("v2", "v3", "v6", "v7", "v10", "v11", "v14", "v15")
        "6:\n\t"
        BNN_Q_BLOCK(BNN_Q_HALF_A)
        "5:\n\t"
        /* (read-write operands count twice against GCC's limit of 30: the derived pointers
         * are early-clobbered outputs, set from r0 / o0 / o2 in the assembly) */
        : [r0] "+r"(r0), [r1] "=&r"(r1), [r2] "=&r"(r2), [r3] "=&r"(r3), [wp] "=&r"(wp),
          [cp] "=&r"(cp), [mp] "+r"(mp), [n] "=&r"(n), [nb] "=&r"(nb), [pairs] "+r"(pairs),
          [o0] "+r"(o0), [o1] "=&r"(o1), [o2] "+r"(o2), [o3] "=&r"(o3)
        : [k] "r"(consts), [w0] "r"(w), [c0] "r"(c1), [nblk] "r"(nblk), [tail] "r"(tail),
          [nquads] "r"(nquads), [ob] "r"(ob), [rb] "r"(rowbytes)
        : "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12",
          "v13", "v14", "v15", "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24",
          "v25", "v26", "v27", "v28", "v29", "v30", "v31", "cc", "memory");
}
#endif

/* Mismatch counts of 16 output channels over nw window words. xv[j]: window word j duplicated
 * into both 64-bit halves (registers when the caller's nw is a constant <= 9, else memory);
 * w: [nw][16] words. Returns channels 0-7 in *m0 and 8-15 in *m1. */
static inline __attribute__((always_inline)) void group16(const uint8x16_t *xv,
                                                          const uint64_t *w, int nw,
                                                          uint16x8_t *m0, uint16x8_t *m1)
{
    uint8x16_t wv[8];
    int j, i;
#ifndef BNN_ACC32
    uint16x8_t a[8];
#ifdef BNN_ASM9
    if (nw == 9) {
        group16_asm9(xv, w, a);
        *m0 = pairsum_u16(pairsum_u16(a[0], a[1]), pairsum_u16(a[2], a[3]));
        *m1 = pairsum_u16(pairsum_u16(a[4], a[5]), pairsum_u16(a[6], a[7]));
        return;
    }
#endif
    /* two pointers walk the two 8-channel halves (post-increment addressing) */
    const uint8_t *wp = (const uint8_t *)w, *wq = (const uint8_t *)(w + (size_t)nw * 8);
    load4(wp, wv);
    wp += 64;
    load4(wq, wv + 4);
    wq += 64;
    /* the first word initialises the accumulators (vpaddl), the rest accumulate (vpadal) */
    for (i = 0; i < 8; i++)
        a[i] = vpaddlq_u8(vcntq_u8(veorq_u8(xv[0], wv[i])));
    BNN_UNROLL
    for (j = 1; j < nw; j++) {
        load4(wp, wv);
        wp += 64;
        load4(wq, wv + 4);
        wq += 64;
        for (i = 0; i < 8; i++)
            a[i] = vpadalq_u8(a[i], vcntq_u8(veorq_u8(xv[j], wv[i])));
    }
    *m0 = pairsum_u16(pairsum_u16(a[0], a[1]), pairsum_u16(a[2], a[3]));
    *m1 = pairsum_u16(pairsum_u16(a[4], a[5]), pairsum_u16(a[6], a[7]));
#else
    /* Ablation: 32-bit accumulators (vpaddl to 16 bits, then vpadal into 32 bits). */
    uint32x4_t a[8];
    for (i = 0; i < 8; i++)
        a[i] = vdupq_n_u32(0);
    BNN_UNROLL
    for (j = 0; j < nw; j++) {
        load4((const uint8_t *)(w + (size_t)j * 8), wv);
        load4((const uint8_t *)(w + (size_t)(nw + j) * 8), wv + 4);
        for (i = 0; i < 8; i++)
            a[i] = vpadalq_u16(a[i], vpaddlq_u8(vcntq_u8(veorq_u8(xv[j], wv[i]))));
    }
    /* a[i]: lanes 0-1 hold channel 2i, lanes 2-3 channel 2i+1 */
    *m0 = vcombine_u16(vmovn_u32(pairsum_u32(a[0], a[1])), vmovn_u32(pairsum_u32(a[2], a[3])));
    *m1 = vcombine_u16(vmovn_u32(pairsum_u32(a[4], a[5])), vmovn_u32(pairsum_u32(a[6], a[7])));
#endif
    (void)i;
}

/* Load the kh rows of one window (rw words each), each word duplicated into both halves. */
static inline __attribute__((always_inline)) void load_window(const uint64_t *src,
                                                              size_t row_stride, int kh, int rw,
                                                              uint8x16_t *xv)
{
    int ky, j;
    BNN_UNROLL
    for (ky = 0; ky < kh; ky++)
        for (j = 0; j < rw; j++)
            xv[ky * rw + j] = vreinterpretq_u8_u64(vld1q_dup_u64(src + ky * row_stride + j));
}

/* The same for a window that overlaps the padding: padded positions read the pad pixel, so the
 * input never needs a padded copy. */
static inline __attribute__((always_inline)) void load_window_border(const bnn_bconv *l,
                                                                     const uint64_t *in,
                                                                     int iy0, int ix0, int kh,
                                                                     int rw, uint8x16_t *xv)
{
    const int cw = l->cw, h = l->s.h, w = l->s.w;
    int ky, j;
    BNN_UNROLL
    for (ky = 0; ky < kh; ky++)
        for (j = 0; j < rw; j++) {
            int kx = j / cw, t = j - kx * cw, iy = iy0 + ky, ix = ix0 + kx;
            const uint64_t *p = (iy >= 0 && iy < h && ix >= 0 && ix < w)
                                    ? in + ((size_t)iy * w + ix) * cw + t : l->padpix + t;
            xv[ky * rw + j] = vreinterpretq_u8_u64(vld1q_dup_u64(p));
        }
}

/* Integer modes: 16 channels' values from their mismatch counts. */
static inline __attribute__((always_inline)) void store_ints(const bnn_bconv *l, uint16x8_t m0, uint16x8_t m1, int o0, void *out,
                       size_t pix)
{
    int32_t v[16];
    int i, n = l->s.oc - o0 < 16 ? l->s.oc - o0 : 16;
    uint16x8_t kk = vdupq_n_u16((uint16_t)l->k);
    uint16x8_t p0 = vsubq_u16(kk, m0), p1 = vsubq_u16(kk, m1);
    int32x4_t y[4], lo = vdupq_n_s32(-l->clip), hi = vdupq_n_s32(l->clip);
    int32x4_t kq = vdupq_n_s32(l->k);
    if (l->sat) {
        uint16x8_t cap = vdupq_n_u16((uint16_t)l->sat);
        p0 = vminq_u16(p0, cap);
        p1 = vminq_u16(p1, cap);
    }
    y[0] = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(p0)));
    y[1] = vreinterpretq_s32_u32(vmovl_u16(vget_high_u16(p0)));
    y[2] = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(p1)));
    y[3] = vreinterpretq_s32_u32(vmovl_u16(vget_high_u16(p1)));
    for (i = 0; i < 4; i++) {
        y[i] = vsubq_s32(vshlq_n_s32(y[i], 1), kq);
        if (l->clip)
            y[i] = vminq_s32(vmaxq_s32(y[i], lo), hi);
    }
    if (l->mode == BNN_OUT_INT8) {
        int8x16_t z = vcombine_s8(vmovn_s16(vcombine_s16(vmovn_s32(y[0]), vmovn_s32(y[1]))),
                                  vmovn_s16(vcombine_s16(vmovn_s32(y[2]), vmovn_s32(y[3]))));
        int8_t t[16];
        if (n == 16) {
            vst1q_s8((int8_t *)out + pix * l->s.oc + o0, z);
        } else {
            vst1q_s8(t, z);
            for (i = 0; i < n; i++)
                ((int8_t *)out)[pix * l->s.oc + o0 + i] = t[i];
        }
    } else if (n == 16) {
        for (i = 0; i < 4; i++)
            vst1q_s32((int32_t *)out + pix * l->s.oc + o0 + 4 * i, y[i]);
    } else {
        for (i = 0; i < 4; i++)
            vst1q_s32(v + 4 * i, y[i]);
        for (i = 0; i < n; i++)
            ((int32_t *)out)[pix * l->s.oc + o0 + i] = v[i];
    }
}

/* One output pixel, all output channels. */
static inline __attribute__((always_inline)) void bconv_pixel(const bnn_bconv *l,
                                                              const uint64_t *src, void *out,
                                                              uint8x16_t *xv, int kh, int rw,
                                                              int oy, int ox)
{
    const int nw = kh * rw, cw = l->cw, stride = l->s.stride, pad = l->s.pad;
    const size_t row_stride = (size_t)l->s.w * cw;
    const int groups = l->groups, ocw = l->ocw;
    size_t pix = (size_t)oy * l->wo + ox;
    const uint64_t *w = l->w;
    uint64_t *obits = (uint64_t *)out + pix * ocw;
    uint64_t word = 0;
    int iy0 = oy * stride - pad, ix0 = ox * stride - pad, g;
    if (iy0 >= 0 && ix0 >= 0 && iy0 + kh <= l->s.h && ix0 + l->s.kw <= l->s.w)
        load_window(src + (size_t)iy0 * row_stride + (size_t)ix0 * cw, row_stride, kh, rw, xv);
    else
        load_window_border(l, src, iy0, ix0, kh, rw, xv);
    g = 0;
    if (l->mode == BNN_OUT_BITS) {
        /* 64 channels (four groups) at a time: compare, then one pairwise-add tree packs the
         * 64 masks into one output word */
        for (; g + 4 <= groups; g += 4) {
            uint8x16_t b[4];
            int q;
            for (q = 0; q < 4; q++, w += (size_t)nw * BNN_GROUP) {
                uint16x8x2_t c = load_u16x2(l->c1 + (g + q) * BNN_GROUP);
                uint16x8_t m0, m1;
                group16(xv, w, nw, &m0, &m1);
                b[q] = vcombine_u8(vmovn_u16(vcltq_u16(m0, c.val[0])),
                                   vmovn_u16(vcltq_u16(m1, c.val[1])));
            }
            obits[g >> 2] = masks_to_bits64(b);
        }
    }
    for (; g < groups; g++, w += (size_t)nw * BNN_GROUP) {
        uint16x8_t m0, m1;
        group16(xv, w, nw, &m0, &m1);
        if (l->mode == BNN_OUT_BITS) {
            const uint16_t *c = l->c1 + g * BNN_GROUP;
            uint16x8_t b0 = vcltq_u16(m0, vld1q_u16(c));
            uint16x8_t b1 = vcltq_u16(m1, vld1q_u16(c + 8));
            uint64_t bits = masks_to_bits16(vcombine_u8(vmovn_u16(b0), vmovn_u16(b1)));
            word |= bits << (16 * (g & 3));
        } else {
            store_ints(l, m0, m1, g * BNN_GROUP, out, pix);
        }
    }
    if (l->mode == BNN_OUT_BITS) {
        /* the last partial word, then zero words no group reaches */
        if (groups & 3)
            obits[groups >> 2] = word;
        for (g = (groups + 3) >> 2; g < ocw; g++)
            obits[g] = 0;
    }
}

static inline __attribute__((always_inline)) void bconv_body(const bnn_bconv *l,
                                                             const uint64_t *src, void *out,
                                                             uint8x16_t *xv, int kh, int rw)
{
    int oy, ox;
    for (oy = 0; oy < l->ho; oy++)
        for (ox = 0; ox < l->wo; ox++)
            bconv_pixel(l, src, out, xv, kh, rw, oy, ox);
}

#ifdef BNN_ASM9
/* Interleaved masks of pixel pair (A, B), 8 bytes each per 8-channel half -> packed words. */
static inline void pack_pair_masks(const uint8_t *m, int groups, int ocw, uint64_t *oa,
                                   uint64_t *ob)
{
    int g = 0, q;
    for (; g + 4 <= groups; g += 4, m += 128) {
        uint8x16_t ma[4], mb[4];
        for (q = 0; q < 4; q++) {
            /* 32 bytes = [A half 0, B half 0, A half 1, B half 1] of one 16-channel group */
            uint64x2x2_t v = vld2q_u64((const uint64_t *)(m + 32 * q));
            ma[q] = vreinterpretq_u8_u64(v.val[0]);
            mb[q] = vreinterpretq_u8_u64(v.val[1]);
        }
        oa[g >> 2] = masks_to_bits64(ma);
        ob[g >> 2] = masks_to_bits64(mb);
    }
    if (g < groups) {
        uint64_t wa = 0, wb = 0;
        for (q = 0; g + q < groups; q++, m += 32) {
            uint64x2x2_t v = vld2q_u64((const uint64_t *)m);
            wa |= (uint64_t)masks_to_bits16(vreinterpretq_u8_u64(v.val[0])) << (16 * q);
            wb |= (uint64_t)masks_to_bits16(vreinterpretq_u8_u64(v.val[1])) << (16 * q);
        }
        oa[g >> 2] = wa;
        ob[g >> 2] = wb;
        g += 4;
    }
    for (g >>= 2; g < ocw; g++)
        oa[g] = ob[g] = 0;
}

/* 3x3 window of 9 words, thresholded output: interior pixels in horizontal pairs (pair_asm9),
 * border pixels and an odd last pixel one at a time. */
static void bconv_3x3_pairs(const bnn_bconv *l, const uint64_t *src, void *out, uint8_t *masks)
{
    const int cw = l->cw, stride = l->s.stride, pad = l->s.pad, groups = l->groups;
    const int ocw = l->ocw, kw = l->s.kw;
    const size_t row_stride = (size_t)l->s.w * cw;
    uint8x16_t xa[9], xb[9];
    int oy, ox;
    for (oy = 0; oy < l->ho; oy++) {
        int iy0 = oy * stride - pad;
        int rows_in = iy0 >= 0 && iy0 + 3 <= l->s.h;
        for (ox = 0; ox < l->wo;) {
            int ixa = ox * stride - pad, ixb = ixa + stride;
            if (rows_in && ox + 1 < l->wo && ixa >= 0 && ixb + kw <= l->s.w) {
                const uint64_t *ra = src + (size_t)iy0 * row_stride + (size_t)ixa * cw;
                uint64_t *oa = (uint64_t *)out + ((size_t)oy * l->wo + ox) * ocw;
                load_window(ra, row_stride, 3, 3, xa);
                load_window(ra + (size_t)stride * cw, row_stride, 3, 3, xb);
                pair_asm9(xa, xb, l->w, l->c1, 2 * groups, masks);
                pack_pair_masks(masks, groups, ocw, oa, oa + ocw);
                ox += 2;
            } else {
                bconv_pixel(l, src, out, xa, 3, 3, oy, ox);
                ox++;
            }
        }
    }
}

/* 3x3 window of 1 word, stride 1, thresholded, groups % 4 == 0: 2x2 blocks of output pixels
 * (quad_asm9) on the padded input (one copy per call: no border cases in the blocks); an odd
 * last row or column goes through the single-pixel path on the unpadded input. */
static void bconv_3x3_quads(const bnn_bconv *l, const uint64_t *in, void *out, void *scratch)
{
    const int hp = l->s.h + 2 * l->s.pad, wp = l->s.w + 2 * l->s.pad, ocw = l->ocw;
    const int ho = l->ho, wo = l->wo;
    uint64_t *pbuf = (uint64_t *)bnn__align16(scratch);
    const uint64_t *src = bnn__pad_bits(l, in, pbuf);
    /* 64 bytes of partial masks after the padded copy (bnn_bconv_scratch has room) */
    uint8_t *buf = (uint8_t *)bnn__align16(l->s.pad ? (void *)(pbuf + (size_t)hp * wp)
                                                    : (void *)pbuf);
    uint64_t *o = (uint64_t *)out;
    uint8x16_t xv[9];
    int oy, ox;
    for (oy = 0; oy + 2 <= ho; oy += 2) {
        uint64_t *a = o + (size_t)oy * wo * ocw, *c = a + (size_t)wo * ocw;
        ox = wo & ~1;
        if (ox)
            quad_row_asm9(src + (size_t)oy * wp, (size_t)wp * 8, l->w, l->c1,
                          (uint64_t)(l->groups / 4), (uint64_t)(wo / 2), a, c,
                          (uint64_t)ocw * 8, buf);
        if (ox < wo) {
            bconv_pixel(l, in, out, xv, 3, 3, oy, ox);
            bconv_pixel(l, in, out, xv, 3, 3, oy + 1, ox);
        }
    }
    if (oy < ho)
        for (ox = 0; ox < wo; ox++)
            bconv_pixel(l, in, out, xv, 3, 3, oy, ox);
}
#endif


#if defined(BNN_MCA) && defined(BNN_ASM9)
/* For llvm-mca only: one half (8 channels) of a 2x2 block of the 3x3 kernel with C <= 64: 9 x
 * (one weight load, 4 pixels x 12 instructions), thresholds and mask packing. Straight-line. */
void bnn_mca_quad_half(const uint64_t *w, const uint16_t *c1)
{
    const uint64_t *wp = w;
    const uint16_t *cp = c1;
    __asm__ volatile(BNN_Q_HALF_A "addp v28.16b, v25.16b, v26.16b\n\t"
                     : [wp] "+r"(wp), [cp] "+r"(cp)
                     :
                     : "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11",
                       "v12", "v13", "v14", "v15", "v16", "v17", "v18", "v19", "v20", "v21",
                       "v22", "v23", "v24", "v25", "v26", "v27", "v28", "v29", "v30", "v31",
                       "memory");
}
#endif
/* Bodies with a constant window shape: the compiler unrolls them completely, and a window of
 * up to 9 words stays in registers across all output-channel groups. */
#define BNN_FIXED(KH, RW)                                                                     \
    static void bconv_##KH##x##RW(const bnn_bconv *l, const uint64_t *src, void *out,         \
                                  uint8x16_t *win)                                            \
    {                                                                                         \
        if ((KH) * (RW) <= 9) {                                                               \
            uint8x16_t xv[(KH) * (RW) <= 9 ? (KH) * (RW) : 1];                                \
            bconv_body(l, src, out, xv, KH, RW);                                              \
        } else                                                                                \
            bconv_body(l, src, out, win, KH, RW);                                             \
    }
BNN_FIXED(3, 3)   /* 3x3, C <= 64 */
BNN_FIXED(3, 6)   /* 3x3, C <= 128 */
BNN_FIXED(3, 12)  /* 3x3, C <= 256 */
BNN_FIXED(1, 1)   /* 1x1 or dense, C <= 64 */
BNN_FIXED(1, 2)
BNN_FIXED(1, 4)

void bnn_bconv_neon(const bnn_bconv *l, const uint64_t *in, void *out, void *scratch)
{
    /* no padded copy: border windows read the pad pixel (load_window_border) */
    const uint64_t *src = in;
    int kh = l->s.kh, rw = l->s.kw * l->cw;
    uint8x16_t *win = (uint8x16_t *)bnn__align16(scratch);
    if (kh == 3 && rw == 3) {
#ifdef BNN_ASM9
#ifndef BNN_NO_QUADS
        if (l->mode == BNN_OUT_BITS && l->cw == 1 && l->s.stride == 1 && l->groups % 4 == 0) {
            bconv_3x3_quads(l, src, out, scratch);
            return;
        }
#endif
        if (l->mode == BNN_OUT_BITS) {
            bconv_3x3_pairs(l, src, out, (uint8_t *)win);
            return;
        }
#endif
        bconv_3x3(l, src, out, win);
    }
    else if (kh == 3 && rw == 6)
        bconv_3x6(l, src, out, win);
    else if (kh == 3 && rw == 12)
        bconv_3x12(l, src, out, win);
    else if (kh == 1 && rw == 1)
        bconv_1x1(l, src, out, win);
    else if (kh == 1 && rw == 2)
        bconv_1x2(l, src, out, win);
    else if (kh == 1 && rw == 4)
        bconv_1x4(l, src, out, win);
    else {
        /* any other window: the same body with loops */
        bconv_body(l, src, out, win, kh, rw);
    }
}

#ifdef BNN_MCA
/* For llvm-mca only: the inner block of a 3x3 layer with C = 64 (window of 9 words): one output
 * pixel, one group of 16 output channels: window, 9 x (2 loads, 8 veor, 8 vcnt, 8 vpadal),
 * reduction, thresholds, 16 packed bits. Straight-line code (llvm-mca ignores branches). */
uint32_t bnn_mca_group16(const uint64_t *row0, const uint64_t *row1, const uint64_t *row2,
                         const uint64_t *w, const uint16_t *c1)
{
    uint8x16_t xv[9];
    uint16x8x2_t c = load_u16x2(c1);
    uint16x8_t m0, m1;
    int q;
    for (q = 0; q < 3; q++) {
        xv[q] = vreinterpretq_u8_u64(vld1q_dup_u64(row0 + q));
        xv[3 + q] = vreinterpretq_u8_u64(vld1q_dup_u64(row1 + q));
        xv[6 + q] = vreinterpretq_u8_u64(vld1q_dup_u64(row2 + q));
    }
    group16(xv, w, 9, &m0, &m1);
    return masks_to_bits16(vcombine_u8(vmovn_u16(vcltq_u16(m0, c.val[0])),
                                       vmovn_u16(vcltq_u16(m1, c.val[1]))));
}

#ifdef BNN_MCA_NW
/* The same block for any binary layer (per-layer estimates of benchmarks/fw_bench.py): one
 * output pixel x 16 output channels of a window of BNN_MCA_NW words, compiled with the size as a
 * constant. BNN_MCA_REGS=1: the window is loaded into registers in the block (the fixed-shape
 * bodies with <= 9 words); 0: it is read from the window buffer, as bconv_body does. */
uint32_t bnn_mca_layer16(const uint64_t *src, const uint8x16_t *win, const uint64_t *w,
                         const uint16_t *c1)
{
    uint8x16_t xv[BNN_MCA_NW <= 9 ? BNN_MCA_NW : 1];
    const uint8x16_t *x = win;
    uint16x8x2_t c = load_u16x2(c1);
    uint16x8_t m0, m1;
    int j;
    if (BNN_MCA_REGS && BNN_MCA_NW <= 9) {
        for (j = 0; j < (BNN_MCA_NW <= 9 ? BNN_MCA_NW : 1); j++)
            xv[j] = vreinterpretq_u8_u64(vld1q_dup_u64(src + j));
        x = xv;
    }
    group16(x, w, BNN_MCA_NW, &m0, &m1);
    return masks_to_bits16(vcombine_u8(vmovn_u16(vcltq_u16(m0, c.val[0])),
                                       vmovn_u16(vcltq_u16(m1, c.val[1]))));
}
#endif
#endif

/* 64 channels of a multi-bit convolution with k <= 255 (int16 partial sums never overflow),
 * thresholded into one word; straight-line code with named accumulators. */
static uint64_t mb_bits64(const bnn_mbconv *l, const int8_t *win, int o0)
{
    const int k = l->k, ocp = l->ocp;
    const int8_t *wp = l->wt + o0;
    int16x8_t a0 = vdupq_n_s16(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
              a7 = a0;
    uint8x16_t b[4];
    int kk, g;
    for (kk = 0; kk < k; kk++, wp += ocp) {
        int8x16_t w0 = vld1q_s8(wp), w1 = vld1q_s8(wp + 16);
        int8x16_t w2 = vld1q_s8(wp + 32), w3 = vld1q_s8(wp + 48);
#if BNN_A64
        /* smlal / smlal2 on the low and high halves: no extraction of the high half */
        int8x16_t qq = vld1q_dup_s8(win + kk);
        int8x8_t qv = vget_low_s8(qq);
        a1 = vmlal_high_s8(a1, qq, w0);
        a3 = vmlal_high_s8(a3, qq, w1);
        a5 = vmlal_high_s8(a5, qq, w2);
        a7 = vmlal_high_s8(a7, qq, w3);
#else
        int8x8_t qv = vld1_dup_s8(win + kk);
        a1 = vmlal_s8(a1, qv, vget_high_s8(w0));
        a3 = vmlal_s8(a3, qv, vget_high_s8(w1));
        a5 = vmlal_s8(a5, qv, vget_high_s8(w2));
        a7 = vmlal_s8(a7, qv, vget_high_s8(w3));
#endif
        a0 = vmlal_s8(a0, qv, vget_low_s8(w0));
        a2 = vmlal_s8(a2, qv, vget_low_s8(w1));
        a4 = vmlal_s8(a4, qv, vget_low_s8(w2));
        a6 = vmlal_s8(a6, qv, vget_low_s8(w3));
    }
    {
        int16x8_t a[8];
        a[0] = a0; a[1] = a1; a[2] = a2; a[3] = a3; a[4] = a4; a[5] = a5; a[6] = a6; a[7] = a7;
        for (g = 0; g < 4; g++) {
            const int32_t *t = l->t + o0 + 16 * g;
            uint32x4_t m0 = vcgeq_s32(vmovl_s16(vget_low_s16(a[2 * g])), vld1q_s32(t));
            uint32x4_t m1 = vcgeq_s32(vmovl_s16(vget_high_s16(a[2 * g])), vld1q_s32(t + 4));
            uint32x4_t m2 = vcgeq_s32(vmovl_s16(vget_low_s16(a[2 * g + 1])), vld1q_s32(t + 8));
            uint32x4_t m3 = vcgeq_s32(vmovl_s16(vget_high_s16(a[2 * g + 1])), vld1q_s32(t + 12));
            b[g] = vcombine_u8(vmovn_u16(vcombine_u16(vmovn_u32(m0), vmovn_u32(m1))),
                               vmovn_u16(vcombine_u16(vmovn_u32(m2), vmovn_u32(m3))));
        }
    }
    {
        uint64_t bits = masks_to_bits64(b);
        /* padding channels (o >= oc) have zero weights and threshold 0: mask them */
        if (o0 + 64 > l->s.oc)
            bits &= ((uint64_t)1 << (l->s.oc - o0)) - 1;
        return bits;
    }
}

#if defined(BNN_MCA) && defined(BNN_MCA_K)
/* llvm-mca block of a multi-bit first layer: one output pixel x 64 output channels of fan-in
 * BNN_MCA_K (<= 255), the code the kernel runs (mb_bits64), compiled with k as a constant. */
uint64_t bnn_mca_mb64(const int8_t *win, const int8_t *wt, const int32_t *t)
{
    bnn_mbconv l;
    memset(&l, 0, sizeof l);
    l.k = BNN_MCA_K;
    l.ocp = 64;
    l.s.oc = 64;
    l.wt = (int8_t *)wt;
    l.t = (int32_t *)t;
    return mb_bits64(&l, win, 0);
}
#endif

void bnn_mbconv_neon(const bnn_mbconv *l, const int8_t *in, void *out, void *scratch)
{
    /* Output channels in the vector lanes: per window code q_k, y[o] += q_k * w[k][o] for 64
     * channels at once (vmlal_s8 into int16 lanes; |q w| <= 128, so int16 holds 255 steps,
     * after which the partial sums are widened into int32). */
    const int c = l->s.c, rw = l->s.kw * c, kh = l->s.kh, stride = l->s.stride;
    const int k = l->k, ocp = l->ocp, pad = l->s.pad;
    int8_t *win = (int8_t *)bnn__align16(scratch);
    int oy, ox, o0, ky, j;
    for (oy = 0; oy < l->ho; oy++)
        for (ox = 0; ox < l->wo; ox++) {
            size_t pix = (size_t)oy * l->wo + ox;
            uint64_t *obits = (uint64_t *)out + pix * l->ocw;
            int iy0 = oy * stride - pad, ix0 = ox * stride - pad;
            /* the window, [ky][kx][c], padded positions = the pad code */
            for (ky = 0; ky < kh; ky++) {
                int iy = iy0 + ky;
                int8_t *dst = win + ky * rw;
                if (iy >= 0 && iy < l->s.h && ix0 >= 0 && ix0 + l->s.kw <= l->s.w) {
                    const int8_t *row = in + ((size_t)iy * l->s.w + ix0) * c;
                    for (j = 0; j < rw; j++)
                        dst[j] = row[j];
                } else {
                    for (j = 0; j < rw; j++) {
                        int ix = ix0 + j / c;
                        dst[j] = (iy >= 0 && iy < l->s.h && ix >= 0 && ix < l->s.w)
                                     ? in[((size_t)iy * l->s.w + ix) * c + j % c]
                                     : (int8_t)l->s.pad_value;
                    }
                }
            }
            if (l->mode == BNN_OUT_BITS)
                for (j = 0; j < l->ocw; j++)
                    obits[j] = 0;
            o0 = 0;
            if (l->mode == BNN_OUT_BITS && k <= 255)
                for (; o0 + 64 <= ocp; o0 += 64)
                    obits[o0 >> 6] = mb_bits64(l, win, o0);
            for (; o0 < ocp; o0 += 64) {
                /* up to 64 channels per pass: the code q_k is loaded once for all of them */
                const int ng = (ocp - o0) / 16 < 4 ? (ocp - o0) / 16 : 4;
                int32x4_t y[16];
                int kk, q, g, y_zero = 1;
                if (k > 255)
                    for (q = 0; q < 16; q++)
                        y[q] = vdupq_n_s32(0);
                for (kk = 0; kk < k;) {
                    /* (for k <= 255, the common case, this loop runs once: y is only
                     * written after the k loop, so it does not compete for registers) */
                    int16x8_t a[8];
                    int end = kk + 255 < k ? kk + 255 : k;
                    const int8_t *wp = l->wt + (size_t)kk * ocp + o0;
                    for (q = 0; q < 8; q++)
                        a[q] = vdupq_n_s16(0);
                    if (ng == 4) {
                        for (; kk < end; kk++, wp += ocp) {
                            int8x8_t qv = vld1_dup_s8(win + kk);
                            int8x16_t w0 = vld1q_s8(wp), w1 = vld1q_s8(wp + 16);
                            int8x16_t w2 = vld1q_s8(wp + 32), w3 = vld1q_s8(wp + 48);
                            a[0] = vmlal_s8(a[0], qv, vget_low_s8(w0));
                            a[1] = vmlal_s8(a[1], qv, vget_high_s8(w0));
                            a[2] = vmlal_s8(a[2], qv, vget_low_s8(w1));
                            a[3] = vmlal_s8(a[3], qv, vget_high_s8(w1));
                            a[4] = vmlal_s8(a[4], qv, vget_low_s8(w2));
                            a[5] = vmlal_s8(a[5], qv, vget_high_s8(w2));
                            a[6] = vmlal_s8(a[6], qv, vget_low_s8(w3));
                            a[7] = vmlal_s8(a[7], qv, vget_high_s8(w3));
                        }
                    } else {
                        for (; kk < end; kk++, wp += ocp) {
                            int8x8_t qv = vld1_dup_s8(win + kk);
                            for (g = 0; g < ng; g++) {
                                int8x16_t wv = vld1q_s8(wp + 16 * g);
                                a[2 * g] = vmlal_s8(a[2 * g], qv, vget_low_s8(wv));
                                a[2 * g + 1] = vmlal_s8(a[2 * g + 1], qv, vget_high_s8(wv));
                            }
                        }
                    }
                    if (kk == end && end == k && y_zero) {
                        for (q = 0; q < 2 * ng; q++) {
                            y[2 * q] = vmovl_s16(vget_low_s16(a[q]));
                            y[2 * q + 1] = vmovl_s16(vget_high_s16(a[q]));
                        }
                    } else {
                        for (q = 0; q < 2 * ng; q++) {
                            y[2 * q] = vaddw_s16(y[2 * q], vget_low_s16(a[q]));
                            y[2 * q + 1] = vaddw_s16(y[2 * q + 1], vget_high_s16(a[q]));
                        }
                    }
                    y_zero = 0;
                }
                for (g = 0; g < ng; g++) {
                    int og = o0 + 16 * g;
                    const int32x4_t *yg = y + 4 * g;
                    if (l->mode == BNN_OUT_BITS) {
                        uint32x4_t m[4];
                        uint64_t bits;
                        for (q = 0; q < 4; q++)
                            m[q] = vcgeq_s32(yg[q], vld1q_s32(l->t + og + 4 * q));
                        bits = masks_to_bits16(vcombine_u8(
                            vmovn_u16(vcombine_u16(vmovn_u32(m[0]), vmovn_u32(m[1]))),
                            vmovn_u16(vcombine_u16(vmovn_u32(m[2]), vmovn_u32(m[3])))));
                        /* padding channels (o >= oc) have zero weights and threshold 0 */
                        if (og + 16 > l->s.oc)
                            bits &= ((uint64_t)1 << (l->s.oc - og)) - 1;
                        obits[og >> 6] |= bits << (og & 63);
                    } else {
                        int32_t v[16];
                        int n = l->s.oc - og < 16 ? l->s.oc - og : 16;
                        for (q = 0; q < 4; q++)
                            vst1q_s32(v + 4 * q, yg[q]);
                        for (q = 0; q < n; q++)
                            ((int32_t *)out)[pix * l->s.oc + og + q] = v[q];
                    }
                }
            }
        }
}

void bnn_maxpool_neon(const uint64_t *in, int h, int w, int c, int k, int s, uint64_t *out)
{
    int cw = bnn_words_for(c), ho = (h - k) / s + 1, wo = (w - k) / s + 1;
    int oy, ox, dy, dx, j;
    for (oy = 0; oy < ho; oy++)
        for (ox = 0; ox < wo; ox++) {
            uint64_t *dst = out + ((size_t)oy * wo + ox) * cw;
            for (j = 0; j + 2 <= cw; j += 2) {
                uint64x2_t v = vdupq_n_u64(0);
                for (dy = 0; dy < k; dy++)
                    for (dx = 0; dx < k; dx++)
                        v = vorrq_u64(v, vld1q_u64(in + ((size_t)(oy * s + dy) * w + ox * s + dx)
                                                       * cw + j));
                vst1q_u64(dst + j, v);
            }
            if (j < cw) {
                uint64x1_t v = vdup_n_u64(0);
                for (dy = 0; dy < k; dy++)
                    for (dx = 0; dx < k; dx++)
                        v = vorr_u64(v, vld1_u64(in + ((size_t)(oy * s + dy) * w + ox * s + dx)
                                                     * cw + j));
                vst1_u64(dst + j, v);
            }
        }
}

void bnn_quant_pack_neon(const uint8_t *chw, int c, int h, int w, int thr, int flat,
                         uint64_t *out)
{
    int n = h * w, i = 0, nwords = bnn_words_for(n);
    uint8x16_t t;
    if (c != 1 || !flat || thr < 1 || thr > 255) {
        /* Channel transposition or a constant quantizer: the scalar twin does it. */
        bnn_quant_pack_scalar(chw, c, h, w, thr, flat, out);
        return;
    }
    t = vdupq_n_u8((uint8_t)thr);
    for (i = 0; i < nwords; i++)
        out[i] = 0;
    for (i = 0; i + 16 <= n; i += 16) {
        uint64_t bits = masks_to_bits16(vcgeq_u8(vld1q_u8(chw + i), t));
        out[i >> 6] |= bits << (i & 63);
    }
    for (; i < n; i++)
        if (chw[i] >= thr)
            out[i >> 6] |= (uint64_t)1 << (i & 63);
}

void bnn_pack_feature_map_neon(const uint8_t *hwc, int h, int w, int c, uint64_t *out)
{
    int cw = bnn_words_for(c), p, i;
    const uint8x16_t zero = vdupq_n_u8(0);
    if (c % 16) {
        bnn_pack_feature_map(hwc, h, w, c, out);
        return;
    }
    for (p = 0; p < h * w; p++) {
        const uint8_t *src = hwc + (size_t)p * c;
        uint64_t *dst = out + (size_t)p * cw, word = 0;
        for (i = 0; i < c; i += 16) {
            /* nonzero byte = +1 = bit 1 */
            uint64_t bits = masks_to_bits16(vcgtq_u8(vld1q_u8(src + i), zero));
            word |= bits << (i & 63);
            if ((i & 63) == 48) {
                dst[i >> 6] = word;
                word = 0;
            }
        }
        if (c & 63)
            dst[c >> 6] = word;
    }
}

#ifdef BNN_ABLATION
/* Ablation (paper 1): batch norm in floating point after an int32 output, instead of the folded
 * integer threshold. bit = (scale[o] * y + bias[o] >= 0), packed like the BITS mode. */
void bnn_bn_float_pack_neon(const int32_t *y, int npix, int oc, const float *scale,
                            const float *bias, uint64_t *out)
{
    int p, o, ocw = bnn_words_for(oc);
    for (p = 0; p < npix; p++) {
        const int32_t *yp = y + (size_t)p * oc;
        uint64_t *dst = out + (size_t)p * ocw, word = 0;
        for (o = 0; o + 16 <= oc; o += 16) {
            uint32x4_t m[4];
            int q;
            for (q = 0; q < 4; q++) {
                float32x4_t v = vcvtq_f32_s32(vld1q_s32(yp + o + 4 * q));
                v = vmlaq_f32(vld1q_f32(bias + o + 4 * q), v, vld1q_f32(scale + o + 4 * q));
                m[q] = vcgeq_f32(v, vdupq_n_f32(0.0f));
            }
            {
                uint16x8_t a = vcombine_u16(vmovn_u32(m[0]), vmovn_u32(m[1]));
                uint16x8_t b = vcombine_u16(vmovn_u32(m[2]), vmovn_u32(m[3]));
                uint64_t bits = masks_to_bits16(vcombine_u8(vmovn_u16(a), vmovn_u16(b)));
                word |= bits << (o & 63);
            }
            if ((o & 63) == 48) {
                dst[o >> 6] = word;
                word = 0;
            }
        }
        for (; o < oc; o++)
            if (scale[o] * (float)yp[o] + bias[o] >= 0.0f)
                word |= (uint64_t)1 << (o & 63);
        if (oc & 63)
            dst[oc >> 6] = word;
    }
}
#endif

#endif /* BNN_HAVE_NEON */
