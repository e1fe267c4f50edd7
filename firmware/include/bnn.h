/* bnnhw firmware: binary neural network kernels in C99 (scalar) and ARM NEON.
 *
 * Bit convention (SPEC section 1, bnnhw/model/packing.py): a binary value +1 is bit 1, -1 is
 * bit 0; element i of a vector is bit i (LSB first) of little-endian 64-bit words; feature maps
 * are HWC with the channels of one pixel innermost, each pixel padded to whole 64-bit words with
 * 0 bits. Every kernel keeps these padding bits 0 (inputs, weights and outputs), so the number
 * of mismatches popcount(x XOR w) counts real positions only.
 *
 * Arithmetic (SPEC sections 2-8): a binary layer of fan-in K counts mismatches M; the popcount
 * is P = K - M and the signed dot product y = 2P - K. There is no floating point anywhere:
 * batch norm reaches the firmware already folded into an integer threshold T and a polarity.
 *
 * Every kernel exists as a portable scalar twin (suffix _scalar, plain C99), a NEON version
 * (suffix _neon, only when BNN_HAVE_NEON is defined: AArch64, ARMv7 with -mfpu=neon, or x86
 * through SIMDe) and, on x86-64, AVX2 and AVX-512 versions (BNN_HAVE_X86; suffixes _avx2,
 * _avx512bw, _avx512vp) compiled with per-file target pragmas, so one binary runs on any x86-64
 * and picks them at run time (CPUID). All read the same prepared data, so one prepared layer runs
 * on every path; bnn_kernel_choose() and the bnn_*_run() functions select among them.
 */
#ifndef BNN_H
#define BNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* x86-64 SIMD kernels: compiled in on x86-64 with GCC or Clang unless BNN_NO_X86 (the IMPL=scalar
 * build) is defined. Their files carry their own target pragmas; nothing else is compiled for
 * more than the baseline x86-64, so the binary runs on any x86-64 CPU. */
#if (defined(__x86_64__) || defined(__amd64__)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(BNN_NO_X86)
#define BNN_HAVE_X86 1
#endif

/* Output channels are computed in groups of this many (the NEON kernel's register block). */
#define BNN_GROUP 16

/* Largest fan-in K: mismatch counts and the threshold bound K + 1 live in 16-bit lanes. */
#define BNN_MAX_K 65534

/* What a binary or multi-bit convolution writes. */
enum bnn_out_mode {
    BNN_OUT_BITS = 0,  /* thresholded (folded batch norm), packed HWC bits */
    BNN_OUT_INT8 = 1,  /* clipping block: z = clip(y, -L, L) as int8, HWC (L <= 127) */
    BNN_OUT_INT32 = 2  /* y (after any accumulator saturation), optionally clipped, int32 HWC */
};

/* Shape of a convolution; a dense layer is a 1x1 convolution on a 1x1 map with c = K. */
typedef struct {
    int c, h, w;                 /* input channels and size */
    int oc;                      /* output channels */
    int kh, kw, stride, pad;     /* kernel, stride, explicit padding */
    int pad_value;               /* binary: +1 / -1; multi-bit: the code of padded pixels */
} bnn_conv_shape;

/* A binary convolution with its weights rearranged for the kernels (bnn_bconv_prepare). */
typedef struct {
    bnn_conv_shape s;
    int ho, wo;                  /* output size */
    int cw;                      /* 64-bit words per input pixel */
    int ocw;                     /* 64-bit words per output pixel (BNN_OUT_BITS) */
    int nw;                      /* words in one window: kh * kw * cw */
    int k;                       /* fan-in kh * kw * c */
    int groups;                  /* ceil(oc / BNN_GROUP) */
    int mode;                    /* enum bnn_out_mode */
    int sat;                     /* popcount cap 2^A - 1 when the accumulator saturates, else 0 */
    int clip;                    /* clip limit L for INT8 / INT32 (0: no clip in INT32) */
    uint64_t *w;                 /* [groups][2][nw][8] words, negated for neg channels */
    uint16_t *c1;                /* [groups * BNN_GROUP]: bit = (mismatches < c1), BITS mode */
    uint64_t *padpix;            /* [cw]: the words of one padded pixel */
} bnn_bconv;

/* A multi-bit-input convolution (first layer: signed codes x +-1 weights). */
typedef struct {
    bnn_conv_shape s;
    int ho, wo, ocw;
    int k, kp;                   /* fan-in and its padded length (multiple of 16) */
    int mode;                    /* BNN_OUT_BITS or BNN_OUT_INT32 */
    int8_t *w;                   /* [oc][kp] weights +-1 (0 beyond k), negated for neg channels */
    int32_t *t;                  /* [ocp]: bit = (y' >= t) with y' the (negated) sum */
    int ocp;                     /* oc rounded up to 16 */
    int8_t *wt;                  /* [k][ocp]: the same weights transposed (0 for padding) */
    int rw4;                     /* ceil(kw * c / 4): 4-code steps per window row */
    int8_t *w4;                  /* [kh][rw4][ocp][4]: four consecutive weights of a window row
                                  * for each channel side by side, 0 past the row's end (x86
                                  * kernels: u8 x s8 pair products on 4 codes of a row) */
    int32_t *wofs;               /* [ocp]: 128 * sum_k w[o][k]; with u8 codes q + 128 the sum of
                                  * products is y + wofs */
} bnn_mbconv;

