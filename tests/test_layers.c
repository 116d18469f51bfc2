/* Layers: every forward against a direct double-precision reference, every
 * backward (each input and parameter gradient) against central finite
 * differences of L = sum(r .* y) for a fixed random r, plus the backward
 * contract: gradients accumulate (+=) and dx == NULL is accepted.
 *
 * Tolerance of the finite-difference checks. rl_gradcheck reports
 * |analytic - numeric| / max(1, |analytic|, |numeric|). The layers run in
 * float32, so L (a double sum of at most a few hundred float outputs of size
 * O(1)) carries a rounding noise of about 1e-7 * sqrt(#terms) * |y| ~ 1e-6;
 * divided by the 2 eps = 2e-2 of the central difference that is ~1e-4. The
 * truncation error eps^2 |L'''| / 6 is ~2e-5 for these O(1) smooth functions
 * (the piecewise-linear ones are tested away from their kinks, where it is
 * 0). FD_TOL = 2e-3 leaves a 10x margin over both, while a wrong term in a
 * gradient (a missing factor, an off-by-one tap) shows up as O(1e-1). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/layers.h"
#include "testutil.h"

#define FD_EPS 1e-2
#define FD_TOL 2e-3

static double worst_fd_error = 0.0;

static float *alloc_floats(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

static float *random_floats(size_t n, rl_rng *rng, float lo, float hi) {
    float *p = alloc_floats(n);
    rl_fill_uniform(p, n, rng, lo, hi);
    return p;
}

static double weighted_sum(const float *y, const float *r, size_t n) {
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += (double)r[i] * (double)y[i];
    return sum;
}

/* Checks every coordinate of param (count == n). */
static void check_fd(const char *what, rl_scalar_fn f, void *ctx, float *param,
                     const float *analytic, size_t n) {
    rl_rng rng;
    rl_rng_seed(&rng, 1, 1);
    double e = rl_gradcheck(f, ctx, param, analytic, n, n, FD_EPS, &rng);
    if (e > worst_fd_error) worst_fd_error = e;
    CHECK_MSG(e <= FD_TOL, "%s: finite-difference error %.3g > %.3g", what, e, FD_TOL);
}

/* acc was filled with `before` and then received the same backward as fresh
 * (which started at 0): acc must be before + fresh. */
static void check_accumulated(const char *what, const float *acc, const float *fresh,
                              float before, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)acc[i] - ((double)before + (double)fresh[i]));
        double tol = 1e-6 * (1.0 + fabs((double)fresh[i]));
        if (e / tol > worst) worst = e / tol;
    }
    CHECK_MSG(worst <= 1.0, "%s: gradient not accumulated (+=), off by %.3g tolerances", what,
              worst);
}

static void check_equal(const char *what, const float *a, const float *b, size_t n) {
    CHECK_MSG(memcmp(a, b, n * sizeof *a) == 0, "%s: results differ", what);
}

static void check_close(const char *what, const float *got, const double *want, size_t n,
                        double tol) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        num += (got[i] - want[i]) * (got[i] - want[i]);
        den += want[i] * want[i];
    }
    double e = sqrt(num) / (den > 0 ? sqrt(den) : 1.0);
    CHECK_MSG(e <= tol, "%s: relative L2 error %.3g > %.3g", what, e, tol);
}

/* ---- 2D convolution --------------------------------------------------------- */

typedef struct conv_ctx {
    rl_conv2d_dims d;
    float *x, *w, *b, *y, *r, *scratch;
    size_t ny;
} conv_ctx;

static double conv_loss(void *p) {
    conv_ctx *c = p;
    rl_conv2d_forward(c->y, c->x, c->w, c->b, &c->d, c->scratch);
    return weighted_sum(c->y, c->r, c->ny);
}

/* Direct convolution in double, straight from the definition. */
static void conv_reference(double *y, const conv_ctx *c) {
    const rl_conv2d_dims *d = &c->d;
    int ho = rl_conv2d_out_h(d), wo = rl_conv2d_out_w(d);
    for (int s = 0; s < d->n; s++)
        for (int o = 0; o < d->cout; o++)
            for (int i = 0; i < ho; i++)
                for (int j = 0; j < wo; j++) {
                    double acc = c->b ? c->b[o] : 0.0;
                    for (int ci = 0; ci < d->cin; ci++)
                        for (int ki = 0; ki < d->kh; ki++)
                            for (int kj = 0; kj < d->kw; kj++) {
                                int ih = i * d->stride - d->pad + ki;
                                int iw = j * d->stride - d->pad + kj;
                                if (ih < 0 || ih >= d->h || iw < 0 || iw >= d->w) continue;
                                acc += (double)c->w[((o * d->cin + ci) * d->kh + ki) * d->kw + kj] *
                                       c->x[((s * d->cin + ci) * d->h + ih) * d->w + iw];
                            }
                    y[((s * d->cout + o) * ho + i) * wo + j] = acc;
                }
}

