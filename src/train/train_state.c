/* The resumable training state: one safetensors file (layout in
 * docs/TRAINING.md, "Resuming and interruptions"), format train-state-v1.
 *
 *   model.*            the network's tensors
 *   (method networks)  e.g. mean teacher's teacher.*
 *   optim.*            the optimizer's state arrays
 *   trainer.counters   steps done, batches skipped, optimizer steps
 *   trainer.rng        the sampling, augmentation and bank streams
 *   (method memory)    e.g. refpl's bank.* (its export, src/match)
 *
 * Integer state goes into I64 tensors, the only integer dtype of the
 * format; random streams are stored as the bit patterns of their uint64
 * state and increment. Restoring checks everything in a first pass and
 * changes nothing unless every check passed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "semi.h"

void rl_state_add(rl_state_list *l, const char *prefix, const char *name, rl_dtype dtype, int ndim,
                  const int64_t *shape, void *data, void *owned) {
    rl_st_tensor *t = &l->tensors[l->count];
    snprintf(l->names[l->count], RL_STATE_NAME_MAX, "%s%s", prefix, name);
    t->name = l->names[l->count];
    t->dtype = dtype;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    t->data = data;
    l->owned[l->count] = owned;
    l->count++;
}

void rl_state_add_unet(rl_state_list *l, const char *prefix, rl_unet *net) {
    int count;
    const rl_unet_tensor *t = rl_unet_tensors(net, &count);
    for (int i = 0; i < count; i++) {
        int64_t shape[4];
        for (int d = 0; d < t[i].ndim; d++) shape[d] = t[i].shape[d];
        rl_state_add(l, prefix, t[i].name,
                     t[i].kind == RL_UNET_COUNTER ? RL_DTYPE_I64 : RL_DTYPE_F32, t[i].ndim, shape,
                     rl_unet_tensor_data(net, &t[i]), NULL);
    }
}

static rl_dtype dtype_of(rl_array_type type) {
    return type == RL_ARRAY_F32 ? RL_DTYPE_F32 : RL_DTYPE_I64;
}

void rl_state_add_bank(rl_state_list *l, rl_bank_state *bank) {
    for (int i = 0; i < bank->count; i++) {
        rl_array *a = &bank->arrays[i];
        rl_state_add(l, "", a->name, dtype_of(a->type), a->ndim, a->shape, a->data, a->data);
    }
    bank->count = 0; /* the list frees the data */
}

