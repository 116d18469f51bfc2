/* The parameter-free layers: 2x2 max-pool, (leaky) ReLU, channel concat.
 * All are memory-bound; loops run in parallel over (sample, channel) planes
 * or plain element ranges, each thread writing disjoint memory. */
#include "reflabel/layers.h"

#include <string.h>

/* Below this many elements a parallel region costs more than it saves. */
#define RL_PARALLEL_MIN_ELEMENTS 32768

/* ---- 2x2 max-pool --------------------------------------------------------- */

/* x (N, C, H, W) -> y, argmax (N, C, H/2, W/2). Candidates are visited in
 * row-major window order and replace the best only when strictly greater, so
 * the first maximum wins ties; a NaN always wins (PyTorch propagates NaN). */
void rl_maxpool2x2_forward(float *y, uint8_t *argmax, const float *x, int n, int c, int h,
                           int w) {
    const int ho = h / 2, wo = w / 2;
    const size_t in_plane = (size_t)h * (size_t)w, out_plane = (size_t)ho * (size_t)wo;
    const size_t total = (size_t)n * (size_t)c * in_plane;
#pragma omp parallel for schedule(static) if (total >= RL_PARALLEL_MIN_ELEMENTS)
    for (int plane = 0; plane < n * c; plane++) {
        const float *xp = x + (size_t)plane * in_plane;
        float *yp = y + (size_t)plane * out_plane;
        uint8_t *ap = argmax + (size_t)plane * out_plane;
        for (int i = 0; i < ho; i++) {
            const float *top = xp + (size_t)(2 * i) * (size_t)w;
            const float *bottom = top + w;
            for (int j = 0; j < wo; j++) {
                const float cand[4] = {top[2 * j], top[2 * j + 1], bottom[2 * j],
                                       bottom[2 * j + 1]};
                float best = cand[0];
                uint8_t which = 0;
                for (uint8_t q = 1; q < 4; q++) {
                    if (cand[q] > best || cand[q] != cand[q]) {
                        best = cand[q];
                        which = q;
                    }
                }
                yp[(size_t)i * (size_t)wo + (size_t)j] = best;
                ap[(size_t)i * (size_t)wo + (size_t)j] = which;
            }
        }
    }
}

/* dy, argmax (N, C, H/2, W/2) -> dx (N, C, H, W) += dy at each window's winner.
 * Windows do not overlap, so every dx element receives at most one term. */
void rl_maxpool2x2_backward(float *dx, const float *dy, const uint8_t *argmax, int n, int c,
                            int h, int w) {
    const int ho = h / 2, wo = w / 2;
    const size_t in_plane = (size_t)h * (size_t)w, out_plane = (size_t)ho * (size_t)wo;
    const size_t total = (size_t)n * (size_t)c * in_plane;
#pragma omp parallel for schedule(static) if (total >= RL_PARALLEL_MIN_ELEMENTS)
    for (int plane = 0; plane < n * c; plane++) {
        float *dxp = dx + (size_t)plane * in_plane;
        const float *dyp = dy + (size_t)plane * out_plane;
        const uint8_t *ap = argmax + (size_t)plane * out_plane;
        for (int i = 0; i < ho; i++) {
            for (int j = 0; j < wo; j++) {
                const size_t o = (size_t)i * (size_t)wo + (size_t)j;
                const int a = ap[o] >> 1, b = ap[o] & 1;
                dxp[(size_t)(2 * i + a) * (size_t)w + (size_t)(2 * j + b)] += dyp[o];
            }
        }
    }
}

/* ---- (leaky) ReLU ------------------------------------------------------------ */

/* x, y (count); y may alias x. */
void rl_leaky_relu_forward(float *y, const float *x, size_t count, float slope) {
    const long long total = (long long)count;
#pragma omp parallel for simd schedule(static) if (total >= RL_PARALLEL_MIN_ELEMENTS)
    for (long long i = 0; i < total; i++) y[i] = x[i] * (x[i] > 0.0f ? 1.0f : slope);
}

