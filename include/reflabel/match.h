/* reflabel/match.h - the reference bank and the matcher: every pixel of an
 * unlabeled image takes the label of its most similar labeled reference pixel,
 * compared in the network's feature space (Seibold et al., AAAI 2022).
 *
 * Independent of the network: the inputs are feature maps (N, D, H, W) float32
 * NCHW (D channels = the feature dimension) and label maps (N, H, W).
 *
 * At the call site (one training step, or one batch of an offline run):
 *
 *     rl_bank *bank;      rl_bank_create(&bank, &bank_cfg, &err);
 *     rl_matcher matcher; rl_matcher_init(&matcher, &match_cfg, &bank_cfg, &err);
 *     ...
 *     rl_bank_add(bank, feat_lab, labels, NULL, n, h, w, &rng, &err);
 *     rl_match_out out = {.label = pseudo, .similarity = sim, .margin = margin};
 *     rl_match(&matcher, bank, feat_unlab, n, h, w, &out, &err);
 *     ...
 *     rl_matcher_free(&matcher); rl_bank_free(bank);
 *
 * All memory is allocated by rl_bank_create and rl_matcher_init; rl_bank_add and rl_match
 * never allocate. docs/MATCHING.md explains the modes, ties and the margin.
 */
#ifndef REFLABEL_MATCH_H
#define REFLABEL_MATCH_H

#include <stddef.h>
#include <stdint.h>

#include "reflabel/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rl_similarity {
    RL_SIM_COSINE = 0, /* vectors L2-normalised on entry (zero vectors stay zero) */
    RL_SIM_DOT = 1     /* raw dot product */
} rl_similarity;

typedef enum rl_bank_sampling {
    RL_SAMPLE_ALL = 0,          /* every labeled (non-ignored) pixel */
    RL_SAMPLE_PER_CLASS = 1,    /* up to per_class_cap pixels of each label */
    RL_SAMPLE_PROPORTIONAL = 2  /* sample_count pixels, shares as in the batch,
                                   each label raised to at least class_floor */
} rl_bank_sampling;

typedef struct rl_bank_config {
    int dim;              /* D, the feature dimension */
    int num_labels;       /* multi-class: classes 0..num_labels-1;
                             multi-label: most distinct masks the bank may see */
    int multilabel;       /* 0: int32 class maps; 1: uint64 bit-mask maps */
    int ignore_label;     /* multi-class: pixels with this value are skipped */
    uint64_t ignore_mask; /* multi-label: pixels with this mask are skipped (0: none) */
    rl_similarity similarity;
    rl_bank_sampling sampling;
    int per_class_cap;    /* K for RL_SAMPLE_PER_CLASS */
    int sample_count;     /* N for RL_SAMPLE_PROPORTIONAL */
    int class_floor;      /* floor per label for RL_SAMPLE_PROPORTIONAL */
    int max_images;       /* most images in one labeled batch */
    int max_image_pixels; /* most pixels (H * W) in one image */
    int memory_batches;   /* M: the bank keeps the last M batches (FIFO); >= 1 */
} rl_bank_config;

/* Vectors a single batch may contribute, from the config (the slot size). */
int rl_bank_slot_capacity(const rl_bank_config *cfg);

/* One stored reference, as rl_bank_get reports it. */
typedef struct rl_bank_entry {
    const float *vector; /* D floats (normalised for RL_SIM_COSINE) */
    int label;           /* class (multi-class) or internal label id (multi-label) */
    uint64_t mask;       /* multi-label: the class bit mask of label; else 0 */
    int image;           /* index of the reference image in the bank (see rl_bank_images) */
    int pixel;           /* y * W + x inside that image */
    long batch;          /* serial number of the batch it came from (0, 1, ...) */
} rl_bank_entry;

/* Opaque: created by rl_bank_create, read through the functions below. */
typedef struct rl_bank rl_bank;

