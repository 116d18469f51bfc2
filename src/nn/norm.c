/* Group norm and batch norm, numerically as PyTorch: biased variance for the
 * normalisation, eps inside the square root, running statistics with the
 * unbiased variance. Means and variances are accumulated in double (two
 * passes: mean, then squared deviations) so that large planes of similar
 * values lose no precision. Loops run in parallel over independent groups or
 * channels, each writing only its own outputs.
 */
#include "reflabel/layers.h"

#include <math.h>

/* Below this many elements a parallel region costs more than it saves. */
#define RL_PARALLEL_MIN_ELEMENTS 32768

/* Mean and biased variance of count floats, in double. */
static void mean_var(const float *x, size_t count, double *mean, double *var) {
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (size_t i = 0; i < count; i++) sum += x[i];
    const double m = sum / (double)count;
    double sq = 0.0;
#pragma omp simd reduction(+ : sq)
    for (size_t i = 0; i < count; i++) {
        const double dev = x[i] - m;
        sq += dev * dev;
    }
    *mean = m;
    *var = sq / (double)count;
}

/* ---- group norm ---------------------------------------------------------- */

/* x, y (N, C, HW); gamma, beta (C); mean, rstd (N, G). The channels of one
 * group are contiguous in memory, so group (s, g) is one block of
 * (C/G) * HW floats.
 *
 * Every U-Net unit runs group norm then LeakyReLU (src/nn/unet.c). Fused,
 * the activation is applied to each value as it is normalised: the
 * activation's own pass (a read and a write of the whole tensor) goes, and
 * every value is computed by the same float operations, so the output is bit
 * for bit that of the two layers in turn (tests/test_layers.c). The forward
 * pass of the U-Net step took 506-553 ms before, 509-543 ms after (bench
 * train, width 16, batch 8, 128x128, one thread, oneDNN; interleaved runs
 * on a busy machine): a few percent. The body is instantiated with a
 * constant flag, so the compiler drops the branch on it. */
static inline __attribute__((always_inline)) void
groupnorm_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                  const float *beta, int n, int c, int hw, int groups, float eps, int activate,
                  float slope) {
    const int parallel = (size_t)n * (size_t)c * (size_t)hw >= RL_PARALLEL_MIN_ELEMENTS;
    const int cpg = c / groups;
    const size_t block = (size_t)cpg * (size_t)hw;
#pragma omp parallel for schedule(static) if (parallel)
    for (int sg = 0; sg < n * groups; sg++) {
        const float *xg = x + (size_t)sg * block;
        float *yg = y + (size_t)sg * block;
        double m, v;
        mean_var(xg, block, &m, &v);
        const float mf = (float)m, rf = (float)(1.0 / sqrt(v + (double)eps));
        mean[sg] = mf;
        rstd[sg] = rf;
        const int c0 = (sg % groups) * cpg;
        for (int ci = 0; ci < cpg; ci++) {
            /* y = (x - mean) * rstd * gamma + beta = x * scale + shift */
            const float scale = rf * gamma[c0 + ci];
            const float shift = beta[c0 + ci] - mf * scale;
            const float *xr = xg + (size_t)ci * (size_t)hw;
            float *yr = yg + (size_t)ci * (size_t)hw;
            if (activate) {
#pragma omp simd
                for (int i = 0; i < hw; i++) {
                    const float v_ = xr[i] * scale + shift;
                    yr[i] = v_ > 0.0f ? v_ : slope * v_;
                }
            } else {
#pragma omp simd
                for (int i = 0; i < hw; i++) yr[i] = xr[i] * scale + shift;
            }
        }
    }
}

void rl_groupnorm_forward(float *y, float *mean, float *rstd, const float *x,
                          const float *gamma, const float *beta, int n, int c, int hw,
                          int groups, float eps) {
    groupnorm_forward(y, mean, rstd, x, gamma, beta, n, c, hw, groups, eps, 0, 0.0f);
}

