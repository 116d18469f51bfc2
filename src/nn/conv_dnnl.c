/* Convolutions from oneDNN, which generates code for the CPU it runs on
 * (the contract is in conv_impl.h).
 *
 * Each primitive (forward, backward data, backward weights) is one "step":
 * the primitive plus a "port" per tensor argument. A port binds our plain
 * buffer (NCHW, OIHW, or IOHW for the transposed convolution's weights) to
 * the layout the primitive chose for itself (format_tag_any: on AVX-512 the
 * channel-blocked nChw16c), with a reorder between the two where they
 * differ. The blocked copies and every scratchpad live in the caller's
 * scratch, laid out once at creation: [port buffers...][scratchpad], where
 * the scratchpad region serves the primitive and each reorder in turn.
 *
 * oneDNN's backward primitives overwrite their outputs, ours accumulate.
 * So the gradients (PORT_ADD) are always computed into a buffer of the
 * scratch and then reordered into our buffer with a "sum" post-op
 * (dst = src + dst), which costs nothing extra when a reorder out of the
 * blocked layout is needed anyway. dx may instead be set (the U-Net's
 * activation gradients, which one layer each writes): a second reorder
 * without the sum, which does not read dx, and spares the caller zeroing it.
 *
 * Threads: with the OpenMP runtime (Debian's libdnnl is built against
 * libgomp, as we are) oneDNN runs on omp_get_max_threads() threads, which
 * rl_set_threads sets. Kernels are generated for the thread count at
 * creation, so plan after rl_set_threads.
 *
 * Building with -DRL_DNNL_PLAIN keeps every tensor in our plain layouts
 * (oneDNN's gemm-based implementations, no reorders), to compare. */
#include "conv_impl.h"

#ifndef RL_HAVE_DNNL

int rl_dnnl_available(void) { return 0; }

int rl_dnnl_conv2d_create(rl_dnnl_conv **out, const rl_conv2d_dims *d, int with_bias,
                          int for_training, rl_error *err) {
    (void)d, (void)with_bias, (void)for_training;
    *out = NULL;
    return rl_error_set(err, RL_EUNSUPPORTED, "this build of reflabel has no oneDNN");
}

int rl_dnnl_convt2x2_create(rl_dnnl_conv **out, const rl_convt2x2_dims *d, int with_bias,
                            int for_training, rl_error *err) {
    (void)d, (void)with_bias, (void)for_training;
    *out = NULL;
    return rl_error_set(err, RL_EUNSUPPORTED, "this build of reflabel has no oneDNN");
}

void rl_dnnl_conv_free(rl_dnnl_conv *c) { (void)c; }

size_t rl_dnnl_conv_scratch_floats(const rl_dnnl_conv *c) {
    (void)c;
    return 0;
}

int rl_dnnl_conv_forward(rl_dnnl_conv *c, float *y, const float *x, const float *weight,
                         const float *bias, float *scratch, rl_error *err) {
    (void)c, (void)y, (void)x, (void)weight, (void)bias, (void)scratch;
    return rl_error_set(err, RL_EUNSUPPORTED, "this build of reflabel has no oneDNN");
}

int rl_dnnl_conv_backward(rl_dnnl_conv *c, float *dx, float *dweight, float *dbias,
                          const float *dy, const float *x, const float *weight, float *scratch,
                          int set_dx, rl_error *err) {
    (void)c, (void)dx, (void)dweight, (void)dbias, (void)dy, (void)x, (void)weight;
    (void)scratch, (void)set_dx;
    return rl_error_set(err, RL_EUNSUPPORTED, "this build of reflabel has no oneDNN");
}

int rl_dnnl_conv2d_create_cat(rl_dnnl_conv **out, const rl_conv2d_dims *d, int cin_a,
                              int with_bias, int for_training, rl_error *err) {
    (void)d, (void)cin_a, (void)with_bias, (void)for_training;
    *out = NULL;
    return rl_error_set(err, RL_EUNSUPPORTED, "this build of reflabel has no oneDNN");
}

