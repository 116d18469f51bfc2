/* reflabel/optim.h - AdamW and SGD with PyTorch's exact update rules, the
 * learning-rate schedule, and global gradient-norm clipping.
 *
 * An optimizer updates one flat parameter array (rl_unet_params) from the
 * matching gradient array. Weight decay applies per span of that array, so a
 * U-Net's biases and norm parameters are left undecayed
 * (rl_optim_spans_from_unet builds the spans from the tensor table).
 */
#ifndef REFLABEL_OPTIM_H
#define REFLABEL_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "reflabel/core.h"
#include "reflabel/unet.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rl_optim_kind {
    RL_OPTIM_ADAMW = 0,
    RL_OPTIM_SGD
} rl_optim_kind;

typedef struct rl_optim_config {
    rl_optim_kind kind;
    float weight_decay; /* AdamW: decoupled (p -= lr wd p); SGD: added to the gradient */
    float beta1, beta2, eps; /* AdamW */
    float momentum;          /* SGD; 0 = plain SGD */
    int nesterov;            /* SGD; needs momentum > 0 */
} rl_optim_config;

/* AdamW: betas (0.9, 0.999), eps 1e-8, weight decay 0.01 (torch defaults).
 * SGD: momentum 0.99, Nesterov, weight decay 3e-5 (nnU-Net). */
rl_optim_config rl_optim_default_config(rl_optim_kind kind);
const char *rl_optim_name(rl_optim_kind kind);

/* A range [offset, offset + count) of the parameter array. */
typedef struct rl_optim_span {
    size_t offset, count;
    int weight_decay; /* 0: this span is never decayed */
} rl_optim_span;

/* One span per PARAM tensor of the U-Net; *spans is malloc'ed. */
int rl_optim_spans_from_unet(const rl_unet *net, rl_optim_span **spans, int *count,
                             rl_error *err);

typedef struct rl_optimizer rl_optimizer;

/* n: length of the parameter array; spans must lie inside it (elements in
 * no span are not updated). The spans are copied. */
int rl_optim_create(rl_optimizer **out, const rl_optim_config *cfg, size_t n,
                    const rl_optim_span *spans, int span_count, rl_error *err);
void rl_optim_free(rl_optimizer *opt);

/* One update with learning rate lr: params (n) from grads (n). */
void rl_optim_step(rl_optimizer *opt, float *params, const float *grads, float lr);

/* State for checkpoints: the number of steps taken and the named state
 * arrays of n floats each ("exp_avg", "exp_avg_sq" for AdamW,
 * "momentum_buffer" for SGD with momentum). Writing them restores the state. */
int64_t rl_optim_steps(const rl_optimizer *opt);
void rl_optim_set_steps(rl_optimizer *opt, int64_t steps);
int rl_optim_state_count(const rl_optimizer *opt);
float *rl_optim_state(rl_optimizer *opt, int index, const char **name);

/* ---- learning-rate schedule -------------------------------------------------- *
 * For step t (0-based, the update about to be made) of total_steps:
 *   t < W:  lr = base_lr * t / W                  (linear warm-up from 0)
 *   else:   s = (t - W) / (total_steps - W), clamped to [0, 1]
 *           poly:     lr = min_lr + (base_lr - min_lr) (1 - s)^power  (nnU-Net: 0.9)
 *           cosine:   lr = min_lr + (base_lr - min_lr) (1 + cos(pi s)) / 2
 *           constant: lr = base_lr */
typedef enum rl_schedule_kind {
    RL_SCHEDULE_CONSTANT = 0,
    RL_SCHEDULE_POLY,
    RL_SCHEDULE_COSINE
} rl_schedule_kind;

typedef struct rl_lr_schedule {
    rl_schedule_kind kind;
    double base_lr, min_lr;
    int64_t warmup_steps, total_steps;
    double power;
} rl_lr_schedule;

double rl_lr_at(const rl_lr_schedule *s, int64_t step);

/* Scales grads so that their global L2 norm is at most max_norm, as
 * torch.nn.utils.clip_grad_norm_ (factor max_norm / (norm + 1e-6) when below
 * 1). Returns the norm before clipping (accumulated in double). */
double rl_clip_grad_norm(float *grads, size_t n, double max_norm);

#ifdef __cplusplus
}
#endif
#endif
