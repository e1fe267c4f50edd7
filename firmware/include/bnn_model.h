/* The layer table of a whole network, as written by bnnhw.gen.firmware into
 * generated/bnn_model_data.h, and the runner's check and forward pass (bnn_model.c). */
#ifndef BNN_MODEL_H
#define BNN_MODEL_H

#include "bnn.h"

#define BNN_MODEL_MAGIC 0x4d4e4e42u /* "BNNM" */
#define BNN_MODEL_VERSION 1

enum bnn_layer_kind { BNN_L_MBCONV = 1, BNN_L_BCONV = 2, BNN_L_BDENSE = 3 };
enum bnn_quant_kind { BNN_Q_THRESHOLD = 0, BNN_Q_CODES = 1 };

/* One compute layer with what follows it (threshold or int32 output, pool). */
typedef struct {
    const char *name;
    int kind;                     /* enum bnn_layer_kind */
    int c, h, w;                  /* input shape as the kernel sees it (dense: c = K, h = w = 1) */
    int oc, kh, kw, stride, pad, pad_value;
    int out;                      /* BNN_OUT_BITS, or BNN_OUT_INT32 for the last layer */
    int sat;                      /* popcount cap (2^A - 1) when the accumulator saturates */
    int clip;                     /* clip limit of an INT32 output (0: none) */
    const uint64_t *wbits;        /* binary: packed [oc][kh][kw][words_for(c)] */
    long wbits_len;
    const int8_t *wcodes;         /* multi-bit: +-1 [oc][c][kh][kw] */
    long wcodes_len;
    const int32_t *thr;           /* BITS: thresholds (clip already folded in) */
    const uint8_t *neg;           /* BITS: polarities */
    long thr_len;
    int flatten;                  /* dense after a map: input map shape to flatten (HWC) */
    int fc, fh, fw;
    int pool_k, pool_s;           /* 0: no pool */
} bnn_layer_desc;

typedef struct {
    uint32_t magic;
    int version;
    const char *name;
    const char *fingerprint;      /* bnnhw Network.fingerprint(): 16 hex digits */
    int in_c, in_h, in_w;         /* raw input, channels first */
    int quant;                    /* enum bnn_quant_kind */
    int quant_thr;                /* BNN_Q_THRESHOLD: bit = (byte >= quant_thr) */
    const int8_t *lut;            /* BNN_Q_CODES: code of each byte value, 256 entries */
    long lut_len;
    int n_layers;
    const bnn_layer_desc *layers;
    int classes;
    int rule;                     /* enum bnn_rule */
    const int64_t *out_thr;       /* MARGIN: the last threshold */
    const uint8_t *out_neg;
} bnn_model_desc;

/* A model ready to run: prepared layers and buffers. */
typedef struct bnn_net bnn_net;

/* Check the table and prepare it for a kernel path (enum bnn_kernel: 0 scalar and 1 NEON as
 * before, or an x86 path; bnn_kernel_choose() picks one); NULL with bnn_last_error() on a
 * malformed table or a path this build / CPU cannot run. */
bnn_net *bnn_net_create(const bnn_model_desc *m, int kernel);
void bnn_net_free(bnn_net *n);
/* One image: raw bytes [in_c][in_h][in_w] -> scores [classes]. */
void bnn_net_forward(bnn_net *n, const uint8_t *raw, int64_t *scores);

#endif