int rl_dnnl_conv_forward_cat(rl_dnnl_conv *c, float *y, const float *x_a, const float *x_b,
                             const float *weight, const float *bias, float *scratch,
                             rl_error *err) {
    (void)c, (void)y, (void)x_a, (void)x_b, (void)weight, (void)bias, (void)scratch;
    return rl_error_set(err, RL_EUNSUPPORTED, "this build of reflabel has no oneDNN");
}

int rl_dnnl_conv_backward_cat(rl_dnnl_conv *c, float *dx_a, float *dx_b, float *dweight,
                              float *dbias, const float *dy, const float *x_a, const float *x_b,
                              const float *weight, float *scratch, int set_dx, rl_error *err) {
    (void)c, (void)dx_a, (void)dx_b, (void)dweight, (void)dbias, (void)dy, (void)x_a;
    (void)x_b, (void)weight, (void)scratch, (void)set_dx;
    return rl_error_set(err, RL_EUNSUPPORTED, "this build of reflabel has no oneDNN");
}

#else

#include <dnnl.h>
#include <stdlib.h>

enum { PORT_IN, PORT_SET, PORT_ADD }; /* read; overwritten; accumulated into */
enum { MAX_PORTS = 4 };

/* One of a port's buffers of ours: the whole tensor, or for the input of
 * a concatenation one of its two channel ranges (rl_dnnl_conv.split). */
typedef struct part {
    dnnl_memory_t user;    /* our buffer, plain layout */
    dnnl_memory_t view;    /* its channels in inner (a sub-memory); == inner for one part */
    dnnl_primitive_t reorder;
    dnnl_memory_t reorder_pad;
    dnnl_primitive_t reorder_set; /* dx's port: the same reorder without the sum */
    dnnl_memory_t reorder_set_pad;
} part;

typedef struct port {
    int arg;               /* DNNL_ARG_* of the primitive */
    int dir;
    int nparts;            /* 1, or 2 for a concatenation's input or its gradient */
    part parts[2];
    dnnl_memory_t inner;   /* the primitive's layout; == parts[0].user when no reorder */
    size_t offset;         /* of inner's buffer in the scratch, bytes */
} port;

typedef struct step {
    dnnl_primitive_t prim;
    dnnl_memory_t pad;     /* the primitive's scratchpad; NULL when it needs none */
    int nports;
    port ports[MAX_PORTS];
    size_t pad_offset, pad_bytes, bytes;
} step;

struct rl_dnnl_conv {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int with_bias, for_training;
    int split; /* > 0: the input is two tensors, channels [0, split) and the rest */
    step fwd, bwd_data, bwd_weights;
};

int rl_dnnl_available(void) { return 1; }

static size_t round64(size_t bytes) { return (bytes + 63) / 64 * 64; }

static void step_free(step *s) {
    for (int i = 0; i < s->nports; i++) {
        port *p = &s->ports[i];
        for (int k = 0; k < p->nparts; k++) {
            part *q = &p->parts[k];
            if (q->view && q->view != p->inner) dnnl_memory_destroy(q->view);
            if (q->user && q->user != p->inner) dnnl_memory_destroy(q->user);
            if (q->reorder) dnnl_primitive_destroy(q->reorder);
            if (q->reorder_pad) dnnl_memory_destroy(q->reorder_pad);
            if (q->reorder_set) dnnl_primitive_destroy(q->reorder_set);
            if (q->reorder_set_pad) dnnl_memory_destroy(q->reorder_set_pad);
        }
        if (p->inner) dnnl_memory_destroy(p->inner);
    }
    if (s->pad) dnnl_memory_destroy(s->pad);
    if (s->prim) dnnl_primitive_destroy(s->prim);
    s->nports = 0;
    s->prim = NULL;
    s->pad = NULL;
}

void rl_dnnl_conv_free(rl_dnnl_conv *c) {
    if (!c) return;
    step_free(&c->fwd);
    step_free(&c->bwd_data);
    step_free(&c->bwd_weights);
    if (c->stream) dnnl_stream_destroy(c->stream);
    if (c->engine) dnnl_engine_destroy(c->engine);
    free(c);
}

