/* Internal to src/match: the fused similarity + running-best kernels of the
 * matcher (match_kernels.c), one per instruction set, chosen at run time by
 * matcher.c. The generic kernel is matcher.c's own tiled SGEMM path. */
#ifndef RL_MATCH_KERNELS_H
#define RL_MATCH_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Queries are handed to a kernel in panels of RL_PANEL queries stored lane
 * by lane: panel[d * RL_PANEL + lane], D rows of RL_PANEL floats. 32 lanes
 * are two AVX-512 registers or four AVX2 ones. */
enum { RL_PANEL = 32 };

/* One panel of queries against one piece: the slot-relative references
 * [a, b) of a bank slot, all of which update the same state (label, or
 * image x label) of each query. */
typedef struct rl_fused_piece {
    const float *panel;   /* D x RL_PANEL, 64-byte aligned */
    const float *refs;    /* the slot's vectors, (count, D) row-major */
    int dim;
    int a, b;             /* slot-relative reference range, a < b */
    int32_t index_base;   /* bank index of the slot's reference 0 */
    uint32_t lanes;       /* bit per lane holding a real query (the rest is padding) */
    float *best;          /* RL_PANEL lanes: running best similarity of this state */
    int32_t *best_index;  /* RL_PANEL lanes: its bank index */
    /* top_k > 1: the running k best of each query, any state. */
    int top_k;
    float *kth;           /* RL_PANEL lanes: the k-th best similarity so far */
    float *topk_sim;      /* (RL_PANEL, top_k) rows, best first, for this panel's lanes */
    int32_t *topk_index;
    int32_t *topk_label;
    int32_t label;        /* label of the piece's references (top-k votes) */
} rl_fused_piece;

/* Shared by both paths: similarity s of reference `index` (label `label`)
 * into a query's top-k list ks / ki / kl (k entries, best first) if it is
 * strictly greater than the k-th; it goes after every entry >= s, so lower
 * indices stay ahead among equal similarities. */
static inline void rl_topk_insert(float *ks, int32_t *ki, int32_t *kl, int k, float s,
                                  int32_t index, int32_t label) {
    if (!(s > ks[k - 1])) return;
    int at = k - 1;
    while (at > 0 && ks[at - 1] < s) {
        ks[at] = ks[at - 1];
        ki[at] = ki[at - 1];
        kl[at] = kl[at - 1];
        at--;
    }
    ks[at] = s;
    ki[at] = index;
    kl[at] = label;
}

/* Scales the dim values q[0], q[stride], ... to unit L2 norm, the norm
 * summed in double in order (zero stays zero): the cosine queries of both
 * paths, bit-identical whatever their layout. */
void rl_normalize_query(float *q, int dim, size_t stride);

void rl_fused_piece_avx2(const rl_fused_piece *p);
void rl_fused_piece_avx512(const rl_fused_piece *p);

#endif
