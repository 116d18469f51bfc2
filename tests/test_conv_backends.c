/* The oneDNN convolution backend against the im2col one (the reference):
 *  - each layer, through the layer functions (per-call primitives) and
 *    through primitives made once and run twice (as the U-Net does), with
 *    gradient buffers that start non-zero: backward must ADD to them;
 *  - a whole U-Net forward + backward (every norm), planned once per
 *    backend, logits and every parameter gradient.
 * Passes (and says so) in a build without oneDNN. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/conv_impl.h"
#include "reflabel/loss.h"
#include "reflabel/unet.h"
#include "testutil.h"

#define TOL 1e-5 /* relative L2; float rounding in a different order */

static float *floats(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) abort();
    return p;
}

static float *random_floats(size_t n, rl_rng *rng, float lo, float hi) {
    float *p = floats(n);
    rl_fill_uniform(p, n, rng, lo, hi);
    return p;
}

static float *copy(const float *src, size_t n) {
    float *p = floats(n);
    memcpy(p, src, n * sizeof(float));
    return p;
}

static void check_close(const char *what, const char *tensor, const float *want,
                        const float *got, size_t n) {
    double err = rl_rel_l2(want, got, n);
    CHECK_MSG(err < TOL, "%s %s: relative L2 %.3g", what, tensor, err);
}

/* The tensors of one layer test: inputs and the gradient buffers' start. */
typedef struct layer_case {
    const char *name;
    size_t nx, nw, ny, nb;
    float *x, *w, *b, *dy, *dx0, *dw0, *db0;
} layer_case;

static void case_init(layer_case *c, const char *name, size_t nx, size_t nw, size_t ny,
                      size_t nb, rl_rng *rng) {
    c->name = name;
    c->nx = nx, c->nw = nw, c->ny = ny, c->nb = nb;
    c->x = random_floats(nx, rng, -1, 1);
    c->w = random_floats(nw, rng, -0.5f, 0.5f);
    c->b = random_floats(nb, rng, -1, 1);
    c->dy = random_floats(ny, rng, -1, 1);
    c->dx0 = random_floats(nx, rng, -1, 1);
    c->dw0 = random_floats(nw, rng, -1, 1);
    c->db0 = random_floats(nb, rng, -1, 1);
}

static void case_free(layer_case *c) {
    free(c->x), free(c->w), free(c->b), free(c->dy), free(c->dx0), free(c->dw0), free(c->db0);
}

/* Results of one backend: y, and the gradient buffers after `calls`
 * backward calls from their non-zero start. */
typedef struct layer_out {
    float *y, *dx, *dw, *db;
} layer_out;

static layer_out out_init(const layer_case *c) {
    layer_out o = {floats(c->ny), copy(c->dx0, c->nx), copy(c->dw0, c->nw), copy(c->db0, c->nb)};
    return o;
}

static void out_free(layer_out *o) { free(o->y), free(o->dx), free(o->dw), free(o->db); }

static void compare(const layer_case *c, const char *how, const layer_out *want,
                    const layer_out *got) {
    char what[256];
    snprintf(what, sizeof what, "%s (%s)", c->name, how);
    check_close(what, "y", want->y, got->y, c->ny);
    check_close(what, "dx", want->dx, got->dx, c->nx);
    check_close(what, "dweight", want->dw, got->dw, c->nw);
    check_close(what, "dbias", want->db, got->db, c->nb);
}

/* Runs the cached primitives: forward, then backward twice (accumulating
 * two contributions onto the start). */
static void run_cached(rl_dnnl_conv *conv, const layer_case *c, layer_out *o) {
    float *scratch = aligned_alloc(64, (rl_dnnl_conv_scratch_floats(conv) * 4 + 64) / 64 * 64);
    CHECK_OK(rl_dnnl_conv_forward(conv, o->y, c->x, c->w, c->b, scratch, &check_ok_err_));
    for (int i = 0; i < 2; i++)
        CHECK_OK(rl_dnnl_conv_backward(conv, o->dx, o->dw, o->db, c->dy, c->x, c->w, scratch, 0,
                                       &check_ok_err_));
    free(scratch);
}

/* set_dx: dx (NaN before) is overwritten, dweight and dbias still added to;
 * want: im2col's one backward call onto a zero dx and the usual start. */