/* dx (count) += dy where y > 0, slope * dy elsewhere (x == 0 takes the slope
 * branch, as PyTorch's leaky_relu and relu backward); or dx = that, which
 * spares the caller zeroing dx and this loop reading it.
 *
 * Both directions multiply by a selected factor (1 or slope) instead of
 * selecting between x and slope * x: the same bits (x * 1 == x), but a
 * select of two constants is one the vectoriser takes. The form
 * `y > 0 ? dy : slope * dy` stayed a scalar loop with a branch on every
 * element (gcc 12, see -fno-trapping-math in CMakeLists.txt), which made the
 * backward pass 8.8% of a oneDNN training step (perf, bench train width 16,
 * batch 8, 128x128, one thread). */
static inline __attribute__((always_inline)) void
leaky_relu_backward(float *dx, const float *dy, const float *y, size_t count, float slope,
                    int accumulate) {
    const long long total = (long long)count;
    if (accumulate) {
#pragma omp parallel for simd schedule(static) if (total >= RL_PARALLEL_MIN_ELEMENTS)
        for (long long i = 0; i < total; i++) dx[i] += dy[i] * (y[i] > 0.0f ? 1.0f : slope);
    } else {
#pragma omp parallel for simd schedule(static) if (total >= RL_PARALLEL_MIN_ELEMENTS)
        for (long long i = 0; i < total; i++) dx[i] = dy[i] * (y[i] > 0.0f ? 1.0f : slope);
    }
}

void rl_leaky_relu_backward(float *dx, const float *dy, const float *y, size_t count,
                            float slope) {
    leaky_relu_backward(dx, dy, y, count, slope, 1);
}

void rl_leaky_relu_backward_set(float *dx, const float *dy, const float *y, size_t count,
                                float slope) {
    leaky_relu_backward(dx, dy, y, count, slope, 0);
}

/* ---- channel concatenation ------------------------------------------------- */

/* a (N, Ca, HW), b (N, Cb, HW) -> y (N, Ca + Cb, HW). */
void rl_concat_forward(float *y, const float *a, int ca, const float *b, int cb, int n,
                       int hw) {
    const size_t a_len = (size_t)ca * (size_t)hw, b_len = (size_t)cb * (size_t)hw;
    for (int s = 0; s < n; s++) {
        float *ys = y + (size_t)s * (a_len + b_len);
        memcpy(ys, a + (size_t)s * a_len, a_len * sizeof *ys);
        memcpy(ys + a_len, b + (size_t)s * b_len, b_len * sizeof *ys);
    }
}

/* dy (N, Ca + Cb, HW) -> da (N, Ca, HW) += its channels, db (N, Cb, HW) += the
 * rest; either may be NULL. With accumulate 0, da and db are set instead. */
static inline __attribute__((always_inline)) void
concat_backward(float *da, float *db, const float *dy, int ca, int cb, int n, int hw,
                int accumulate) {
    const size_t a_len = (size_t)ca * (size_t)hw, b_len = (size_t)cb * (size_t)hw;
    const long long total = (long long)n * (long long)(a_len + b_len);
#pragma omp parallel for schedule(static) if (total >= RL_PARALLEL_MIN_ELEMENTS)
    for (int s = 0; s < n; s++) {
        const float *dys = dy + (size_t)s * (a_len + b_len);
        float *das = da ? da + (size_t)s * a_len : NULL;
        float *dbs = db ? db + (size_t)s * b_len : NULL;
        if (!accumulate) {
            if (das) memcpy(das, dys, a_len * sizeof *das);
            if (dbs) memcpy(dbs, dys + a_len, b_len * sizeof *dbs);
            continue;
        }
        if (das) {
#pragma omp simd
            for (size_t i = 0; i < a_len; i++) das[i] += dys[i];
        }
        if (dbs) {
#pragma omp simd
            for (size_t i = 0; i < b_len; i++) dbs[i] += dys[a_len + i];
        }
    }
}

void rl_concat_backward(float *da, float *db, const float *dy, int ca, int cb, int n,
                        int hw) {
    concat_backward(da, db, dy, ca, cb, n, hw, 1);
}

void rl_concat_backward_set(float *da, float *db, const float *dy, int ca, int cb, int n,
                            int hw) {
    concat_backward(da, db, dy, ca, cb, n, hw, 0);
}