/* Attributes with our own scratchpad and optionally dst += result. */
static dnnl_status_t make_attr(dnnl_primitive_attr_t *attr, int sum) {
    dnnl_status_t st = dnnl_primitive_attr_create(attr);
    if (st != dnnl_success) return st;
    st = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success && sum) {
        dnnl_post_ops_t ops;
        st = dnnl_post_ops_create(&ops);
        if (st == dnnl_success) {
            st = dnnl_post_ops_append_sum(ops, 1.0f);
            if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(*attr, ops);
            dnnl_post_ops_destroy(ops);
        }
    }
    if (st != dnnl_success) dnnl_primitive_attr_destroy(*attr);
    return st;
}

static size_t scratchpad_bytes(const_dnnl_primitive_desc_t pd) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    return md ? dnnl_memory_desc_get_size(md) : 0;
}

/* A reorder from -> to (with sum: to += from) and the memory of its
 * scratchpad (NULL when it needs none), which shares s's scratchpad region. */
static dnnl_status_t make_reorder(rl_dnnl_conv *c, step *s, const dnnl_memory_desc_t *from,
                                  const dnnl_memory_desc_t *to, int sum,
                                  dnnl_primitive_t *prim, dnnl_memory_t *pad_mem) {
    dnnl_primitive_attr_t attr;
    dnnl_status_t st = make_attr(&attr, sum);
    if (st != dnnl_success) return st;
    dnnl_primitive_desc_t pd;
    st = dnnl_reorder_primitive_desc_create(&pd, from, c->engine, to, c->engine, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return st;
    st = dnnl_primitive_create(prim, pd);
    size_t pad = scratchpad_bytes(pd);
    if (st == dnnl_success && pad) {
        st = dnnl_memory_create(pad_mem,
                                dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0),
                                c->engine, DNNL_MEMORY_NONE);
        if (pad > s->pad_bytes) s->pad_bytes = pad;
    }
    dnnl_primitive_desc_destroy(pd);
    return st;
}

/* Binds argument arg of s to our layout: one buffer (user_md), or with
 * split > 0 two, the channels [0, split) and the rest (user_md being the
 * whole tensor's shape); the primitive's layout is inner_md. Adds the
 * reorders and the scratch buffer where needed: a split port always has
 * them, each part reordered to or from its channels of the primitive's copy
 * (a sub-memory; oneDNN refuses one that cuts through a channel block, and
 * the caller then makes an unsplit convolution). */
static dnnl_status_t add_port(rl_dnnl_conv *c, step *s, int arg, int dir,
                              const dnnl_memory_desc_t *user_md,
                              const dnnl_memory_desc_t *inner_md, int split) {
    port *p = &s->ports[s->nports++];
    p->arg = arg;
    p->dir = dir;
    p->nparts = split > 0 ? 2 : 1;
    dnnl_status_t st;
    if (p->nparts == 1 && dir != PORT_ADD && dnnl_memory_desc_equal(user_md, inner_md)) {
        st = dnnl_memory_create(&p->inner, user_md, c->engine, DNNL_MEMORY_NONE);
        p->parts[0].user = p->parts[0].view = p->inner;
        return st;
    }
    if ((st = dnnl_memory_create(&p->inner, inner_md, c->engine, DNNL_MEMORY_NONE))) return st;
    p->offset = s->bytes;
    s->bytes += round64(dnnl_memory_desc_get_size(inner_md));
    for (int k = 0; k < p->nparts && !st; k++) {
        part *q = &p->parts[k];
        dnnl_memory_desc_t u_md = *user_md, v_md = *inner_md;
        if (p->nparts == 2) {
            dnnl_dims_t dims, offsets = {0, k ? split : 0, 0, 0};
            for (int d = 0; d < 4; d++) dims[d] = user_md->dims[d];
            dims[1] = k ? user_md->dims[1] - split : split;
            if ((st = dnnl_memory_desc_init_by_tag(&u_md, 4, dims, dnnl_f32, dnnl_nchw)) ||
                (st = dnnl_memory_desc_init_submemory(&v_md, inner_md, dims, offsets)) ||
                (st = dnnl_memory_create(&q->view, &v_md, c->engine, DNNL_MEMORY_NONE)))
                break;
        } else {
            q->view = p->inner;
        }
        if ((st = dnnl_memory_create(&q->user, &u_md, c->engine, DNNL_MEMORY_NONE))) break;
        const dnnl_memory_desc_t *from = dir == PORT_IN ? &u_md : &v_md;
        const dnnl_memory_desc_t *to = dir == PORT_IN ? &v_md : &u_md;
        st = make_reorder(c, s, from, to, dir == PORT_ADD, &q->reorder, &q->reorder_pad);
        if (st == dnnl_success && dir == PORT_ADD && arg == DNNL_ARG_DIFF_SRC)
            st = make_reorder(c, s, from, to, 0, &q->reorder_set, &q->reorder_set_pad);
    }
    return st;
}