static void check_set_dx(rl_dnnl_conv *conv, const layer_case *c, const layer_out *want) {
    float *scratch = aligned_alloc(64, (rl_dnnl_conv_scratch_floats(conv) * 4 + 64) / 64 * 64);
    layer_out got = out_init(c);
    for (size_t i = 0; i < c->nx; i++) got.dx[i] = NAN;
    CHECK_OK(rl_dnnl_conv_forward(conv, got.y, c->x, c->w, c->b, scratch, &check_ok_err_));
    CHECK_OK(rl_dnnl_conv_backward(conv, got.dx, got.dw, got.db, c->dy, c->x, c->w, scratch, 1,
                                   &check_ok_err_));
    compare(c, "cached, dx set", want, &got);
    out_free(&got);
    free(scratch);
}

/* The reference, im2col: y and the gradients after backward twice from the
 * case's start (want), and after backward once onto a zero dx (want_set). */
static void conv2d_reference(const layer_case *c, const rl_conv2d_dims *d, float *scratch,
                             layer_out *want, layer_out *want_set) {
    rl_conv2d_forward_im2col(want->y, c->x, c->w, c->b, d, scratch);
    for (int i = 0; i < 2; i++)
        rl_conv2d_backward_im2col(want->dx, want->dw, want->db, c->dy, c->x, c->w, d, scratch);
    memcpy(want_set->y, want->y, c->ny * sizeof(float));
    memset(want_set->dx, 0, c->nx * sizeof(float));
    rl_conv2d_backward_im2col(want_set->dx, want_set->dw, want_set->db, c->dy, c->x, c->w, d,
                              scratch);
}

static void test_conv2d_case(rl_conv2d_dims d, rl_rng *rng) {
    char name[128];
    snprintf(name, sizeof name, "conv %dx%d s%d p%d cin%d cout%d %dx%d", d.kh, d.kw, d.stride,
             d.pad, d.cin, d.cout, d.h, d.w);
    layer_case c;
    case_init(&c, name, (size_t)d.n * d.cin * d.h * d.w, (size_t)d.cout * d.cin * d.kh * d.kw,
              (size_t)d.n * d.cout * rl_conv2d_out_h(&d) * rl_conv2d_out_w(&d), (size_t)d.cout,
              rng);
    float *scratch = floats(rl_conv2d_scratch_floats(&d));
    layer_out want = out_init(&c), once = out_init(&c), cached = out_init(&c),
              want_set = out_init(&c);
    conv2d_reference(&c, &d, scratch, &want, &want_set);
    /* the layer functions on the oneDNN backend */
    CHECK_OK(rl_set_conv_backend(RL_CONV_DNNL, NULL));
    rl_conv2d_forward(once.y, c.x, c.w, c.b, &d, scratch);
    for (int i = 0; i < 2; i++)
        rl_conv2d_backward(once.dx, once.dw, once.db, c.dy, c.x, c.w, &d, scratch);
    CHECK_OK(rl_set_conv_backend(RL_CONV_IM2COL, NULL));
    compare(&c, "per call", &want, &once);
    /* primitives made once */
    rl_dnnl_conv *conv = NULL;
    CHECK_OK(rl_dnnl_conv2d_create(&conv, &d, 1, 1, &check_ok_err_));
    if (conv) {
        run_cached(conv, &c, &cached);
        compare(&c, "cached", &want, &cached);
        check_set_dx(conv, &c, &want_set);
    }
    rl_dnnl_conv_free(conv);
    out_free(&want), out_free(&once), out_free(&cached), out_free(&want_set);
    free(scratch);
    case_free(&c);
}