static void test_conv2d_case(rl_conv2d_dims d, int with_bias, rl_rng *rng) {
    char name[128];
    snprintf(name, sizeof name, "conv %dx%d s%d p%d cin%d cout%d %dx%d%s", d.kh, d.kw, d.stride,
             d.pad, d.cin, d.cout, d.h, d.w, with_bias ? " bias" : "");
    conv_ctx c = {.d = d};
    size_t nx = (size_t)d.n * d.cin * d.h * d.w, nw = (size_t)d.cout * d.cin * d.kh * d.kw;
    c.ny = (size_t)d.n * d.cout * rl_conv2d_out_h(&d) * rl_conv2d_out_w(&d);
    c.x = random_floats(nx, rng, -1, 1);
    c.w = random_floats(nw, rng, -1, 1);
    c.b = with_bias ? random_floats((size_t)d.cout, rng, -1, 1) : NULL;
    c.y = alloc_floats(c.ny);
    c.r = random_floats(c.ny, rng, -1, 1);
    c.scratch = alloc_floats(rl_conv2d_scratch_floats(&d));

    double *want = calloc(c.ny, sizeof *want);
    conv_reference(want, &c);
    rl_conv2d_forward(c.y, c.x, c.w, c.b, &d, c.scratch);
    check_close(name, c.y, want, c.ny, 1e-6);
    free(want);

    float *dx = alloc_floats(nx), *dw = alloc_floats(nw), *db = alloc_floats((size_t)d.cout);
    rl_conv2d_backward(dx, dw, with_bias ? db : NULL, c.r, c.x, c.w, &d, c.scratch);
    check_fd(name, conv_loss, &c, c.x, dx, nx);
    check_fd(name, conv_loss, &c, c.w, dw, nw);
    if (with_bias) check_fd(name, conv_loss, &c, c.b, db, (size_t)d.cout);

    /* += contract, and dx == NULL leaves dW and db as they were */
    float *dx2 = alloc_floats(nx), *dw2 = alloc_floats(nw), *db2 = alloc_floats((size_t)d.cout);
    for (size_t i = 0; i < nx; i++) dx2[i] = 0.5f;
    for (size_t i = 0; i < nw; i++) dw2[i] = 0.5f;
    for (int i = 0; i < d.cout; i++) db2[i] = 0.5f;
    rl_conv2d_backward(dx2, dw2, db2, c.r, c.x, c.w, &d, c.scratch);
    check_accumulated(name, dx2, dx, 0.5f, nx);
    check_accumulated(name, dw2, dw, 0.5f, nw);
    if (with_bias) check_accumulated(name, db2, db, 0.5f, (size_t)d.cout);
    memset(dw2, 0, nw * sizeof *dw2);
    memset(db2, 0, (size_t)d.cout * sizeof *db2);
    rl_conv2d_backward(NULL, dw2, with_bias ? db2 : NULL, c.r, c.x, c.w, &d, c.scratch);
    check_equal(name, dw2, dw, nw);
    if (with_bias) check_equal(name, db2, db, (size_t)d.cout);

    free(dx2), free(dw2), free(db2), free(dx), free(dw), free(db);
    free(c.x), free(c.w), free(c.b), free(c.y), free(c.r), free(c.scratch);
}

static void test_conv2d(rl_rng *rng) {
    /* n, cin, h, w, cout, kh, kw, stride, pad */
    test_conv2d_case((rl_conv2d_dims){2, 3, 7, 6, 5, 3, 3, 1, 1}, 1, rng);
    test_conv2d_case((rl_conv2d_dims){2, 3, 7, 8, 4, 3, 3, 2, 1}, 1, rng);
    test_conv2d_case((rl_conv2d_dims){2, 5, 6, 5, 3, 1, 1, 1, 0}, 1, rng);
    test_conv2d_case((rl_conv2d_dims){2, 5, 6, 5, 3, 1, 1, 1, 0}, 0, rng);
    test_conv2d_case((rl_conv2d_dims){1, 3, 9, 7, 2, 5, 3, 1, 2}, 1, rng);
    test_conv2d_case((rl_conv2d_dims){2, 2, 8, 9, 3, 5, 3, 2, 0}, 0, rng);
    test_conv2d_case((rl_conv2d_dims){1, 2, 5, 5, 3, 2, 2, 3, 2}, 1, rng);
    test_conv2d_case((rl_conv2d_dims){1, 1, 4, 4, 1, 1, 1, 2, 1}, 1, rng); /* 1x1 not pointwise */
    test_conv2d_case((rl_conv2d_dims){2, 3, 6, 7, 2, 3, 3, 1, 0}, 1, rng); /* "valid" conv */
    test_conv2d_case((rl_conv2d_dims){1, 2, 4, 5, 3, 3, 3, 1, 3}, 1, rng); /* pad > K-1 */
    test_conv2d_case((rl_conv2d_dims){1, 3, 5, 6, 2, 1, 1, 1, 1}, 0, rng); /* 1x1 padded */
}

/* ---- 2x2 transposed convolution ----------------------------------------------- */

typedef struct convt_ctx {
    rl_convt2x2_dims d;
    float *x, *w, *b, *y, *r, *scratch;
    size_t ny;
} convt_ctx;

static double convt_loss(void *p) {
    convt_ctx *c = p;
    rl_convt2x2_forward(c->y, c->x, c->w, c->b, &c->d, c->scratch);
    return weighted_sum(c->y, c->r, c->ny);
}

static void test_convt_case(rl_convt2x2_dims d, int with_bias, rl_rng *rng) {
    char name[96];
    snprintf(name, sizeof name, "convT2x2 cin%d cout%d %dx%d%s", d.cin, d.cout, d.h, d.w,
             with_bias ? " bias" : "");
    convt_ctx c = {.d = d};
    size_t nx = (size_t)d.n * d.cin * d.h * d.w, nw = (size_t)d.cin * d.cout * 4;
    c.ny = (size_t)d.n * d.cout * 4 * d.h * d.w;
    c.x = random_floats(nx, rng, -1, 1);
    c.w = random_floats(nw, rng, -1, 1);
    c.b = with_bias ? random_floats((size_t)d.cout, rng, -1, 1) : NULL;
    c.y = alloc_floats(c.ny);
    c.r = random_floats(c.ny, rng, -1, 1);
    c.scratch = alloc_floats(rl_convt2x2_scratch_floats(&d));

    /* y[s, o, 2i + a, 2j + b] = bias[o] + sum_ci x[s, ci, i, j] w[ci, o, a, b] */
    double *want = calloc(c.ny, sizeof *want);
    int wo = 2 * d.w;
    for (int s = 0; s < d.n; s++)
        for (int o = 0; o < d.cout; o++)
            for (int i = 0; i < 2 * d.h; i++)
                for (int j = 0; j < wo; j++) {
                    double acc = c.b ? c.b[o] : 0.0;
                    for (int ci = 0; ci < d.cin; ci++)
                        acc += (double)c.x[((s * d.cin + ci) * d.h + i / 2) * d.w + j / 2] *
                               c.w[((ci * d.cout + o) * 2 + i % 2) * 2 + j % 2];
                    want[((s * d.cout + o) * 2 * d.h + i) * wo + j] = acc;
                }
    rl_convt2x2_forward(c.y, c.x, c.w, c.b, &d, c.scratch);
    check_close(name, c.y, want, c.ny, 1e-6);
    free(want);

    float *dx = alloc_floats(nx), *dw = alloc_floats(nw), *db = alloc_floats((size_t)d.cout);
    rl_convt2x2_backward(dx, dw, with_bias ? db : NULL, c.r, c.x, c.w, &d, c.scratch);
    check_fd(name, convt_loss, &c, c.x, dx, nx);
    check_fd(name, convt_loss, &c, c.w, dw, nw);
    if (with_bias) check_fd(name, convt_loss, &c, c.b, db, (size_t)d.cout);

    float *dx2 = alloc_floats(nx), *dw2 = alloc_floats(nw), *db2 = alloc_floats((size_t)d.cout);
    for (size_t i = 0; i < nx; i++) dx2[i] = -0.25f;
    for (size_t i = 0; i < nw; i++) dw2[i] = -0.25f;
    for (int i = 0; i < d.cout; i++) db2[i] = -0.25f;
    rl_convt2x2_backward(dx2, dw2, db2, c.r, c.x, c.w, &d, c.scratch);
    check_accumulated(name, dx2, dx, -0.25f, nx);
    check_accumulated(name, dw2, dw, -0.25f, nw);
    if (with_bias) check_accumulated(name, db2, db, -0.25f, (size_t)d.cout);
    memset(dw2, 0, nw * sizeof *dw2);
    rl_convt2x2_backward(NULL, dw2, NULL, c.r, c.x, c.w, &d, c.scratch);
    check_equal(name, dw2, dw, nw);

    free(dx2), free(dw2), free(db2), free(dx), free(dw), free(db);
    free(c.x), free(c.w), free(c.b), free(c.y), free(c.r), free(c.scratch);
}