/* Makes s's primitive from pd and places the scratchpad after the ports. */
static dnnl_status_t finish_step(rl_dnnl_conv *c, step *s, const_dnnl_primitive_desc_t pd) {
    dnnl_status_t st = dnnl_primitive_create(&s->prim, pd);
    if (st != dnnl_success) return st;
    size_t pad = scratchpad_bytes(pd);
    if (pad) {
        st = dnnl_memory_create(&s->pad,
                                dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0),
                                c->engine, DNNL_MEMORY_NONE);
        if (pad > s->pad_bytes) s->pad_bytes = pad;
    }
    s->pad_offset = s->bytes;
    s->bytes += round64(s->pad_bytes);
    return st;
}

static const dnnl_memory_desc_t *query(const_dnnl_primitive_desc_t pd, dnnl_query_t what,
                                       int index) {
    return dnnl_primitive_desc_query_md(pd, what, index);
}

/* The shapes of one layer in oneDNN's terms. */
typedef struct conv_shape {
    int transposed;
    dnnl_dims_t src, weights, bias, dst, strides, pad_l, pad_r;
    dnnl_format_tag_t weights_tag; /* our weight layout */
} conv_shape;

static dnnl_status_t op_desc(const conv_shape *sh, dnnl_prop_kind_t prop, int which,
                             const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *weights,
                             const dnnl_memory_desc_t *bias, const dnnl_memory_desc_t *dst,
                             void *desc) {
    /* which: 0 forward, 1 backward data, 2 backward weights */
    if (sh->transposed) {
        dnnl_deconvolution_desc_t *dd = desc;
        if (which == 0)
            return dnnl_deconvolution_forward_desc_init(dd, prop, dnnl_deconvolution_direct, src,
                                                        weights, bias, dst, sh->strides,
                                                        sh->pad_l, sh->pad_r);
        if (which == 1)
            return dnnl_deconvolution_backward_data_desc_init(dd, dnnl_deconvolution_direct, src,
                                                              weights, dst, sh->strides,
                                                              sh->pad_l, sh->pad_r);
        return dnnl_deconvolution_backward_weights_desc_init(dd, dnnl_deconvolution_direct, src,
                                                             weights, bias, dst, sh->strides,
                                                             sh->pad_l, sh->pad_r);
    }
    dnnl_convolution_desc_t *cd = desc;
    if (which == 0)
        return dnnl_convolution_forward_desc_init(cd, prop, dnnl_convolution_direct, src, weights,
                                                  bias, dst, sh->strides, sh->pad_l, sh->pad_r);
    if (which == 1)
        return dnnl_convolution_backward_data_desc_init(cd, dnnl_convolution_direct, src, weights,
                                                        dst, sh->strides, sh->pad_l, sh->pad_r);
    return dnnl_convolution_backward_weights_desc_init(cd, dnnl_convolution_direct, src, weights,
                                                       bias, dst, sh->strides, sh->pad_l,
                                                       sh->pad_r);
}

