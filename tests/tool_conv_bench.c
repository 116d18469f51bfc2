/* Per-layer timings of the convolution backends (docs/PERFORMANCE.md): every
 * 3x3 and transposed convolution of the U-Net of `bench train` (batch 8,
 * 128x128, depth 4), forward and backward on our buffers, im2col and oneDNN
 * (primitives made once, as the U-Net does) alternating; medians in ms.
 * usage: tool_conv_bench [WIDTH=16] [THREADS=1] [REPS=5]  (needs oneDNN) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/conv_impl.h"
static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double med(double *v, int n) {
    qsort(v, n, sizeof *v, cmpd);
    return v[n / 2];
}
int main(int argc, char **argv) {
    int width = argc > 1 ? atoi(argv[1]) : 16, threads = argc > 2 ? atoi(argv[2]) : 1,
        reps = argc > 3 ? atoi(argv[3]) : 5;
    if (!rl_dnnl_available() || reps < 1 || reps > 64) {
        fprintf(stderr, "tool_conv_bench: needs oneDNN and 1..64 repetitions\n");
        return 2;
    }
    rl_set_threads(threads);
    const int n = 8, depth = 4;
    int S = 128;
    double tot[4] = {0};
    printf(
        "layer                      im2col_fwd dnnl_fwd im2col_bwd dnnl_bwd (ms, median of %d)\n",
        reps);
    /* kind 0: encoder units, 1: decoder units, 2: transposed convolutions */
    for (int kind = 0; kind < 3; kind++)
        for (int l = 0; l <= depth; l++) {
            int w = width << l, h = S >> l;
            int nshape = kind == 0 ? 2 : (kind == 1 ? (l < depth ? 2 : 0) : (l < depth ? 1 : 0));
            for (int k = 0; k < nshape; k++) {
                rl_conv2d_dims d = {n, 0, h, h, w, 3, 3, 1, 1};
                rl_convt2x2_dims td = {n, 2 * w, h / 2, h / 2, w};
                int convt = kind == 2;
                if (kind == 0)
                    d.cin = k == 0 ? (l == 0 ? 1 : w / 2) : w;
                if (kind == 1)
                    d.cin = k == 0 ? 2 * w : w;
                size_t nx = convt ? (size_t)n * td.cin * td.h * td.w : (size_t)n * d.cin * h * h;
                size_t ny = convt ? (size_t)n * w * h * h : (size_t)n * w * h * h;
                size_t nw = convt ? (size_t)td.cin * w * 4 : (size_t)w * d.cin * 9;
                float *x = calloc(nx, 4), *dx = calloc(nx, 4), *y = calloc(ny, 4),
                      *dy = calloc(ny, 4), *wt = calloc(nw, 4), *dw = calloc(nw, 4),
                      *b = calloc(w, 4), *db = calloc(w, 4);
                for (size_t i = 0; i < nx; i++)
                    x[i] = (float)(i % 7) - 3;
                for (size_t i = 0; i < ny; i++)
                    dy[i] = (float)(i % 5) - 2;
                rl_dnnl_conv *c = NULL;
                rl_error err = {0, ""};
                if (convt)
                    rl_dnnl_convt2x2_create(&c, &td, 1, 1, &err);
                else
                    rl_dnnl_conv2d_create(&c, &d, 0, 1, &err);
                size_t s1 = convt ? rl_convt2x2_scratch_floats(&td) : rl_conv2d_scratch_floats(&d);
                size_t s2 = rl_dnnl_conv_scratch_floats(c);
                float *scr = aligned_alloc(64, ((s1 > s2 ? s1 : s2) * 4 + 64) / 64 * 64);
                double t[4][64];
                for (int r = 0; r < reps + 1; r++) {
                    double t0 = rl_now_seconds();
                    if (convt)
                        rl_convt2x2_forward_im2col(y, x, wt, b, &td, scr);
                    else
                        rl_conv2d_forward_im2col(y, x, wt, NULL, &d, scr);
                    double t1 = rl_now_seconds();
                    rl_dnnl_conv_forward(c, y, x, wt, convt ? b : NULL, scr, &err);
                    double t2 = rl_now_seconds();
                    if (convt)
                        rl_convt2x2_backward_im2col(dx, dw, db, dy, x, wt, &td, scr);
                    else
                        rl_conv2d_backward_im2col(dx, dw, NULL, dy, x, wt, &d, scr);
                    double t3 = rl_now_seconds();
                    rl_dnnl_conv_backward(c, dx, dw, convt ? db : NULL, dy, x, wt, scr, 0, &err);
                    double t4 = rl_now_seconds();
                    if (r) {
                        t[0][r - 1] = (t1 - t0) * 1e3;
                        t[1][r - 1] = (t2 - t1) * 1e3;
                        t[2][r - 1] = (t3 - t2) * 1e3;
                        t[3][r - 1] = (t4 - t3) * 1e3;
                    }
                }
                char name[64];
                if (convt)
                    snprintf(name, sizeof name, "up.%d %d->%d %dx%d", l, td.cin, w, h, h);
                else
                    snprintf(name, sizeof name, "%s.%d.conv%d %d->%d %dx%d", kind ? "dec" : "enc",
                             l, k + 1, d.cin, w, h, h);
                double m[4];
                for (int i = 0; i < 4; i++) {
                    m[i] = med(t[i], reps);
                    tot[i] += m[i];
                }
                printf("%-26s %9.2f %8.2f %10.2f %8.2f\n", name, m[0], m[1], m[2], m[3]);
                rl_dnnl_conv_free(c);
                free(x), free(dx), free(y), free(dy), free(wt), free(dw), free(b), free(db),
                    free(scr);
            }
        }
    printf("%-26s %9.2f %8.2f %10.2f %8.2f\n", "total (3x3 + up)", tot[0], tot[1], tot[2], tot[3]);
    return 0;
}