static void test_convt(rl_rng *rng) {
    test_convt_case((rl_convt2x2_dims){2, 3, 4, 5, 5}, 1, rng);
    test_convt_case((rl_convt2x2_dims){1, 4, 3, 3, 2}, 0, rng);
    test_convt_case((rl_convt2x2_dims){2, 1, 1, 1, 3}, 1, rng);
}

/* ---- max-pool ------------------------------------------------------------------ */

typedef struct pool_ctx {
    int n, c, h, w;
    float *x, *y, *r;
    uint8_t *argmax;
} pool_ctx;

static double pool_loss(void *p) {
    pool_ctx *c = p;
    rl_maxpool2x2_forward(c->y, c->argmax, c->x, c->n, c->c, c->h, c->w);
    return weighted_sum(c->y, c->r, (size_t)c->n * c->c * (c->h / 2) * (c->w / 2));
}

static void test_maxpool(rl_rng *rng) {
    pool_ctx c = {2, 3, 6, 8, NULL, NULL, NULL, NULL};
    size_t nx = (size_t)c.n * c.c * c.h * c.w, ny = nx / 4;
    /* distinct values 0.05 apart, shuffled: a perturbation of FD_EPS never
     * changes a window's winner */
    int *perm = malloc(nx * sizeof *perm);
    for (size_t i = 0; i < nx; i++) perm[i] = (int)i;
    rl_rng_shuffle(rng, perm, (int)nx);
    c.x = alloc_floats(nx);
    for (size_t i = 0; i < nx; i++) c.x[i] = 0.05f * (float)perm[i] - 3.0f;
    free(perm);
    c.y = alloc_floats(ny);
    c.r = random_floats(ny, rng, -1, 1);
    c.argmax = calloc(ny, 1);
    rl_maxpool2x2_forward(c.y, c.argmax, c.x, c.n, c.c, c.h, c.w);
    int forward_ok = 1;
    for (int plane = 0; plane < c.n * c.c; plane++)
        for (int i = 0; i < c.h / 2; i++)
            for (int j = 0; j < c.w / 2; j++) {
                const float *xp = c.x + (size_t)plane * c.h * c.w;
                size_t o = ((size_t)plane * (c.h / 2) + i) * (c.w / 2) + j;
                int best = 0;
                for (int q = 1; q < 4; q++)
                    if (xp[(2 * i + q / 2) * c.w + 2 * j + q % 2] >
                        xp[(2 * i + best / 2) * c.w + 2 * j + best % 2])
                        best = q;
                forward_ok &= c.argmax[o] == best &&
                              c.y[o] == xp[(2 * i + best / 2) * c.w + 2 * j + best % 2];
            }
    CHECK_MSG(forward_ok, "maxpool: forward picks the wrong maximum");

    float *dx = alloc_floats(nx), *dx2 = alloc_floats(nx);
    rl_maxpool2x2_backward(dx, c.r, c.argmax, c.n, c.c, c.h, c.w);
    check_fd("maxpool", pool_loss, &c, c.x, dx, nx);
    for (size_t i = 0; i < nx; i++) dx2[i] = 1.5f;
    rl_maxpool2x2_backward(dx2, c.r, c.argmax, c.n, c.c, c.h, c.w);
    check_accumulated("maxpool", dx2, dx, 1.5f, nx);

    /* ties: the first maximum in row-major window order wins */
    float tie[8] = {1, 2, 2, 0, /* row 0 */ 2, 2, 0, 2}; /* 1 x 1 x 2 x 4 */
    float ty[2];
    uint8_t targ[2];
    rl_maxpool2x2_forward(ty, targ, tie, 1, 1, 2, 4);
    CHECK(ty[0] == 2 && targ[0] == 1);
    CHECK(ty[1] == 2 && targ[1] == 0);
    free(dx), free(dx2), free(c.x), free(c.y), free(c.r), free(c.argmax);
}

/* ---- group norm ------------------------------------------------------------------ */

typedef struct gn_ctx {
    int n, c, hw, groups;
    float *x, *gamma, *beta, *y, *mean, *rstd, *r;
} gn_ctx;

static double gn_loss(void *p) {
    gn_ctx *g = p;
    rl_groupnorm_forward(g->y, g->mean, g->rstd, g->x, g->gamma, g->beta, g->n, g->c, g->hw,
                         g->groups, 1e-5f);
    return weighted_sum(g->y, g->r, (size_t)g->n * g->c * g->hw);
}

