/* Fused similarity + running best: the matcher's inner loop for AVX2+FMA and
 * AVX-512F, with the similarity tile kept in registers.
 *
 * The generic path (matcher.c) multiplies a 128-query block by a 1024-reference
 * tile with OpenBLAS into a 512 KiB tile in L2 and then reads the tile back
 * to reduce it: every similarity is written and read once more, and
 * OpenBLAS packs both operands per call. Here a panel of 32 queries (two
 * zmm, four ymm registers per D step) meets a group of G references:
 *
 *   for d < D:  acc[j][v] += panel[d][v lanes] * broadcast(ref[j][d])
 *
 * G x 2 zmm accumulators (G = 12: 24 of the 32 zmm registers; the reference
 * scalar is an embedded {1to16} broadcast, so it needs no register) or, for
 * AVX2, 6 x 2 ymm per half panel (12 of 16 ymm, plus 2 for the queries and
 * one for the broadcast). Neither operand is packed: the query panel is
 * already stored D x 32 (the feature maps are channels-first, so that is the
 * order they arrive in), and the references are read straight from the bank's
 * rows. Per D step the AVX-512 kernel issues 24 FMAs against 2 vector loads
 * + 12 broadcast loads, so it is bound by the two FMA ports, not by loads.
 *
 * The epilogue never stores the similarities: the G values of each lane are
 * max-reduced in registers and compared against the lane's running best (or,
 * for top-k, the smaller of that and its k-th best). For random data a
 * query's running best over n references improves about ln(n) times, so the
 * compare almost never fires; when it does, the group's similarities go to
 * a 1.5 KiB stack buffer and fold_lanes applies the generic path's rules to
 * the lanes that fired, reference by reference in increasing index.
 *
 * Ties: the generic path moves a running best only on a strictly greater
 * similarity while references ascend, and so does fold_lanes, so equal
 * similarities keep the lowest index here as there. The two paths sum the D
 * products in a different order (OpenBLAS's kernel vs one FMA chain per
 * lane), so similarities can differ in the last bits, and two references whose
 * similarities are that close can swap: docs/MATCHING.md's float ties. */
#include "match_kernels.h"

#include <immintrin.h>
#include <math.h>
#include <stddef.h>

/* Folds sims[j * RL_PANEL + lane], the similarities of the slot references
 * first + j for j in [j0, j1), into the running best and the top-k list of
 * every lane set in mask; the same rules as matcher.c's reduce_rows. */
static void fold_lanes(const rl_fused_piece *p, const float *sims, int j0, int j1, int first,
                       uint32_t mask) {
    const int k = p->top_k;
    while (mask) {
        const int lane = __builtin_ctz(mask);
        mask &= mask - 1;
        for (int j = j0; j < j1; j++) {
            const float s = sims[j * RL_PANEL + lane];
            const int32_t index = p->index_base + first + j;
            if (s > p->best[lane]) {
                p->best[lane] = s;
                p->best_index[lane] = index;
            }
            if (k > 1) {
                float *ks = p->topk_sim + (size_t)lane * k;
                rl_topk_insert(ks, p->topk_index + (size_t)lane * k,
                               p->topk_label + (size_t)lane * k, k, s, index, p->label);
                p->kth[lane] = ks[k - 1];
            }
        }
    }
}

void rl_normalize_query(float *q, int dim, size_t stride) {
    double norm2 = 0.0;
    for (int d = 0; d < dim; d++) norm2 += (double)q[(size_t)d * stride] * q[(size_t)d * stride];
    if (norm2 > 0.0) {
        float inv = (float)(1.0 / sqrt(norm2));
        for (int d = 0; d < dim; d++) q[(size_t)d * stride] *= inv;
    }
}

/* ---- AVX-512F ----------------------------------------------------------------- */

enum { G512 = 12 };

/* The threshold a lane's similarity must beat to change anything. */
__attribute__((target("avx512f"))) static inline __m512 threshold512(const rl_fused_piece *p,
                                                                     int half) {
    __m512 t = _mm512_load_ps(p->best + 16 * half);
    if (p->top_k > 1) t = _mm512_min_ps(t, _mm512_load_ps(p->kth + 16 * half));
    return t;
}

