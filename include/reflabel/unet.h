/* reflabel/unet.h - a 2D U-Net (nnU-Net style) with its own memory plan.
 *
 * Architecture, for depth D and widths w_l = min(base_width * 2^l, max_width):
 *   block(cin, cout) = [conv3x3 pad 1 -> norm -> LeakyReLU] x 2
 *   enc.l   = block(l == 0 ? in_channels : w_{l-1}, w_l), l = 0..D
 *             (enc.D is the bottleneck; a 2x2 max-pool precedes every l > 0)
 *   up.l    = ConvTranspose2d(w_{l+1}, w_l, 2, stride 2) with bias, l = 0..D-1
 *   dec.l   = block(2 w_l, w_l) on concat([skip_l, up.l(...)]), l = D-1..0
 *   head    = conv1x1(w_0, num_classes) with bias
 * The convolutions inside a block have no bias when a norm follows them.
 * Tensor names match the state_dict of tests/oracle/torch_unet.py exactly
 * ("enc.0.conv1.weight", "dec.1.norm2.bias", "up.0.weight", "head.bias",
 * "enc.2.norm1.running_mean", "enc.2.norm1.num_batches_tracked", ...).
 *
 * Memory: all parameters live in one float buffer, all their gradients in
 * another; rl_unet_plan() sizes one arena for every activation, saved
 * statistic and activation gradient of a given batch and image size, so a
 * training step (forward + backward) never calls malloc.
 */
#ifndef REFLABEL_UNET_H
#define REFLABEL_UNET_H

#include <stddef.h>
#include <stdint.h>

#include "reflabel/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RL_UNET_MAX_DEPTH 6

typedef enum rl_norm_kind {
    RL_NORM_NONE = 0,
    RL_NORM_GROUP,
    RL_NORM_BATCH
} rl_norm_kind;

typedef struct rl_unet_config {
    int in_channels;   /* >= 1 */
    int num_classes;   /* >= 1 */
    int depth;         /* number of 2x2 poolings, 1..RL_UNET_MAX_DEPTH */
    int base_width;    /* channels of level 0 */
    int max_width;     /* cap on the channels of deeper levels */
    rl_norm_kind norm;
    int groups;        /* group norm: groups wanted; gcd(width, groups) is used */
    float leaky_slope; /* 0 gives ReLU */
    float bn_momentum; /* PyTorch convention: running = (1-m) running + m batch */
    float norm_eps;    /* eps of group and batch norm */
} rl_unet_config;

/* in 1, classes 2, depth 4, base 16 (reflabel train's default), max 320, group norm with 8 groups,
 * slope 0.01, momentum 0.1, eps 1e-5. */
rl_unet_config rl_unet_default_config(void);
/* Checks ranges; returns RL_EINVAL with the offending field named. */
int rl_unet_config_check(const rl_unet_config *cfg, rl_error *err);
/* Channels of level l (0..depth). */
int rl_unet_width(const rl_unet_config *cfg, int level);
const char *rl_norm_name(rl_norm_kind norm);
/* "none" / "group" / "batch" -> kind; returns -1 for anything else. */
int rl_norm_from_name(const char *name);

/* One named tensor of the network. */
typedef enum rl_unet_tensor_kind {
    RL_UNET_PARAM = 0, /* trained: lives in params[] and grads[] */
    RL_UNET_BUFFER,    /* batch-norm running statistics: lives in buffers[] */
    RL_UNET_COUNTER    /* batch-norm num_batches_tracked: lives in counters[] */
} rl_unet_tensor_kind;

#define RL_UNET_NAME_MAX 40

typedef struct rl_unet_tensor {
    char name[RL_UNET_NAME_MAX];
    rl_unet_tensor_kind kind;
    int ndim;
    int shape[4];
    size_t offset; /* element offset into the array its kind lives in */
    size_t numel;
    int weight_decay; /* 1 for conv weights; 0 for biases and norm parameters */
} rl_unet_tensor;

typedef struct rl_unet rl_unet;

/* Allocates the network and initialises it from seed: Kaiming-normal conv
 * weights (fan_in, leaky-ReLU gain, as torch.nn.init.kaiming_normal_), zero
 * biases, norm weight 1 and bias 0, running mean 0 and variance 1. */
int rl_unet_create(rl_unet **out, const rl_unet_config *cfg, uint64_t seed, rl_error *err);
void rl_unet_free(rl_unet *net);
const rl_unet_config *rl_unet_get_config(const rl_unet *net);

