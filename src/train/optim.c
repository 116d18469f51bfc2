/* AdamW and SGD that reproduce torch.optim's arithmetic step by step, the
 * learning-rate schedule, and gradient-norm clipping.
 *
 * The update formulas follow torch 1.13's single-tensor implementations
 * (torch/optim/adamw.py and sgd.py) operation by operation, in float32, so
 * that a trajectory matches PyTorch's to rounding. */
#include "reflabel/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct rl_optimizer {
    rl_optim_config cfg;
    size_t n;
    rl_optim_span *spans;
    int span_count;
    int64_t steps;
    float *state[2]; /* AdamW: exp_avg, exp_avg_sq; SGD: momentum_buffer */
    int state_count;
};

rl_optim_config rl_optim_default_config(rl_optim_kind kind) {
    rl_optim_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    if (kind == RL_OPTIM_ADAMW) {
        c.weight_decay = 0.01f;
        c.beta1 = 0.9f;
        c.beta2 = 0.999f;
        c.eps = 1e-8f;
    } else {
        c.weight_decay = 3e-5f;
        c.momentum = 0.99f;
        c.nesterov = 1;
    }
    return c;
}

const char *rl_optim_name(rl_optim_kind kind) {
    return kind == RL_OPTIM_ADAMW ? "adamw" : "sgd";
}

int rl_optim_spans_from_unet(const rl_unet *net, rl_optim_span **spans, int *count,
                             rl_error *err) {
    int n = 0;
    const rl_unet_tensor *table = rl_unet_tensors(net, &n);
    rl_optim_span *s = calloc((size_t)n + 1, sizeof *s);
    if (!s) return rl_error_set(err, RL_ENOMEM, "out of memory for optimizer spans");
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (table[i].kind != RL_UNET_PARAM) continue;
        s[k].offset = table[i].offset;
        s[k].count = table[i].numel;
        s[k].weight_decay = table[i].weight_decay;
        k++;
    }
    *spans = s;
    *count = k;
    return RL_OK;
}

static int check_config(const rl_optim_config *c, rl_error *err) {
    if (c->kind != RL_OPTIM_ADAMW && c->kind != RL_OPTIM_SGD)
        return rl_error_set(err, RL_EINVAL, "optimizer kind %d is unknown", (int)c->kind);
    if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
        return rl_error_set(err, RL_EINVAL, "weight decay must be >= 0, got %g",
                            (double)c->weight_decay);
    if (c->kind == RL_OPTIM_ADAMW) {
        if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
            return rl_error_set(err, RL_EINVAL, "AdamW betas must be in [0, 1), got %g, %g",
                                (double)c->beta1, (double)c->beta2);
        if (!(c->eps > 0))
            return rl_error_set(err, RL_EINVAL, "AdamW eps must be > 0, got %g", (double)c->eps);
    } else {
        if (!(c->momentum >= 0 && c->momentum < 1))
            return rl_error_set(err, RL_EINVAL, "SGD momentum must be in [0, 1), got %g",
                                (double)c->momentum);
        if (c->nesterov && c->momentum <= 0)
            return rl_error_set(err, RL_EINVAL, "Nesterov momentum requires momentum > 0");
    }
    return RL_OK;
}

int rl_optim_create(rl_optimizer **out, const rl_optim_config *cfg, size_t n,
                    const rl_optim_span *spans, int span_count, rl_error *err) {
    *out = NULL;
    int rc = check_config(cfg, err);
    if (rc) return rc;
    if (span_count < 0 || (span_count > 0 && !spans))
        return rl_error_set(err, RL_EINVAL, "optimizer: invalid span list");
    for (int i = 0; i < span_count; i++)
        if (spans[i].offset > n || spans[i].count > n - spans[i].offset)
            return rl_error_set(err, RL_EINVAL,
                                "optimizer: span %d [%zu, +%zu) exceeds the %zu parameters", i,
                                spans[i].offset, spans[i].count, n);
    rl_optimizer *opt = calloc(1, sizeof *opt);
    if (!opt) return rl_error_set(err, RL_ENOMEM, "out of memory for the optimizer");
    opt->cfg = *cfg;
    opt->n = n;
    opt->span_count = span_count;
    opt->state_count = cfg->kind == RL_OPTIM_ADAMW ? 2 : cfg->momentum > 0 ? 1 : 0;
    opt->spans = malloc(((size_t)span_count + 1) * sizeof *opt->spans);
    int ok = opt->spans != NULL;
    for (int i = 0; ok && i < opt->state_count; i++) {
        opt->state[i] = calloc(n + 1, sizeof(float));
        ok = opt->state[i] != NULL;
    }
    if (!ok) {
        rl_optim_free(opt);
        return rl_error_set(err, RL_ENOMEM, "out of memory for the optimizer state");
    }
    if (span_count > 0) memcpy(opt->spans, spans, (size_t)span_count * sizeof *spans);
    *out = opt;
    return RL_OK;
}