void rl_groupnorm_leaky_forward(float *y, float *mean, float *rstd, const float *x,
                                const float *gamma, const float *beta, int n, int c, int hw,
                                int groups, float eps, float slope) {
    groupnorm_forward(y, mean, rstd, x, gamma, beta, n, c, hw, groups, eps, 1, slope);
}

/* With xhat = (x - mean) rstd and g = dy * gamma, over the M elements of a
 * group: dx = rstd (g - mean(g) - xhat mean(g xhat)); dgamma = sum dy xhat,
 * dbeta = sum dy over samples and positions of each channel.
 *
 * Not fused with the activation's backward: reading LeakyReLU's output and
 * selecting the gradient in each of the three passes below, instead of once
 * into a scratch tensor, made the unit's backward slower, 1030-1180 ms
 * against 850-930 ms for the U-Net step's backward (bench train, width 16,
 * batch 8, 128x128, one thread, oneDNN; interleaved runs on a busy
 * machine). */
static inline __attribute__((always_inline)) void
groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                   const float *mean, const float *rstd, const float *gamma, int n, int c,
                   int hw, int groups, int accumulate) {
    const int parallel = (size_t)n * (size_t)c * (size_t)hw >= RL_PARALLEL_MIN_ELEMENTS;
    const int cpg = c / groups;
    const size_t block = (size_t)cpg * (size_t)hw;
    if (dgamma || dbeta) {
#pragma omp parallel for schedule(static) if (parallel)
        for (int ch = 0; ch < c; ch++) {
            const int g = ch / cpg;
            double sum_dy = 0.0, sum_dy_xhat = 0.0;
            for (int s = 0; s < n; s++) {
                const size_t off = ((size_t)s * (size_t)c + (size_t)ch) * (size_t)hw;
                const float m = mean[s * groups + g], r = rstd[s * groups + g];
                double a = 0.0, b = 0.0;
#pragma omp simd reduction(+ : a, b)
                for (int i = 0; i < hw; i++) {
                    const float d = dy[off + i];
                    a += d;
                    b += (double)d * (x[off + i] - m);
                }
                sum_dy += a;
                sum_dy_xhat += b * r;
            }
            if (dgamma) dgamma[ch] += (float)sum_dy_xhat;
            if (dbeta) dbeta[ch] += (float)sum_dy;
        }
    }
    if (!dx) return;
#pragma omp parallel for schedule(static) if (parallel)
    for (int sg = 0; sg < n * groups; sg++) {
        const size_t off = (size_t)sg * block;
        const int c0 = (sg % groups) * cpg;
        const double m = mean[sg], r = rstd[sg];
        double sum_g = 0.0, sum_g_xhat = 0.0;
        for (int ci = 0; ci < cpg; ci++) {
            const float gm = gamma[c0 + ci];
            const size_t row = off + (size_t)ci * (size_t)hw;
            const float *xr = x + row;
            double a = 0.0, b = 0.0;
#pragma omp simd reduction(+ : a, b)
            for (int i = 0; i < hw; i++) {
                const float d = dy[row + (size_t)i];
                a += d;
                b += (double)d * (xr[i] - m);
            }
            sum_g += gm * a;
            sum_g_xhat += gm * b * r;
        }
        const double inv_m = 1.0 / (double)block;
        /* dx = rstd g - rstd mean(g) - rstd xhat mean(g xhat), with
         * xhat = (x - m) r, written as dx = a1 dy + a2 (x - m) + a3; keeping
         * x - m (not a2 x + const) avoids cancellation when |m| >> std. */
        const float mf = mean[sg];
        const float a2 = (float)(-r * r * sum_g_xhat * inv_m); /* sum_g_xhat holds one r */
        const float a3 = (float)(-r * sum_g * inv_m);
        for (int ci = 0; ci < cpg; ci++) {
            const float a1 = rstd[sg] * gamma[c0 + ci];
            const size_t row = off + (size_t)ci * (size_t)hw;
            const float *xr = x + row;
            float *dxr = dx + row;
            if (accumulate) {
#pragma omp simd
                for (int i = 0; i < hw; i++)
                    dxr[i] += a1 * dy[row + (size_t)i] + a2 * (xr[i] - mf) + a3;
            } else {
#pragma omp simd
                for (int i = 0; i < hw; i++)
                    dxr[i] = a1 * dy[row + (size_t)i] + a2 * (xr[i] - mf) + a3;
            }
        }
    }
}

