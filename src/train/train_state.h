/* Internal to src/train: helpers of the resumable state file
 * (train_state.c), also used by the methods that save state of their own
 * (semi.h: save / restore hooks). */
#ifndef RL_TRAIN_STATE_H
#define RL_TRAIN_STATE_H

#include "reflabel/checkpoint.h"
#include "reflabel/match.h"
#include "reflabel/unet.h"

#define RL_STATE_NAME_MAX (RL_UNET_NAME_MAX + 16)

/* Where a method's tensors go in the file. */
typedef enum rl_state_part {
    RL_STATE_NETWORKS = 0, /* right after the model's tensors */
    RL_STATE_MEMORY = 1    /* after the trainer's counters and streams */
} rl_state_part;

/* The tensors of a state file being written; names and converted data
 * belong to the list. */
typedef struct rl_state_list {
    rl_st_tensor *tensors;
    char (*names)[RL_STATE_NAME_MAX];
    void **owned; /* per tensor: data allocated for it, or NULL */
    int count, cap;
} rl_state_list;

void rl_state_add(rl_state_list *l, const char *prefix, const char *name, rl_dtype dtype, int ndim,
                  const int64_t *shape, void *data, void *owned);
void rl_state_add_unet(rl_state_list *l, const char *prefix, rl_unet *net);
/* The arrays of a bank's state as tensors of the same names; the list takes
 * over their data. */
void rl_state_add_bank(rl_state_list *l, rl_bank_state *bank);

/* The tensor `name` of st, which must have this dtype and shape (a negative
 * entry of shape: any length); NULL with err filled otherwise. */
const rl_st_tensor *rl_state_tensor(const rl_safetensors *st, const char *path, const char *name,
                                    rl_dtype dtype, int ndim, const int64_t *shape, rl_error *err);
/* The tensors prefix + name of every tensor of net; apply 0 only checks. */
int rl_state_restore_unet(rl_unet *net, const char *prefix, const rl_safetensors *st,
                          const char *path, int apply, rl_error *err);
/* A bank from the tensors its export wrote (rl_bank_import's two passes). */
int rl_state_restore_bank(rl_bank *bank, const rl_safetensors *st, const char *path, int apply,
                          rl_error *err);

#endif