static dnnl_status_t create(rl_dnnl_conv *c, const conv_shape *sh) {
    dnnl_memory_desc_t u_src, u_w, u_b, u_dst, a_src, a_w, a_dst;
#ifdef RL_DNNL_PLAIN
    const dnnl_format_tag_t act_any = dnnl_nchw, w_any = sh->weights_tag;
#else
    const dnnl_format_tag_t act_any = dnnl_format_tag_any, w_any = dnnl_format_tag_any;
#endif
    dnnl_status_t st;
    if ((st = dnnl_memory_desc_init_by_tag(&u_src, 4, sh->src, dnnl_f32, dnnl_nchw)) ||
        (st = dnnl_memory_desc_init_by_tag(&u_w, 4, sh->weights, dnnl_f32, sh->weights_tag)) ||
        (st = dnnl_memory_desc_init_by_tag(&u_b, 1, sh->bias, dnnl_f32, dnnl_x)) ||
        (st = dnnl_memory_desc_init_by_tag(&u_dst, 4, sh->dst, dnnl_f32, dnnl_nchw)) ||
        (st = dnnl_memory_desc_init_by_tag(&a_src, 4, sh->src, dnnl_f32, act_any)) ||
        (st = dnnl_memory_desc_init_by_tag(&a_w, 4, sh->weights, dnnl_f32, w_any)) ||
        (st = dnnl_memory_desc_init_by_tag(&a_dst, 4, sh->dst, dnnl_f32, act_any)))
        return st;
    const dnnl_memory_desc_t *bias = c->with_bias ? &u_b : NULL;
    union {
        dnnl_convolution_desc_t conv;
        dnnl_deconvolution_desc_t deconv;
    } desc;
    dnnl_primitive_attr_t attr;
    dnnl_primitive_desc_t fwd_pd = NULL, pd = NULL;

    /* forward: y = conv(x) + bias */
    dnnl_prop_kind_t prop = c->for_training ? dnnl_forward_training : dnnl_forward_inference;
    if ((st = op_desc(sh, prop, 0, &a_src, &a_w, bias, &a_dst, &desc))) return st;
    if ((st = make_attr(&attr, 0))) return st;
    st = dnnl_primitive_desc_create(&fwd_pd, &desc, attr, c->engine, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (st) return st;
    step *s = &c->fwd;
    if (!(st = add_port(c, s, DNNL_ARG_SRC, PORT_IN, &u_src,
                        query(fwd_pd, dnnl_query_src_md, 0), c->split)) &&
        !(st = add_port(c, s, DNNL_ARG_WEIGHTS, PORT_IN, &u_w,
                        query(fwd_pd, dnnl_query_weights_md, 0), 0)) &&
        !(st = c->with_bias ? add_port(c, s, DNNL_ARG_BIAS, PORT_IN, &u_b,
                                       query(fwd_pd, dnnl_query_weights_md, 1), 0)
                            : dnnl_success) &&
        !(st = add_port(c, s, DNNL_ARG_DST, PORT_SET, &u_dst,
                        query(fwd_pd, dnnl_query_dst_md, 0), 0)))
        st = finish_step(c, s, fwd_pd);
    if (st || !c->for_training) goto done;

    /* backward data: dx += conv^T(dy) */
    if ((st = op_desc(sh, prop, 1, &a_src, &a_w, NULL, &a_dst, &desc))) goto done;
    if ((st = make_attr(&attr, 0))) goto done;
    st = dnnl_primitive_desc_create(&pd, &desc, attr, c->engine, fwd_pd);
    dnnl_primitive_attr_destroy(attr);
    if (st) goto done;
    s = &c->bwd_data;
    if (!(st = add_port(c, s, DNNL_ARG_DIFF_DST, PORT_IN, &u_dst,
                        query(pd, dnnl_query_diff_dst_md, 0), 0)) &&
        !(st = add_port(c, s, DNNL_ARG_WEIGHTS, PORT_IN, &u_w,
                        query(pd, dnnl_query_weights_md, 0), 0)) &&
        !(st = add_port(c, s, DNNL_ARG_DIFF_SRC, PORT_ADD, &u_src,
                        query(pd, dnnl_query_diff_src_md, 0), c->split)))
        st = finish_step(c, s, pd);
    dnnl_primitive_desc_destroy(pd);
    pd = NULL;
    if (st) goto done;

    /* backward weights: dW += dy * x^T, dbias += sum dy */
    if ((st = op_desc(sh, prop, 2, &a_src, &a_w, bias, &a_dst, &desc))) goto done;
    if ((st = make_attr(&attr, 0))) goto done;
    st = dnnl_primitive_desc_create(&pd, &desc, attr, c->engine, fwd_pd);
    dnnl_primitive_attr_destroy(attr);
    if (st) goto done;
    s = &c->bwd_weights;
    if (!(st = add_port(c, s, DNNL_ARG_SRC, PORT_IN, &u_src, query(pd, dnnl_query_src_md, 0),
                        c->split)) &&
        !(st = add_port(c, s, DNNL_ARG_DIFF_DST, PORT_IN, &u_dst,
                        query(pd, dnnl_query_diff_dst_md, 0), 0)) &&
        !(st = add_port(c, s, DNNL_ARG_DIFF_WEIGHTS, PORT_ADD, &u_w,
                        query(pd, dnnl_query_diff_weights_md, 0), 0)) &&
        !(st = c->with_bias ? add_port(c, s, DNNL_ARG_DIFF_BIAS, PORT_ADD, &u_b,
                                       query(pd, dnnl_query_diff_weights_md, 1), 0)
                            : dnnl_success))
        st = finish_step(c, s, pd);
    dnnl_primitive_desc_destroy(pd);
done:
    dnnl_primitive_desc_destroy(fwd_pd);
    return st;
}

static int create_common(rl_dnnl_conv **out, const conv_shape *sh, int with_bias,
                         int for_training, int split, const char *what, rl_error *err) {
    *out = NULL;
    rl_dnnl_conv *c = calloc(1, sizeof *c);
    if (!c) return rl_error_set(err, RL_ENOMEM, "out of memory creating a oneDNN %s", what);
    c->with_bias = with_bias != 0;
    c->for_training = for_training != 0;
    c->split = split;
    dnnl_status_t st = dnnl_engine_create(&c->engine, dnnl_cpu, 0);
    if (st == dnnl_success)
        st = dnnl_stream_create(&c->stream, c->engine, dnnl_stream_default_flags);
    if (st == dnnl_success) st = create(c, sh);
    if (st != dnnl_success) {
        rl_dnnl_conv_free(c);
        return rl_error_set(err, RL_EUNSUPPORTED, "oneDNN has no %s for this shape (status %d)",
                            what, (int)st);
    }
    *out = c;
    return RL_OK;
}

static int conv2d_create(rl_dnnl_conv **out, const rl_conv2d_dims *d, int with_bias,
                         int for_training, int split, rl_error *err) {
    conv_shape sh = {0};
    sh.src[0] = sh.dst[0] = d->n;
    sh.src[1] = d->cin, sh.src[2] = d->h, sh.src[3] = d->w;
    sh.dst[1] = d->cout, sh.dst[2] = rl_conv2d_out_h(d), sh.dst[3] = rl_conv2d_out_w(d);
    sh.weights[0] = d->cout, sh.weights[1] = d->cin, sh.weights[2] = d->kh;
    sh.weights[3] = d->kw;
    sh.bias[0] = d->cout;
    sh.strides[0] = sh.strides[1] = d->stride;
    /* oneDNN wants the exact right/bottom padding that yields Ho, Wo. */
    sh.pad_l[0] = sh.pad_l[1] = d->pad;
    sh.pad_r[0] = (sh.dst[2] - 1) * d->stride + d->kh - d->h - d->pad;
    sh.pad_r[1] = (sh.dst[3] - 1) * d->stride + d->kw - d->w - d->pad;
    sh.weights_tag = dnnl_oihw;
    return create_common(out, &sh, with_bias, for_training, split, "convolution", err);
}

int rl_dnnl_conv2d_create(rl_dnnl_conv **out, const rl_conv2d_dims *d, int with_bias,
                          int for_training, rl_error *err) {
    return conv2d_create(out, d, with_bias, for_training, 0, err);
}

int rl_dnnl_conv2d_create_cat(rl_dnnl_conv **out, const rl_conv2d_dims *d, int cin_a,
                              int with_bias, int for_training, rl_error *err) {
    if (cin_a < 1 || cin_a >= d->cin) {
        *out = NULL;
        return rl_error_set(err, RL_EINVAL, "a concatenation's first part of %d channels of %d",
                            cin_a, d->cin);
    }
    return conv2d_create(out, d, with_bias, for_training, cin_a, err);
}

int rl_dnnl_convt2x2_create(rl_dnnl_conv **out, const rl_convt2x2_dims *d, int with_bias,
                            int for_training, rl_error *err) {
    conv_shape sh = {0};
    sh.transposed = 1;
    sh.src[0] = sh.dst[0] = d->n;
    sh.src[1] = d->cin, sh.src[2] = d->h, sh.src[3] = d->w;
    sh.dst[1] = d->cout, sh.dst[2] = 2 * d->h, sh.dst[3] = 2 * d->w;
    /* oneDNN's deconvolution weights are (OC, IC, KH, KW); ours, as
     * PyTorch's, are (Cin, Cout, 2, 2): the same tensor, tag iohw. */
    sh.weights[0] = d->cout, sh.weights[1] = d->cin, sh.weights[2] = 2, sh.weights[3] = 2;
    sh.bias[0] = d->cout;
    sh.strides[0] = sh.strides[1] = 2;
    sh.weights_tag = dnnl_iohw;
    return create_common(out, &sh, with_bias, for_training, 0, "transposed convolution", err);
}

size_t rl_dnnl_conv_scratch_floats(const rl_dnnl_conv *c) {
    size_t bytes = c->fwd.bytes;
    if (c->bwd_data.bytes > bytes) bytes = c->bwd_data.bytes;
    if (c->bwd_weights.bytes > bytes) bytes = c->bwd_weights.bytes;
    return (bytes + sizeof(float) - 1) / sizeof(float);
}

static dnnl_status_t reorder(rl_dnnl_conv *c, dnnl_primitive_t prim, dnnl_memory_t pad,
                             dnnl_memory_t from, dnnl_memory_t to) {
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to},
                               {DNNL_ARG_SCRATCHPAD, pad}};
    return dnnl_primitive_execute(prim, c->stream, pad ? 3 : 2, args);
}