static void test_groupnorm_case(int n, int c, int hw, int groups, rl_rng *rng) {
    char name[64];
    snprintf(name, sizeof name, "groupnorm n%d c%d hw%d g%d", n, c, hw, groups);
    gn_ctx g = {n, c, hw, groups, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    size_t nx = (size_t)n * c * hw, ng = (size_t)n * groups;
    /* an offset mean checks the centring; values stay O(1) around it */
    g.x = random_floats(nx, rng, 1.0f, 3.0f);
    g.gamma = random_floats((size_t)c, rng, 0.5f, 1.5f);
    g.beta = random_floats((size_t)c, rng, -1, 1);
    g.y = alloc_floats(nx);
    g.mean = alloc_floats(ng);
    g.rstd = alloc_floats(ng);
    g.r = random_floats(nx, rng, -1, 1);
    gn_loss(&g);

    /* forward: per group, mean 0 / variance 1 before the affine map */
    double *want = calloc(nx, sizeof *want);
    int cpg = c / groups;
    for (int s = 0; s < n; s++)
        for (int gi = 0; gi < groups; gi++) {
            double m = 0, v = 0;
            size_t off = ((size_t)s * c + (size_t)gi * cpg) * hw, cnt = (size_t)cpg * hw;
            for (size_t i = 0; i < cnt; i++) m += g.x[off + i];
            m /= (double)cnt;
            for (size_t i = 0; i < cnt; i++) v += (g.x[off + i] - m) * (g.x[off + i] - m);
            v /= (double)cnt;
            for (size_t i = 0; i < cnt; i++) {
                int ch = gi * cpg + (int)(i / (size_t)hw);
                want[off + i] = (g.x[off + i] - m) / sqrt(v + 1e-5) * g.gamma[ch] + g.beta[ch];
            }
        }
    check_close(name, g.y, want, nx, 1e-6);
    free(want);

    float *dx = alloc_floats(nx), *dgamma = alloc_floats((size_t)c),
          *dbeta = alloc_floats((size_t)c);
    rl_groupnorm_backward(dx, dgamma, dbeta, g.r, g.x, g.mean, g.rstd, g.gamma, n, c, hw,
                          groups);
    check_fd(name, gn_loss, &g, g.x, dx, nx);
    check_fd(name, gn_loss, &g, g.gamma, dgamma, (size_t)c);
    check_fd(name, gn_loss, &g, g.beta, dbeta, (size_t)c);
    gn_loss(&g); /* restore the saved statistics of the unperturbed input */

    float *dx2 = alloc_floats(nx), *dgamma2 = alloc_floats((size_t)c),
          *dbeta2 = alloc_floats((size_t)c);
    for (size_t i = 0; i < nx; i++) dx2[i] = 2.0f;
    for (int i = 0; i < c; i++) dgamma2[i] = dbeta2[i] = 2.0f;
    rl_groupnorm_backward(dx2, dgamma2, dbeta2, g.r, g.x, g.mean, g.rstd, g.gamma, n, c, hw,
                          groups);
    check_accumulated(name, dx2, dx, 2.0f, nx);
    check_accumulated(name, dgamma2, dgamma, 2.0f, (size_t)c);
    check_accumulated(name, dbeta2, dbeta, 2.0f, (size_t)c);
    memset(dgamma2, 0, (size_t)c * sizeof *dgamma2);
    rl_groupnorm_backward(NULL, dgamma2, NULL, g.r, g.x, g.mean, g.rstd, g.gamma, n, c, hw,
                          groups);
    check_equal(name, dgamma2, dgamma, (size_t)c);
    /* _set overwrites dx (NaN before) and still adds to dgamma, dbeta */
    for (size_t i = 0; i < nx; i++) dx2[i] = NAN;
    for (int i = 0; i < c; i++) dgamma2[i] = dbeta2[i] = 2.0f;
    rl_groupnorm_backward_set(dx2, dgamma2, dbeta2, g.r, g.x, g.mean, g.rstd, g.gamma, n, c,
                              hw, groups);
    check_equal(name, dx2, dx, nx);
    check_accumulated(name, dgamma2, dgamma, 2.0f, (size_t)c);
    check_accumulated(name, dbeta2, dbeta, 2.0f, (size_t)c);

    free(dx), free(dgamma), free(dbeta), free(dx2), free(dgamma2), free(dbeta2);
    free(g.x), free(g.gamma), free(g.beta), free(g.y), free(g.mean), free(g.rstd), free(g.r);
}

static void test_groupnorm(rl_rng *rng) {
    test_groupnorm_case(2, 6, 15, 1, rng);
    test_groupnorm_case(2, 6, 15, 2, rng);
    test_groupnorm_case(2, 6, 15, 3, rng);
    test_groupnorm_case(2, 6, 15, 6, rng);
    test_groupnorm_case(3, 5, 7, 5, rng);
    test_groupnorm_case(1, 5, 12, 1, rng);
}

/* ---- batch norm ------------------------------------------------------------------- */

typedef struct bn_ctx {
    int n, c, hw, train;
    float *x, *gamma, *beta, *y, *mean, *rstd, *r;
    float *run_mean0, *run_var0, *run_mean, *run_var;
} bn_ctx;

#define BN_MOMENTUM 0.1f
#define BN_EPS 1e-5f

static double bn_loss(void *p) {
    bn_ctx *b = p;
    size_t c = (size_t)b->c;
    memcpy(b->run_mean, b->run_mean0, c * sizeof(float));
    memcpy(b->run_var, b->run_var0, c * sizeof(float));
    if (b->train)
        rl_batchnorm_forward_train(b->y, b->mean, b->rstd, b->run_mean, b->run_var, b->x,
                                   b->gamma, b->beta, b->n, b->c, b->hw, BN_MOMENTUM, BN_EPS);
    else
        rl_batchnorm_forward_eval(b->y, b->x, b->gamma, b->beta, b->run_mean, b->run_var, b->n,
                                  b->c, b->hw, BN_EPS);
    return weighted_sum(b->y, b->r, (size_t)b->n * b->c * b->hw);
}

static void bn_backward(const bn_ctx *b, float *dx, float *dgamma, float *dbeta) {
    if (b->train)
        rl_batchnorm_backward(dx, dgamma, dbeta, b->r, b->x, b->mean, b->rstd, b->gamma, b->n,
                              b->c, b->hw);
    else
        rl_batchnorm_backward_eval(dx, dgamma, dbeta, b->r, b->x, b->gamma, b->run_mean,
                                   b->run_var, b->n, b->c, b->hw, BN_EPS);
}

static void test_batchnorm_case(int n, int c, int hw, int train, rl_rng *rng) {
    char name[64];
    snprintf(name, sizeof name, "batchnorm %s n%d c%d hw%d", train ? "train" : "eval", n, c, hw);
    bn_ctx b = {.n = n, .c = c, .hw = hw, .train = train};
    size_t nx = (size_t)n * c * hw;
    b.x = random_floats(nx, rng, -2.0f, 1.0f);
    b.gamma = random_floats((size_t)c, rng, 0.5f, 1.5f);
    b.beta = random_floats((size_t)c, rng, -1, 1);
    b.y = alloc_floats(nx);
    b.mean = alloc_floats((size_t)c);
    b.rstd = alloc_floats((size_t)c);
    b.r = random_floats(nx, rng, -1, 1);
    b.run_mean0 = random_floats((size_t)c, rng, -0.5f, 0.5f);
    b.run_var0 = random_floats((size_t)c, rng, 0.5f, 2.0f);
    b.run_mean = alloc_floats((size_t)c);
    b.run_var = alloc_floats((size_t)c);
    bn_loss(&b);

    /* forward and (train) the running statistics, in double */
    double *want = calloc(nx, sizeof *want);
    double *want_rm = calloc((size_t)c, sizeof *want_rm), *want_rv = calloc((size_t)c, sizeof *want_rv);
    size_t cnt = (size_t)n * hw;
    for (int ch = 0; ch < c; ch++) {
        double m = 0, v = 0;
        for (int s = 0; s < n; s++)
            for (int i = 0; i < hw; i++) m += b.x[((size_t)s * c + ch) * hw + i];
        m /= (double)cnt;
        for (int s = 0; s < n; s++)
            for (int i = 0; i < hw; i++) {
                double dev = b.x[((size_t)s * c + ch) * hw + i] - m;
                v += dev * dev;
            }
        v /= (double)cnt;
        want_rm[ch] = (1 - (double)BN_MOMENTUM) * b.run_mean0[ch] + (double)BN_MOMENTUM * m;
        want_rv[ch] = (1 - (double)BN_MOMENTUM) * b.run_var0[ch] +
                      (double)BN_MOMENTUM * v * (double)cnt / (double)(cnt - 1);
        if (!train) {
            m = b.run_mean0[ch];
            v = b.run_var0[ch];
        }
        for (int s = 0; s < n; s++)
            for (int i = 0; i < hw; i++) {
                size_t k = ((size_t)s * c + ch) * hw + i;
                want[k] = (b.x[k] - m) / sqrt(v + (double)BN_EPS) * b.gamma[ch] + b.beta[ch];
            }
    }
    check_close(name, b.y, want, nx, 1e-6);
    if (train) {
        check_close(name, b.run_mean, want_rm, (size_t)c, 1e-6);
        check_close(name, b.run_var, want_rv, (size_t)c, 1e-6);
    } else {
        CHECK(memcmp(b.run_mean, b.run_mean0, (size_t)c * sizeof(float)) == 0);
    }
    free(want), free(want_rm), free(want_rv);

    float *dx = alloc_floats(nx), *dgamma = alloc_floats((size_t)c),
          *dbeta = alloc_floats((size_t)c);
    bn_backward(&b, dx, dgamma, dbeta);
    check_fd(name, bn_loss, &b, b.x, dx, nx);
    check_fd(name, bn_loss, &b, b.gamma, dgamma, (size_t)c);
    check_fd(name, bn_loss, &b, b.beta, dbeta, (size_t)c);
    bn_loss(&b);

    float *dx2 = alloc_floats(nx), *dgamma2 = alloc_floats((size_t)c),
          *dbeta2 = alloc_floats((size_t)c);
    for (size_t i = 0; i < nx; i++) dx2[i] = -1.0f;
    for (int i = 0; i < c; i++) dgamma2[i] = dbeta2[i] = -1.0f;
    bn_backward(&b, dx2, dgamma2, dbeta2);
    check_accumulated(name, dx2, dx, -1.0f, nx);
    check_accumulated(name, dgamma2, dgamma, -1.0f, (size_t)c);
    check_accumulated(name, dbeta2, dbeta, -1.0f, (size_t)c);
    memset(dbeta2, 0, (size_t)c * sizeof *dbeta2);
    bn_backward(&b, NULL, NULL, dbeta2);
    check_equal(name, dbeta2, dbeta, (size_t)c);

    free(dx), free(dgamma), free(dbeta), free(dx2), free(dgamma2), free(dbeta2);
    free(b.x), free(b.gamma), free(b.beta), free(b.y), free(b.mean), free(b.rstd), free(b.r);
    free(b.run_mean0), free(b.run_var0), free(b.run_mean), free(b.run_var);
}

static void test_batchnorm(rl_rng *rng) {
    test_batchnorm_case(3, 5, 12, 1, rng);
    test_batchnorm_case(1, 3, 20, 1, rng);
    test_batchnorm_case(3, 5, 12, 0, rng);
}

/* max |a - b| / max |b|: the error of a against b on b's scale. */
static double max_rel_diff(const float *a, const float *b, size_t n) {
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return diff / (scale > 0 ? scale : 1.0);
}

/* Synchronised batch norm at the layer level: a batch of 5 images split into
 * shares of 2 and 3 as two processes would hold it, each share's sums added
 * by hand (the reduction), against the whole-batch functions. Measured: the
 * split and whole results differ by at most ~1e-7 of their scale (float
 * rounding of the same formulas, the sums added in another order). */
static void test_batchnorm_split(rl_rng *rng) {
    enum { N = 5, C = 4, HW = 12 };
    const int share_n[2] = {2, 3};
    const size_t nx = (size_t)N * C * HW, off[2] = {0, (size_t)2 * C * HW};
    /* Means away from 0, to exercise the squared deviations about the mean. */
    float *x = random_floats(nx, rng, 2.0f, 5.0f), *dy = random_floats(nx, rng, -1, 1);
    float *gamma = random_floats(C, rng, 0.5f, 1.5f), *beta = random_floats(C, rng, -1, 1);
    float *run0 = random_floats(2 * C, rng, 0.5f, 1.5f); /* running mean, running var */

    /* The whole batch. */
    float *y = alloc_floats(nx), *dx = alloc_floats(nx);
    float mean[C], rstd[C], run[2 * C], dgamma[C] = {0}, dbeta[C] = {0};
    memcpy(run, run0, sizeof run);
    rl_batchnorm_forward_train(y, mean, rstd, run, run + C, x, gamma, beta, N, C, HW,
                               BN_MOMENTUM, BN_EPS);
    rl_batchnorm_backward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, N, C, HW);

    /* The shares: each phase on both, then the sums added (the reduction). */
    float *ys = alloc_floats(nx), *dxs = alloc_floats(nx);
    float means[2][C], rstds[2][C], runs[2][2 * C], dgammas[2][C] = {{0}}, dbetas[2][C] = {{0}};
    double sums[2][C + 1], sq_devs[2][C], bsums[2][2 * C];
    double sums_all[C + 1] = {0}, sq_devs_all[C] = {0}, bsums_all[2 * C] = {0};
    for (int p = 0; p < 2; p++) rl_batchnorm_sums(sums[p], x + off[p], share_n[p], C, HW);
    for (int i = 0; i <= C; i++) sums_all[i] = sums[0][i] + sums[1][i];
    CHECK(sums_all[C] == N * HW);
    for (int p = 0; p < 2; p++)
        rl_batchnorm_sq_devs(sq_devs[p], sums_all, x + off[p], share_n[p], C, HW);
    for (int i = 0; i < C; i++) sq_devs_all[i] = sq_devs[0][i] + sq_devs[1][i];
    for (int p = 0; p < 2; p++) {
        memcpy(runs[p], run0, sizeof runs[p]);
        rl_batchnorm_apply_train(ys + off[p], means[p], rstds[p], runs[p], runs[p] + C,
                                 x + off[p], gamma, beta, sums_all, sq_devs_all, share_n[p], C,
                                 HW, BN_MOMENTUM, BN_EPS);
        rl_batchnorm_backward_sums(bsums[p], dgammas[p], dbetas[p], dy + off[p], x + off[p],
                                   means[p], rstds[p], share_n[p], C, HW);
    }
    for (int i = 0; i < 2 * C; i++) bsums_all[i] = bsums[0][i] + bsums[1][i];
    for (int p = 0; p < 2; p++)
        rl_batchnorm_backward_apply(dxs + off[p], bsums_all, sums_all[C], dy + off[p], x + off[p],
                                    means[p], rstds[p], gamma, share_n[p], C, HW);

    /* Both shares hold the same statistics, bit for bit (the same totals). */
    CHECK(!memcmp(means[0], means[1], sizeof means[0]) &&
          !memcmp(rstds[0], rstds[1], sizeof rstds[0]) &&
          !memcmp(runs[0], runs[1], sizeof runs[0]));
    float dgamma_sum[C], dbeta_sum[C];
    for (int i = 0; i < C; i++) {
        dgamma_sum[i] = dgammas[0][i] + dgammas[1][i];
        dbeta_sum[i] = dbetas[0][i] + dbetas[1][i];
    }
    const struct {
        const char *what;
        const float *split, *whole;
        size_t n;
    } cmp[] = {{"y", ys, y, nx},
               {"mean", means[0], mean, C},
               {"rstd", rstds[0], rstd, C},
               {"running_mean", runs[0], run, C},
               {"running_var", runs[0] + C, run + C, C},
               {"dx", dxs, dx, nx},
               {"dgamma (shares summed)", dgamma_sum, dgamma, C},
               {"dbeta (shares summed)", dbeta_sum, dbeta, C}};
    double worst = 0.0;
    for (size_t k = 0; k < sizeof cmp / sizeof cmp[0]; k++) {
        double e = max_rel_diff(cmp[k].split, cmp[k].whole, cmp[k].n);
        CHECK_MSG(e < 1e-5, "batch norm split 2 + 3: %s differs by %.3g", cmp[k].what, e);
        worst = fmax(worst, e);
    }
    printf("batch norm split 2 + 3 against the whole batch: worst relative difference %.3g\n",
           worst);

    /* One share holding the whole batch (nothing to add): the phases compute
     * what the whole-batch functions compute. */
    float mean1[C], rstd1[C], run1[2 * C], dgamma1[C] = {0}, dbeta1[C] = {0};
    memcpy(run1, run0, sizeof run1);
    rl_batchnorm_sums(sums_all, x, N, C, HW);
    rl_batchnorm_sq_devs(sq_devs_all, sums_all, x, N, C, HW);
    rl_batchnorm_apply_train(ys, mean1, rstd1, run1, run1 + C, x, gamma, beta, sums_all,
                             sq_devs_all, N, C, HW, BN_MOMENTUM, BN_EPS);
    memset(dxs, 0, nx * sizeof *dxs);
    rl_batchnorm_backward_sums(bsums_all, dgamma1, dbeta1, dy, x, mean1, rstd1, N, C, HW);
    rl_batchnorm_backward_apply(dxs, bsums_all, sums_all[C], dy, x, mean1, rstd1, gamma, N, C,
                                HW);
    CHECK(max_rel_diff(ys, y, nx) < 1e-6 && max_rel_diff(dxs, dx, nx) < 1e-6);
    CHECK(max_rel_diff(run1, run, 2 * C) < 1e-6 && max_rel_diff(dgamma1, dgamma, C) < 1e-6);
    printf("batch norm phases on the whole batch: %s\n",
           !memcmp(ys, y, nx * sizeof *y) && !memcmp(dxs, dx, nx * sizeof *dx) &&
                   !memcmp(run1, run, sizeof run) && !memcmp(dgamma1, dgamma, sizeof dgamma) &&
                   !memcmp(dbeta1, dbeta, sizeof dbeta)
               ? "bit for bit"
               : "within 1e-6");

    free(x), free(dy), free(gamma), free(beta), free(run0), free(y), free(dx), free(ys);
    free(dxs);
}