static void test_convt_case(rl_convt2x2_dims d, rl_rng *rng) {
    char name[128];
    snprintf(name, sizeof name, "convt2x2 cin%d cout%d %dx%d", d.cin, d.cout, d.h, d.w);
    layer_case c;
    case_init(&c, name, (size_t)d.n * d.cin * d.h * d.w, (size_t)d.cin * d.cout * 4,
              (size_t)d.n * d.cout * 4 * d.h * d.w, (size_t)d.cout, rng);
    float *scratch = floats(rl_convt2x2_scratch_floats(&d));
    layer_out want = out_init(&c), once = out_init(&c), cached = out_init(&c),
              want_set = out_init(&c);
    rl_convt2x2_forward_im2col(want.y, c.x, c.w, c.b, &d, scratch);
    for (int i = 0; i < 2; i++)
        rl_convt2x2_backward_im2col(want.dx, want.dw, want.db, c.dy, c.x, c.w, &d, scratch);
    memcpy(want_set.y, want.y, c.ny * sizeof(float));
    memset(want_set.dx, 0, c.nx * sizeof(float));
    rl_convt2x2_backward_im2col(want_set.dx, want_set.dw, want_set.db, c.dy, c.x, c.w, &d,
                                scratch);
    CHECK_OK(rl_set_conv_backend(RL_CONV_DNNL, NULL));
    rl_convt2x2_forward(once.y, c.x, c.w, c.b, &d, scratch);
    for (int i = 0; i < 2; i++)
        rl_convt2x2_backward(once.dx, once.dw, once.db, c.dy, c.x, c.w, &d, scratch);
    CHECK_OK(rl_set_conv_backend(RL_CONV_IM2COL, NULL));
    compare(&c, "per call", &want, &once);
    rl_dnnl_conv *conv = NULL;
    CHECK_OK(rl_dnnl_convt2x2_create(&conv, &d, 1, 1, &check_ok_err_));
    if (conv) {
        run_cached(conv, &c, &cached);
        compare(&c, "cached", &want, &cached);
        check_set_dx(conv, &c, &want_set);
    }
    rl_dnnl_conv_free(conv);
    out_free(&want), out_free(&once), out_free(&cached), out_free(&want_set);
    free(scratch);
    case_free(&c);
}

/* (N, ca + cb, hw) <-> its two channel ranges (N, ca, hw), (N, cb, hw). */
static void split_channels(float *a, float *b, const float *x, int n, int ca, int cb,
                           size_t hw) {
    for (int s = 0; s < n; s++) {
        memcpy(a + (size_t)s * ca * hw, x + (size_t)s * (ca + cb) * hw, ca * hw * sizeof *a);
        memcpy(b + (size_t)s * cb * hw, x + ((size_t)s * (ca + cb) + ca) * hw,
               cb * hw * sizeof *b);
    }
}

static void join_channels(float *x, const float *a, const float *b, int n, int ca, int cb,
                          size_t hw) {
    for (int s = 0; s < n; s++) {
        memcpy(x + (size_t)s * (ca + cb) * hw, a + (size_t)s * ca * hw, ca * hw * sizeof *x);
        memcpy(x + ((size_t)s * (ca + cb) + ca) * hw, b + (size_t)s * cb * hw,
               cb * hw * sizeof *x);
    }
}

/* A convolution of a concatenation read as its two parts
 * (rl_dnnl_conv2d_create_cat) against im2col on the concatenated tensor:
 * y, both parts' data gradient (accumulated twice from a non-zero start,
 * and set), dW and db. A split oneDNN refuses (through a channel block) must
 * fail with RL_EUNSUPPORTED, which sends the U-Net to the copy. */