/* References first .. first + G512 - 1 (slot-relative) against the panel;
 * the first `skip` of them were already folded and are masked out. */
__attribute__((target("avx512f"))) static void group512(const rl_fused_piece *p, int first,
                                                        int skip) {
    const int dim = p->dim;
    const float *q = p->panel;
    const float *r = p->refs + (size_t)first * (size_t)dim;
    __m512 acc[G512][2];
#pragma GCC unroll 12
    for (int j = 0; j < G512; j++) acc[j][0] = acc[j][1] = _mm512_setzero_ps();
    for (int d = 0; d < dim; d++) {
        const __m512 q0 = _mm512_load_ps(q + (size_t)d * RL_PANEL);
        const __m512 q1 = _mm512_load_ps(q + (size_t)d * RL_PANEL + 16);
#pragma GCC unroll 12
        for (int j = 0; j < G512; j++) {
            const __m512 rj = _mm512_set1_ps(r[(size_t)j * dim + d]);
            acc[j][0] = _mm512_fmadd_ps(q0, rj, acc[j][0]);
            acc[j][1] = _mm512_fmadd_ps(q1, rj, acc[j][1]);
        }
    }
    if (skip) {
        const __m512 none = _mm512_set1_ps(-INFINITY);
#pragma GCC unroll 12
        for (int j = 0; j < G512; j++)
            if (j < skip) acc[j][0] = acc[j][1] = none;
    }
    __m512 m0 = acc[0][0], m1 = acc[0][1];
#pragma GCC unroll 12
    for (int j = 1; j < G512; j++) {
        m0 = _mm512_max_ps(m0, acc[j][0]);
        m1 = _mm512_max_ps(m1, acc[j][1]);
    }
    const uint32_t fired =
        ((uint32_t)_mm512_cmp_ps_mask(m0, threshold512(p, 0), _CMP_GT_OQ) |
         (uint32_t)_mm512_cmp_ps_mask(m1, threshold512(p, 1), _CMP_GT_OQ) << 16) &
        p->lanes;
    if (__builtin_expect(fired != 0, 0)) {
        float sims[G512 * RL_PANEL] __attribute__((aligned(64)));
#pragma GCC unroll 12
        for (int j = 0; j < G512; j++) {
            _mm512_store_ps(sims + j * RL_PANEL, acc[j][0]);
            _mm512_store_ps(sims + j * RL_PANEL + 16, acc[j][1]);
        }
        fold_lanes(p, sims, skip, G512, first, fired);
    }
}

/* One reference at a time: only for slots of fewer than G512 references. */
__attribute__((target("avx512f"))) static void single512(const rl_fused_piece *p, int ref) {
    const float *q = p->panel, *r = p->refs + (size_t)ref * (size_t)p->dim;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (int d = 0; d < p->dim; d++) {
        const __m512 rd = _mm512_set1_ps(r[d]);
        a0 = _mm512_fmadd_ps(_mm512_load_ps(q + (size_t)d * RL_PANEL), rd, a0);
        a1 = _mm512_fmadd_ps(_mm512_load_ps(q + (size_t)d * RL_PANEL + 16), rd, a1);
    }
    float sims[RL_PANEL] __attribute__((aligned(64)));
    _mm512_store_ps(sims, a0);
    _mm512_store_ps(sims + 16, a1);
    fold_lanes(p, sims, 0, 1, ref, p->lanes);
}

__attribute__((target("avx512f"))) void rl_fused_piece_avx512(const rl_fused_piece *p) {
    int g = p->a;
    while (g < p->b) {
        if (p->b - g >= G512) {
            group512(p, g, 0);
            g += G512;
        } else if (p->b >= G512) {
            /* The last partial group ends at b and starts inside the slot:
             * recompute the overlap with the previous group rather than
             * read past the piece. */
            group512(p, p->b - G512, g - (p->b - G512));
            g = p->b;
        } else {
            for (; g < p->b; g++) single512(p, g);
        }
    }
}

/* ---- AVX2 + FMA ------------------------------------------------------------ */

enum { G256 = 6 };