/* The table of named tensors, in state_dict order. */
const rl_unet_tensor *rl_unet_tensors(const rl_unet *net, int *count);
/* Looks a tensor up by name; NULL if absent. */
const rl_unet_tensor *rl_unet_find_tensor(const rl_unet *net, const char *name);
/* Pointer to a tensor's values (float for PARAM and BUFFER, int64_t for COUNTER). */
void *rl_unet_tensor_data(rl_unet *net, const rl_unet_tensor *t);
/* The gradient of a PARAM tensor; NULL for the other kinds. */
float *rl_unet_tensor_grad(rl_unet *net, const rl_unet_tensor *t);

/* The flat trained parameters and their gradients (param_count floats each). */
float *rl_unet_params(rl_unet *net);
float *rl_unet_grads(rl_unet *net);
size_t rl_unet_param_count(const rl_unet *net);
void rl_unet_zero_grad(rl_unet *net);

/* Sizes and allocates the activation arena for (batch, h, w); h and w must
 * be multiples of 2^depth. for_training also reserves the activation
 * gradients that rl_unet_backward needs. Re-planning frees the previous arena;
 * planning the same shape again keeps it. */
int rl_unet_plan(rl_unet *net, int batch, int h, int w, int for_training, rl_error *err);
/* Bytes of the current arena (0 before the first plan). */
size_t rl_unet_arena_bytes(const rl_unet *net);
/* Floating-point operations (2 per multiply-add) of the convolutions of one
 * forward pass at the planned shape (0 before the first plan). A training
 * step's backward pass does about twice as many: the data gradient and the
 * weight gradient of each. */
double rl_unet_conv_flops(const rl_unet *net);

/* x (N, in_channels, H, W) with the planned shape -> logits (N, K, H, W),
 * read with rl_unet_logits. training selects batch statistics (and updates
 * the running ones) for batch norm; group norm ignores it. */
int rl_unet_forward(rl_unet *net, const float *x, int training, rl_error *err);
/* dlogits (N, K, H, W): d(loss)/d(logits) of the last forward. ACCUMULATES
 * into the parameter gradients (call rl_unet_zero_grad once per step). Needs a
 * plan made for_training. */
int rl_unet_backward(rl_unet *net, const float *dlogits, rl_error *err);

/* Feature perturbation (UniMatch's: Dropout2d on every encoder feature the
 * decoder reads). scale (N, rl_unet_feature_scale_count) multiplies channel
 * c of image b's encoder output at level l as the decoder reads it, the skip
 * connections and the bottleneck alike, at [b * count + offset_l + c] with
 * offset_l the widths of the levels above; the encoder itself, and so its
 * pooling into the next level, reads the unscaled output. Forward and
 * backward both apply it (a dropped channel passes no gradient, a kept one
 * twice it with dropout 0.5's scale 2). NULL (the default) is no scaling.
 * The caller owns scale and keeps it unchanged from the forward pass to the
 * backward pass. */
void rl_unet_set_feature_scale(rl_unet *net, const float *scale);
/* Channels per image of that scale: the widths of every level summed. */
int rl_unet_feature_scale_count(const rl_unet *net);

/* Synchronised batch norm, for data-parallel training where every process
 * runs the network on its own share of a global batch. The reducer sums n
 * doubles in place over every process sharing the batch (an allreduce; all
 * processes must get the same sums), returning 0 or an rl_code with err
 * set. */
typedef int (*rl_unet_reduce_fn)(double *buf, size_t n, void *ctx, rl_error *err);
/* With fn set, batch norm in training mode normalises with the statistics
 * of the global batch and updates the running statistics from them, so
 * they stay equal on processes that start equal. Each batch-norm unit calls
 * fn twice in a training forward (the per-channel sums, then the squared
 * deviations about the global mean) and once in the backward (the sums its
 * input gradient needs), unit after unit in the same order on every
 * process: every process runs the same passes. The parameter gradients stay
 * this process's share, to be summed over the processes like every other
 * parameter's, and the dlogits of each process must be those of the global
 * loss (a mean over the global batch, say). The backward pass reduces
 * through the fn and ctx of its forward pass. Group norm and eval mode
 * never call fn. NULL (the default): this process's batch alone, computed
 * exactly as without the call. */
void rl_unet_set_batch_reducer(rl_unet *net, rl_unet_reduce_fn fn, void *ctx);

/* Views into the arena, valid until the next plan. */
rl_tensor rl_unet_logits(const rl_unet *net);
/* The output of the last decoder block, before the head: (N, w_0, H, W). */
rl_tensor rl_unet_features(const rl_unet *net);
/* Decoder output at level l (0..depth-1): (N, w_l, H / 2^l, W / 2^l);
 * level == depth gives the bottleneck output. */
rl_tensor rl_unet_decoder_output(const rl_unet *net, int level);

#ifdef __cplusplus
}
#endif
#endif
