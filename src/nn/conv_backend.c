/* The convolution backend switch and the layer functions of layers.h,
 * which dispatch on it. The U-Net does not come through here for oneDNN:
 * it makes its primitives once, at plan time (unet.c). */
#include <stdlib.h>
#include <string.h>

#include "conv_impl.h"

/* Process-wide, like the thread count: set once by the program before it
 * plans a network (layers.h). Until it is set, oneDNN where this build has
 * it. */
static int conv_backend_set;
static rl_conv_backend conv_backend;

int rl_conv_backend_available(rl_conv_backend backend) {
    return backend == RL_CONV_IM2COL || (backend == RL_CONV_DNNL && rl_dnnl_available());
}

int rl_set_conv_backend(rl_conv_backend backend, rl_error *err) {
    if (backend != RL_CONV_IM2COL && backend != RL_CONV_DNNL)
        return rl_error_set(err, RL_EINVAL, "unknown convolution backend %d", (int)backend);
    if (!rl_conv_backend_available(backend))
        return rl_error_set(err, RL_EUNSUPPORTED,
                            "convolution backend '%s' is not in this build (configure with "
                            "oneDNN, -DRL_DNNL=ON)",
                            rl_conv_backend_name(backend));
    conv_backend = backend;
    conv_backend_set = 1;
    return RL_OK;
}

rl_conv_backend rl_get_conv_backend(void) {
    if (conv_backend_set) return conv_backend;
    return rl_dnnl_available() ? RL_CONV_DNNL : RL_CONV_IM2COL;
}

const char *rl_conv_backend_name(rl_conv_backend backend) {
    return backend == RL_CONV_DNNL ? "dnnl" : "im2col";
}

int rl_conv_backend_from_name(const char *name) {
    if (!strcmp(name, "im2col")) return RL_CONV_IM2COL;
    if (!strcmp(name, "dnnl")) return RL_CONV_DNNL;
    return -1;
}

/* ---- one-shot oneDNN ------------------------------------------------------ *
 * Called directly, the layer functions make the primitives and their
 * scratch for this one call. Any failure (no implementation, no memory)
 * leaves the work to im2col, which needs nothing beyond the caller's
 * scratch, so the functions keep their void signatures. */

typedef struct one_shot {
    rl_dnnl_conv *conv;
    float *scratch;
} one_shot;

/* Takes ownership of conv (may be NULL); 0 when oneDNN cannot run it. */
static int one_shot_ready(one_shot *o, rl_dnnl_conv *conv) {
    o->conv = conv;
    o->scratch = NULL;
    if (!conv) return 0;
    size_t bytes = (rl_dnnl_conv_scratch_floats(conv) * sizeof(float) + 63) / 64 * 64;
    o->scratch = aligned_alloc(64, bytes ? bytes : 64);
    if (o->scratch) return 1;
    rl_dnnl_conv_free(conv);
    o->conv = NULL;
    return 0;
}

static void one_shot_done(one_shot *o) {
    free(o->scratch);
    rl_dnnl_conv_free(o->conv);
}

static rl_dnnl_conv *conv2d_one_shot(const rl_conv2d_dims *d, int with_bias, int training) {
    rl_dnnl_conv *c = NULL;
    rl_error err = {0, ""};
    if (rl_get_conv_backend() == RL_CONV_DNNL)
        rl_dnnl_conv2d_create(&c, d, with_bias, training, &err);
    return c;
}

static rl_dnnl_conv *convt_one_shot(const rl_convt2x2_dims *d, int with_bias, int training) {
    rl_dnnl_conv *c = NULL;
    rl_error err = {0, ""};
    if (rl_get_conv_backend() == RL_CONV_DNNL)
        rl_dnnl_convt2x2_create(&c, d, with_bias, training, &err);
    return c;
}

void rl_conv2d_forward(float *y, const float *x, const float *weight, const float *bias,
                       const rl_conv2d_dims *d, float *scratch) {
    one_shot o;
    rl_error err = {0, ""};
    if (one_shot_ready(&o, conv2d_one_shot(d, bias != NULL, 0)) &&
        !rl_dnnl_conv_forward(o.conv, y, x, weight, bias, o.scratch, &err)) {
        one_shot_done(&o);
        return;
    }
    one_shot_done(&o);
    rl_conv2d_forward_im2col(y, x, weight, bias, d, scratch);
}

/* These layer functions return nothing, so a oneDNN backward that fails
 * once its primitives exist cannot be reported here; and im2col cannot take
 * over then, since oneDNN may already have added its share to dx (im2col
 * would add it twice). Its primitives run on memory we own and do not fail in
 * practice; the U-Net's planned path (unet.c) reports any such error. Only
 * a shape oneDNN cannot make falls back to im2col. */
void rl_conv2d_backward(float *dx, float *dweight, float *dbias, const float *dy,
                        const float *x, const float *weight, const rl_conv2d_dims *d,
                        float *scratch) {
    one_shot o;
    rl_error err = {0, ""};
    if (one_shot_ready(&o, conv2d_one_shot(d, dbias != NULL, 1))) {
        rl_dnnl_conv_backward(o.conv, dx, dweight, dbias, dy, x, weight, o.scratch, 0, &err);
        one_shot_done(&o);
        return;
    }
    one_shot_done(&o);
    rl_conv2d_backward_im2col(dx, dweight, dbias, dy, x, weight, d, scratch);
}

void rl_convt2x2_forward(float *y, const float *x, const float *weight, const float *bias,
                         const rl_convt2x2_dims *d, float *scratch) {
    one_shot o;
    rl_error err = {0, ""};
    if (one_shot_ready(&o, convt_one_shot(d, bias != NULL, 0)) &&
        !rl_dnnl_conv_forward(o.conv, y, x, weight, bias, o.scratch, &err)) {
        one_shot_done(&o);
        return;
    }
    one_shot_done(&o);
    rl_convt2x2_forward_im2col(y, x, weight, bias, d, scratch);
}

void rl_convt2x2_backward(float *dx, float *dweight, float *dbias, const float *dy,
                          const float *x, const float *weight, const rl_convt2x2_dims *d,
                          float *scratch) {
    one_shot o;
    rl_error err = {0, ""};
    if (one_shot_ready(&o, convt_one_shot(d, dbias != NULL, 1))) {
        rl_dnnl_conv_backward(o.conv, dx, dweight, dbias, dy, x, weight, o.scratch, 0, &err);
        one_shot_done(&o);
        return;
    }
    one_shot_done(&o);
    rl_convt2x2_backward_im2col(dx, dweight, dbias, dy, x, weight, d, scratch);
}