/* ---- leaky ReLU ------------------------------------------------------------------ */

typedef struct relu_ctx {
    size_t count;
    float slope;
    float *x, *y, *r;
} relu_ctx;

static double relu_loss(void *p) {
    relu_ctx *c = p;
    rl_leaky_relu_forward(c->y, c->x, c->count, c->slope);
    return weighted_sum(c->y, c->r, c->count);
}

static void test_leaky_relu_case(float slope, rl_rng *rng) {
    char name[48];
    snprintf(name, sizeof name, "leaky_relu slope %g", (double)slope);
    relu_ctx c = {200, slope, NULL, NULL, NULL};
    /* |x| >= 0.05 keeps every input away from the kink at 0 */
    c.x = alloc_floats(c.count);
    for (size_t i = 0; i < c.count; i++) {
        float mag = 0.05f + rl_rng_uniform(rng);
        c.x[i] = (i % 2) ? mag : -mag;
    }
    c.y = alloc_floats(c.count);
    c.r = random_floats(c.count, rng, -1, 1);
    relu_loss(&c);
    int forward_ok = 1;
    for (size_t i = 0; i < c.count; i++)
        forward_ok &= c.y[i] == (c.x[i] > 0 ? c.x[i] : slope * c.x[i]);
    CHECK_MSG(forward_ok, "%s: forward", name);

    float *dx = alloc_floats(c.count), *dx2 = alloc_floats(c.count);
    rl_leaky_relu_backward(dx, c.r, c.y, c.count, slope);
    check_fd(name, relu_loss, &c, c.x, dx, c.count);
    relu_loss(&c);
    for (size_t i = 0; i < c.count; i++) dx2[i] = 3.0f;
    rl_leaky_relu_backward(dx2, c.r, c.y, c.count, slope);
    check_accumulated(name, dx2, dx, 3.0f, c.count);
    for (size_t i = 0; i < c.count; i++) dx2[i] = NAN;
    rl_leaky_relu_backward_set(dx2, c.r, c.y, c.count, slope);
    int set_ok = 1; /* == and not memcmp: with slope 0, -0 where 0 + -0 gave +0 */
    for (size_t i = 0; i < c.count; i++) set_ok &= dx2[i] == dx[i];
    CHECK_MSG(set_ok, "%s: backward_set", name);

    /* in place: y aliases x */
    float *inplace = alloc_floats(c.count);
    memcpy(inplace, c.x, c.count * sizeof *inplace);
    rl_leaky_relu_forward(inplace, inplace, c.count, slope);
    check_equal(name, inplace, c.y, c.count);
    free(inplace), free(dx), free(dx2), free(c.x), free(c.y), free(c.r);
}

