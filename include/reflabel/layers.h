/* reflabel/layers.h - the layers of the network, each a plain pair of
 * _forward/_backward functions over float32 NCHW buffers (llm.c style).
 *
 * Rules for every backward function:
 *  - Gradients are ACCUMULATED (+=) into dx, dweight, dbias, so that a tensor
 *    used twice (a skip connection) simply receives both contributions. The
 *    caller zeroes gradient buffers once per step.
 *  - dx may be NULL when the input needs no gradient (the image); dweight,
 *    dbias, dgamma, dbeta (and da, db of the concat) may be NULL as well.
 *  - Buffers never alias unless a comment says so.
 * Shapes are written as (N, C, H, W); hw = H * W.
 */
#ifndef REFLABEL_LAYERS_H
#define REFLABEL_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- convolution backend ------------------------------------------------ *
 * Which code computes the convolutions (2D and transposed), process-wide:
 *  RL_CONV_IM2COL  im2col + OpenBLAS SGEMM (src/nn/conv.c): the reference,
 *                  and the default of builds without oneDNN;
 *  RL_CONV_DNNL    oneDNN (src/nn/conv_dnnl.c), in builds with it
 *                  (RL_DNNL), and their default: a training step 3-4x
 *                  faster (docs/PERFORMANCE.md); shapes oneDNN cannot do
 *                  fall back to im2col.
 * The U-Net reads the backend when it is planned (rl_unet_plan) and makes
 * its oneDNN primitives then, once per layer; the layer functions below,
 * called directly, make them per call (for tests and one-off use). Set it
 * before planning, like rl_set_threads. Both give the same results up to
 * float rounding, not bit for bit. rl_set_conv_backend fails with
 * RL_EUNSUPPORTED for RL_CONV_DNNL in a build without oneDNN. */
typedef enum rl_conv_backend { RL_CONV_IM2COL = 0, RL_CONV_DNNL = 1 } rl_conv_backend;

struct rl_error;
int rl_set_conv_backend(rl_conv_backend backend, struct rl_error *err);
rl_conv_backend rl_get_conv_backend(void);
int rl_conv_backend_available(rl_conv_backend backend);
const char *rl_conv_backend_name(rl_conv_backend backend);
/* "im2col" or "dnnl" -> the backend; -1 for any other name. */
int rl_conv_backend_from_name(const char *name);

/* ---- 2D convolution ----------------------------------------------------- *
 * x (N, Cin, H, W), weight (Cout, Cin, KH, KW), bias (Cout) or NULL
 * -> y (N, Cout, Ho, Wo), Ho = (H + 2 pad - KH) / stride + 1 (same for W).
 * im2col: im2col + SGEMM per sample; a 1x1, stride-1, pad-0 convolution
 * (the head) skips im2col. scratch holds rl_conv2d_scratch_floats() floats
 * (oneDNN's own scratch is allocated per call here; the U-Net plans it). */
typedef struct rl_conv2d_dims {
    int n, cin, h, w;
    int cout, kh, kw;
    int stride, pad;
} rl_conv2d_dims;

int rl_conv2d_out_h(const rl_conv2d_dims *d);
int rl_conv2d_out_w(const rl_conv2d_dims *d);
size_t rl_conv2d_scratch_floats(const rl_conv2d_dims *d);
void rl_conv2d_forward(float *y, const float *x, const float *weight, const float *bias,
                       const rl_conv2d_dims *d, float *scratch);
void rl_conv2d_backward(float *dx, float *dweight, float *dbias, const float *dy,
                        const float *x, const float *weight, const rl_conv2d_dims *d,
                        float *scratch);

/* ---- 2x2 transposed convolution, stride 2 -------------------------------- *
 * x (N, Cin, H, W), weight (Cin, Cout, 2, 2) (PyTorch's ConvTranspose2d
 * layout), bias (Cout) or NULL -> y (N, Cout, 2H, 2W).
 * scratch holds rl_convt2x2_scratch_floats() floats. */
typedef struct rl_convt2x2_dims {
    int n, cin, h, w, cout;
} rl_convt2x2_dims;

size_t rl_convt2x2_scratch_floats(const rl_convt2x2_dims *d);
void rl_convt2x2_forward(float *y, const float *x, const float *weight, const float *bias,
                         const rl_convt2x2_dims *d, float *scratch);
void rl_convt2x2_backward(float *dx, float *dweight, float *dbias, const float *dy,
                          const float *x, const float *weight, const rl_convt2x2_dims *d,
                          float *scratch);

/* ---- 2x2 max-pool, stride 2 ---------------------------------------------- *
 * x (N, C, H, W) with H, W even -> y (N, C, H/2, W/2); argmax (N, C, H/2, W/2)
 * keeps which of the 4 inputs won (0..3, row-major in the window; the first
 * maximum wins ties, as in PyTorch). */
void rl_maxpool2x2_forward(float *y, uint8_t *argmax, const float *x, int n, int c, int h,
                           int w);
void rl_maxpool2x2_backward(float *dx, const float *dy, const uint8_t *argmax, int n, int c,
                            int h, int w);

/* ---- group norm --------------------------------------------------------- *
 * x, y (N, C, H, W); gamma, beta (C); mean, rstd (N, groups) saved for the
 * backward pass. C must be divisible by groups. Biased variance, as PyTorch. */
void rl_groupnorm_forward(float *y, float *mean, float *rstd, const float *x,
                          const float *gamma, const float *beta, int n, int c, int hw,
                          int groups, float eps);