/* Runs s with data[] the buffers of its ports' parts in order (NULL: an
 * output nobody wants, computed into the scratch and dropped); set: dx
 * (backward data's output) is overwritten instead of added to. */
static int run_step(rl_dnnl_conv *c, step *s, void *const data[], char *scratch, int set,
                    rl_error *err) {
    dnnl_exec_arg_t args[MAX_PORTS + 1];
    dnnl_status_t st = dnnl_success;
    int nargs = 0, j = 0;
    for (int i = 0; i < s->nports && !st; i++) {
        port *p = &s->ports[i];
        if (p->parts[0].user != p->inner)
            st = dnnl_memory_set_data_handle(p->inner, scratch + p->offset);
        for (int k = 0; k < p->nparts && !st; k++) {
            part *q = &p->parts[k];
            if (data[j + k]) st = dnnl_memory_set_data_handle(q->user, data[j + k]);
            if (!st && q->view != p->inner)
                st = dnnl_memory_set_data_handle(q->view, scratch + p->offset);
            if (!st && q->reorder_pad)
                st = dnnl_memory_set_data_handle(q->reorder_pad, scratch + s->pad_offset);
            if (!st && q->reorder_set_pad)
                st = dnnl_memory_set_data_handle(q->reorder_set_pad, scratch + s->pad_offset);
            if (!st && p->dir == PORT_IN && q->reorder)
                st = reorder(c, q->reorder, q->reorder_pad, q->user, q->view);
        }
        j += p->nparts;
        args[nargs].arg = p->arg;
        args[nargs++].memory = p->inner;
    }
    if (!st && s->pad) {
        st = dnnl_memory_set_data_handle(s->pad, scratch + s->pad_offset);
        args[nargs].arg = DNNL_ARG_SCRATCHPAD;
        args[nargs++].memory = s->pad;
    }
    if (!st) st = dnnl_primitive_execute(s->prim, c->stream, nargs, args);
    j = 0;
    for (int i = 0; i < s->nports && !st; i++) {
        port *p = &s->ports[i];
        for (int k = 0; k < p->nparts && !st; k++) {
            part *q = &p->parts[k];
            if (p->dir == PORT_IN || !q->reorder || !data[j + k]) continue;
            if (set && q->reorder_set)
                st = reorder(c, q->reorder_set, q->reorder_set_pad, q->view, q->user);
            else
                st = reorder(c, q->reorder, q->reorder_pad, q->view, q->user);
        }
        j += p->nparts;
    }
    if (!st) st = dnnl_stream_wait(c->stream);
    if (st) return rl_error_set(err, RL_EUNSUPPORTED, "oneDNN convolution failed (status %d)",
                                (int)st);
    return RL_OK;
}