/* Allocates every buffer the bank will use; *out is NULL on failure. */
int rl_bank_create(rl_bank **out, const rl_bank_config *cfg, rl_error *err);
void rl_bank_free(rl_bank *bank); /* NULL is fine */
/* The config the bank was created with. */
const rl_bank_config *rl_bank_get_config(const rl_bank *bank);
/* Vectors the bank can hold: memory_batches * rl_bank_slot_capacity. */
int64_t rl_bank_capacity(const rl_bank *bank);
/* Empties the bank (keeps its memory and the multi-label id table). */
void rl_bank_clear(rl_bank *bank);

/* Adds one labeled batch, evicting the oldest when M batches are held.
 * features (n, D, h, w); labels (n, h, w) int32 for a multi-class bank, or
 * masks (n, h, w) uint64 for a multi-label bank (the other one NULL).
 * rng draws the sample (unused by RL_SAMPLE_ALL). Stored order inside a batch:
 * by image, then label, then pixel. Fails (bank unchanged) on labels outside
 * [0, num_labels), too many distinct masks, non-finite features, or sizes
 * beyond the config. */
int rl_bank_add(rl_bank *bank, const float *features, const int32_t *labels,
                const uint64_t *masks, int n, int h, int w, rl_rng *rng, rl_error *err);

/* References held, in bank order: oldest batch first, then storage order.
 * This order defines the reference index reported by the matcher. */
int rl_bank_count(const rl_bank *bank);
rl_bank_entry rl_bank_get(const rl_bank *bank, int index);
/* Reference images held (image ids are 0..rl_bank_images()-1, oldest batch first). */
int rl_bank_images(const rl_bank *bank);
/* Label ids in use: num_labels (multi-class) or the distinct masks seen so far. */
int rl_bank_label_count(const rl_bank *bank);
/* Multi-label banks: the class bit mask of label id `label`; 0 otherwise. */
uint64_t rl_bank_label_mask(const rl_bank *bank, int label);

/* ---- saving and restoring a bank ------------------------------------------ *
 * For resumable training: the bank's filled part as named arrays (names,
 * types and shapes in src/match/bank_state.c), in no file format; the caller
 * maps them to its own (the trainer's state file: safetensors tensors of the
 * same names). */

typedef enum rl_array_type { RL_ARRAY_I64 = 0, RL_ARRAY_F32 = 1 } rl_array_type;

typedef struct rl_array {
    const char *name; /* "bank.ring", ... */
    rl_array_type type;
    int ndim;         /* 1 or 2 */
    int64_t shape[2];
    void *data;
} rl_array;

#define RL_BANK_STATE_ARRAYS 6
typedef struct rl_bank_state {
    rl_array arrays[RL_BANK_STATE_ARRAYS]; /* data owned by the state */
    int count;
} rl_bank_state;

int rl_bank_export(const rl_bank *bank, rl_bank_state *out, rl_error *err);
void rl_bank_state_free(rl_bank_state *state);

/* Supplies the array `name` of this type and shape (a negative length:
 * any; the actual one is written back), or NULL with err filled. */
typedef const void *(*rl_array_source)(void *ctx, const char *name, rl_array_type type, int ndim,
                                       int64_t *shape, rl_error *err);
/* Checks every array and every index in them (where: names the source in
 * messages); apply == 0 changes nothing, apply == 1 then copies what a
 * check pass accepted. A damaged state is an error here rather than an
 * out-of-bounds access in a later step. */
int rl_bank_import(rl_bank *bank, rl_array_source source, void *ctx, const char *where, int apply,
                   rl_error *err);

/* ---- matcher -------------------------------------------------------------- */

typedef enum rl_match_mode {
    RL_MATCH_POOLED = 0,   /* best reference over the whole bank (the paper) */
    RL_MATCH_PER_IMAGE = 1 /* best reference of each reference image, then a
                              similarity-weighted vote across images */
} rl_match_mode;

