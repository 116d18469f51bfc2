/* Convolutions as matrix products: the 2D convolution through im2col and one
 * SGEMM per sample, the 2x2 stride-2 transposed convolution as one SGEMM per
 * sample followed by a scatter. This is the im2col backend (conv_impl.h),
 * the default and the reference; conv_backend.c holds the layer functions
 * that dispatch between it and oneDNN (conv_dnnl.c).
 *
 * Threading: OpenBLAS (pthread build) threads each SGEMM itself, and all the
 * code here is deliberately serial. The reshuffles between the per-sample
 * SGEMMs (im2col, col2im, scatter/gather) are cheap and memory-bound, and an
 * OpenMP region there alternates with OpenBLAS's own thread pool: the OpenMP
 * workers keep spinning after each region (libgomp's default wait policy)
 * and steal the cores OpenBLAS needs next. Measured on 2 cores (N=8, C=16,
 * 128x128, 3x3, forward + backward): OpenMP im2col/col2im 560-870 ms, serial
 * 90-200 ms under the same load. The inner loops are `omp simd` so that they
 * vectorise at -O2.
 */
#include "reflabel/core.h"
#include "reflabel/layers.h"

#include <string.h>

#include "conv_impl.h"

int rl_conv2d_out_h(const rl_conv2d_dims *d) {
    return (d->h + 2 * d->pad - d->kh) / d->stride + 1;
}

int rl_conv2d_out_w(const rl_conv2d_dims *d) {
    return (d->w + 2 * d->pad - d->kw) / d->stride + 1;
}

/* A 1x1, stride-1, pad-0 convolution is a plain matrix product with the
 * input itself: its "columns" would be an exact copy of x. */
static int conv2d_is_pointwise(const rl_conv2d_dims *d) {
    return d->kh == 1 && d->kw == 1 && d->stride == 1 && d->pad == 0;
}

/* With stride 1, the input gradient is itself a convolution: the "full"
 * correlation of dy with the flipped, transposed kernel,
 *   dx[c, i, j] = sum_{o, a, b} W[o, c, KH-1-a, KW-1-b] dy[o, i - (KH-1-pad) + a, j - (KW-1-pad) + b],
 * i.e. im2col of dy with padding (KH-1-pad, KW-1-pad) and one SGEMM that
 * accumulates straight into dx. That replaces the SGEMM W^T dy with its
 * inner dimension of only Cout (which writes a Cin*KH*KW x Ho*Wo matrix)
 * plus the col2im pass. Measured single-threaded for N=8, C=16, 128x128,
 * 3x3: backward 64-81 ms -> 55-62 ms. Needs pad <= K-1 so that the new
 * padding is not negative. */
static int conv2d_dx_is_conv(const rl_conv2d_dims *d) {
    return d->stride == 1 && !conv2d_is_pointwise(d) && d->pad <= d->kh - 1 &&
           d->pad <= d->kw - 1;
}

/* The geometry of one im2col: input (C, H, W) -> columns
 * (C*KH*KW, Ho*Wo); the two paddings differ for the dx-as-convolution. */
typedef struct col_geometry {
    int c, h, w;
    int kh, kw, stride, pad_h, pad_w;
    int ho, wo;
} col_geometry;

static col_geometry forward_geometry(const rl_conv2d_dims *d) {
    col_geometry g = {d->cin, d->h, d->w, d->kh, d->kw, d->stride, d->pad, d->pad,
                      rl_conv2d_out_h(d), rl_conv2d_out_w(d)};
    return g;
}

/* Columns of dy (Cout, Ho, Wo) for the dx-as-convolution; output (H, W). */
static col_geometry dx_geometry(const rl_conv2d_dims *d) {
    col_geometry g = {d->cout, rl_conv2d_out_h(d), rl_conv2d_out_w(d), d->kh, d->kw, 1,
                      d->kh - 1 - d->pad, d->kw - 1 - d->pad, d->h, d->w};
    return g;
}

static size_t col_floats(const col_geometry *g) {
    return (size_t)g->c * (size_t)g->kh * (size_t)g->kw * (size_t)g->ho * (size_t)g->wo;
}

/* Scratch: the columns (the larger of the two im2cols when dx is computed
 * as a convolution), then the flipped, transposed kernel. */
size_t rl_conv2d_scratch_floats(const rl_conv2d_dims *d) {
    if (conv2d_is_pointwise(d)) return 0;
    col_geometry fg = forward_geometry(d);
    size_t cols = col_floats(&fg);
    if (!conv2d_dx_is_conv(d)) return cols;
    col_geometry bg = dx_geometry(d);
    size_t dx_cols = col_floats(&bg);
    size_t kernel = (size_t)d->cout * (size_t)d->cin * (size_t)d->kh * (size_t)d->kw;
    return (cols > dx_cols ? cols : dx_cols) + kernel;
}