static void test_conv2d_cat_case(rl_conv2d_dims d, int ca, rl_rng *rng) {
    char name[128];
    snprintf(name, sizeof name, "conv of a concatenation %d + %d channels, %dx%d", ca,
             d.cin - ca, d.h, d.w);
    rl_dnnl_conv *conv = NULL;
    rl_error err = {0, ""};
    int rc = rl_dnnl_conv2d_create_cat(&conv, &d, ca, 1, 1, &err);
    if (rc) {
        CHECK_MSG(rc == RL_EUNSUPPORTED && !conv, "%s: %s", name, err.msg);
        printf("%s: oneDNN refuses the split here (%s), the U-Net copies\n", name, err.msg);
        return;
    }
    const int cb = d.cin - ca;
    const size_t hw = (size_t)d.h * d.w, na = (size_t)d.n * ca * hw, nb = (size_t)d.n * cb * hw;
    layer_case c;
    case_init(&c, name, (size_t)d.n * d.cin * hw, (size_t)d.cout * d.cin * d.kh * d.kw,
              (size_t)d.n * d.cout * rl_conv2d_out_h(&d) * rl_conv2d_out_w(&d), (size_t)d.cout,
              rng);
    float *scratch = floats(rl_conv2d_scratch_floats(&d));
    layer_out want = out_init(&c), want_set = out_init(&c), got = out_init(&c);
    conv2d_reference(&c, &d, scratch, &want, &want_set);

    float *xa = floats(na), *xb = floats(nb), *dxa = floats(na), *dxb = floats(nb);
    float *pad = aligned_alloc(64, (rl_dnnl_conv_scratch_floats(conv) * 4 + 64) / 64 * 64);
    split_channels(xa, xb, c.x, d.n, ca, cb, hw);
    split_channels(dxa, dxb, c.dx0, d.n, ca, cb, hw);
    CHECK_OK(rl_dnnl_conv_forward_cat(conv, got.y, xa, xb, c.w, c.b, pad, &check_ok_err_));
    for (int i = 0; i < 2; i++)
        CHECK_OK(rl_dnnl_conv_backward_cat(conv, dxa, dxb, got.dw, got.db, c.dy, xa, xb, c.w,
                                           pad, 0, &check_ok_err_));
    join_channels(got.dx, dxa, dxb, d.n, ca, cb, hw);
    compare(&c, "parts", &want, &got);

    layer_out got_set = out_init(&c);
    for (size_t i = 0; i < na; i++) dxa[i] = NAN;
    for (size_t i = 0; i < nb; i++) dxb[i] = NAN;
    CHECK_OK(rl_dnnl_conv_forward_cat(conv, got_set.y, xa, xb, c.w, c.b, pad, &check_ok_err_));
    CHECK_OK(rl_dnnl_conv_backward_cat(conv, dxa, dxb, got_set.dw, got_set.db, c.dy, xa, xb,
                                       c.w, pad, 1, &check_ok_err_));
    join_channels(got_set.dx, dxa, dxb, d.n, ca, cb, hw);
    compare(&c, "parts, dx set", &want_set, &got_set);

    /* one part missing, or a second part for a convolution of one tensor */
    CHECK(rl_dnnl_conv_forward_cat(conv, got.y, xa, NULL, c.w, c.b, pad, NULL) == RL_EINVAL);
    rl_dnnl_conv *plain = NULL;
    CHECK_OK(rl_dnnl_conv2d_create(&plain, &d, 1, 1, &check_ok_err_));
    if (plain)
        CHECK(rl_dnnl_conv_forward_cat(plain, got.y, c.x, xb, c.w, c.b, pad, NULL) ==
              RL_EINVAL);
    rl_dnnl_conv_free(plain);
    CHECK(rl_dnnl_conv2d_create_cat(&plain, &d, d.cin, 1, 1, NULL) == RL_EINVAL && !plain);
    rl_dnnl_conv_free(conv);
    free(xa), free(xb), free(dxa), free(dxb), free(pad), free(scratch);
    out_free(&want), out_free(&want_set), out_free(&got), out_free(&got_set);
    case_free(&c);
}

/* One training step's logits and parameter gradients on backend b. */
static void unet_step(rl_unet *net, rl_conv_backend b, const float *x, const int32_t *labels,
                      int n, int k, int hw, float *logits, float *grads) {
    rl_error err = {0, ""};
    CHECK_OK(rl_set_conv_backend(b, &err));
    CHECK_OK(rl_unet_plan(net, n, 32, 32, 1, &err));
    CHECK_OK(rl_unet_forward(net, x, 1, &err));
    size_t nl = (size_t)n * k * hw;
    memcpy(logits, rl_unet_logits(net).data, nl * sizeof(float));
    float *dlogits = floats(nl);
    rl_softmax_ce_loss(dlogits, logits, labels, NULL, n, k, hw, -1, 1.0f);
    rl_unet_zero_grad(net);
    CHECK_OK(rl_unet_backward(net, dlogits, &err));
    memcpy(grads, rl_unet_grads(net), rl_unet_param_count(net) * sizeof(float));
    free(dlogits);
    CHECK_OK(rl_set_conv_backend(RL_CONV_IM2COL, &err));
}