void rl_groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                           const float *x, const float *mean, const float *rstd,
                           const float *gamma, int n, int c, int hw, int groups) {
    groupnorm_backward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, n, c, hw, groups, 1);
}

/* The U-Net's units: dx is a scratch tensor that nothing else adds to, so
 * it is written, not zeroed and then added to (a memset and a read of the
 * tensor fewer). */
void rl_groupnorm_backward_set(float *dx, float *dgamma, float *dbeta, const float *dy,
                               const float *x, const float *mean, const float *rstd,
                               const float *gamma, int n, int c, int hw, int groups) {
    groupnorm_backward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, n, c, hw, groups, 0);
}

/* ---- batch norm ---------------------------------------------------------- */

/* Sum of channel ch of x (N, C, HW) over N and HW. */
static double channel_sum(const float *x, int n, int c, int hw, int ch) {
    double sum = 0.0;
    for (int s = 0; s < n; s++) {
        const float *xr = x + ((size_t)s * (size_t)c + (size_t)ch) * (size_t)hw;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < hw; i++) sum += xr[i];
    }
    return sum;
}

/* Sum of (x - m)^2 over channel ch of x (N, C, HW). */
static double channel_sq_dev(const float *x, int n, int c, int hw, int ch, double m) {
    double sq = 0.0;
    for (int s = 0; s < n; s++) {
        const float *xr = x + ((size_t)s * (size_t)c + (size_t)ch) * (size_t)hw;
#pragma omp simd reduction(+ : sq)
        for (int i = 0; i < hw; i++) {
            const double dev = xr[i] - m;
            sq += dev * dev;
        }
    }
    return sq;
}

/* Mean and biased variance of channel ch of x (N, C, HW) over N and HW. */
static void channel_mean_var(const float *x, int n, int c, int hw, int ch, double *mean,
                             double *var) {
    const double count = (double)n * (double)hw;
    const double m = channel_sum(x, n, c, hw, ch) / count;
    *mean = m;
    *var = channel_sq_dev(x, n, c, hw, ch, m) / count;
}

/* y[s, ch] = x[s, ch] * scale + shift for every sample. */
static void channel_affine(float *y, const float *x, int n, int c, int hw, int ch,
                           float scale, float shift) {
    for (int s = 0; s < n; s++) {
        const size_t off = ((size_t)s * (size_t)c + (size_t)ch) * (size_t)hw;
#pragma omp simd
        for (int i = 0; i < hw; i++) y[off + i] = x[off + i] * scale + shift;
    }
}

/* Channel ch of batch norm in training mode, from its mean m and biased
 * variance v over the batch: the saved statistics, the running ones (with
 * the unbiased variance, v * unbias) and y. */
static void channel_train(float *y, float *mean, float *rstd, float *running_mean,
                          float *running_var, const float *x, const float *gamma,
                          const float *beta, int n, int c, int hw, int ch, double m, double v,
                          double unbias, float momentum, float eps) {
    const float mf = (float)m, rf = (float)(1.0 / sqrt(v + (double)eps));
    mean[ch] = mf;
    rstd[ch] = rf;
    running_mean[ch] = (float)((1.0 - momentum) * running_mean[ch] + momentum * m);
    running_var[ch] = (float)((1.0 - momentum) * running_var[ch] + momentum * v * unbias);
    const float scale = rf * gamma[ch];
    channel_affine(y, x, n, c, hw, ch, scale, beta[ch] - mf * scale);
}

/* x, y (N, C, HW); gamma, beta, mean, rstd, running_mean, running_var (C).
 * A channel with a single value (N * HW == 1) has no unbiased variance;
 * PyTorch refuses it, here running_var then takes the biased one (0). */