/* x_b (and dx_b) are the second part of a concatenation's input, exactly
 * when the convolution was made with rl_dnnl_conv2d_create_cat. */
static int check_parts(const rl_dnnl_conv *c, const void *x_b, rl_error *err) {
    if ((c->split > 0) != (x_b != NULL))
        return rl_error_set(err, RL_EINVAL,
                            c->split ? "a oneDNN convolution of a concatenation needs both parts"
                                     : "a second input to a oneDNN convolution of one tensor");
    return RL_OK;
}

int rl_dnnl_conv_forward_cat(rl_dnnl_conv *c, float *y, const float *x_a, const float *x_b,
                             const float *weight, const float *bias, float *scratch,
                             rl_error *err) {
    int rc = check_parts(c, x_b, err);
    if (rc) return rc;
    /* Inputs are only read; oneDNN's memory handles are not const. */
    void *data[2 * MAX_PORTS] = {(void *)x_a};
    int i = 1;
    if (x_b) data[i++] = (void *)x_b;
    data[i++] = (void *)weight;
    if (c->with_bias) data[i++] = (void *)bias;
    data[i] = y;
    return run_step(c, &c->fwd, data, (char *)scratch, 0, err);
}

int rl_dnnl_conv_forward(rl_dnnl_conv *c, float *y, const float *x, const float *weight,
                         const float *bias, float *scratch, rl_error *err) {
    return rl_dnnl_conv_forward_cat(c, y, x, NULL, weight, bias, scratch, err);
}