static void test_leaky_relu(rl_rng *rng) {
    test_leaky_relu_case(0.0f, rng);
    test_leaky_relu_case(0.01f, rng);
    test_leaky_relu_case(0.2f, rng);
    /* ReLU at exactly 0: gradient 0, as PyTorch */
    float x0 = 0.0f, y0, dy0 = 1.0f, dx0 = 0.0f;
    rl_leaky_relu_forward(&y0, &x0, 1, 0.0f);
    rl_leaky_relu_backward(&dx0, &dy0, &y0, 1, 0.0f);
    CHECK(y0 == 0.0f && dx0 == 0.0f);
}

/* ---- concat ---------------------------------------------------------------------- */

typedef struct cat_ctx {
    int n, ca, cb, hw;
    float *a, *b, *y, *r;
} cat_ctx;

static double cat_loss(void *p) {
    cat_ctx *c = p;
    rl_concat_forward(c->y, c->a, c->ca, c->b, c->cb, c->n, c->hw);
    return weighted_sum(c->y, c->r, (size_t)c->n * (c->ca + c->cb) * c->hw);
}

static void test_concat(rl_rng *rng) {
    cat_ctx c = {2, 3, 2, 10, NULL, NULL, NULL, NULL};
    size_t na = (size_t)c.n * c.ca * c.hw, nb = (size_t)c.n * c.cb * c.hw, ny = na + nb;
    c.a = random_floats(na, rng, -1, 1);
    c.b = random_floats(nb, rng, -1, 1);
    c.y = alloc_floats(ny);
    c.r = random_floats(ny, rng, -1, 1);
    cat_loss(&c);
    /* y[s, ch] is a[s, ch] for ch < ca, else b[s, ch - ca] */
    int forward_ok = 1;
    for (int s = 0; s < c.n; s++)
        for (int ch = 0; ch < c.ca + c.cb; ch++)
            for (int i = 0; i < c.hw; i++) {
                float v = c.y[((size_t)s * (c.ca + c.cb) + ch) * c.hw + i];
                float want = ch < c.ca ? c.a[((size_t)s * c.ca + ch) * c.hw + i]
                                       : c.b[((size_t)s * c.cb + ch - c.ca) * c.hw + i];
                forward_ok &= v == want;
            }
    CHECK_MSG(forward_ok, "concat: forward");
    float *da = alloc_floats(na), *db = alloc_floats(nb);
    rl_concat_backward(da, db, c.r, c.ca, c.cb, c.n, c.hw);
    check_fd("concat a", cat_loss, &c, c.a, da, na);
    check_fd("concat b", cat_loss, &c, c.b, db, nb);
    float *da2 = alloc_floats(na), *db2 = alloc_floats(nb);
    for (size_t i = 0; i < na; i++) da2[i] = 0.75f;
    for (size_t i = 0; i < nb; i++) db2[i] = 0.75f;
    rl_concat_backward(da2, db2, c.r, c.ca, c.cb, c.n, c.hw);
    check_accumulated("concat a", da2, da, 0.75f, na);
    check_accumulated("concat b", db2, db, 0.75f, nb);
    memset(db2, 0, nb * sizeof *db2);
    rl_concat_backward(NULL, db2, c.r, c.ca, c.cb, c.n, c.hw);
    check_equal("concat b", db2, db, nb);
    for (size_t i = 0; i < na; i++) da2[i] = NAN;
    for (size_t i = 0; i < nb; i++) db2[i] = NAN;
    rl_concat_backward_set(da2, db2, c.r, c.ca, c.cb, c.n, c.hw);
    check_equal("concat set a", da2, da, na);
    check_equal("concat set b", db2, db, nb);
    free(da), free(db), free(da2), free(db2), free(c.a), free(c.b), free(c.y), free(c.r);
}