void rl_groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                           const float *x, const float *mean, const float *rstd,
                           const float *gamma, int n, int c, int hw, int groups);
/* The same, but dx = its gradient instead of dx += it (dgamma and dbeta still
 * accumulate): no zeroed buffer. */
void rl_groupnorm_backward_set(float *dx, float *dgamma, float *dbeta, const float *dy,
                               const float *x, const float *mean, const float *rstd,
                               const float *gamma, int n, int c, int hw, int groups);
/* Group norm followed by LeakyReLU(slope), fused: y = leaky(groupnorm(x)),
 * bit for bit rl_groupnorm_forward then rl_leaky_relu_forward. */
void rl_groupnorm_leaky_forward(float *y, float *mean, float *rstd, const float *x,
                                const float *gamma, const float *beta, int n, int c, int hw,
                                int groups, float eps, float slope);

/* ---- batch norm --------------------------------------------------------- *
 * Training mode normalises with the batch statistics, saves mean and rstd (C)
 * for backward, and updates running_mean/running_var (C) in place exactly as
 * PyTorch: running = (1 - momentum) running + momentum batch, with the
 * unbiased variance for running_var. Eval mode uses the running statistics
 * (its backward is then a per-channel scale: use rl_batchnorm_backward_eval). */
void rl_batchnorm_forward_train(float *y, float *mean, float *rstd, float *running_mean,
                                float *running_var, const float *x, const float *gamma,
                                const float *beta, int n, int c, int hw, float momentum,
                                float eps);
void rl_batchnorm_forward_eval(float *y, const float *x, const float *gamma,
                               const float *beta, const float *running_mean,
                               const float *running_var, int n, int c, int hw, float eps);
void rl_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                           const float *x, const float *mean, const float *rstd,
                           const float *gamma, int n, int c, int hw);
void rl_batchnorm_backward_eval(float *dx, float *dgamma, float *dbeta, const float *dy,
                                const float *x, const float *gamma,
                                const float *running_mean, const float *running_var, int n,
                                int c, int hw, float eps);

/* Training mode over a batch split between processes (synchronised batch
 * norm): x, y, dx, dy hold this process's share (n images); the statistics
 * are those of the whole batch. Each phase sums over the share into doubles
 * that the caller sums in place over the processes (an allreduce) before the
 * next phase reads them:
 *   forward:  rl_batchnorm_sums(sums)              reduce sums (C + 1)
 *             rl_batchnorm_sq_devs(sq_devs, sums)  reduce sq_devs (C)
 *             rl_batchnorm_apply_train(.., sums, sq_devs, ..)
 *   backward: rl_batchnorm_backward_sums(bsums, dgamma, dbeta, ..)
 *                                                  reduce bsums (2C)
 *             rl_batchnorm_backward_apply(dx, bsums, sums[C], ..)
 * sums[C] is the count N HW, so reduced it is the whole batch's. The
 * backward adds this process's share to dgamma and dbeta (the caller sums
 * parameter gradients over the processes as for any other parameter) and
 * the whole batch's gradient to dx. With no other process (no reduction) the
 * results are rl_batchnorm_forward_train's and rl_batchnorm_backward's (the
 * same arithmetic). */
void rl_batchnorm_sums(double *sums, const float *x, int n, int c, int hw);
void rl_batchnorm_sq_devs(double *sq_devs, const double *sums, const float *x, int n, int c,
                          int hw);
void rl_batchnorm_apply_train(float *y, float *mean, float *rstd, float *running_mean,
                              float *running_var, const float *x, const float *gamma,
                              const float *beta, const double *sums, const double *sq_devs,
                              int n, int c, int hw, float momentum, float eps);
void rl_batchnorm_backward_sums(double *sums, float *dgamma, float *dbeta, const float *dy,
                                const float *x, const float *mean, const float *rstd, int n,
                                int c, int hw);
void rl_batchnorm_backward_apply(float *dx, const double *sums, double count, const float *dy,
                                 const float *x, const float *mean, const float *rstd,
                                 const float *gamma, int n, int c, int hw);

/* ---- ReLU / LeakyReLU --------------------------------------------------- *
 * y = x > 0 ? x : slope * x (slope 0: ReLU). y may alias x (in place).
 * The backward reads y, not x (sign(y) == sign(x) for slope >= 0), so the
 * activation can overwrite its input. */
void rl_leaky_relu_forward(float *y, const float *x, size_t count, float slope);
void rl_leaky_relu_backward(float *dx, const float *dy, const float *y, size_t count,
                            float slope);
/* The same, but dx = the gradient instead of dx += it: no zeroed buffer. */
void rl_leaky_relu_backward_set(float *dx, const float *dy, const float *y, size_t count,
                                float slope);

/* ---- channel concatenation ---------------------------------------------- *
 * a (N, Ca, H, W), b (N, Cb, H, W) -> y (N, Ca + Cb, H, W). */
void rl_concat_forward(float *y, const float *a, int ca, const float *b, int cb, int n,
                       int hw);
void rl_concat_backward(float *da, float *db, const float *dy, int ca, int cb, int n,
                        int hw);
/* The same, but da = and db = their channels of dy, not += them. */
void rl_concat_backward_set(float *da, float *db, const float *dy, int ca, int cb, int n,
                            int hw);

#ifdef __cplusplus
}
#endif
#endif
