/* Internal to src/train: the interface of a semi-supervised method, and the
 * one table of methods (semi.c).
 *
 * A step draws a labeled and an unlabeled batch through the same forward
 * pass (trainer.c), with the views derived from them (views.c). A method
 * turns that forward pass into targets for the unlabeled weak views
 * (tr->matched: its labels before any threshold, tr->pseudo: the kept ones,
 * tr->confidence), which views.c makes the loss of every view, and may keep
 * state across steps (a reference bank) that the
 * resumable state file saves. Labels, logits and losses go through the
 * trainer's encoding (encoding.h), never through a branch on multi-label.
 *
 * A new method is one file defining a const rl_semi_method, plus its row in
 * the table of semi.c (and an rl_method id in include/reflabel/train.h).
 * Every hook but targets and loss may be NULL; supervised training is the
 * row with no hooks at all (no unlabeled half). */
#ifndef RL_TRAIN_SEMI_H
#define RL_TRAIN_SEMI_H

#include "train_state.h"
#include "trainer_impl.h"

typedef struct rl_semi_method {
    rl_method id;
    const char *name;
    int classes_only; /* refuses bit-set (multi-label) data */
    int strong_views; /* strong views per unlabeled image by default (views.c) */
    int perturb;      /* also a feature-perturbed copy of each unlabeled image */
    /* An EMA teacher always (meanteacher), not only with --teacher ema
     * (teacher.c); and whether its pass covers the labeled images too
     * (refpl: the references and the margin calibration read features). */
    int teacher, teacher_labeled;
    /* Checks cfg.semi's fields of this method and creates what has an
     * allocator of its own (bank); *state is the method's. */
    int (*create)(rl_trainer *tr, void **state, rl_error *err);
    /* Assigns the method's buffers from the trainer's arena; called twice,
     * with a measuring arena first (pointers NULL), as rl_unet's layout. */
    void (*layout)(rl_trainer *tr, void *state, rl_arena *a);
    /* After a finite forward pass, before any loss: extra inputs of the
     * targets (features); *nonfinite names what is not finite ("... is"),
     * which skips or fails the batch. */
    int (*after_forward)(rl_trainer *tr, void *state, const char **nonfinite, rl_error *err);
    /* The unlabeled targets from the forward pass: tr->matched, tr->pseudo,
     * tr->confidence (tr->valid and tr->hidden are set). */
    int (*targets)(rl_trainer *tr, void *state, rl_train_step_info *info, rl_error *err);
    /* A loss of its own on the weak view's logits (nu, outputs, h, w),
     * gradient with weight w accumulated into dlogits (NULL: no gradient);
     * NULL for methods whose targets are the hard labels of tr->pseudo,
     * which views.c turns into the loss of every view. */
    double (*loss)(rl_trainer *tr, void *state, float *dlogits, const float *logits, double w);
    /* The state file: tensors of this part (RL_STATE_NETWORKS right after
     * the model's, RL_STATE_MEMORY after the trainer's streams), and their
     * restore (apply 0: check only; apply 1: copy what was checked). */
    int (*save)(rl_trainer *tr, void *state, rl_state_list *l, rl_state_part part,
                rl_error *err);
    int (*restore)(rl_trainer *tr, void *state, const rl_safetensors *st, const char *path,
                   rl_state_part part, int apply, rl_error *err);
    /* The signature's "features=... bank=MxCxD" part; NULL: "none", 0x0x0. */
    void (*describe)(const rl_trainer *tr, const void *state, const char **features, int bank[3]);
    void (*free)(void *state);
} rl_semi_method;

/* The method of id; NULL for an unknown id. */
const rl_semi_method *rl_semi_method_of(rl_method id);

/* Shared by the pseudo-label methods: */
/* pseudo = matched where the pixel is an unlabeled image's and its
 * confidence reaches the threshold, RL_IGNORE elsewhere; matched is set to
 * RL_IGNORE on padding. */
void rl_semi_keep_confident(rl_trainer *tr, float threshold);
/* tr->matched and tr->confidence from the weak view's predictions
 * (tr->pred, decoded once by views.c), then the pixels kept at threshold
 * (predpl, fixmatch, unimatch). */
void rl_semi_predict_targets(rl_trainer *tr, float threshold);

extern const rl_semi_method rl_semi_refpl, rl_semi_predpl, rl_semi_meanteacher,
    rl_semi_fixmatch, rl_semi_unimatch;

#endif