int rl_dnnl_conv_backward_cat(rl_dnnl_conv *c, float *dx_a, float *dx_b, float *dweight,
                              float *dbias, const float *dy, const float *x_a, const float *x_b,
                              const float *weight, float *scratch, int set_dx, rl_error *err) {
    if (!c->for_training)
        return rl_error_set(err, RL_EINVAL, "oneDNN convolution made for inference only");
    int rc = check_parts(c, x_b, err);
    if (!rc && (dx_a || dx_b)) {
        /* with one part's gradient wanted, the whole is computed, half dropped */
        void *data[2 * MAX_PORTS] = {(void *)dy, (void *)weight, dx_a, dx_b};
        rc = run_step(c, &c->bwd_data, data, (char *)scratch, set_dx, err);
    }
    if (!rc && (dweight || (dbias && c->with_bias))) {
        void *data[2 * MAX_PORTS] = {(void *)x_a};
        int i = 1;
        if (x_b) data[i++] = (void *)x_b;
        data[i++] = (void *)dy;
        data[i++] = dweight;
        data[i] = c->with_bias ? dbias : NULL;
        rc = run_step(c, &c->bwd_weights, data, (char *)scratch, 0, err);
    }
    return rc;
}

int rl_dnnl_conv_backward(rl_dnnl_conv *c, float *dx, float *dweight, float *dbias,
                          const float *dy, const float *x, const float *weight, float *scratch,
                          int set_dx, rl_error *err) {
    return rl_dnnl_conv_backward_cat(c, dx, NULL, dweight, dbias, dy, x, NULL, weight, scratch,
                                     set_dx, err);
}

#endif
