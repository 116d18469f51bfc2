/* The two implementations behind the convolution layers (internal to
 * src/nn). rl_conv2d_* and rl_convt2x2_* of layers.h dispatch on the
 * process-wide backend (rl_set_conv_backend); the U-Net calls these
 * directly, with oneDNN primitives it made when it was planned. */
#ifndef RL_NN_CONV_IMPL_H
#define RL_NN_CONV_IMPL_H

#include <stddef.h>

#include "reflabel/core.h"
#include "reflabel/layers.h"

/* ---- im2col + SGEMM (conv.c) --------------------------------------------- *
 * The reference, and the fallback wherever oneDNN is absent or has no
 * implementation for a shape. Same contracts as layers.h. */
void rl_conv2d_forward_im2col(float *y, const float *x, const float *weight, const float *bias,
                              const rl_conv2d_dims *d, float *scratch);
void rl_conv2d_backward_im2col(float *dx, float *dweight, float *dbias, const float *dy,
                               const float *x, const float *weight, const rl_conv2d_dims *d,
                               float *scratch);
void rl_convt2x2_forward_im2col(float *y, const float *x, const float *weight,
                                const float *bias, const rl_convt2x2_dims *d, float *scratch);
void rl_convt2x2_backward_im2col(float *dx, float *dweight, float *dbias, const float *dy,
                                 const float *x, const float *weight,
                                 const rl_convt2x2_dims *d, float *scratch);

/* ---- oneDNN (conv_dnnl.c) ------------------------------------------------ *
 * One rl_dnnl_conv holds the primitives of one layer at one shape (forward,
 * and for training backward data and backward weights), created once when
 * the U-Net is planned.
 *
 * Semantics are those of layers.h: NCHW float32 buffers, weights in our
 * layouts, forward overwrites y, backward ACCUMULATES into dx, dweight,
 * dbias (any may be NULL), or with set_dx overwrites dx (and still adds to
 * dweight, dbias). Every temporary (oneDNN's blocked copies of the
 * tensors, its scratchpad) lives in the caller's scratch of
 * rl_dnnl_conv_scratch_floats() floats, 64-byte aligned; nothing is
 * allocated per call.
 *
 * Built without oneDNN (no RL_HAVE_DNNL), creation fails with
 * RL_EUNSUPPORTED and callers keep the im2col path. */
typedef struct rl_dnnl_conv rl_dnnl_conv;

/* 1 when this build has oneDNN. */
int rl_dnnl_available(void);

/* A 2D convolution of shape d; with_bias says whether forward takes a bias
 * and backward may return its gradient; for_training adds the backward
 * primitives. Fails (*out NULL) where oneDNN has no implementation, so that
 * the caller can fall back to im2col. */
int rl_dnnl_conv2d_create(rl_dnnl_conv **out, const rl_conv2d_dims *d, int with_bias,
                          int for_training, rl_error *err);
/* A convolution whose input is a concatenation of two tensors along the
 * channels, (N, cin_a, H, W) then (N, cin - cin_a, H, W), read where they lie
 * (the U-Net's decoder: skip connection and upsampled map): each is
 * reordered into its channels of oneDNN's copy, and the data gradient is
 * written back to the two apart, so no concatenated tensor is copied
 * either way. Fails where the split cuts through oneDNN's channel block
 * (cin_a not a multiple of 16 with AVX-512); the caller then concatenates.
 * Run it with the _cat functions below. */
int rl_dnnl_conv2d_create_cat(rl_dnnl_conv **out, const rl_conv2d_dims *d, int cin_a,
                              int with_bias, int for_training, rl_error *err);
/* The 2x2 stride-2 transposed convolution, weight (Cin, Cout, 2, 2). */
int rl_dnnl_convt2x2_create(rl_dnnl_conv **out, const rl_convt2x2_dims *d, int with_bias,
                            int for_training, rl_error *err);
void rl_dnnl_conv_free(rl_dnnl_conv *c);

size_t rl_dnnl_conv_scratch_floats(const rl_dnnl_conv *c);

/* RL_OK, or RL_EUNSUPPORTED (with err) when oneDNN fails to run. Backward
 * needs a handle made for training; bias/dbias only with with_bias. */
int rl_dnnl_conv_forward(rl_dnnl_conv *c, float *y, const float *x, const float *weight,
                         const float *bias, float *scratch, rl_error *err);
int rl_dnnl_conv_backward(rl_dnnl_conv *c, float *dx, float *dweight, float *dbias,
                          const float *dy, const float *x, const float *weight, float *scratch,
                          int set_dx, rl_error *err);
/* The same for a convolution made by rl_dnnl_conv2d_create_cat: x_a, x_b
 * its input's two parts, dx_a, dx_b their gradients (either may be NULL).
 * RL_EINVAL where x_b is given to any other convolution or missing here. */
int rl_dnnl_conv_forward_cat(rl_dnnl_conv *c, float *y, const float *x_a, const float *x_b,
                             const float *weight, const float *bias, float *scratch,
                             rl_error *err);
int rl_dnnl_conv_backward_cat(rl_dnnl_conv *c, float *dx_a, float *dx_b, float *dweight,
                              float *dbias, const float *dy, const float *x_a, const float *x_b,
                              const float *weight, float *scratch, int set_dx, rl_error *err);

#endif