void rl_optim_free(rl_optimizer *opt) {
    if (!opt) return;
    free(opt->state[0]);
    free(opt->state[1]);
    free(opt->spans);
    free(opt);
}

/* torch.optim.AdamW, one span:
 *   p *= 1 - lr wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps) */
static void adamw_span(const rl_optim_config *c, float *p, const float *g, float *m, float *v,
                       size_t count, float lr, float wd, int64_t t) {
    const float decay = 1.0f - lr * wd;
    const double bc1 = 1.0 - pow((double)c->beta1, (double)t);
    const double bc2 = 1.0 - pow((double)c->beta2, (double)t);
    const float step_size = (float)(lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float b1 = c->beta1, b2 = c->beta2;
    for (size_t i = 0; i < count; i++) {
        if (wd != 0) p[i] *= decay;
        m[i] = m[i] * b1 + g[i] * (1.0f - b1);
        v[i] = v[i] * b2 + (1.0f - b2) * g[i] * g[i];
        float denom = sqrtf(v[i]) / bc2_sqrt + c->eps;
        p[i] += -step_size * (m[i] / denom);
    }
}

/* torch.optim.SGD (dampening 0), one span:
 *   d = g + wd p;  buf = mu buf + d (buf = d at the first step)
 *   d = nesterov ? d + mu buf : buf;  p -= lr d */
static void sgd_span(const rl_optim_config *c, float *p, const float *g, float *buf,
                     size_t count, float lr, float wd, int first) {
    const float mu = c->momentum;
    for (size_t i = 0; i < count; i++) {
        float d = wd != 0 ? g[i] + wd * p[i] : g[i];
        if (buf) {
            buf[i] = first ? d : buf[i] * mu + d;
            d = c->nesterov ? d + mu * buf[i] : buf[i];
        }
        p[i] += -lr * d;
    }
}

void rl_optim_step(rl_optimizer *opt, float *params, const float *grads, float lr) {
    opt->steps++;
    for (int s = 0; s < opt->span_count; s++) {
        const rl_optim_span *sp = &opt->spans[s];
        float wd = sp->weight_decay ? opt->cfg.weight_decay : 0.0f;
        float *p = params + sp->offset;
        const float *g = grads + sp->offset;
        if (opt->cfg.kind == RL_OPTIM_ADAMW)
            adamw_span(&opt->cfg, p, g, opt->state[0] + sp->offset, opt->state[1] + sp->offset,
                       sp->count, lr, wd, opt->steps);
        else
            sgd_span(&opt->cfg, p, g, opt->state[0] ? opt->state[0] + sp->offset : NULL,
                     sp->count, lr, wd, opt->steps == 1);
    }
}

int64_t rl_optim_steps(const rl_optimizer *opt) { return opt->steps; }
void rl_optim_set_steps(rl_optimizer *opt, int64_t steps) { opt->steps = steps; }
int rl_optim_state_count(const rl_optimizer *opt) { return opt->state_count; }

float *rl_optim_state(rl_optimizer *opt, int index, const char **name) {
    static const char *const adamw_names[2] = {"exp_avg", "exp_avg_sq"};
    if (index < 0 || index >= opt->state_count) return NULL;
    if (name)
        *name = opt->cfg.kind == RL_OPTIM_ADAMW ? adamw_names[index] : "momentum_buffer";
    return opt->state[index];
}

double rl_lr_at(const rl_lr_schedule *s, int64_t step) {
    if (step < 0) step = 0;
    if (step < s->warmup_steps) return s->base_lr * (double)step / (double)s->warmup_steps;
    if (s->kind == RL_SCHEDULE_CONSTANT) return s->base_lr;
    int64_t span = s->total_steps - s->warmup_steps;
    double frac = span > 0 ? (double)(step - s->warmup_steps) / (double)span : 1.0;
    if (frac > 1) frac = 1;
    double range = s->base_lr - s->min_lr;
    if (s->kind == RL_SCHEDULE_POLY) return s->min_lr + range * pow(1.0 - frac, s->power);
    return s->min_lr + range * 0.5 * (1.0 + cos(3.14159265358979323846 * frac));
}

double rl_clip_grad_norm(float *grads, size_t n, double max_norm) {
    double sq = 0;
    for (size_t i = 0; i < n; i++) sq += (double)grads[i] * grads[i];
    double norm = sqrt(sq);
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1) {
        float f = (float)coef;
        for (size_t i = 0; i < n; i++) grads[i] *= f;
    }
    return norm;
}