static uint64_t bits_of(int64_t v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static int64_t int64_of(uint64_t u) {
    int64_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* What must be equal between the trainer that saved a state and the one
 * that restores it, beyond the tensor shapes: written as metadata, compared
 * as a string so that a mismatch can be shown whole. */
static void trainer_signature(const rl_trainer *tr, char *buf, size_t size) {
    const rl_train_config *c = &tr->cfg;
    const char *features = "none";
    int bank[3] = {0, 0, 0};
    if (tr->method->describe) tr->method->describe(tr, tr->semi, &features, bank);
    snprintf(buf, size,
             "method=%s batch=%d unlabeled_batch=%d patch=%dx%d steps=%lld optimizer=%s "
             "optimizer_arrays=%d samples=%d labeled=%d channels=%d classes=%d features=%s "
             "bank=%dx%dx%d",
             tr->method->name, tr->nl, tr->nu, c->patch_h, c->patch_w, (long long)c->steps,
             rl_optim_name(c->optim.kind), rl_optim_state_count(tr->opt), tr->set->count,
             tr->labeled.size, tr->set->channels, tr->set->num_classes, features, bank[0],
             bank[1], bank[2]);
    /* Appended only where used, so that states saved before views existed
     * still match. */
    size_t len = strlen(buf);
    if ((tr->ns > 0 || tr->nr > 0 || tr->nfp > 0) && len < size)
        snprintf(buf + len, size - len, " strong_views=%d references=%d perturbed=%d", tr->ns,
                 tr->nr, tr->nfp);
    len = strlen(buf);
    if (tr->teacher && !tr->method->teacher && len < size)
        snprintf(buf + len, size - len, " teacher=ema");
}

int rl_trainer_save(const rl_trainer *tr, const char *path, const rl_kv *extra, int extra_count,
                    rl_error *err) {
    if (extra_count < 0 || (extra_count > 0 && !extra))
        return rl_error_set(err, RL_EINVAL, "%s: invalid metadata list", path);
    int net_tensors;
    rl_unet_tensors(tr->net, &net_tensors);
    rl_state_list l;
    memset(&l, 0, sizeof l);
    l.cap = 2 * net_tensors + 16; /* the model's, the teacher's, the others */
    l.tensors = calloc((size_t)l.cap, sizeof *l.tensors);
    l.names = calloc((size_t)l.cap, sizeof *l.names);
    l.owned = calloc((size_t)l.cap, sizeof *l.owned);
    int64_t *counters = malloc(3 * sizeof *counters);
    int64_t *streams = malloc(6 * sizeof *streams);
    rl_kv *meta = calloc((size_t)extra_count + 3, sizeof *meta);
    char *config = rl_unet_config_to_json(rl_unet_get_config(tr->net));
    char signature[512];
    trainer_signature(tr, signature, sizeof signature);
    /* The writer only reads; the accessors take mutable pointers. */
    rl_trainer *mtr = (rl_trainer *)tr;
    const rl_semi_method *m = tr->method;
    int rc = RL_OK;
    if (!l.tensors || !l.names || !l.owned || !counters || !streams || !meta || !config) {
        free(counters);
        free(streams);
        rc = rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    } else {
        rl_state_add_unet(&l, "model.", mtr->net);
        if (tr->teacher) rl_state_add_unet(&l, "teacher.", mtr->teacher);
        if (m->save) rc = m->save(mtr, tr->semi, &l, RL_STATE_NETWORKS, err);
        for (int i = 0; i < rl_optim_state_count(tr->opt); i++) {
            const char *name;
            float *data = rl_optim_state(mtr->opt, i, &name);
            rl_state_add(&l, "optim.", name, RL_DTYPE_F32, 1,
                         (int64_t[]){(int64_t)rl_unet_param_count(tr->net)}, data, NULL);
        }
        counters[0] = tr->steps_done;
        counters[1] = tr->skipped;
        counters[2] = rl_optim_steps(tr->opt);
        rl_state_add(&l, "", "trainer.counters", RL_DTYPE_I64, 1, (int64_t[]){3}, counters,
                     counters);
        const rl_rng *rngs[3] = {&tr->sampling_rng, &tr->augment_rng, &tr->bank_rng};
        for (int i = 0; i < 3; i++) {
            streams[2 * i] = int64_of(rngs[i]->state);
            streams[2 * i + 1] = int64_of(rngs[i]->inc);
        }
        rl_state_add(&l, "", "trainer.rng", RL_DTYPE_I64, 2, (int64_t[]){3, 2}, streams, streams);
        if (!rc && m->save) rc = m->save(mtr, tr->semi, &l, RL_STATE_MEMORY, err);
        if (rc) rl_error_prefix(err, "%s", path);
        meta[0] = (rl_kv){"reflabel.format", RL_TRAIN_STATE_FORMAT};
        meta[1] = (rl_kv){"reflabel.config", config};
        meta[2] = (rl_kv){"reflabel.trainer", signature};
        for (int i = 0; i < extra_count; i++) meta[3 + i] = extra[i];
        if (!rc) rc = rl_safetensors_write(path, l.tensors, l.count, meta, extra_count + 3, err);
    }
    for (int i = 0; l.owned && i < l.count; i++) free(l.owned[i]);
    free(l.tensors);
    free(l.names);
    free(l.owned);
    free(meta);
    free(config);
    return rc;
}

const rl_st_tensor *rl_state_tensor(const rl_safetensors *st, const char *path, const char *name,
                                    rl_dtype dtype, int ndim, const int64_t *shape, rl_error *err) {
    const rl_st_tensor *t = rl_safetensors_find(st, name);
    if (!t) {
        rl_error_set(err, RL_EFORMAT, "%s: tensor '%s' is missing", path, name);
        return NULL;
    }
    int same = t->dtype == dtype && t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = shape[d] < 0 || t->shape[d] == shape[d];
    if (!same) {
        rl_error_set(err, RL_EFORMAT, "%s: tensor '%s' has another dtype or shape than this run's",
                     path, name);
        return NULL;
    }
    return t;
}

int rl_state_restore_unet(rl_unet *net, const char *prefix, const rl_safetensors *st,
                          const char *path, int apply, rl_error *err) {
    int count;
    const rl_unet_tensor *t = rl_unet_tensors(net, &count);
    for (int i = 0; i < count; i++) {
        char name[RL_STATE_NAME_MAX];
        int64_t shape[4];
        snprintf(name, sizeof name, "%s%s", prefix, t[i].name);
        for (int d = 0; d < t[i].ndim; d++) shape[d] = t[i].shape[d];
        int counter = t[i].kind == RL_UNET_COUNTER;
        const rl_st_tensor *s = rl_state_tensor(
            st, path, name, counter ? RL_DTYPE_I64 : RL_DTYPE_F32, t[i].ndim, shape, err);
        if (!s) return RL_EFORMAT;
        if (apply)
            memcpy(rl_unet_tensor_data(net, &t[i]), s->data,
                   t[i].numel * (counter ? sizeof(int64_t) : sizeof(float)));
    }
    return RL_OK;
}

/* rl_bank_import's source: the file's tensors of the arrays' names. */
typedef struct bank_source {
    const rl_safetensors *st;
    const char *path;
} bank_source;

static const void *bank_tensor(void *ctx, const char *name, rl_array_type type, int ndim,
                               int64_t *shape, rl_error *err) {
    const bank_source *s = ctx;
    const rl_st_tensor *t = rl_state_tensor(s->st, s->path, name, dtype_of(type), ndim, shape, err);
    if (!t) return NULL;
    for (int d = 0; d < ndim; d++) shape[d] = t->shape[d];
    return t->data;
}

int rl_state_restore_bank(rl_bank *bank, const rl_safetensors *st, const char *path, int apply,
                          rl_error *err) {
    bank_source s = {st, path};
    return rl_bank_import(bank, bank_tensor, &s, path, apply, err);
}

static int in_range(int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi; }

/* Run twice by rl_trainer_restore: apply == 0 only checks, apply == 1 copies
 * what the first pass checked. */
static int restore_pass(rl_trainer *tr, const rl_safetensors *st, const char *path, int apply,
                        rl_error *err) {
    const rl_semi_method *m = tr->method;
    int rc = rl_state_restore_unet(tr->net, "model.", st, path, apply, err);
    if (!rc && tr->teacher)
        rc = rl_state_restore_unet(tr->teacher, "teacher.", st, path, apply, err);
    if (!rc && m->restore) rc = m->restore(tr, tr->semi, st, path, RL_STATE_NETWORKS, apply, err);
    for (int i = 0; !rc && i < rl_optim_state_count(tr->opt); i++) {
        const char *name;
        float *data = rl_optim_state(tr->opt, i, &name);
        char full[RL_STATE_NAME_MAX];
        snprintf(full, sizeof full, "optim.%s", name);
        size_t n = rl_unet_param_count(tr->net);
        const rl_st_tensor *t =
            rl_state_tensor(st, path, full, RL_DTYPE_F32, 1, (int64_t[]){(int64_t)n}, err);
        if (!t) rc = RL_EFORMAT;
        else if (apply) memcpy(data, t->data, n * sizeof(float));
    }
    const rl_st_tensor *counters_t =
        rc ? NULL
           : rl_state_tensor(st, path, "trainer.counters", RL_DTYPE_I64, 1, (int64_t[]){3}, err);
    const rl_st_tensor *rng_t =
        counters_t
            ? rl_state_tensor(st, path, "trainer.rng", RL_DTYPE_I64, 2, (int64_t[]){3, 2}, err)
            : NULL;
    if (!rng_t) return rc ? rc : RL_EFORMAT;
    const int64_t *counters = counters_t->data, *streams = rng_t->data;
    if (!in_range(counters[0], 0, tr->cfg.steps) || !in_range(counters[1], 0, counters[0]) ||
        !in_range(counters[2], 0, counters[0]))
        return rl_error_set(err, RL_EFORMAT,
                            "%s: step counters %lld, %lld, %lld do not fit a run of %lld steps",
                            path, (long long)counters[0], (long long)counters[1],
                            (long long)counters[2], (long long)tr->cfg.steps);
    if (m->restore) rc = m->restore(tr, tr->semi, st, path, RL_STATE_MEMORY, apply, err);
    if (rc || !apply) return rc;
    tr->steps_done = counters[0];
    tr->skipped = counters[1];
    rl_optim_set_steps(tr->opt, counters[2]);
    rl_rng *rngs[3] = {&tr->sampling_rng, &tr->augment_rng, &tr->bank_rng};
    for (int i = 0; i < 3; i++) {
        rngs[i]->state = bits_of(streams[2 * i]);
        rngs[i]->inc = bits_of(streams[2 * i + 1]);
    }
    return RL_OK;
}

int rl_trainer_restore(rl_trainer *tr, const rl_safetensors *st, const char *path,
                       rl_error *err) {
    const char *format = rl_safetensors_metadata(st, "reflabel.format");
    if (!format || strcmp(format, RL_TRAIN_STATE_FORMAT))
        return rl_error_set(err, RL_EFORMAT, "%s: not a reflabel training state (format '%s')",
                            path, format ? format : "missing");
    char mine[512];
    trainer_signature(tr, mine, sizeof mine);
    const char *saved = rl_safetensors_metadata(st, "reflabel.trainer");
    if (!saved || strcmp(saved, mine))
        return rl_error_set(err, RL_EINVAL,
                            "%s: saved by a different training setup (%s; this one: %s)", path,
                            saved ? saved : "no signature", mine);
    int rc = restore_pass(tr, st, path, 0, err);
    return rc ? rc : restore_pass(tr, st, path, 1, err);
}