static void test_unet(rl_norm_kind norm, rl_rng *rng) {
    const int n = 2, k = 3, hw = 32 * 32;
    rl_unet_config cfg = rl_unet_default_config();
    cfg.in_channels = 2;
    cfg.num_classes = k;
    cfg.depth = 3;
    cfg.base_width = 8;
    cfg.groups = 4;
    cfg.norm = norm;
    rl_unet *a = NULL, *b = NULL;
    rl_error err = {0, ""};
    CHECK_OK(rl_unet_create(&a, &cfg, 7, &err));
    CHECK_OK(rl_unet_create(&b, &cfg, 7, &err));
    if (!a || !b) return;
    float *x = random_floats((size_t)n * 2 * hw, rng, -1, 1);
    int32_t *labels = malloc((size_t)n * hw * sizeof *labels);
    for (int i = 0; i < n * hw; i++) labels[i] = (int32_t)rl_rng_below(rng, (uint32_t)k);
    size_t np = rl_unet_param_count(a), nl = (size_t)n * k * hw;
    float *la = floats(nl), *lb = floats(nl), *ga = floats(np), *gb = floats(np);
    unet_step(a, RL_CONV_IM2COL, x, labels, n, k, hw, la, ga);
    unet_step(b, RL_CONV_DNNL, x, labels, n, k, hw, lb, gb);
    char what[64];
    snprintf(what, sizeof what, "U-Net norm %s", rl_norm_name(norm));
    check_close(what, "logits", la, lb, nl);
    check_close(what, "parameter gradients", ga, gb, np);
    /* and tensor by tensor, so that a small layer cannot hide in the sum */
    int count = 0;
    const rl_unet_tensor *t = rl_unet_tensors(a, &count);
    for (int i = 0; i < count; i++) {
        if (t[i].kind != RL_UNET_PARAM) continue;
        char tw[160];
        snprintf(tw, sizeof tw, "%s grad %s", what, t[i].name);
        double e = rl_rel_l2(ga + t[i].offset, gb + t[i].offset, t[i].numel);
        CHECK_MSG(e < 1e-4, "%s: relative L2 %.3g", tw, e);
    }
    free(x), free(labels), free(la), free(lb), free(ga), free(gb);
    rl_unet_free(a);
    rl_unet_free(b);
}

int main(void) {
    if (!rl_conv_backend_available(RL_CONV_DNNL)) {
        CHECK(rl_set_conv_backend(RL_CONV_DNNL, NULL) == RL_EUNSUPPORTED);
        CHECK(rl_get_conv_backend() == RL_CONV_IM2COL);
        printf("built without oneDNN: only the backend switch is tested\n");
        return rl_test_report("test_conv_backends");
    }
    rl_rng rng;
    rl_rng_seed(&rng, 4242, 1);
    test_conv2d_case((rl_conv2d_dims){2, 3, 7, 6, 5, 3, 3, 1, 1}, &rng);
    test_conv2d_case((rl_conv2d_dims){2, 16, 16, 16, 16, 3, 3, 1, 1}, &rng);
    test_conv2d_case((rl_conv2d_dims){2, 1, 16, 12, 16, 3, 3, 1, 1}, &rng);
    test_conv2d_case((rl_conv2d_dims){2, 32, 8, 8, 64, 3, 3, 1, 1}, &rng);
    test_conv2d_case((rl_conv2d_dims){2, 3, 7, 8, 4, 3, 3, 2, 1}, &rng);
    test_conv2d_case((rl_conv2d_dims){2, 16, 8, 8, 5, 1, 1, 1, 0}, &rng);
    test_conv2d_case((rl_conv2d_dims){1, 3, 9, 7, 2, 5, 3, 1, 2}, &rng);
    test_convt_case((rl_convt2x2_dims){2, 3, 5, 4, 2}, &rng);
    test_convt_case((rl_convt2x2_dims){2, 32, 8, 8, 16}, &rng);
    test_unet(RL_NORM_GROUP, &rng);
    test_unet(RL_NORM_BATCH, &rng);
    test_unet(RL_NORM_NONE, &rng);
    /* last, so that the cases above keep their random inputs */
    test_conv2d_cat_case((rl_conv2d_dims){2, 32, 8, 8, 16, 3, 3, 1, 1}, 16, &rng);
    test_conv2d_cat_case((rl_conv2d_dims){2, 48, 6, 10, 8, 3, 3, 1, 1}, 32, &rng);
    test_conv2d_cat_case((rl_conv2d_dims){2, 16, 8, 8, 8, 3, 3, 1, 1}, 8, &rng);
    return rl_test_report("test_conv_backends");
}