/* ---- packing (bnn_pack.c) -------------------------------------------------------------- */
int bnn_words_for(int n);   /* 64-bit words that hold n bits */
/* bits: [n] bytes of 0/1 (nonzero = 1) -> packed words (padding bits 0) */
void bnn_pack_bits(const uint8_t *bits, int n, uint64_t *out);
/* [h][w][c] bytes of 0/1 -> [h][w][words_for(c)] packed words */
void bnn_pack_feature_map(const uint8_t *hwc, int h, int w, int c, uint64_t *out);
/* the inverse: packed [h][w][words_for(c)] -> [h][w][c] bytes 0/1 */
void bnn_unpack_feature_map(const uint64_t *in, int h, int w, int c, uint8_t *hwc);
/* weights +-1, [oc][c][kh][kw] (PyTorch / bnnhw order) -> [oc][kh][kw][words_for(c)] words */
void bnn_pack_conv_weights(const int8_t *w_oihw, int oc, int c, int kh, int kw, uint64_t *out);
/* dense weights +-1, [oc][k] -> [oc][words_for(k)] words */
void bnn_pack_dense_weights(const int8_t *w, int oc, int k, uint64_t *out);
/* a packed HWC map with padded pixels -> one contiguous bit vector (HWC flatten, for dense) */
void bnn_flatten_bits(const uint64_t *in, int h, int w, int c, uint64_t *out);
/* raw bytes, channels first [c][h][w], through a 256-entry lookup table -> HWC bytes */
void bnn_chw_to_hwc_lut(const uint8_t *chw, int c, int h, int w, const int8_t *lut,
                        int8_t *hwc);

/* ---- preparation (bnn_prep.c): weights and thresholds rearranged once ----------------------
 * bnn_bconv_size / bnn_mbconv_size give the bytes of one prepared layer; the caller supplies
 * the memory (static or malloc'ed), 16-byte aligned. The prepare functions return 0, or -1
 * (with a message in bnn_last_error()) on an invalid shape or parameter. */
size_t bnn_bconv_size(const bnn_conv_shape *s);
/* w: canonical packed weights [oc][kh][kw][words_for(c)] (bnn_pack_conv_weights);
 * thr, neg: per output channel (BITS mode; may be NULL otherwise);
 * sat: popcount cap (0 = none); clip: L for INT8 / INT32 modes. */
int bnn_bconv_prepare(const bnn_conv_shape *s, const uint64_t *w, const int32_t *thr,
                      const uint8_t *neg, int mode, int sat, int clip, void *mem);
size_t bnn_mbconv_size(const bnn_conv_shape *s);
/* w: weights +-1 [oc][c][kh][kw]; BITS mode: fire iff y >= thr (neg 0) or y <= thr (neg 1) */
int bnn_mbconv_prepare(const bnn_conv_shape *s, const int8_t *w, const int32_t *thr,
                       const uint8_t *neg, int mode, void *mem);
const char *bnn_last_error(void);
void bnn_set_error(const char *fmt, ...);

/* Scratch bytes a binary convolution needs (the padded input copy). */
size_t bnn_bconv_scratch(const bnn_bconv *l);
size_t bnn_mbconv_scratch(const bnn_mbconv *l);

/* ---- kernels -------------------------------------------------------------------------------
 * bconv: in = packed HWC [h][w][cw]; out = packed [ho][wo][ocw] (BITS), int8 [ho][wo][oc]
 * (INT8) or int32 [ho][wo][oc] (INT32). mbconv: in = codes HWC [h][w][c] int8.
 * pool: OR max-pool of packed bits [h][w][cw] -> [ho][wo][cw] with ho = (h - k) / s + 1.
 * quant_pack: raw bytes [c][h][w] -> bit = (p >= thr), packed; flat != 0 packs the whole HWC
 * image as one vector (for a dense first layer), else per pixel. */
void bnn_bconv_scalar(const bnn_bconv *l, const uint64_t *in, void *out, void *scratch);
void bnn_mbconv_scalar(const bnn_mbconv *l, const int8_t *in, void *out, void *scratch);
void bnn_maxpool_scalar(const uint64_t *in, int h, int w, int c, int k, int s, uint64_t *out);
void bnn_quant_pack_scalar(const uint8_t *chw, int c, int h, int w, int thr, int flat,
                           uint64_t *out);