void rl_batchnorm_forward_train(float *y, float *mean, float *rstd, float *running_mean,
                                float *running_var, const float *x, const float *gamma,
                                const float *beta, int n, int c, int hw, float momentum,
                                float eps) {
    const int parallel = (size_t)n * (size_t)c * (size_t)hw >= RL_PARALLEL_MIN_ELEMENTS;
    const double count = (double)n * (double)hw;
    const double unbias = count > 1.0 ? count / (count - 1.0) : 1.0;
#pragma omp parallel for schedule(static) if (parallel)
    for (int ch = 0; ch < c; ch++) {
        double m, v;
        channel_mean_var(x, n, c, hw, ch, &m, &v);
        channel_train(y, mean, rstd, running_mean, running_var, x, gamma, beta, n, c, hw, ch, m, v,
                      unbias, momentum, eps);
    }
}

/* x, y (N, C, HW); gamma, beta, running_mean, running_var (C). */
void rl_batchnorm_forward_eval(float *y, const float *x, const float *gamma,
                               const float *beta, const float *running_mean,
                               const float *running_var, int n, int c, int hw, float eps) {
    const int parallel = (size_t)n * (size_t)c * (size_t)hw >= RL_PARALLEL_MIN_ELEMENTS;
#pragma omp parallel for schedule(static) if (parallel)
    for (int ch = 0; ch < c; ch++) {
        const float rf = (float)(1.0 / sqrt((double)running_var[ch] + (double)eps));
        const float scale = rf * gamma[ch];
        channel_affine(y, x, n, c, hw, ch, scale, beta[ch] - running_mean[ch] * scale);
    }
}

/* Sums over N and HW of dy and of dy * (x - m) for channel ch. */
static void channel_grad_sums(const float *dy, const float *x, int n, int c, int hw, int ch,
                              double m, double *sum_dy, double *sum_dy_xc) {
    double a = 0.0, b = 0.0;
    for (int s = 0; s < n; s++) {
        const size_t off = ((size_t)s * (size_t)c + (size_t)ch) * (size_t)hw;
#pragma omp simd reduction(+ : a, b)
        for (int i = 0; i < hw; i++) {
            a += dy[off + i];
            b += (double)dy[off + i] * (x[off + i] - m);
        }
    }
    *sum_dy = a;
    *sum_dy_xc = b;
}

/* Accumulates channel ch of dx from the channel's sums over the (global)
 * batch: dx = a1 dy + a2 (x - m) + a3, as in the group norm. */
static void channel_dx(float *dx, const float *dy, const float *x, int n, int c, int hw, int ch,
                       float gamma, float mean, double r, double sum_dy, double sum_dy_xc,
                       double inv_count) {
    const double gr = gamma * r;
    const float a1 = (float)gr;
    const float a2 = (float)(-gr * r * r * sum_dy_xc * inv_count);
    const float a3 = (float)(-gr * sum_dy * inv_count);
    for (int s = 0; s < n; s++) {
        const size_t off = ((size_t)s * (size_t)c + (size_t)ch) * (size_t)hw;
#pragma omp simd
        for (int i = 0; i < hw; i++) dx[off + i] += a1 * dy[off + i] + a2 * (x[off + i] - mean) + a3;
    }
}

/* Training-mode backward, the group norm formula with one group per channel
 * spanning the whole batch: dx = gamma rstd (dy - mean(dy) - xhat mean(dy xhat)). */
void rl_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                           const float *x, const float *mean, const float *rstd,
                           const float *gamma, int n, int c, int hw) {
    const int parallel = (size_t)n * (size_t)c * (size_t)hw >= RL_PARALLEL_MIN_ELEMENTS;
    const double inv_count = 1.0 / ((double)n * (double)hw);
#pragma omp parallel for schedule(static) if (parallel)
    for (int ch = 0; ch < c; ch++) {
        const double m = mean[ch], r = rstd[ch];
        double sum_dy, sum_dy_xc;
        channel_grad_sums(dy, x, n, c, hw, ch, m, &sum_dy, &sum_dy_xc);
        if (dgamma) dgamma[ch] += (float)(sum_dy_xc * r);
        if (dbeta) dbeta[ch] += (float)sum_dy;
        if (dx) channel_dx(dx, dy, x, n, c, hw, ch, gamma[ch], mean[ch], r, sum_dy, sum_dy_xc,
                           inv_count);
    }
}

