/* The U-Net: parameter table, memory plan, forward and backward passes.
 *
 * The network is a list of "conv units" (conv3x3 -> norm -> LeakyReLU), two
 * per encoder and decoder level, wired together by max-pools, transposed
 * convolutions and concatenations. rl_unet_plan() lays every buffer of one
 * batch shape out in a single arena by running the same layout function twice
 * (measure, then allocate), so the passes themselves only do arithmetic. */
#include "reflabel/unet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv_impl.h"
#include "reflabel/layers.h"

#define NO_OFFSET ((size_t)-1)

/* How rl_unet_create fills a tensor. */
typedef enum init_kind { INIT_KAIMING, INIT_ZERO, INIT_ONE } init_kind;

/* conv3x3 (pad 1) -> optional norm -> LeakyReLU, with its planned buffers. */
typedef struct conv_unit {
    int cin, cout, groups;
    size_t weight, bias;        /* param offsets; bias NO_OFFSET when a norm follows */
    size_t gamma, beta;         /* param offsets; NO_OFFSET without norm */
    size_t run_mean, run_var;   /* buffer offsets (batch norm) */
    int counter;                /* num_batches_tracked index (batch norm), else -1 */
    /* plan: spatial size and buffers */
    int h, w;
    const float *in;            /* (N, cin, h, w) */
    float *d_in;                /* gradient of in, set; NULL for the image */
    /* A decoder's first unit whose oneDNN convolution reads the skip
     * connection and the upsampled map where they lie (split > 0: the
     * skip's channels): in and d_in are then the skip's, these the
     * upsampled map's; NULL otherwise. */
    int split;
    const float *in_b;
    float *d_in_b;
    float *conv_out;            /* (N, cout, h, w): the norm's input */
    float *out;                 /* (N, cout, h, w): after activation (== conv_out without norm) */
    float *d_out;               /* gradient of out */
    float *mean, *rstd;         /* saved statistics: (N, groups) or (cout) */
    double bn_count;            /* batch norm: values per channel of the global batch, as
                                   the last reduced forward summed them */
    rl_dnnl_conv *dnnl;         /* oneDNN's primitives for the conv; NULL: im2col */
} conv_unit;

typedef struct unet_level {
    conv_unit enc[2];
    conv_unit dec[2];     /* unused at the bottleneck unet_level */
    size_t up_weight, up_bias; /* up.l: (w_{l+1}, w_l, 2, 2), (w_l) */
    int h, w;             /* spatial size of this unet_level */
    float *pool_out;      /* (N, w_l, h/2, w/2): input of level l+1 */
    uint8_t *argmax;
    float *d_pool_out;
    float *up_out;        /* (N, w_l, h, w) */
    float *d_up_out;
    float *cat;           /* (N, 2 w_l, h, w) = [skip, up_out] */
    rl_dnnl_conv *up_dnnl; /* oneDNN's primitives for up.l; NULL: im2col */
} unet_level;

struct rl_unet {
    rl_unet_config cfg;
    int width[RL_UNET_MAX_DEPTH + 1];

    rl_unet_tensor *table;
    init_kind *init;
    int count, capacity;
    size_t param_count, buffer_count;
    int counter_count;
    float *params, *grads, *buffers;
    int64_t *counters;

    unet_level lv[RL_UNET_MAX_DEPTH + 1];
    size_t head_weight, head_bias;

    /* plan */
    rl_arena arena;
    int n, h, w, for_training;
    rl_conv_backend conv_backend; /* rl_get_conv_backend() when planned */
    rl_dnnl_conv *head_dnnl;
    float *input;           /* copy of x: conv backward needs it after the caller moves on */
    float *logits;
    float *conv_scratch;
    float *grad_a, *grad_b; /* per-unit gradient scratch, max activation size */
    float *grad_cat;        /* gradient of a concatenation, max cat size */
    /* rl_unet_set_feature_scale's (N, sum of widths), NULL: none; and the
     * scaled bottleneck the first up-convolution then reads. */
    const float *feature_scale;
    float *bottleneck_scaled;
    int forward_training;   /* mode of the last forward; -1 before any */
    /* rl_unet_set_batch_reducer's, NULL: none; the one the last forward used
     * (NULL unless it trained batch norm), which its backward uses too; and
     * the per-channel sums on their way through it, (2 C + 1) doubles. */
    rl_unet_reduce_fn reduce, pass_reduce;
    void *reduce_ctx, *pass_reduce_ctx;
    double *bn_sums;
};

/* ---- configuration --------------------------------------------------------- */

rl_unet_config rl_unet_default_config(void) {
    rl_unet_config c;
    c.in_channels = 1;
    c.num_classes = 2;
    c.depth = 4;
    c.base_width = 16; /* the default of `reflabel train --width` */
    c.max_width = 320;
    c.norm = RL_NORM_GROUP;
    c.groups = 8;
    c.leaky_slope = 0.01f;
    c.bn_momentum = 0.1f;
    c.norm_eps = 1e-5f;
    return c;
}

int rl_unet_config_check(const rl_unet_config *c, rl_error *err) {
    if (c->in_channels < 1 || c->in_channels > 4096)
        return rl_error_set(err, RL_EINVAL, "U-Net in_channels must be in [1, 4096], got %d",
                            c->in_channels);
    if (c->num_classes < 1 || c->num_classes > 4096)
        return rl_error_set(err, RL_EINVAL, "U-Net num_classes must be in [1, 4096], got %d",
                            c->num_classes);
    if (c->depth < 1 || c->depth > RL_UNET_MAX_DEPTH)
        return rl_error_set(err, RL_EINVAL, "U-Net depth must be in [1, %d], got %d",
                            RL_UNET_MAX_DEPTH, c->depth);
    if (c->base_width < 1 || c->base_width > 4096)
        return rl_error_set(err, RL_EINVAL, "U-Net base_width must be in [1, 4096], got %d",
                            c->base_width);
    if (c->max_width < c->base_width || c->max_width > 4096)
        return rl_error_set(err, RL_EINVAL,
                            "U-Net max_width must be in [base_width, 4096], got %d",
                            c->max_width);
    if (c->norm != RL_NORM_NONE && c->norm != RL_NORM_GROUP && c->norm != RL_NORM_BATCH)
        return rl_error_set(err, RL_EINVAL, "U-Net norm kind %d is unknown", (int)c->norm);
    if (c->norm == RL_NORM_GROUP && c->groups < 1)
        return rl_error_set(err, RL_EINVAL, "U-Net groups must be >= 1, got %d", c->groups);
    if (!(c->leaky_slope >= 0 && c->leaky_slope < 1))
        return rl_error_set(err, RL_EINVAL, "U-Net leaky_slope must be in [0, 1), got %g",
                            (double)c->leaky_slope);
    if (!(c->bn_momentum >= 0 && c->bn_momentum <= 1))
        return rl_error_set(err, RL_EINVAL, "U-Net bn_momentum must be in [0, 1], got %g",
                            (double)c->bn_momentum);
    if (!(c->norm_eps > 0 && c->norm_eps < 1))
        return rl_error_set(err, RL_EINVAL, "U-Net norm_eps must be in (0, 1), got %g",
                            (double)c->norm_eps);
    return RL_OK;
}