/* ---- thread count ------------------------------------------------------------ */

/* Large enough to take the OpenMP paths: the norms parallelise over
 * independent groups or channels, so 1 and 3 threads must agree bit for bit. */
static void run_norms(float *out, const float *x, const float *gamma, const float *beta,
                      const float *dy, int n, int c, int hw) {
    size_t nx = (size_t)n * c * hw;
    float stats[4 * 64], running[2 * 64];
    for (int i = 0; i < 2 * c; i++) running[i] = 1.0f;
    float *grads = out + 2 * nx; /* dx, dgamma, dbeta of each norm follow */
    memset(out, 0, (4 * nx + 4 * (size_t)c) * sizeof *out);
    rl_groupnorm_forward(out, stats, stats + 64, x, gamma, beta, n, c, hw, 4, 1e-5f);
    rl_groupnorm_backward(grads, grads + 2 * nx, grads + 2 * nx + c, dy, x, stats,
                          stats + 64, gamma, n, c, hw, 4);
    rl_batchnorm_forward_train(out + nx, stats + 128, stats + 192, running, running + 64, x,
                               gamma, beta, n, c, hw, 0.1f, 1e-5f);
    rl_batchnorm_backward(grads + nx, grads + 2 * nx + 2 * c, grads + 2 * nx + 3 * c, dy, x,
                          stats + 128, stats + 192, gamma, n, c, hw);
}