/* Eval-mode backward: the statistics are constants, so y is affine in x. */
void rl_batchnorm_backward_eval(float *dx, float *dgamma, float *dbeta, const float *dy,
                                const float *x, const float *gamma,
                                const float *running_mean, const float *running_var, int n,
                                int c, int hw, float eps) {
    const int parallel = (size_t)n * (size_t)c * (size_t)hw >= RL_PARALLEL_MIN_ELEMENTS;
#pragma omp parallel for schedule(static) if (parallel)
    for (int ch = 0; ch < c; ch++) {
        const double r = 1.0 / sqrt((double)running_var[ch] + (double)eps);
        if (dgamma || dbeta) {
            double sum_dy, sum_dy_xc;
            channel_grad_sums(dy, x, n, c, hw, ch, running_mean[ch], &sum_dy, &sum_dy_xc);
            if (dgamma) dgamma[ch] += (float)(sum_dy_xc * r);
            if (dbeta) dbeta[ch] += (float)sum_dy;
        }
        if (!dx) continue;
        const float a1 = (float)(gamma[ch] * r);
        for (int s = 0; s < n; s++) {
            const size_t off = ((size_t)s * (size_t)c + (size_t)ch) * (size_t)hw;
#pragma omp simd
            for (int i = 0; i < hw; i++) dx[off + i] += a1 * dy[off + i];
        }
    }
}

/* ---- batch norm over a batch split between processes --------------------- */

/* The training-mode functions above, cut where a channel's statistics need
 * the values of every process: each phase sums over this process's share of
 * the batch, the caller adds those sums over the processes (an allreduce),
 * and the next phase reads the totals. The forward keeps channel_mean_var's
 * two passes with a reduction after each, so that the squared deviations are
 * taken about the global mean: one reduction of the sums of x and x^2 would
 * cancel when a channel's mean is large against its spread, and no shift
 * near the mean is known to every process before the first reduction. Each
 * phase does the whole-batch function's arithmetic on its share: with one
 * process the results are the same, with several only the order in which
 * the sums are added differs. */

/* sums (C + 1): sums[ch] = sum of channel ch over N and HW; sums[C] = N HW,
 * so that the reduced count is the global batch's. */
void rl_batchnorm_sums(double *sums, const float *x, int n, int c, int hw) {
    const int parallel = (size_t)n * (size_t)c * (size_t)hw >= RL_PARALLEL_MIN_ELEMENTS;
#pragma omp parallel for schedule(static) if (parallel)
    for (int ch = 0; ch < c; ch++) sums[ch] = channel_sum(x, n, c, hw, ch);
    sums[c] = (double)n * (double)hw;
}

/* sq_devs (C): sum of (x - mean)^2 over N and HW, about the mean of the
 * reduced sums (C + 1) of rl_batchnorm_sums. */
void rl_batchnorm_sq_devs(double *sq_devs, const double *sums, const float *x, int n, int c,
                          int hw) {
    const int parallel = (size_t)n * (size_t)c * (size_t)hw >= RL_PARALLEL_MIN_ELEMENTS;
#pragma omp parallel for schedule(static) if (parallel)
    for (int ch = 0; ch < c; ch++) sq_devs[ch] = channel_sq_dev(x, n, c, hw, ch, sums[ch] / sums[c]);
}

/* rl_batchnorm_forward_train's outputs from the reduced sums and squared
 * deviations: the global count sums[C] gives the biased variance and, for
 * running_var, the unbiased one. Every process computes the same mean, rstd
 * and running statistics from the same totals. */