int rl_unet_width(const rl_unet_config *cfg, int level) {
    long w = (long)cfg->base_width << level;
    return w > cfg->max_width ? cfg->max_width : (int)w;
}

const char *rl_norm_name(rl_norm_kind norm) {
    switch (norm) {
    case RL_NORM_GROUP: return "group";
    case RL_NORM_BATCH: return "batch";
    default: return "none";
    }
}

int rl_norm_from_name(const char *name) {
    if (!strcmp(name, "none")) return RL_NORM_NONE;
    if (!strcmp(name, "group")) return RL_NORM_GROUP;
    if (!strcmp(name, "batch")) return RL_NORM_BATCH;
    return -1;
}

static int gcd(int a, int b) {
    while (b) {
        int t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* ---- the tensor table --------------------------------------------------------- */

static size_t add_tensor(rl_unet *net, rl_unet_tensor_kind kind, init_kind init, int decay,
                         const char *name, int ndim, int d0, int d1, int d2, int d3) {
    rl_unet_tensor *t = &net->table[net->count];
    net->init[net->count] = init;
    net->count++;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->kind = kind;
    t->ndim = ndim;
    int dims[4] = {d0, d1, d2, d3};
    t->numel = 1;
    for (int i = 0; i < 4; i++) {
        t->shape[i] = i < ndim ? dims[i] : 0;
        if (i < ndim) t->numel *= (size_t)dims[i];
    }
    t->weight_decay = decay;
    size_t *counter = kind == RL_UNET_PARAM ? &net->param_count : &net->buffer_count;
    if (kind == RL_UNET_COUNTER) {
        t->offset = (size_t)net->counter_count++;
        return t->offset;
    }
    t->offset = *counter;
    *counter += t->numel;
    return t->offset;
}

/* Registers conv<k> and norm<k> of module prefix ("enc.2") as unit u. */
static void add_unit(rl_unet *net, conv_unit *u, const char *prefix, int k, int cin, int cout) {
    char name[RL_UNET_NAME_MAX];
    const rl_unet_config *c = &net->cfg;
    u->cin = cin;
    u->cout = cout;
    u->groups = c->norm == RL_NORM_GROUP ? gcd(cout, c->groups) : 1;
    u->bias = u->gamma = u->beta = u->run_mean = u->run_var = NO_OFFSET;
    u->counter = -1;
    snprintf(name, sizeof name, "%s.conv%d.weight", prefix, k);
    u->weight = add_tensor(net, RL_UNET_PARAM, INIT_KAIMING, 1, name, 4, cout, cin, 3, 3);
    if (c->norm == RL_NORM_NONE) {
        snprintf(name, sizeof name, "%s.conv%d.bias", prefix, k);
        u->bias = add_tensor(net, RL_UNET_PARAM, INIT_ZERO, 0, name, 1, cout, 0, 0, 0);
        return;
    }
    snprintf(name, sizeof name, "%s.norm%d.weight", prefix, k);
    u->gamma = add_tensor(net, RL_UNET_PARAM, INIT_ONE, 0, name, 1, cout, 0, 0, 0);
    snprintf(name, sizeof name, "%s.norm%d.bias", prefix, k);
    u->beta = add_tensor(net, RL_UNET_PARAM, INIT_ZERO, 0, name, 1, cout, 0, 0, 0);
    if (c->norm == RL_NORM_BATCH) {
        snprintf(name, sizeof name, "%s.norm%d.running_mean", prefix, k);
        u->run_mean = add_tensor(net, RL_UNET_BUFFER, INIT_ZERO, 0, name, 1, cout, 0, 0, 0);
        snprintf(name, sizeof name, "%s.norm%d.running_var", prefix, k);
        u->run_var = add_tensor(net, RL_UNET_BUFFER, INIT_ONE, 0, name, 1, cout, 0, 0, 0);
        snprintf(name, sizeof name, "%s.norm%d.num_batches_tracked", prefix, k);
        u->counter = (int)add_tensor(net, RL_UNET_COUNTER, INIT_ZERO, 0, name, 0, 0, 0, 0, 0);
    }
}

/* Registers every tensor in the order of the torch module's state_dict:
 * enc.0..D, up.0..D-1, dec.0..D-1, head. */
static void build_table(rl_unet *net) {
    const rl_unet_config *c = &net->cfg;
    char prefix[RL_UNET_NAME_MAX], name[RL_UNET_NAME_MAX];
    for (int l = 0; l <= c->depth; l++) {
        snprintf(prefix, sizeof prefix, "enc.%d", l);
        int cin = l == 0 ? c->in_channels : net->width[l - 1];
        add_unit(net, &net->lv[l].enc[0], prefix, 1, cin, net->width[l]);
        add_unit(net, &net->lv[l].enc[1], prefix, 2, net->width[l], net->width[l]);
    }
    for (int l = 0; l < c->depth; l++) {
        int cin = net->width[l + 1], cout = net->width[l];
        snprintf(name, sizeof name, "up.%d.weight", l);
        net->lv[l].up_weight = add_tensor(net, RL_UNET_PARAM, INIT_KAIMING, 1, name, 4, cin,
                                          cout, 2, 2);
        snprintf(name, sizeof name, "up.%d.bias", l);
        net->lv[l].up_bias = add_tensor(net, RL_UNET_PARAM, INIT_ZERO, 0, name, 1, cout, 0, 0, 0);
    }
    for (int l = 0; l < c->depth; l++) {
        snprintf(prefix, sizeof prefix, "dec.%d", l);
        add_unit(net, &net->lv[l].dec[0], prefix, 1, 2 * net->width[l], net->width[l]);
        add_unit(net, &net->lv[l].dec[1], prefix, 2, net->width[l], net->width[l]);
    }
    net->head_weight = add_tensor(net, RL_UNET_PARAM, INIT_KAIMING, 1, "head.weight", 4,
                                  c->num_classes, net->width[0], 1, 1);
    net->head_bias = add_tensor(net, RL_UNET_PARAM, INIT_ZERO, 0, "head.bias", 1,
                                c->num_classes, 0, 0, 0);
}

/* torch.nn.init.kaiming_normal_(w, a=slope, mode="fan_in",
 * nonlinearity="leaky_relu"): std = sqrt(2 / (1 + slope^2)) / sqrt(fan_in),
 * with fan_in = shape[1] * kh * kw as torch computes it (also for the
 * transposed convolution, whose shape[1] is its output channels). */
static void init_tensors(rl_unet *net, uint64_t seed) {
    rl_rng rng;
    rl_rng_seed(&rng, seed, 0);
    float slope = net->cfg.leaky_slope;
    double gain = sqrt(2.0 / (1.0 + (double)slope * slope));
    for (int i = 0; i < net->count; i++) {
        const rl_unet_tensor *t = &net->table[i];
        if (t->kind == RL_UNET_COUNTER) {
            net->counters[t->offset] = 0;
            continue;
        }
        float *v = (t->kind == RL_UNET_PARAM ? net->params : net->buffers) + t->offset;
        if (net->init[i] == INIT_KAIMING) {
            size_t fan_in = (size_t)t->shape[1] * (size_t)t->shape[2] * (size_t)t->shape[3];
            float std = (float)(gain / sqrt((double)fan_in));
            for (size_t j = 0; j < t->numel; j++) v[j] = std * rl_rng_normal(&rng);
        } else {
            float value = net->init[i] == INIT_ONE ? 1.0f : 0.0f;
            for (size_t j = 0; j < t->numel; j++) v[j] = value;
        }
    }
}

int rl_unet_create(rl_unet **out, const rl_unet_config *cfg, uint64_t seed, rl_error *err) {
    *out = NULL;
    int rc = rl_unet_config_check(cfg, err);
    if (rc) return rc;
    rl_unet *net = calloc(1, sizeof *net);
    if (!net) return rl_error_set(err, RL_ENOMEM, "out of memory creating the U-Net");
    net->cfg = *cfg;
    net->forward_training = -1;
    for (int l = 0; l <= cfg->depth; l++) net->width[l] = rl_unet_width(cfg, l);
    /* At most 7 tensors per unit, 4 units per level, plus up and head. */
    net->capacity = 7 * 4 * (cfg->depth + 1) + 2 * cfg->depth + 2;
    net->table = calloc((size_t)net->capacity, sizeof *net->table);
    net->init = calloc((size_t)net->capacity, sizeof *net->init);
    if (net->table && net->init) {
        build_table(net);
        net->params = malloc(net->param_count * sizeof(float));
        net->grads = calloc(net->param_count, sizeof(float));
        net->buffers = malloc((net->buffer_count + 1) * sizeof(float));
        net->counters = calloc((size_t)net->counter_count + 1, sizeof(int64_t));
    }
    if (!net->table || !net->init || !net->params || !net->grads || !net->buffers ||
        !net->counters) {
        rl_unet_free(net);
        return rl_error_set(err, RL_ENOMEM, "out of memory creating the U-Net");
    }
    init_tensors(net, seed);
    *out = net;
    return RL_OK;
}

static void free_dnnl(rl_unet *net);

void rl_unet_free(rl_unet *net) {
    if (!net) return;
    free_dnnl(net);
    rl_arena_free(&net->arena);
    free(net->table);
    free(net->init);
    free(net->params);
    free(net->grads);
    free(net->buffers);
    free(net->counters);
    free(net);
}

const rl_unet_config *rl_unet_get_config(const rl_unet *net) { return &net->cfg; }

const rl_unet_tensor *rl_unet_tensors(const rl_unet *net, int *count) {
    *count = net->count;
    return net->table;
}

const rl_unet_tensor *rl_unet_find_tensor(const rl_unet *net, const char *name) {
    for (int i = 0; i < net->count; i++)
        if (!strcmp(net->table[i].name, name)) return &net->table[i];
    return NULL;
}

void *rl_unet_tensor_data(rl_unet *net, const rl_unet_tensor *t) {
    switch (t->kind) {
    case RL_UNET_PARAM: return net->params + t->offset;
    case RL_UNET_BUFFER: return net->buffers + t->offset;
    default: return net->counters + t->offset;
    }
}

float *rl_unet_tensor_grad(rl_unet *net, const rl_unet_tensor *t) {
    return t->kind == RL_UNET_PARAM ? net->grads + t->offset : NULL;
}

float *rl_unet_params(rl_unet *net) { return net->params; }
float *rl_unet_grads(rl_unet *net) { return net->grads; }
size_t rl_unet_param_count(const rl_unet *net) { return net->param_count; }

void rl_unet_zero_grad(rl_unet *net) {
    memset(net->grads, 0, net->param_count * sizeof(float));
}

/* ---- memory plan ------------------------------------------------------------ */

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

static rl_conv2d_dims unit_dims(const rl_unet *net, const conv_unit *u) {
    rl_conv2d_dims d = {net->n, u->cin, u->h, u->w, u->cout, 3, 3, 1, 1};
    return d;
}

static rl_conv2d_dims head_dims(const rl_unet *net) {
    rl_conv2d_dims d = {net->n, net->width[0], net->h, net->w, net->cfg.num_classes, 1, 1, 1, 0};
    return d;
}

static rl_convt2x2_dims up_dims(const rl_unet *net, int l) {
    rl_convt2x2_dims d = {net->n, net->width[l + 1], net->lv[l + 1].h, net->lv[l + 1].w,
                          net->width[l]};
    return d;
}

/* Scratch of one convolution: im2col's, and oneDNN's where it has
 * primitives (the im2col path stays usable either way). */
static size_t conv_scratch(const rl_conv2d_dims *d, const rl_dnnl_conv *dnnl) {
    size_t im2col = rl_conv2d_scratch_floats(d);
    return dnnl ? max_size(im2col, rl_dnnl_conv_scratch_floats(dnnl)) : im2col;
}

static void free_dnnl(rl_unet *net) {
    rl_dnnl_conv_free(net->head_dnnl);
    net->head_dnnl = NULL;
    for (int l = 0; l <= net->cfg.depth; l++) {
        unet_level *L = &net->lv[l];
        for (int k = 0; k < 2; k++) {
            rl_dnnl_conv_free(L->enc[k].dnnl);
            rl_dnnl_conv_free(L->dec[k].dnnl);
            L->enc[k].dnnl = L->dec[k].dnnl = NULL;
            L->dec[k].split = 0;
        }
        rl_dnnl_conv_free(L->up_dnnl);
        L->up_dnnl = NULL;
    }
}

/* split > 0: the unit's input is a concatenation whose first split channels
 * are one tensor and the rest another; oneDNN reads them apart where it can
 * (rl_dnnl_conv2d_create_cat), else the unit reads a concatenated copy. */
static void unit_dnnl(rl_unet *net, conv_unit *u, int h, int w, int split) {
    rl_error ignored = {0, ""};
    u->h = h;
    u->w = w;
    rl_conv2d_dims d = unit_dims(net, u);
    const int bias = u->bias != NO_OFFSET;
    u->split = 0;
    if (split && !rl_dnnl_conv2d_create_cat(&u->dnnl, &d, split, bias, net->for_training,
                                            &ignored)) {
        u->split = split;
        return;
    }
    rl_dnnl_conv2d_create(&u->dnnl, &d, bias, net->for_training, &ignored);
}

/* With the oneDNN backend, makes every convolution's primitives for the
 * current (n, h, w), before layout() sizes the scratch with them. A layer
 * oneDNN cannot do keeps NULL and runs on im2col. */
static void plan_dnnl(rl_unet *net) {
    const int depth = net->cfg.depth, train = net->for_training;
    rl_error ignored = {0, ""};
    if (net->conv_backend != RL_CONV_DNNL) return;
    for (int l = 0; l <= depth; l++) {
        unet_level *L = &net->lv[l];
        L->h = net->h >> l;
        L->w = net->w >> l;
        for (int k = 0; k < 2; k++) {
            unit_dnnl(net, &L->enc[k], L->h, L->w, 0);
            if (l < depth) unit_dnnl(net, &L->dec[k], L->h, L->w, k == 0 ? net->width[l] : 0);
        }
    }
    for (int l = 0; l < depth; l++) {
        rl_convt2x2_dims ud = up_dims(net, l);
        rl_dnnl_convt2x2_create(&net->lv[l].up_dnnl, &ud, 1, train, &ignored);
    }
    rl_conv2d_dims hd = head_dims(net);
    rl_dnnl_conv2d_create(&net->head_dnnl, &hd, 1, train, &ignored);
}

static void unit_forward_buffers(rl_unet *net, rl_arena *a, conv_unit *u, int h, int w) {
    size_t count = (size_t)net->n * (size_t)u->cout * (size_t)h * (size_t)w;
    u->h = h;
    u->w = w;
    u->conv_out = rl_arena_floats(a, count);
    u->out = u->conv_out; /* the activation runs in place when nothing else needs conv_out */
    u->mean = u->rstd = NULL;
    if (net->cfg.norm != RL_NORM_NONE) {
        u->out = rl_arena_floats(a, count);
        size_t stats = net->cfg.norm == RL_NORM_GROUP ? (size_t)net->n * (size_t)u->groups
                                                      : (size_t)u->cout;
        u->mean = rl_arena_floats(a, stats);
        u->rstd = rl_arena_floats(a, stats);
    }
}

/* Assigns every buffer of the current (n, h, w) from arena a; with a
 * measuring arena the pointers are NULL and only a->used matters. */
static void layout(rl_unet *net, rl_arena *a) {
    const int depth = net->cfg.depth, n = net->n;
    size_t scratch = 0, act_max = 0, cat_max = 0;
    net->input = rl_arena_floats(a, (size_t)n * net->cfg.in_channels * net->h * net->w);
    for (int l = 0; l <= depth; l++) {
        unet_level *L = &net->lv[l];
        L->h = net->h >> l;
        L->w = net->w >> l;
        size_t hw = (size_t)L->h * (size_t)L->w;
        for (int k = 0; k < 2; k++) {
            unit_forward_buffers(net, a, &L->enc[k], L->h, L->w);
            rl_conv2d_dims d = unit_dims(net, &L->enc[k]);
            scratch = max_size(scratch, conv_scratch(&d, L->enc[k].dnnl));
        }
        act_max = max_size(act_max, (size_t)n * net->width[l] * hw);
        if (l < depth) {
            L->pool_out = rl_arena_floats(a, (size_t)n * net->width[l] * hw / 4);
            L->argmax = rl_arena_alloc(a, (size_t)n * net->width[l] * hw / 4);
        }
    }
    for (int l = depth - 1; l >= 0; l--) {
        unet_level *L = &net->lv[l];
        size_t hw = (size_t)L->h * (size_t)L->w;
        L->up_out = rl_arena_floats(a, (size_t)n * net->width[l] * hw);
        L->cat = rl_arena_floats(a, (size_t)n * 2 * net->width[l] * hw);
        cat_max = max_size(cat_max, (size_t)n * 2 * net->width[l] * hw);
        rl_convt2x2_dims ud = up_dims(net, l);
        scratch = max_size(scratch, rl_convt2x2_scratch_floats(&ud));
        if (L->up_dnnl) scratch = max_size(scratch, rl_dnnl_conv_scratch_floats(L->up_dnnl));
        for (int k = 0; k < 2; k++) {
            unit_forward_buffers(net, a, &L->dec[k], L->h, L->w);
            rl_conv2d_dims d = unit_dims(net, &L->dec[k]);
            scratch = max_size(scratch, conv_scratch(&d, L->dec[k].dnnl));
        }
    }
    rl_conv2d_dims hd = head_dims(net);
    scratch = max_size(scratch, conv_scratch(&hd, net->head_dnnl));
    net->logits = rl_arena_floats(a, (size_t)n * net->cfg.num_classes * net->h * net->w);
    net->bottleneck_scaled = rl_arena_floats(
        a, (size_t)n * net->width[depth] * net->lv[depth].h * net->lv[depth].w);
    net->conv_scratch = rl_arena_floats(a, scratch);
    /* The widest unit's sums and squared deviations (forward) or its two
     * gradient sums (backward); the widths grow with depth. */
    net->bn_sums = NULL;
    if (net->cfg.norm == RL_NORM_BATCH)
        net->bn_sums = rl_arena_alloc(a, (2 * (size_t)net->width[depth] + 1) * sizeof(double));

    /* Wiring of the forward pass. */
    for (int l = 0; l <= depth; l++) {
        unet_level *L = &net->lv[l];
        L->enc[0].in = l == 0 ? net->input : net->lv[l - 1].pool_out;
        L->enc[1].in = L->enc[0].out;
        if (l < depth) {
            /* split: the skip's scaled copy when there is a feature scale
             * (rl_unet_forward sets it) */
            L->dec[0].in = L->dec[0].split ? L->enc[1].out : L->cat;
            L->dec[0].in_b = L->dec[0].split ? L->up_out : NULL;
            L->dec[1].in = L->dec[0].out;
        }
    }

    /* Gradients: one per activation (each written once per backward pass,
     * nothing zeroes them), then scratch reused by every unit. */
    net->grad_a = net->grad_b = net->grad_cat = NULL;
    for (int l = 0; l <= depth; l++) {
        unet_level *L = &net->lv[l];
        L->enc[0].d_out = L->enc[1].d_out = L->dec[0].d_out = L->dec[1].d_out = NULL;
        L->enc[0].d_in = L->enc[1].d_in = L->dec[0].d_in = L->dec[1].d_in = NULL;
        L->dec[0].d_in_b = NULL;
        L->d_pool_out = L->d_up_out = NULL;
    }
    if (!net->for_training) return;
    for (int l = 0; l <= depth; l++) {
        unet_level *L = &net->lv[l];
        size_t count = (size_t)n * net->width[l] * L->h * L->w;
        for (int k = 0; k < 2; k++) {
            L->enc[k].d_out = rl_arena_floats(a, count);
            if (l < depth) L->dec[k].d_out = rl_arena_floats(a, count);
        }
        if (l < depth) {
            L->d_pool_out = rl_arena_floats(a, count / 4);
            L->d_up_out = rl_arena_floats(a, count);
        }
    }
    net->grad_a = rl_arena_floats(a, act_max);
    net->grad_b = rl_arena_floats(a, act_max);
    net->grad_cat = rl_arena_floats(a, cat_max);
    for (int l = 0; l <= depth; l++) {
        unet_level *L = &net->lv[l];
        L->enc[0].d_in = l == 0 ? NULL : net->lv[l - 1].d_pool_out;
        L->enc[1].d_in = L->enc[0].d_out;
        if (l < depth) {
            L->dec[0].d_in = L->dec[0].split ? L->enc[1].d_out : net->grad_cat;
            L->dec[0].d_in_b = L->dec[0].split ? L->d_up_out : NULL;
            L->dec[1].d_in = L->dec[0].d_out;
        }
    }
}

int rl_unet_plan(rl_unet *net, int batch, int h, int w, int for_training, rl_error *err) {
    int multiple = 1 << net->cfg.depth;
    if (batch < 1 || h < 1 || w < 1)
        return rl_error_set(err, RL_EINVAL, "U-Net plan: batch %d, size %dx%d must be positive",
                            batch, h, w);
    if (h % multiple || w % multiple)
        return rl_error_set(err, RL_EINVAL,
                            "U-Net plan: image size %dx%d is not a multiple of %d (2^depth, "
                            "depth %d)",
                            h, w, multiple, net->cfg.depth);
    /* The layers index one sample's tensor with int; the widest is a concat. */
    int widest = net->cfg.num_classes;
    for (int l = 0; l <= net->cfg.depth; l++)
        if (2 * net->width[l] > widest) widest = 2 * net->width[l];
    if ((double)widest * h * w > 2147483647.0)
        return rl_error_set(err, RL_ERANGE, "U-Net plan: images of %dx%d are too large", h, w);
    for_training = for_training != 0;
    if (net->arena.base && net->n == batch && net->h == h && net->w == w &&
        net->for_training == for_training && net->conv_backend == rl_get_conv_backend())
        return RL_OK;
    rl_arena_free(&net->arena);
    free_dnnl(net);
    net->n = batch;
    net->h = h;
    net->w = w;
    net->for_training = for_training;
    net->conv_backend = rl_get_conv_backend();
    net->forward_training = -1;
    plan_dnnl(net);
    rl_arena measure;
    rl_arena_measure(&measure);
    layout(net, &measure);
    int rc = rl_arena_init(&net->arena, measure.used, err);
    if (rc) {
        net->n = 0;
        free_dnnl(net);
        return rl_error_prefix(err, "U-Net plan for batch %d of %dx%d", batch, h, w);
    }
    layout(net, &net->arena);
    return RL_OK;
}

size_t rl_unet_arena_bytes(const rl_unet *net) { return net->arena.size; }

static double conv2d_flops(const rl_conv2d_dims *d) {
    return 2.0 * d->n * d->cout * rl_conv2d_out_h(d) * rl_conv2d_out_w(d) * d->cin * d->kh *
           d->kw;
}

double rl_unet_conv_flops(const rl_unet *net) {
    if (!net->arena.base) return 0.0;
    rl_conv2d_dims hd = head_dims(net);
    double flops = conv2d_flops(&hd);
    for (int l = 0; l <= net->cfg.depth; l++) {
        const unet_level *L = &net->lv[l];
        for (int k = 0; k < 2; k++) {
            rl_conv2d_dims d = unit_dims(net, &L->enc[k]);
            flops += conv2d_flops(&d);
            if (l == net->cfg.depth) continue;
            d = unit_dims(net, &L->dec[k]);
            flops += conv2d_flops(&d);
        }
        if (l < net->cfg.depth) { /* each input pixel to a 2x2 block of cout */
            rl_convt2x2_dims u = up_dims(net, l);
            flops += 2.0 * u.n * u.cin * u.h * u.w * u.cout * 4;
        }
    }
    return flops;
}

/* ---- forward ---------------------------------------------------------------- */

/* The convolutions of the plan: oneDNN's primitives where plan_dnnl made
 * them, im2col otherwise. */
static int conv_forward(rl_unet *net, rl_dnnl_conv *dnnl, float *y, const float *x,
                        const float *x_b, const float *weight, const float *bias,
                        const rl_conv2d_dims *d, rl_error *err) {
    if (dnnl)
        return rl_dnnl_conv_forward_cat(dnnl, y, x, x_b, weight, bias, net->conv_scratch, err);
    rl_conv2d_forward_im2col(y, x, weight, bias, d, net->conv_scratch);
    return RL_OK;
}

static int convt_forward(rl_unet *net, rl_dnnl_conv *dnnl, float *y, const float *x,
                         const float *weight, const float *bias, const rl_convt2x2_dims *d,
                         rl_error *err) {
    if (dnnl) return rl_dnnl_conv_forward(dnnl, y, x, weight, bias, net->conv_scratch, err);
    rl_convt2x2_forward_im2col(y, x, weight, bias, d, net->conv_scratch);
    return RL_OK;
}

/* Batch norm in training mode over the global batch (rl_unet_set_batch_reducer):
 * the whole-batch function's two passes, each followed by a reduction
 * (norm.c). conv_out (N, cout, h, w) -> out, before the activation. */
static int batchnorm_forward_reduced(rl_unet *net, conv_unit *u, rl_error *err) {
    const rl_unet_config *c = &net->cfg;
    const float *p = net->params;
    const int hw = u->h * u->w, cout = u->cout;
    double *sums = net->bn_sums, *sq_devs = net->bn_sums + cout + 1; /* (cout + 1), (cout) */
    rl_batchnorm_sums(sums, u->conv_out, net->n, cout, hw);
    int rc = net->pass_reduce(sums, (size_t)cout + 1, net->pass_reduce_ctx, err);
    if (rc) return rc;
    /* rl_unet_forward's check, on the global count: it is the same on every
     * process, so all of them stop here together, where a check of this
     * process's share alone could stop it while the others wait for it in
     * the reduction. */
    if (sums[cout] < 2)
        return rl_error_set(err, RL_EINVAL,
                            "batch norm in training mode needs more than one value per channel "
                            "over the global batch, at %dx%d",
                            u->h, u->w);
    rl_batchnorm_sq_devs(sq_devs, sums, u->conv_out, net->n, cout, hw);
    if ((rc = net->pass_reduce(sq_devs, (size_t)cout, net->pass_reduce_ctx, err))) return rc;
    rl_batchnorm_apply_train(u->out, u->mean, u->rstd, net->buffers + u->run_mean,
                             net->buffers + u->run_var, u->conv_out, p + u->gamma, p + u->beta,
                             sums, sq_devs, net->n, cout, hw, c->bn_momentum, c->norm_eps);
    u->bn_count = sums[cout];
    return RL_OK;
}

/* in (N, cin, h, w) -> out (N, cout, h, w). */
static int unit_forward(rl_unet *net, conv_unit *u, int training, rl_error *err) {
    const rl_unet_config *c = &net->cfg;
    const float *p = net->params;
    rl_conv2d_dims d = unit_dims(net, u);
    size_t hw = (size_t)u->h * (size_t)u->w;
    size_t count = (size_t)net->n * (size_t)u->cout * hw;
    int rc = conv_forward(net, u->dnnl, u->conv_out, u->in, u->in_b, p + u->weight,
                          u->bias == NO_OFFSET ? NULL : p + u->bias, &d, err);
    if (rc) return rc;
    if (c->norm == RL_NORM_GROUP) { /* the activation fused in (norm.c) */
        rl_groupnorm_leaky_forward(u->out, u->mean, u->rstd, u->conv_out, p + u->gamma,
                                   p + u->beta, net->n, u->cout, (int)hw, u->groups, c->norm_eps,
                                   c->leaky_slope);
        return RL_OK;
    } else if (c->norm == RL_NORM_BATCH && training && net->pass_reduce) {
        if ((rc = batchnorm_forward_reduced(net, u, err))) return rc;
        net->counters[u->counter]++;
    } else if (c->norm == RL_NORM_BATCH && training) {
        rl_batchnorm_forward_train(u->out, u->mean, u->rstd, net->buffers + u->run_mean,
                                   net->buffers + u->run_var, u->conv_out, p + u->gamma,
                                   p + u->beta, net->n, u->cout, (int)hw, c->bn_momentum,
                                   c->norm_eps);
        net->counters[u->counter]++;
    } else if (c->norm == RL_NORM_BATCH) {
        rl_batchnorm_forward_eval(u->out, u->conv_out, p + u->gamma, p + u->beta,
                                  net->buffers + u->run_mean, net->buffers + u->run_var, net->n,
                                  u->cout, (int)hw, c->norm_eps);
    }
    rl_leaky_relu_forward(u->out, u->out, count, c->leaky_slope);
    return RL_OK;
}

void rl_unet_set_feature_scale(rl_unet *net, const float *scale) { net->feature_scale = scale; }

void rl_unet_set_batch_reducer(rl_unet *net, rl_unet_reduce_fn fn, void *ctx) {
    net->reduce = fn;
    net->reduce_ctx = fn ? ctx : NULL;
}

int rl_unet_feature_scale_count(const rl_unet *net) {
    int count = 0;
    for (int l = 0; l <= net->cfg.depth; l++) count += net->width[l];
    return count;
}

/* x (n, C, hw) with channel c of image b multiplied by scale[b * stride + c]
 * (in place, x == out, or into out). */
static void scale_channels(float *out, const float *x, const float *scale, size_t stride, int n,
                           int c, size_t hw) {
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++) {
            float s = scale[(size_t)b * stride + ch];
            const float *src = x + ((size_t)b * c + ch) * hw;
            float *dst = out + ((size_t)b * c + ch) * hw;
            for (size_t i = 0; i < hw; i++) dst[i] = s * src[i];
        }
}

/* Where level l's channels start in one image's feature scale. */
static size_t scale_offset(const rl_unet *net, int l) {
    size_t offset = 0;
    for (int m = 0; m < l; m++) offset += (size_t)net->width[m];
    return offset;
}

/* The bottleneck as the first up-convolution reads it: scaled into its own
 * buffer (the bottleneck's units still need their unscaled output). */
static const float *bottleneck_input(rl_unet *net) {
    const unet_level *B = &net->lv[net->cfg.depth];
    if (!net->feature_scale) return B->enc[1].out;
    scale_channels(net->bottleneck_scaled, B->enc[1].out,
                   net->feature_scale + scale_offset(net, net->cfg.depth),
                   (size_t)rl_unet_feature_scale_count(net), net->n, net->width[net->cfg.depth],
                   (size_t)B->h * B->w);
    return net->bottleneck_scaled;
}

int rl_unet_forward(rl_unet *net, const float *x, int training, rl_error *err) {
    if (!net->arena.base) return rl_error_set(err, RL_EINVAL, "U-Net forward before rl_unet_plan");
    const int depth = net->cfg.depth, n = net->n;
    const float *p = net->params;
    const int batch_train = training && net->cfg.norm == RL_NORM_BATCH;
    net->pass_reduce = batch_train ? net->reduce : NULL;
    net->pass_reduce_ctx = batch_train ? net->reduce_ctx : NULL;
    /* Batch statistics of a single value per channel are undefined (PyTorch
     * refuses them too); this happens at the bottleneck of a tiny input.
     * With a reducer the global batch counts, checked by each unit. */
    if (batch_train && !net->pass_reduce && n * net->lv[depth].h * net->lv[depth].w < 2)
        return rl_error_set(err, RL_EINVAL,
                            "U-Net forward: batch norm in training mode needs more than one "
                            "value per channel at the bottleneck (batch %d of %dx%d, depth %d)",
                            n, net->h, net->w, depth);
    memcpy(net->input, x, (size_t)n * net->cfg.in_channels * net->h * net->w * sizeof(float));
    int rc = RL_OK;
    for (int l = 0; l <= depth && !rc; l++) {
        unet_level *L = &net->lv[l];
        if (l > 0) {
            unet_level *above = &net->lv[l - 1];
            rl_maxpool2x2_forward(above->pool_out, above->argmax, above->enc[1].out, n,
                                  net->width[l - 1], above->h, above->w);
        }
        rc = unit_forward(net, &L->enc[0], training, err);
        if (!rc) rc = unit_forward(net, &L->enc[1], training, err);
    }
    for (int l = depth - 1; l >= 0 && !rc; l--) {
        unet_level *L = &net->lv[l];
        const float *below = net->lv[l + 1].dec[1].out;
        if (l == depth - 1) below = bottleneck_input(net);
        rl_convt2x2_dims ud = up_dims(net, l);
        rc = convt_forward(net, L->up_dnnl, L->up_out, below, p + L->up_weight, p + L->up_bias,
                           &ud, err);
        if (rc) break;
        if (L->dec[0].split) {
            /* oneDNN reads the two where they lie; a scaled skip goes to
             * the concatenation's buffer, unused otherwise */
            L->dec[0].in = L->enc[1].out;
            if (net->feature_scale) {
                scale_channels(L->cat, L->enc[1].out,
                               net->feature_scale + scale_offset(net, l),
                               (size_t)rl_unet_feature_scale_count(net), n, net->width[l],
                               (size_t)L->h * L->w);
                L->dec[0].in = L->cat;
            }
        } else {
            rl_concat_forward(L->cat, L->enc[1].out, net->width[l], L->up_out, net->width[l], n,
                              L->h * L->w);
        }
        /* The skip half of each image's concatenation is its first width[l]
         * channels: scaled there, the encoder's own output stays as it is. */
        for (int b = 0; net->feature_scale && !L->dec[0].split && b < n; b++)
            scale_channels(L->cat + (size_t)b * 2 * net->width[l] * L->h * L->w,
                           L->cat + (size_t)b * 2 * net->width[l] * L->h * L->w,
                           net->feature_scale + (size_t)b * rl_unet_feature_scale_count(net) +
                               scale_offset(net, l),
                           0, 1, net->width[l], (size_t)L->h * L->w);
        rc = unit_forward(net, &L->dec[0], training, err);
        if (!rc) rc = unit_forward(net, &L->dec[1], training, err);
    }
    rl_conv2d_dims hd = head_dims(net);
    if (!rc)
        rc = conv_forward(net, net->head_dnnl, net->logits, net->lv[0].dec[1].out, NULL,
                          p + net->head_weight, p + net->head_bias, &hd, err);
    if (rc) {
        rl_error_prefix(err, "U-Net forward");
        return rc; /* not rl_error_prefix's code: err may be NULL */
    }
    net->forward_training = training != 0;
    return RL_OK;
}

/* ---- backward --------------------------------------------------------------- */

/* The convolutions' backward passes SET dx: every activation gradient of
 * the U-Net has one writer (the one tensor with two, the skip connection's,
 * takes the concatenation's share first and the pooling's added to it), so
 * nothing is zeroed up front and oneDNN's reorder out of its blocked layout
 * does not read dx. im2col accumulates, so its dx is zeroed here. The
 * parameter gradients still accumulate (rl_unet_zero_grad). */
static int conv_backward(rl_unet *net, rl_dnnl_conv *dnnl, float *dx, float *dx_b,
                         float *dweight, float *dbias, const float *dy, const float *x,
                         const float *x_b, const float *weight, const rl_conv2d_dims *d,
                         rl_error *err) {
    if (dnnl)
        return rl_dnnl_conv_backward_cat(dnnl, dx, dx_b, dweight, dbias, dy, x, x_b, weight,
                                         net->conv_scratch, 1, err);
    if (dx) memset(dx, 0, (size_t)d->n * d->cin * d->h * d->w * sizeof *dx);
    rl_conv2d_backward_im2col(dx, dweight, dbias, dy, x, weight, d, net->conv_scratch);
    return RL_OK;
}

static int convt_backward(rl_unet *net, rl_dnnl_conv *dnnl, float *dx, float *dweight,
                          float *dbias, const float *dy, const float *x, const float *weight,
                          const rl_convt2x2_dims *d, rl_error *err) {
    if (dnnl)
        return rl_dnnl_conv_backward(dnnl, dx, dweight, dbias, dy, x, weight, net->conv_scratch,
                                     1, err);
    if (dx) memset(dx, 0, (size_t)d->n * d->cin * d->h * d->w * sizeof *dx);
    rl_convt2x2_backward_im2col(dx, dweight, dbias, dy, x, weight, d, net->conv_scratch);
    return RL_OK;
}

/* batchnorm_forward_reduced's backward: dy (N, cout, h, w) -> accumulates dx
 * with the global sums, and this process's share into dgamma and dbeta
 * (norm.c derives both). */
static int batchnorm_backward_reduced(rl_unet *net, conv_unit *u, float *dx, const float *dy,
                                      rl_error *err) {
    const float *p = net->params;
    float *g = net->grads;
    const int hw = u->h * u->w, cout = u->cout;
    double *sums = net->bn_sums; /* (2 cout) */
    rl_batchnorm_backward_sums(sums, g + u->gamma, g + u->beta, dy, u->conv_out, u->mean,
                               u->rstd, net->n, cout, hw);
    int rc = net->pass_reduce(sums, 2 * (size_t)cout, net->pass_reduce_ctx, err);
    if (rc) return rc;
    rl_batchnorm_backward_apply(dx, sums, u->bn_count, dy, u->conv_out, u->mean, u->rstd,
                                p + u->gamma, net->n, cout, hw);
    return RL_OK;
}

/* d_out (N, cout, h, w) -> sets d_in, accumulates the unit's parameter grads. */
static int unit_backward(rl_unet *net, conv_unit *u, rl_error *err) {
    const rl_unet_config *c = &net->cfg;
    const float *p = net->params;
    float *g = net->grads;
    size_t hw = (size_t)u->h * (size_t)u->w;
    size_t count = (size_t)net->n * (size_t)u->cout * hw;
    /* grad_a and grad_b are scratch that only this unit writes: the
     * activation's and the group norm's backward set them, batch norm's
     * (several passes) adds to a zeroed one. */
    float *d_pre_act = net->grad_a;
    rl_leaky_relu_backward_set(d_pre_act, u->d_out, u->out, count, c->leaky_slope);
    float *d_conv = d_pre_act;
    if (c->norm != RL_NORM_NONE) {
        int rc = RL_OK;
        d_conv = net->grad_b;
        if (c->norm != RL_NORM_GROUP) memset(d_conv, 0, count * sizeof(float));
        if (c->norm == RL_NORM_GROUP)
            rl_groupnorm_backward_set(d_conv, g + u->gamma, g + u->beta, d_pre_act,
                                      u->conv_out, u->mean, u->rstd, p + u->gamma, net->n,
                                      u->cout, (int)hw, u->groups);
        else if (net->forward_training && net->pass_reduce)
            rc = batchnorm_backward_reduced(net, u, d_conv, d_pre_act, err);
        else if (net->forward_training)
            rl_batchnorm_backward(d_conv, g + u->gamma, g + u->beta, d_pre_act, u->conv_out,
                                  u->mean, u->rstd, p + u->gamma, net->n, u->cout, (int)hw);
        else
            rl_batchnorm_backward_eval(d_conv, g + u->gamma, g + u->beta, d_pre_act,
                                       u->conv_out, p + u->gamma, net->buffers + u->run_mean,
                                       net->buffers + u->run_var, net->n, u->cout, (int)hw,
                                       c->norm_eps);
        if (rc) return rc;
    }
    rl_conv2d_dims d = unit_dims(net, u);
    return conv_backward(net, u->dnnl, u->d_in, u->d_in_b, g + u->weight,
                         u->bias == NO_OFFSET ? NULL : g + u->bias, d_conv, u->in, u->in_b,
                         p + u->weight, &d, err);
}

int rl_unet_backward(rl_unet *net, const float *dlogits, rl_error *err) {
    if (!net->arena.base || !net->for_training)
        return rl_error_set(err, RL_EINVAL, "U-Net backward needs a plan made for training");
    if (net->forward_training < 0)
        return rl_error_set(err, RL_EINVAL, "U-Net backward before a forward pass");
    const int depth = net->cfg.depth, n = net->n;
    const float *p = net->params;
    float *g = net->grads;
    rl_conv2d_dims hd = head_dims(net);
    int rc = conv_backward(net, net->head_dnnl, net->lv[0].dec[1].d_out, NULL,
                           g + net->head_weight, g + net->head_bias, dlogits,
                           net->lv[0].dec[1].out, NULL, p + net->head_weight, &hd, err);
    for (int l = 0; l < depth && !rc; l++) {
        unet_level *L = &net->lv[l];
        size_t hw = (size_t)L->h * (size_t)L->w;
        if ((rc = unit_backward(net, &L->dec[1], err))) break;
        if ((rc = unit_backward(net, &L->dec[0], err))) break;
        if (!L->dec[0].split) /* else its convolution wrote the two parts */
            rl_concat_backward_set(L->enc[1].d_out, L->d_up_out, net->grad_cat, net->width[l],
                                   net->width[l], n, (int)hw);
        /* Before the pooling's gradient joins it (encoder pass below): the
         * scale is on the skip path alone. */
        if (net->feature_scale)
            scale_channels(L->enc[1].d_out, L->enc[1].d_out,
                           net->feature_scale + scale_offset(net, l),
                           (size_t)rl_unet_feature_scale_count(net), n, net->width[l], hw);
        int bottom = l == depth - 1;
        const float *below = bottom ? (net->feature_scale ? net->bottleneck_scaled
                                                          : net->lv[depth].enc[1].out)
                                    : net->lv[l + 1].dec[1].out;
        float *d_below = bottom ? net->lv[depth].enc[1].d_out : net->lv[l + 1].dec[1].d_out;
        rl_convt2x2_dims ud = up_dims(net, l);
        rc = convt_backward(net, L->up_dnnl, d_below, g + L->up_weight, g + L->up_bias,
                            L->d_up_out, below, p + L->up_weight, &ud, err);
        if (!rc && bottom && net->feature_scale)
            scale_channels(d_below, d_below, net->feature_scale + scale_offset(net, depth),
                           (size_t)rl_unet_feature_scale_count(net), n, net->width[depth],
                           (size_t)net->lv[depth].h * net->lv[depth].w);
    }
    for (int l = depth; l >= 0 && !rc; l--) {
        unet_level *L = &net->lv[l];
        if ((rc = unit_backward(net, &L->enc[1], err))) break;
        if ((rc = unit_backward(net, &L->enc[0], err))) break;
        if (l > 0) {
            unet_level *above = &net->lv[l - 1];
            /* Adds to the skip connection's gradient already in enc[1].d_out. */
            rl_maxpool2x2_backward(above->enc[1].d_out, above->d_pool_out, above->argmax, n,
                                   net->width[l - 1], above->h, above->w);
        }
    }
    if (rc) {
        rl_error_prefix(err, "U-Net backward");
        return rc;
    }
    return RL_OK;
}

/* ---- views ---------------------------------------------------------------- */

rl_tensor rl_unet_logits(const rl_unet *net) {
    rl_tensor t = {net->logits, net->n, net->cfg.num_classes, net->h, net->w};
    return t;
}

rl_tensor rl_unet_features(const rl_unet *net) { return rl_unet_decoder_output(net, 0); }

rl_tensor rl_unet_decoder_output(const rl_unet *net, int level) {
    rl_tensor t = {NULL, 0, 0, 0, 0};
    if (level < 0 || level > net->cfg.depth || !net->arena.base) return t;
    const struct unet_level *L = &net->lv[level];
    t.data = level == net->cfg.depth ? L->enc[1].out : L->dec[1].out;
    t.n = net->n;
    t.c = net->width[level];
    t.h = L->h;
    t.w = L->w;
    return t;
}