/* References first .. first + G256 - 1 against half `h` (16 lanes) of the panel. */
__attribute__((target("avx2,fma"))) static void group256(const rl_fused_piece *p, int first,
                                                         int skip, int h) {
    const int dim = p->dim;
    const float *q = p->panel + 16 * h;
    const float *r = p->refs + (size_t)first * (size_t)dim;
    __m256 acc[G256][2];
#pragma GCC unroll 6
    for (int j = 0; j < G256; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    for (int d = 0; d < dim; d++) {
        const __m256 q0 = _mm256_load_ps(q + (size_t)d * RL_PANEL);
        const __m256 q1 = _mm256_load_ps(q + (size_t)d * RL_PANEL + 8);
#pragma GCC unroll 6
        for (int j = 0; j < G256; j++) {
            const __m256 rj = _mm256_broadcast_ss(r + (size_t)j * dim + d);
            acc[j][0] = _mm256_fmadd_ps(q0, rj, acc[j][0]);
            acc[j][1] = _mm256_fmadd_ps(q1, rj, acc[j][1]);
        }
    }
    if (skip) {
        const __m256 none = _mm256_set1_ps(-INFINITY);
#pragma GCC unroll 6
        for (int j = 0; j < G256; j++)
            if (j < skip) acc[j][0] = acc[j][1] = none;
    }
    __m256 m0 = acc[0][0], m1 = acc[0][1];
#pragma GCC unroll 6
    for (int j = 1; j < G256; j++) {
        m0 = _mm256_max_ps(m0, acc[j][0]);
        m1 = _mm256_max_ps(m1, acc[j][1]);
    }
    __m256 t0 = _mm256_load_ps(p->best + 16 * h), t1 = _mm256_load_ps(p->best + 16 * h + 8);
    if (p->top_k > 1) {
        t0 = _mm256_min_ps(t0, _mm256_load_ps(p->kth + 16 * h));
        t1 = _mm256_min_ps(t1, _mm256_load_ps(p->kth + 16 * h + 8));
    }
    const uint32_t fired =
        ((uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(m0, t0, _CMP_GT_OQ)) |
         (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(m1, t1, _CMP_GT_OQ)) << 8)
            << (16 * h) &
        p->lanes;
    if (__builtin_expect(fired != 0, 0)) {
        float sims[G256 * RL_PANEL] __attribute__((aligned(32)));
#pragma GCC unroll 6
        for (int j = 0; j < G256; j++) {
            _mm256_store_ps(sims + j * RL_PANEL + 16 * h, acc[j][0]);
            _mm256_store_ps(sims + j * RL_PANEL + 16 * h + 8, acc[j][1]);
        }
        fold_lanes(p, sims, skip, G256, first, fired);
    }
}

__attribute__((target("avx2,fma"))) static void single256(const rl_fused_piece *p, int ref) {
    const float *q = p->panel, *r = p->refs + (size_t)ref * (size_t)p->dim;
    __m256 a[4];
    for (int v = 0; v < 4; v++) a[v] = _mm256_setzero_ps();
    for (int d = 0; d < p->dim; d++) {
        const __m256 rd = _mm256_broadcast_ss(r + d);
        for (int v = 0; v < 4; v++)
            a[v] = _mm256_fmadd_ps(_mm256_load_ps(q + (size_t)d * RL_PANEL + 8 * v), rd, a[v]);
    }
    float sims[RL_PANEL] __attribute__((aligned(32)));
    for (int v = 0; v < 4; v++) _mm256_store_ps(sims + 8 * v, a[v]);
    fold_lanes(p, sims, 0, 1, ref, p->lanes);
}

__attribute__((target("avx2,fma"))) void rl_fused_piece_avx2(const rl_fused_piece *p) {
    if (p->b < G256) {
        for (int g = p->a; g < p->b; g++) single256(p, g);
        return;
    }
    /* Half panel by half panel: each keeps its 16 lanes' accumulators in
     * registers; the references of the piece are re-read from L1/L2. */
    for (int h = 0; h < 2; h++) {
        if (!(p->lanes >> (16 * h) & 0xffffu)) continue;
        int g = p->a;
        for (; p->b - g >= G256; g += G256) group256(p, g, 0, h);
        if (g < p->b) group256(p, p->b - G256, g - (p->b - G256), h);
    }
}