void rl_batchnorm_apply_train(float *y, float *mean, float *rstd, float *running_mean,
                              float *running_var, const float *x, const float *gamma,
                              const float *beta, const double *sums, const double *sq_devs,
                              int n, int c, int hw, float momentum, float eps) {
    const int parallel = (size_t)n * (size_t)c * (size_t)hw >= RL_PARALLEL_MIN_ELEMENTS;
    const double count = sums[c];
    const double unbias = count > 1.0 ? count / (count - 1.0) : 1.0;
#pragma omp parallel for schedule(static) if (parallel)
    for (int ch = 0; ch < c; ch++) {
        const double m = sums[ch] / count, v = sq_devs[ch] / count;
        channel_train(y, mean, rstd, running_mean, running_var, x, gamma, beta, n, c, hw, ch, m, v,
                      unbias, momentum, eps);
    }
}

/* The backward over a global batch B, the union of the processes' shares
 * B_p, with M values per channel (the forward's reduced count). The loss is
 * L = sum_p L_p, each L_p reading only its process's y, so dy on B_p is
 * dL_p/dy. Per channel y = gamma xhat + beta, xhat = (x - m) r, where m and
 * r = 1 / sqrt(v + eps) are the global statistics: functions of x on every
 * process. With S1 = sum_B dy and S2 = sum_B dy (x - m):
 *
 *   dL/dbeta  = S1           = sum_p sum_{B_p} dy
 *   dL/dgamma = sum_B dy xhat = sum_p r sum_{B_p} dy (x - m)
 *
 * are sums of one term per process. Each process adds its own term to its
 * gradients, like any parameter's, and the caller's sum of the parameter
 * gradients over the processes completes them; adding the reduced S1, S2
 * instead would count every term once per process.
 *
 * x on one process moves m and v, and through them y on every process:
 * dm/dx_j = 1/M, dv/dx_j = 2 (x_j - m) / M (the deviations sum to 0), so
 * dr/dx_j = -r^3 (x_j - m) / M and
 *
 *   dL/dx_j = sum_k dy_k dy_k/dx_j
 *           = gamma r dy_j - gamma r S1 / M - gamma r^3 (x_j - m) S2 / M
 *           = a1 dy_j + a2 (x_j - m) + a3,
 *   a1 = gamma r, a2 = -gamma r^3 S2 / M, a3 = -gamma r S1 / M,
 *
 * rl_batchnorm_backward's formula, which needs the GLOBAL S1 and S2: the
 * same two sums as the gradients of gamma and beta, reduced. */

/* sums (2C): sums[ch] = sum of dy, sums[C + ch] = sum of dy (x - mean) over
 * this process's N and HW; adds this process's term to dgamma and dbeta
 * (either may be NULL). mean and rstd are the forward's global statistics. */
void rl_batchnorm_backward_sums(double *sums, float *dgamma, float *dbeta, const float *dy,
                                const float *x, const float *mean, const float *rstd, int n,
                                int c, int hw) {
    const int parallel = (size_t)n * (size_t)c * (size_t)hw >= RL_PARALLEL_MIN_ELEMENTS;
#pragma omp parallel for schedule(static) if (parallel)
    for (int ch = 0; ch < c; ch++) {
        double sum_dy, sum_dy_xc;
        channel_grad_sums(dy, x, n, c, hw, ch, mean[ch], &sum_dy, &sum_dy_xc);
        sums[ch] = sum_dy;
        sums[c + ch] = sum_dy_xc;
        if (dgamma) dgamma[ch] += (float)(sum_dy_xc * rstd[ch]);
        if (dbeta) dbeta[ch] += (float)sum_dy;
    }
}

/* Accumulates dx from the reduced sums (2C) of rl_batchnorm_backward_sums
 * and count, the forward's reduced count (its sums[C]). */
void rl_batchnorm_backward_apply(float *dx, const double *sums, double count, const float *dy,
                                 const float *x, const float *mean, const float *rstd,
                                 const float *gamma, int n, int c, int hw) {
    const int parallel = (size_t)n * (size_t)c * (size_t)hw >= RL_PARALLEL_MIN_ELEMENTS;
    const double inv_count = 1.0 / count;
#pragma omp parallel for schedule(static) if (parallel)
    for (int ch = 0; ch < c; ch++) {
        channel_dx(dx, dy, x, n, c, hw, ch, gamma[ch], mean[ch], rstd[ch], sums[ch], sums[c + ch],
                   inv_count);
    }
}