#ifdef BNN_HAVE_NEON
void bnn_bconv_neon(const bnn_bconv *l, const uint64_t *in, void *out, void *scratch);
void bnn_mbconv_neon(const bnn_mbconv *l, const int8_t *in, void *out, void *scratch);
void bnn_maxpool_neon(const uint64_t *in, int h, int w, int c, int k, int s, uint64_t *out);
void bnn_quant_pack_neon(const uint8_t *chw, int c, int h, int w, int thr, int flat,
                         uint64_t *out);
/* bnn_pack_feature_map with NEON (16 channels per step; other channel counts: scalar) */
void bnn_pack_feature_map_neon(const uint8_t *hwc, int h, int w, int c, uint64_t *out);
#ifdef BNN_ABLATION
void bnn_bn_float_pack_neon(const int32_t *y, int npix, int oc, const float *scale,
                            const float *bias, uint64_t *out);
#endif
#endif

#ifdef BNN_HAVE_X86
/* AVX2 (+ POPCNT); AVX-512 F/BW/VL with the nibble-table popcount (_avx512bw) or VPOPCNTQ
 * (_avx512vp, AVX512_VPOPCNTDQ). The multi-bit layer has one AVX-512 version (BW: no popcount).
 * Call them only when bnn_kernel_supported() says the CPU has the instructions. */
void bnn_bconv_avx2(const bnn_bconv *l, const uint64_t *in, void *out, void *scratch);
void bnn_bconv_avx512bw(const bnn_bconv *l, const uint64_t *in, void *out, void *scratch);
void bnn_bconv_avx512vp(const bnn_bconv *l, const uint64_t *in, void *out, void *scratch);
void bnn_mbconv_avx2(const bnn_mbconv *l, const int8_t *in, void *out, void *scratch);
void bnn_mbconv_avx512(const bnn_mbconv *l, const int8_t *in, void *out, void *scratch);
void bnn_quant_pack_avx2(const uint8_t *chw, int c, int h, int w, int thr, int flat,
                         uint64_t *out);
void bnn_pack_feature_map_avx2(const uint8_t *hwc, int h, int w, int c, uint64_t *out);
#endif

/* ---- kernel selection (bnn_dispatch.c) -------------------------------------------------------
 * A kernel path is one of these; the _run functions call that path's version of each kernel
 * (max-pooling, quantising and packing use the scalar twin where a path has no version of its
 * own: they are a negligible part of a network's time). */
enum bnn_kernel {
    BNN_K_SCALAR = 0,        /* portable scalar twin (always there) */
    BNN_K_NEON = 1,          /* NEON (ARM, or x86 through SIMDe: for tests, slower than scalar) */
    BNN_K_AVX2 = 2,          /* x86-64 AVX2 + POPCNT */
    BNN_K_AVX512BW = 3,      /* x86-64 AVX-512 F/BW/VL, nibble-table popcount */
    BNN_K_AVX512VP = 4,      /* x86-64 AVX-512 F/BW/VL + VPOPCNTDQ */
    BNN_K_COUNT = 5
};
/* "scalar", "neon", "avx2", "avx512bw", "avx512vpopcnt" (NULL for an unknown id) */
const char *bnn_kernel_name(int kernel);
/* 1 when this build holds the path and this CPU (and OS) can run it */
int bnn_kernel_supported(int kernel);
/* the fastest supported path: AVX-512 VPOPCNTDQ > AVX-512 BW > AVX2 > NEON on ARM > scalar
 * (> NEON through SIMDe, which is slower than the scalar twin) */
int bnn_kernel_best(void);
/* The path for a name ("auto" or NULL/"" = BNNHW_KERNEL from the environment when set, else
 * the best); -1 with bnn_last_error() for an unknown name or an unsupported path. */
int bnn_kernel_choose(const char *name);
/* Supported paths, best first, separated by spaces (a static string). */
const char *bnn_kernel_list(void);

void bnn_bconv_run(int kernel, const bnn_bconv *l, const uint64_t *in, void *out, void *scratch);
void bnn_mbconv_run(int kernel, const bnn_mbconv *l, const int8_t *in, void *out, void *scratch);
void bnn_maxpool_run(int kernel, const uint64_t *in, int h, int w, int c, int k, int s,
                     uint64_t *out);
void bnn_quant_pack_run(int kernel, const uint8_t *chw, int c, int h, int w, int thr, int flat,
                        uint64_t *out);
void bnn_pack_feature_map_run(int kernel, const uint8_t *hwc, int h, int w, int c,
                              uint64_t *out);

/* ---- output layer (SPEC section 8) --------------------------------------------------------- */
enum bnn_rule { BNN_RULE_POPCOUNT = 0, BNN_RULE_CLIPPED = 1, BNN_RULE_MARGIN = 2 };
/* y: the last layer's int32 outputs (already saturated and, for CLIPPED / a clip before the
 * threshold, clipped); k: its fan-in. MARGIN uses thr / neg of the last threshold. */
void bnn_scores(int rule, int n, const int32_t *y, int k, const int64_t *thr,
                const uint8_t *neg, int64_t *out);

#ifdef __cplusplus
}
#endif
#endif