static void test_thread_independence(rl_rng *rng) {
    const int n = 2, c = 8, hw = 48 * 48;
    size_t nx = (size_t)n * c * hw, nout = 4 * nx + 4 * (size_t)c;
    float *x = random_floats(nx, rng, -1, 2), *dy = random_floats(nx, rng, -1, 1);
    float *gamma = random_floats((size_t)c, rng, 0.5f, 1.5f);
    float *beta = random_floats((size_t)c, rng, -1, 1);
    float *one = alloc_floats(nout), *three = alloc_floats(nout);
    int threads = rl_get_threads();
    rl_set_threads(1);
    run_norms(one, x, gamma, beta, dy, n, c, hw);
    rl_set_threads(3);
    run_norms(three, x, gamma, beta, dy, n, c, hw);
    rl_set_threads(threads);
    check_equal("norms with 1 and 3 threads", one, three, nout);
    free(x), free(dy), free(gamma), free(beta), free(one), free(three);
}

/* The fused group norm + LeakyReLU equals the two layers in turn, bit for
 * bit, below and above the parallel threshold. */
static void test_groupnorm_leaky_fused(rl_rng *rng) {
    const int shapes[][4] = {{2, 6, 25, 3}, {3, 16, 4096, 4}}; /* n, c, hw, groups */
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        int n = shapes[t][0], c = shapes[t][1], hw = shapes[t][2], groups = shapes[t][3];
        size_t count = (size_t)n * c * hw, stats = (size_t)n * groups;
        float slope = t ? 0.01f : 0.2f;
        float *x = malloc(count * sizeof *x);
        float *gamma = malloc(c * sizeof *gamma), *beta = malloc(c * sizeof *beta);
        float *y1 = malloc(count * sizeof *y1), *y2 = malloc(count * sizeof *y2);
        float *m1 = malloc(stats * sizeof *m1), *r1 = malloc(stats * sizeof *r1);
        float *m2 = malloc(stats * sizeof *m2), *r2 = malloc(stats * sizeof *r2);
        rl_fill_uniform(x, count, rng, -3, 5);
        rl_fill_uniform(gamma, c, rng, 0.5f, 1.5f);
        rl_fill_uniform(beta, c, rng, -0.5f, 0.5f);
        rl_groupnorm_forward(y1, m1, r1, x, gamma, beta, n, c, hw, groups, 1e-5f);
        rl_leaky_relu_forward(y1, y1, count, slope);
        rl_groupnorm_leaky_forward(y2, m2, r2, x, gamma, beta, n, c, hw, groups, 1e-5f, slope);
        CHECK_MSG(!memcmp(y1, y2, count * sizeof *y1) && !memcmp(m1, m2, stats * sizeof *m1) &&
                      !memcmp(r1, r2, stats * sizeof *r1),
                  "fused group norm forward differs (shape %zu)", t);
        free(x), free(gamma), free(beta), free(y1), free(y2), free(m1), free(r1), free(m2);
        free(r2);
    }
}

int main(void) {
    rl_rng rng;
    rl_rng_seed(&rng, 20220222, 3);
    /* The convolutions on every backend of this build (layers.h). */
    for (int b = RL_CONV_IM2COL; b <= RL_CONV_DNNL; b++) {
        if (!rl_conv_backend_available((rl_conv_backend)b)) continue;
        CHECK_OK(rl_set_conv_backend((rl_conv_backend)b, NULL));
        printf("convolutions on %s\n", rl_conv_backend_name((rl_conv_backend)b));
        test_conv2d(&rng);
        test_convt(&rng);
    }
    CHECK_OK(rl_set_conv_backend(RL_CONV_IM2COL, NULL));
    test_maxpool(&rng);
    test_groupnorm(&rng);
    test_groupnorm_leaky_fused(&rng);
    test_batchnorm(&rng);
    test_batchnorm_split(&rng);
    test_leaky_relu(&rng);
    test_concat(&rng);
    test_thread_independence(&rng);
    printf("worst finite-difference error %.3g (tolerance %.3g)\n", worst_fd_error, FD_TOL);
    return rl_test_report("test_layers");
}