/* The output columns [*lo, *hi) whose input column ow * stride - pad_w + kj
 * falls inside [0, w); columns outside read the zero padding. */
static void valid_cols(const col_geometry *g, int kj, int *lo, int *hi) {
    int first = g->pad_w - kj; /* smallest admissible ow * stride */
    int last = g->w - 1 + g->pad_w - kj;
    int l = first <= 0 ? 0 : (first + g->stride - 1) / g->stride;
    int h = last < 0 ? 0 : last / g->stride + 1;
    if (h > g->wo) h = g->wo;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* x (C, H, W) of one sample -> col (C*KH*KW, Ho*Wo), row r = (c, ki, kj):
 * col[r][oh*Wo + ow] = x[c][oh*s - pad_h + ki][ow*s - pad_w + kj], 0 outside. */
static void im2col(float *col, const float *x, const col_geometry *g) {
    const int rows = g->c * g->kh * g->kw;
    const size_t plane = (size_t)g->h * (size_t)g->w;
    for (int r = 0; r < rows; r++) {
        const int kj = r % g->kw, ki = (r / g->kw) % g->kh, c = r / (g->kw * g->kh);
        const float *xc = x + (size_t)c * plane;
        float *dst = col + (size_t)r * (size_t)g->ho * (size_t)g->wo;
        int lo, hi;
        valid_cols(g, kj, &lo, &hi);
        for (int oh = 0; oh < g->ho; oh++) {
            float *drow = dst + (size_t)oh * (size_t)g->wo;
            const int ih = oh * g->stride - g->pad_h + ki;
            if (ih < 0 || ih >= g->h) {
                memset(drow, 0, (size_t)g->wo * sizeof *drow);
                continue;
            }
            const float *xrow = xc + (size_t)ih * (size_t)g->w - g->pad_w + kj;
            for (int ow = 0; ow < lo; ow++) drow[ow] = 0.0f;
            if (g->stride == 1) {
                memcpy(drow + lo, xrow + lo, (size_t)(hi - lo) * sizeof *drow);
            } else {
                for (int ow = lo; ow < hi; ow++) drow[ow] = xrow[ow * g->stride];
            }
            for (int ow = hi; ow < g->wo; ow++) drow[ow] = 0.0f;
        }
    }
}

/* The adjoint of im2col: dx (C, H, W) += scattered col. */
static void col2im_add(float *dx, const float *col, const col_geometry *g) {
    const size_t plane = (size_t)g->h * (size_t)g->w;
    for (int c = 0; c < g->c; c++) {
        float *dxc = dx + (size_t)c * plane;
        for (int ki = 0; ki < g->kh; ki++) {
            for (int kj = 0; kj < g->kw; kj++) {
                const int r = (c * g->kh + ki) * g->kw + kj;
                const float *src = col + (size_t)r * (size_t)g->ho * (size_t)g->wo;
                int lo, hi;
                valid_cols(g, kj, &lo, &hi);
                for (int oh = 0; oh < g->ho; oh++) {
                    const int ih = oh * g->stride - g->pad_h + ki;
                    if (ih < 0 || ih >= g->h) continue;
                    const float *srow = src + (size_t)oh * (size_t)g->wo;
                    float *xrow = dxc + (size_t)ih * (size_t)g->w - g->pad_w + kj;
                    if (g->stride == 1) {
#pragma omp simd
                        for (int ow = lo; ow < hi; ow++) xrow[ow] += srow[ow];
                    } else {
                        for (int ow = lo; ow < hi; ow++) xrow[ow * g->stride] += srow[ow];
                    }
                }
            }
        }
    }
}

/* weight (Cout, Cin, KH, KW) -> flipped (Cin, Cout, KH, KW) with
 * flipped[c][o][a][b] = weight[o][c][KH-1-a][KW-1-b]. */
static void flip_kernel(float *flipped, const float *weight, const rl_conv2d_dims *d) {
    const int taps = d->kh * d->kw;
    for (int o = 0; o < d->cout; o++)
        for (int c = 0; c < d->cin; c++) {
            const float *src = weight + ((size_t)o * (size_t)d->cin + (size_t)c) * (size_t)taps;
            float *dst = flipped + ((size_t)c * (size_t)d->cout + (size_t)o) * (size_t)taps;
            for (int t = 0; t < taps; t++) dst[t] = src[taps - 1 - t];
        }
}

/* y (C, P) rows set to bias[c] (or 0), so that the SGEMM can accumulate. */
static void fill_rows(float *y, const float *bias, int c, size_t p) {
    for (int i = 0; i < c; i++) {
        float *row = y + (size_t)i * p;
        const float v = bias ? bias[i] : 0.0f;
#pragma omp simd
        for (size_t j = 0; j < p; j++) row[j] = v;
    }
}

/* dbias (C) += sum over samples and positions of dy (N, C, P). */
static void bias_grad_add(float *dbias, const float *dy, int n, int c, size_t p) {
    for (int i = 0; i < c; i++) {
        double sum = 0.0;
        for (int s = 0; s < n; s++) {
            const float *row = dy + ((size_t)s * (size_t)c + (size_t)i) * p;
#pragma omp simd reduction(+ : sum)
            for (size_t j = 0; j < p; j++) sum += row[j];
        }
        dbias[i] += (float)sum;
    }
}

/* x (N, Cin, H, W), weight (Cout, Cin*KH*KW) -> y (N, Cout, Ho, Wo):
 * per sample, y_s (Cout, P) = W (Cout, K) * col_s (K, P). */
void rl_conv2d_forward_im2col(float *y, const float *x, const float *weight, const float *bias,
                              const rl_conv2d_dims *d, float *scratch) {
    const col_geometry g = forward_geometry(d);
    const int p = g.ho * g.wo;
    const int k = d->cin * d->kh * d->kw;
    const size_t x_stride = (size_t)d->cin * (size_t)d->h * (size_t)d->w;
    const size_t y_stride = (size_t)d->cout * (size_t)p;
    const int pointwise = conv2d_is_pointwise(d);
    for (int s = 0; s < d->n; s++) {
        const float *xs = x + (size_t)s * x_stride;
        float *ys = y + (size_t)s * y_stride;
        const float *cols = xs;
        if (!pointwise) {
            im2col(scratch, xs, &g);
            cols = scratch;
        }
        fill_rows(ys, bias, d->cout, (size_t)p);
        rl_sgemm(0, 0, d->cout, p, k, 1.0f, weight, k, cols, p, 1.0f, ys, p);
    }
}

/* dy (N, Cout, Ho, Wo) -> dx (N, Cin, H, W), dweight (Cout, Cin, KH, KW) and
 * dbias (Cout), all accumulated; any of the three may be NULL. Per sample:
 *   dW += dy_s (Cout, P) * col_s^T (P, K)
 *   dx_s += W^T dy_s, computed as
 *     pointwise:           one SGEMM straight into dx_s;
 *     stride 1:            flipped kernel (Cin, Cout*KH*KW) * im2col(dy_s),
 *                          straight into dx_s (see conv2d_dx_is_conv);
 *     otherwise:           col2im(W^T (K, Cout) * dy_s (Cout, P)).
 * The scratch first holds col_s, then (once dW is done) the dx columns. */
void rl_conv2d_backward_im2col(float *dx, float *dweight, float *dbias, const float *dy,
                               const float *x, const float *weight, const rl_conv2d_dims *d,
                               float *scratch) {
    const col_geometry g = forward_geometry(d);
    const int p = g.ho * g.wo;
    const int k = d->cin * d->kh * d->kw;
    const size_t x_stride = (size_t)d->cin * (size_t)d->h * (size_t)d->w;
    const size_t y_stride = (size_t)d->cout * (size_t)p;
    const int pointwise = conv2d_is_pointwise(d);
    const int dx_is_conv = conv2d_dx_is_conv(d);
    const col_geometry dg = dx_geometry(d);
    const int dk = d->cout * d->kh * d->kw; /* inner dimension of the dx GEMM */
    const int hw = d->h * d->w;
    float *flipped = NULL;
    if (dx && dx_is_conv) {
        const size_t cols = col_floats(&g), dx_cols = col_floats(&dg);
        flipped = scratch + (cols > dx_cols ? cols : dx_cols);
        flip_kernel(flipped, weight, d);
    }
    if (dbias) bias_grad_add(dbias, dy, d->n, d->cout, (size_t)p);
    for (int s = 0; s < d->n; s++) {
        const float *xs = x + (size_t)s * x_stride;
        const float *dys = dy + (size_t)s * y_stride;
        if (dweight) {
            const float *cols = xs;
            if (!pointwise) {
                im2col(scratch, xs, &g);
                cols = scratch;
            }
            rl_sgemm(0, 1, d->cout, k, p, 1.0f, dys, p, cols, p, 1.0f, dweight, k);
        }
        if (!dx) continue;
        float *dxs = dx + (size_t)s * x_stride;
        if (pointwise) {
            rl_sgemm(1, 0, k, p, d->cout, 1.0f, weight, k, dys, p, 1.0f, dxs, p);
        } else if (dx_is_conv) {
            im2col(scratch, dys, &dg);
            rl_sgemm(0, 0, d->cin, hw, dk, 1.0f, flipped, dk, scratch, hw, 1.0f, dxs, hw);
        } else {
            rl_sgemm(1, 0, k, p, d->cout, 1.0f, weight, k, dys, p, 0.0f, scratch, p);
            col2im_add(dxs, scratch, &g);
        }
    }
}

/* ---- transposed convolution ---------------------------------------------- *
 * With weight viewed as W (Cin, Cout*4), row q = co*4 + a*2 + b of the product
 * T = W^T x_s (Cout*4, H*W) holds the contribution of every input pixel (i, j)
 * to output pixel (2i + a, 2j + b) of channel co. With kernel = stride = 2
 * the output windows do not overlap, so the scatter is a pure permutation. */

size_t rl_convt2x2_scratch_floats(const rl_convt2x2_dims *d) {
    return (size_t)d->cout * 4u * (size_t)d->h * (size_t)d->w;
}

/* x (N, Cin, H, W), weight (Cin, Cout, 2, 2) -> y (N, Cout, 2H, 2W). */
void rl_convt2x2_forward_im2col(float *y, const float *x, const float *weight,
                                const float *bias, const rl_convt2x2_dims *d, float *scratch) {
    const int hw = d->h * d->w;
    const int q = d->cout * 4;
    const size_t x_stride = (size_t)d->cin * (size_t)hw;
    const size_t y_stride = (size_t)d->cout * 4u * (size_t)hw;
    const int wo = 2 * d->w;
    for (int s = 0; s < d->n; s++) {
        rl_sgemm(1, 0, q, hw, d->cin, 1.0f, weight, q, x + (size_t)s * x_stride, hw, 0.0f,
                 scratch, hw);
        float *ys = y + (size_t)s * y_stride;
        for (int co = 0; co < d->cout; co++) {
            const float b0 = bias ? bias[co] : 0.0f;
            float *yc = ys + (size_t)co * 4u * (size_t)hw;
            for (int ab = 0; ab < 4; ab++) {
                const int a = ab >> 1, b = ab & 1;
                const float *t = scratch + ((size_t)co * 4u + (size_t)ab) * (size_t)hw;
                for (int i = 0; i < d->h; i++) {
                    float *yrow = yc + (size_t)(2 * i + a) * (size_t)wo + b;
                    const float *trow = t + (size_t)i * (size_t)d->w;
                    for (int j = 0; j < d->w; j++) yrow[2 * j] = trow[j] + b0;
                }
            }
        }
    }
}

/* dy (N, Cout, 2H, 2W) -> dx (N, Cin, H, W), dweight (Cin, Cout, 2, 2),
 * dbias (Cout), all accumulated; any may be NULL. The scratch gathers dy_s
 * into the layout of T, then dx_s += W T and dW += x_s T^T. */
void rl_convt2x2_backward_im2col(float *dx, float *dweight, float *dbias, const float *dy,
                                 const float *x, const float *weight,
                                 const rl_convt2x2_dims *d, float *scratch) {
    const int hw = d->h * d->w;
    const int q = d->cout * 4;
    const size_t x_stride = (size_t)d->cin * (size_t)hw;
    const size_t y_stride = (size_t)d->cout * 4u * (size_t)hw;
    const int wo = 2 * d->w;
    if (dbias) bias_grad_add(dbias, dy, d->n, d->cout, 4u * (size_t)hw);
    if (!dx && !dweight) return;
    for (int s = 0; s < d->n; s++) {
        const float *dys = dy + (size_t)s * y_stride;
        for (int co = 0; co < d->cout; co++) {
            const float *dyc = dys + (size_t)co * 4u * (size_t)hw;
            for (int ab = 0; ab < 4; ab++) {
                const int a = ab >> 1, b = ab & 1;
                float *t = scratch + ((size_t)co * 4u + (size_t)ab) * (size_t)hw;
                for (int i = 0; i < d->h; i++) {
                    const float *dyrow = dyc + (size_t)(2 * i + a) * (size_t)wo + b;
                    float *trow = t + (size_t)i * (size_t)d->w;
                    for (int j = 0; j < d->w; j++) trow[j] = dyrow[2 * j];
                }
            }
        }
        if (dx) {
            rl_sgemm(0, 0, d->cin, hw, q, 1.0f, weight, q, scratch, hw, 1.0f,
                     dx + (size_t)s * x_stride, hw);
        }
        if (dweight) {
            rl_sgemm(0, 1, d->cin, q, hw, 1.0f, x + (size_t)s * x_stride, hw, scratch, hw,
                     1.0f, dweight, q);
        }
    }
}