typedef enum rl_match_threading {
    RL_THREAD_AUTO = 0,   /* the faster of the two on the measured machine */
    RL_THREAD_TILES = 1,  /* OpenMP over query tiles, single-threaded sgemm */
    RL_THREAD_SGEMM = 2   /* threaded sgemm per tile, OpenMP over the tile rows */
} rl_match_threading;

/* How the similarities are computed (docs/PERFORMANCE.md, "Fused kernels").
 * The fused kernels keep each query's similarities in registers and fold
 * them into its running best at once; generic multiplies tiles with
 * OpenBLAS and reduces them afterwards, and is the reference the others are
 * tested against. All give the same answers up to float ties (the sums are
 * formed in another order; docs/MATCHING.md). */
typedef enum rl_match_kernel {
    RL_KERNEL_AUTO = 0,    /* $RL_MATCH_KERNEL (generic|avx2|avx512|auto) if set,
                              else the widest one this CPU runs */
    RL_KERNEL_GENERIC = 1, /* tiled SGEMM + reduction of the tile */
    RL_KERNEL_AVX2 = 2,    /* fused, AVX2 + FMA */
    RL_KERNEL_AVX512 = 3   /* fused, AVX-512F */
} rl_match_kernel;

/* 1 when this CPU runs kernel k (RL_KERNEL_AUTO and GENERIC: always). */
int rl_match_kernel_supported(rl_match_kernel k);
/* "auto", "generic", "avx2", "avx512"; NULL for other values. */
const char *rl_match_kernel_name(rl_match_kernel k);
/* The kernel of that name, or -1. */
int rl_match_kernel_parse(const char *name);

typedef struct rl_match_config {
    rl_match_mode mode;
    int top_k;          /* 1: the single best reference; > 1: similarity-weighted
                           vote of the k best (pooled mode only) */
    int query_tile;     /* queries per tile; 0: default */
    int ref_tile;       /* references per tile; 0: default */
    int threads;        /* 0: rl_get_threads() at init */
    rl_match_threading threading;
    rl_match_kernel kernel; /* after rl_matcher_init: the one in use, never AUTO */
} rl_match_config;

/* Outputs per query pixel, each (n, h, w) or NULL when not wanted. */
typedef struct rl_match_out {
    int32_t *label;      /* class (multi-class) / internal label id (multi-label) */
    uint64_t *mask;      /* class bit mask (multi-label banks only) */
    float *similarity;   /* best similarity among references of the chosen label */
    float *margin;       /* similarity minus the best similarity of any other
                            label; +INFINITY when the bank holds one label */
    int32_t *index;      /* bank index of that best reference */
    int32_t *topk_index; /* (n, h, w, top_k), best first; top_k > 1 only */
    float *topk_similarity;
} rl_match_out;

typedef struct rl_matcher {
    rl_match_config cfg;  /* with defaults filled in */
    int dim;
    int num_labels;
    int states;           /* running bests per query: labels, or images x labels */
    unsigned char *scratch;
    size_t scratch_bytes;
    size_t thread_bytes;  /* one thread's share of scratch */
    int scratch_threads;  /* thread shares allocated */
} rl_matcher;

/* Scratch the matcher allocates for these configs: a function of the tile
 * sizes, thread count, D, labels and reference images, never of the number of
 * references or queries. */
size_t rl_match_scratch_bytes(const rl_match_config *cfg, const rl_bank_config *bank_cfg);
int rl_matcher_init(rl_matcher *m, const rl_match_config *cfg, const rl_bank_config *bank_cfg,
                    rl_error *err);
void rl_matcher_free(rl_matcher *m);

/* Matches every pixel of features (n, D, h, w) against the bank. Exact (equal
 * to brute force); ties go to the lowest bank index. Thread settings of OpenMP
 * and OpenBLAS are restored on return. */
int rl_match(rl_matcher *m, const rl_bank *bank, const float *features, int n, int h, int w,
             const rl_match_out *out, rl_error *err);

#ifdef __cplusplus
}
#endif
#endif
