/* reflabel train: train a U-Net on an nnU-Net raw dataset. */
#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "progress.h"
#include "reflabel/checkpoint.h"
#include "reflabel/metrics.h"
#include "reflabel/pseudolabel.h"
#include "reflabel/train.h"

static const char *train_usage =
    "usage: reflabel train --data DIR --out RUN_DIR [options]\n"
    "\n"
    "Trains a 2D U-Net on the labeled training cases of an nnU-Net v2 raw dataset\n"
    "and writes RUN_DIR/model.safetensors, RUN_DIR/log.csv, RUN_DIR/labeled.txt and,\n"
    "when the dataset has labelsTs/, predictions of imagesTs/ scored in\n"
    "RUN_DIR/test_metrics.json.\n"
    "On a multi-label dataset (\"reflabel_multilabel\": true) the network has one sigmoid\n"
    "output per structure and the losses are BCE + Dice (docs/DATA.md); meanteacher is\n"
    "refused there.\n"
    "\n"
    "data:\n"
    "  --data DIR            dataset folder (dataset.json, imagesTr/, labelsTr/)\n"
    "  --labeled SPEC        keep labels of only these training cases: a count (5),\n"
    "                        a fraction (0.05) or a file of case ids; default all\n"
    "  --labeled-mode MODE   even (evenly spaced, default) or random (seeded)\n"
    "  --axis A              slice 3D volumes along 0 sagittal, 1 coronal, 2 axial (2)\n"
    "training:\n"
    "  --method M            supervised (default), refpl (reference pseudo-labels, the\n"
    "                        paper), predpl (own predictions), meanteacher (EMA teacher)\n"
    "  --steps N             optimiser steps (1000)\n"
    "  --batch N             images per step (8)\n"
    "  --lr X                peak learning rate (1e-3)\n"
    "  --optimizer O         adamw (default) or sgd (Nesterov momentum 0.99)\n"
    "  --weight-decay X      (1e-4 for adamw, 3e-5 for sgd)\n"
    "  --schedule S          poly (default), cosine or constant\n"
    "  --warmup N            linear warm-up steps (5% of --steps)\n"
    "  --clip X              gradient-norm clipping, 0 = off (12)\n"
    "  --dice-weight X       loss = CE + X * soft Dice (1)\n"
    "  --patch HxW           training patch, multiples of 2^depth (from the data)\n"
    "  --no-augment          no augmentation\n"
    "semi-supervised (refpl, predpl, meanteacher):\n"
    "  --unlabeled-batch N   unlabeled images per step (same as --batch)\n"
    "  --lambda X            weight of the unlabeled loss (1)\n"
    "  --pl-warmup F         supervised-only share of the steps (0.3)\n"
    "  --pl-ramp F           share of the steps over which lambda ramps up (0.2)\n"
    "  --pl-dice X           pseudo-label loss = CE + X * Dice (0)\n"
    "  --sampling S          refpl references: per-class (default), proportional, all\n"
    "  --refs-per-class K    per-class cap of references (256)\n"
    "  --ref-count N         proportional draw: references per batch (4096)\n"
    "  --class-floor N       proportional draw: at least N per class (32)\n"
    "  --memory M            refpl: also match against the last M-1 labeled batches (1)\n"
    "  --topk K              refpl: similarity-weighted vote of the K best (1)\n"
    "  --per-image-vote      refpl: best match per reference image, then a vote\n"
    "  --similarity S        refpl: cosine (default) or dot\n"
    "  --min-margin X        refpl: ignore pixels whose match margin is below X (0)\n"
    "  --min-confidence X    predpl: ignore pixels whose softmax maximum is below X (0.9)\n"
    "  --ema X               meanteacher: teacher EMA decay (0.99)\n"
    "  --rounds N            offline rounds: train, pseudo-label every unlabeled case from\n"
    "                        all pixels of the labeled ones (top-1 cosine, last decoder\n"
    "                        map), retrain a fresh network on both; N trainings (1)\n"
    "network:\n"
    "  --depth N             poolings (4)      --width N   base channels (16)\n"
    "  --norm N              group (default), batch or none\n"
    "run:\n"
    "  --seed N              seed of every random choice (0)\n"
    "  --threads N           threads (all cores)\n"
    "  --checkpoint-every N  save the model every N steps (500; 0 = only at the end)\n"
    "  --quiet               no progress bar\n";

typedef struct train_options {
    const char *data, *out, *labeled, *method;
    rl_semi_config semi;
    rl_select_mode labeled_mode;
    int axis, batch, threads, depth, width, patch_h, patch_w, augment, quiet, warmup;
    int checkpoint_every;
    int steps;
    int rounds;
    long seed;
    double lr, weight_decay, clip, dice_weight;
    rl_norm_kind norm;
    rl_optim_kind optimizer;
    rl_schedule_kind schedule;
} train_options;

static volatile sig_atomic_t interrupted = 0;
static void on_sigint(int sig) {
    (void)sig;
    if (interrupted) _Exit(130); /* second Ctrl-C: stop at once */
    interrupted = 1;
}

static int parse_patch(const char *s, int *h, int *w) {
    char tail;
    return s && sscanf(s, "%dx%d%c", h, w, &tail) == 2 && *h > 0 && *w > 0 ? 0 : -1;
}

static int parse_options(int argc, char **argv, train_options *o) {
    memset(o, 0, sizeof *o);
    o->method = "supervised";
    o->axis = 2;
    o->batch = 8;
    o->steps = 1000;
    o->lr = 1e-3;
    o->weight_decay = -1;
    o->clip = 12;
    o->dice_weight = 1;
    o->depth = 4;
    o->width = 16;
    o->augment = 1;
    o->warmup = -1;
    o->threads = 0;
    o->checkpoint_every = 500;
    o->rounds = 1;
    o->norm = RL_NORM_GROUP;
    o->optimizer = RL_OPTIM_ADAMW;
    o->schedule = RL_SCHEDULE_POLY;
    o->semi = rl_train_default_config(1, 1).semi;
    rl_semi_config *sc = &o->semi;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0, used = 1;
        double d;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(train_usage, stdout);
            return -1;
        } else if (!strcmp(a, "--data")) o->data = v;
        else if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--labeled")) o->labeled = v;
        else if (!strcmp(a, "--method")) o->method = v;
        else if (!strcmp(a, "--labeled-mode")) {
            if (v && !strcmp(v, "even")) o->labeled_mode = RL_SELECT_EVEN;
            else if (v && !strcmp(v, "random")) o->labeled_mode = RL_SELECT_RANDOM;
            else rc = cli_usage_error("train", "--labeled-mode must be even or random");
        } else if (!strcmp(a, "--axis")) rc = cli_parse_int("train", a, v, 0, 2, &o->axis);
        else if (!strcmp(a, "--steps")) rc = cli_parse_int("train", a, v, 1, 100000000, &o->steps);
        else if (!strcmp(a, "--batch")) rc = cli_parse_int("train", a, v, 1, 4096, &o->batch);
        else if (!strcmp(a, "--threads")) rc = cli_parse_int("train", a, v, 0, 1024, &o->threads);
        else if (!strcmp(a, "--depth")) rc = cli_parse_int("train", a, v, 1, RL_UNET_MAX_DEPTH, &o->depth);
        else if (!strcmp(a, "--width")) rc = cli_parse_int("train", a, v, 1, 1024, &o->width);
        else if (!strcmp(a, "--warmup")) rc = cli_parse_int("train", a, v, 0, 100000000, &o->warmup);
        else if (!strcmp(a, "--rounds")) rc = cli_parse_int("train", a, v, 1, 100, &o->rounds);
        else if (!strcmp(a, "--checkpoint-every"))
            rc = cli_parse_int("train", a, v, 0, 100000000, &o->checkpoint_every);
        else if (!strcmp(a, "--seed")) {
            rc = cli_parse_float("train", a, v, 0, 4294967295.0, &d);
            o->seed = (long)d;
        } else if (!strcmp(a, "--lr")) rc = cli_parse_float("train", a, v, 1e-12, 10, &o->lr);
        else if (!strcmp(a, "--weight-decay"))
            rc = cli_parse_float("train", a, v, 0, 10, &o->weight_decay);
        else if (!strcmp(a, "--clip")) rc = cli_parse_float("train", a, v, 0, 1e9, &o->clip);
        else if (!strcmp(a, "--dice-weight"))
            rc = cli_parse_float("train", a, v, 0, 100, &o->dice_weight);
        else if (!strcmp(a, "--patch")) {
            if (parse_patch(v, &o->patch_h, &o->patch_w))
                rc = cli_usage_error("train", "--patch expects HxW, e.g. 128x128");
        } else if (!strcmp(a, "--norm")) {
            int k = v ? rl_norm_from_name(v) : -1;
            if (k < 0) rc = cli_usage_error("train", "--norm must be group, batch or none");
            else o->norm = (rl_norm_kind)k;
        } else if (!strcmp(a, "--optimizer")) {
            if (v && !strcmp(v, "adamw")) o->optimizer = RL_OPTIM_ADAMW;
            else if (v && !strcmp(v, "sgd")) o->optimizer = RL_OPTIM_SGD;
            else rc = cli_usage_error("train", "--optimizer must be adamw or sgd");
        } else if (!strcmp(a, "--schedule")) {
            if (v && !strcmp(v, "poly")) o->schedule = RL_SCHEDULE_POLY;
            else if (v && !strcmp(v, "cosine")) o->schedule = RL_SCHEDULE_COSINE;
            else if (v && !strcmp(v, "constant")) o->schedule = RL_SCHEDULE_CONSTANT;
            else rc = cli_usage_error("train", "--schedule must be poly, cosine or constant");
        } else if (!strcmp(a, "--unlabeled-batch"))
            rc = cli_parse_int("train", a, v, 1, 4096, &sc->unlabeled_batch);
        else if (!strcmp(a, "--lambda") || !strcmp(a, "--pl-warmup") || !strcmp(a, "--pl-ramp") ||
                 !strcmp(a, "--pl-dice") || !strcmp(a, "--min-margin") ||
                 !strcmp(a, "--min-confidence") || !strcmp(a, "--ema")) {
            int is_margin = !strcmp(a, "--min-margin");
            rc = cli_parse_float("train", a, v, is_margin ? -2.0 : 0.0, is_margin ? 2.0 : 100.0, &d);
            if (!rc) {
                if (!strcmp(a, "--lambda")) sc->lambda = (float)d;
                else if (!strcmp(a, "--pl-warmup")) sc->warmup_fraction = d;
                else if (!strcmp(a, "--pl-ramp")) sc->ramp_fraction = d;
                else if (!strcmp(a, "--pl-dice")) sc->pl_dice_weight = (float)d;
                else if (is_margin) sc->min_margin = (float)d;
                else if (!strcmp(a, "--min-confidence")) sc->min_confidence = (float)d;
                else sc->ema_decay = (float)d;
            }
        } else if (!strcmp(a, "--sampling")) {
            if (v && !strcmp(v, "per-class")) sc->sampling = RL_SAMPLE_PER_CLASS;
            else if (v && !strcmp(v, "proportional")) sc->sampling = RL_SAMPLE_PROPORTIONAL;
            else if (v && !strcmp(v, "all")) sc->sampling = RL_SAMPLE_ALL;
            else rc = cli_usage_error("train", "--sampling must be per-class, proportional or all");
        } else if (!strcmp(a, "--refs-per-class"))
            rc = cli_parse_int("train", a, v, 1, 1 << 24, &sc->per_class_cap);
        else if (!strcmp(a, "--ref-count")) rc = cli_parse_int("train", a, v, 1, 1 << 26, &sc->sample_count);
        else if (!strcmp(a, "--class-floor")) rc = cli_parse_int("train", a, v, 0, 1 << 24, &sc->class_floor);
        else if (!strcmp(a, "--memory")) rc = cli_parse_int("train", a, v, 1, 4096, &sc->memory_batches);
        else if (!strcmp(a, "--topk")) rc = cli_parse_int("train", a, v, 1, 1024, &sc->top_k);
        else if (!strcmp(a, "--similarity")) {
            if (v && !strcmp(v, "cosine")) sc->similarity = RL_SIM_COSINE;
            else if (v && !strcmp(v, "dot")) sc->similarity = RL_SIM_DOT;
            else rc = cli_usage_error("train", "--similarity must be cosine or dot");
        } else if (!strcmp(a, "--per-image-vote")) {
            sc->match_mode = RL_MATCH_PER_IMAGE;
            used = 0;
        } else if (!strcmp(a, "--no-augment")) {
            o->augment = 0;
            used = 0;
        } else if (!strcmp(a, "--quiet")) {
            o->quiet = 1;
            used = 0;
        } else return cli_usage_error("train", "unknown option '%s'", a);
        if (rc) return rc;
        if (used) {
            if (!v) return cli_usage_error("train", "%s needs a value", a);
            i++;
        }
    }
    if (!o->data || !o->out) return cli_usage_error("train", "--data and --out are required");
    int method = rl_method_from_name(o->method);
    if (method < 0)
        return cli_usage_error("train", "--method must be supervised, refpl, predpl or meanteacher");
    o->semi.method = (rl_method)method;
    return 0;
}

static int write_labeled_list(const char *path, const rl_dataset *ds, const uint8_t *keep,
                              rl_error *err) {
    size_t cap = (size_t)ds->num_train * (RL_CASE_ID_MAX + 1) + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) return rl_error_set(err, RL_ENOMEM, "out of memory");
    for (int i = 0; i < ds->num_train; i++)
        if (keep[i] && ds->train[i].label_path)
            len += (size_t)snprintf(buf + len, cap - len, "%s\n", ds->train[i].id);
    int rc = rl_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

/* Training settings and dataset facts stored in the checkpoint's metadata,
 * so that a model file alone says what it is and how it was made. */
static char *training_json(const train_options *o, const rl_train_config *cfg, int64_t done) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "method", o->method);
    cJSON_AddStringToObject(j, "data", o->data);
    cJSON_AddStringToObject(j, "labeled", o->labeled ? o->labeled : "all");
    cJSON_AddStringToObject(j, "labeled_mode", o->labeled_mode == RL_SELECT_EVEN ? "even" : "random");
    cJSON_AddNumberToObject(j, "steps", (double)cfg->steps);
    cJSON_AddNumberToObject(j, "steps_done", (double)done);
    cJSON_AddNumberToObject(j, "batch", cfg->batch);
    cJSON_AddNumberToObject(j, "patch_h", cfg->patch_h);
    cJSON_AddNumberToObject(j, "patch_w", cfg->patch_w);
    cJSON_AddStringToObject(j, "optimizer", rl_optim_name(cfg->optim.kind));
    cJSON_AddNumberToObject(j, "lr", cfg->schedule.base_lr);
    cJSON_AddNumberToObject(j, "weight_decay", cfg->optim.weight_decay);
    cJSON_AddNumberToObject(j, "warmup_steps", (double)cfg->schedule.warmup_steps);
    cJSON_AddStringToObject(j, "schedule", cfg->schedule.kind == RL_SCHEDULE_POLY ? "poly"
                                           : cfg->schedule.kind == RL_SCHEDULE_COSINE ? "cosine"
                                                                                      : "constant");
    cJSON_AddNumberToObject(j, "clip_norm", cfg->clip_norm);
    cJSON_AddNumberToObject(j, "dice_weight", cfg->dice_weight);
    cJSON_AddBoolToObject(j, "augment", cfg->augment);
    cJSON_AddNumberToObject(j, "seed", (double)cfg->seed);
    cJSON_AddNumberToObject(j, "axis", o->axis);
    if (cfg->semi.method != RL_METHOD_SUPERVISED) {
        const rl_semi_config *sc = &cfg->semi;
        cJSON *s = cJSON_AddObjectToObject(j, "semi");
        cJSON_AddNumberToObject(s, "unlabeled_batch", sc->unlabeled_batch ? sc->unlabeled_batch : cfg->batch);
        cJSON_AddNumberToObject(s, "lambda", sc->lambda);
        cJSON_AddNumberToObject(s, "warmup_fraction", sc->warmup_fraction);
        cJSON_AddNumberToObject(s, "ramp_fraction", sc->ramp_fraction);
        cJSON_AddNumberToObject(s, "pl_dice_weight", sc->pl_dice_weight);
        cJSON_AddStringToObject(s, "sampling", sc->sampling == RL_SAMPLE_ALL ? "all"
                                               : sc->sampling == RL_SAMPLE_PER_CLASS ? "per-class"
                                                                                      : "proportional");
        cJSON_AddNumberToObject(s, "per_class_cap", sc->per_class_cap);
        cJSON_AddNumberToObject(s, "sample_count", sc->sample_count);
        cJSON_AddNumberToObject(s, "class_floor", sc->class_floor);
        cJSON_AddNumberToObject(s, "memory_batches", sc->memory_batches);
        cJSON_AddNumberToObject(s, "top_k", sc->top_k);
        cJSON_AddStringToObject(s, "match_mode", sc->match_mode == RL_MATCH_POOLED ? "pooled" : "per-image");
        cJSON_AddStringToObject(s, "similarity", sc->similarity == RL_SIM_COSINE ? "cosine" : "dot");
        cJSON_AddNumberToObject(s, "min_margin", sc->min_margin);
        cJSON_AddNumberToObject(s, "min_confidence", sc->min_confidence);
        cJSON_AddNumberToObject(s, "ema_decay", sc->ema_decay);
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

static char *names_json(char **names, int count) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < count; i++) cJSON_AddItemToArray(a, cJSON_CreateString(names[i]));
    char *s = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return s;
}

static int save_model(const rl_unet *net, const char *path, const rl_dataset *ds,
                      const train_options *o, const rl_train_config *cfg, int64_t done,
                      rl_error *err) {
    char *training = training_json(o, cfg, done);
    char *classes = names_json(ds->class_names, ds->num_classes);
    char *channels = names_json(ds->channel_names, ds->num_channels);
    char axis[8];
    snprintf(axis, sizeof axis, "%d", o->axis);
    char ignore[16];
    snprintf(ignore, sizeof ignore, "%d", ds->ignore_label);
    rl_kv extra[] = {{"reflabel.class_names", classes},   {"reflabel.channel_names", channels},
                     {"reflabel.training", training},     {"reflabel.axis", axis},
                     {"reflabel.file_ending", ds->file_ending}, {"reflabel.ignore_label", ignore},
                     {"reflabel.multilabel", ds->multilabel ? "true" : "false"}};
    int rc = (!training || !classes || !channels)
                 ? rl_error_set(err, RL_ENOMEM, "out of memory")
                 : rl_unet_save(net, path, extra, (int)(sizeof extra / sizeof *extra), err);
    free(training);
    free(classes);
    free(channels);
    return rc;
}

/* The CSV log, kept in memory and rewritten atomically, so that the file on
 * disk is always complete (never a half-written last line). */
typedef struct csv_log {
    char *text;
    size_t len, cap;
} csv_log;

static int csv_append(csv_log *log, const char *line) {
    size_t n = strlen(line);
    if (log->len + n + 1 > log->cap) {
        size_t cap = log->cap ? log->cap * 2 : 1 << 16;
        while (cap < log->len + n + 1) cap *= 2;
        char *p = realloc(log->text, cap);
        if (!p) return -1;
        log->text = p;
        log->cap = cap;
    }
    memcpy(log->text + log->len, line, n + 1);
    log->len += n;
    return 0;
}

/* Total variation distance above which the class shares of the pseudo-labels
 * are reported as drifting from the labeled images'. */
#define DRIFT_WARNING 0.25

static int csv_header(csv_log *log, const rl_dataset *ds) {
    char col[512];
    if (csv_append(log, "step,loss,ce,dice,lr,grad_norm,unsup_loss,lambda,pl_kept,pl_accuracy,"
                        "pl_drift"))
        return -1;
    for (int pass = 0; pass < 3; pass++)
        for (int c = 0; c < ds->num_classes; c++) {
            static const char *prefix[] = {"pl_dice_", "pl_share_", "labeled_share_"};
            snprintf(col, sizeof col, ",%s%s", prefix[pass], ds->class_names[c]);
            if (csv_append(log, col)) return -1;
        }
    return csv_append(log, ",seconds\n");
}

static int csv_row(csv_log *log, const rl_train_step_info *info, int k, double seconds) {
    char cell[64];
    snprintf(cell, sizeof cell, "%lld", (long long)info->step);
    if (csv_append(log, cell)) return -1;
    double values[] = {info->loss, info->ce, info->dice, info->lr, info->grad_norm,
                       info->unsup_loss, info->lambda, info->pl_kept, info->pl_accuracy,
                       info->pl_drift};
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        snprintf(cell, sizeof cell, ",%.6g", values[i]);
        if (csv_append(log, cell)) return -1;
    }
    const double *arrays[] = {info->pl_dice, info->pl_share, info->labeled_share};
    for (int a = 0; a < 3; a++)
        for (int c = 0; c < k; c++) {
            snprintf(cell, sizeof cell, ",%.6g", arrays[a] ? arrays[a][c] : NAN);
            if (csv_append(log, cell)) return -1;
        }
    snprintf(cell, sizeof cell, ",%.3f\n", seconds);
    return csv_append(log, cell);
}

/* Everything one `reflabel train` invocation works on. */
typedef struct train_run {
    train_options o;
    rl_dataset ds;
    uint8_t *keep; /* per training case: its label is used (not hidden) */
    rl_sample_set set;
    rl_train_config cfg;
    rl_unet_config net_config;
} train_run;

/* Trains net for the configured steps, with the progress bar, the CSV log
 * (log.csv, or log_round<R>.csv for rounds after the first), checkpoints
 * and Ctrl-C handling. */
static int train_round(train_run *r, rl_unet *net, int round, rl_error *err) {
    const train_options *o = &r->o;
    rl_trainer *tr = NULL;
    csv_log log = {0};
    char path[4096], log_path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", o->out);
    if (round == 1) snprintf(log_path, sizeof log_path, "%s/log.csv", o->out);
    else snprintf(log_path, sizeof log_path, "%s/log_round%d.csv", o->out, round);
    int rc = rl_trainer_create(&tr, net, &r->cfg, &r->set, err);
    if (!rc && !o->quiet)
        fprintf(stderr,
                "reflabel train: %s%s, %d slices (%d labeled) of %d cases, patch %dx%d, "
                "batch %d, %d steps, %zu parameters\n",
                rl_method_name(r->cfg.semi.method), round > 1 ? " (pseudo-label round)" : "",
                r->set.count, r->set.labeled_count, r->ds.num_train, r->cfg.patch_h,
                r->cfg.patch_w, r->cfg.batch, o->steps, rl_unet_param_count(net));
    if (!rc && csv_header(&log, &r->ds)) rc = rl_error_set(err, RL_ENOMEM, "out of memory");
    int64_t last_warning = -1;
    signal(SIGINT, on_sigint);
    rl_progress bar;
    rl_progress_start(&bar, "train", o->steps, o->quiet);
    double t0 = rl_now_seconds(), ema = NAN;
    while (!rc && rl_trainer_steps_done(tr) < o->steps && !interrupted) {
        rl_train_step_info info;
        rc = rl_trainer_step(tr, &info, err);
        if (rc) break;
        ema = isnan(ema) ? info.loss : 0.95 * ema + 0.05 * info.loss;
        if (csv_row(&log, &info, r->ds.num_classes, rl_now_seconds() - t0))
            rc = rl_error_set(err, RL_ENOMEM, "out of memory");
        /* Pseudo-labels whose class shares drift far from the labeled
         * images' are the first sign of collapse: say so, at most 10 times. */
        if (info.lambda > 0 && info.pl_drift > DRIFT_WARNING &&
            (last_warning < 0 || info.step - last_warning >= o->steps / 10)) {
            last_warning = info.step;
            rl_progress_finish(&bar);
            fprintf(stderr,
                    "reflabel train: warning: step %lld: pseudo-label class shares differ from "
                    "the labeled images' by %.2f (total variation); see %s\n",
                    (long long)info.step, info.pl_drift, log_path);
        }
        char line[256];
        if (r->cfg.semi.method != RL_METHOD_SUPERVISED && !isnan(info.pl_accuracy))
            snprintf(line, sizeof line, "loss %.4f pl-acc %.3f", ema, info.pl_accuracy);
        else
            snprintf(line, sizeof line, "loss %.4f", ema);
        rl_progress_update(&bar, (long)info.step, line);
        int last = info.step == o->steps;
        if (!rc && (last || (o->checkpoint_every && info.step % o->checkpoint_every == 0))) {
            rc = save_model(net, path, &r->ds, o, &r->cfg, info.step, err);
            if (!rc) rc = rl_write_file_atomic(log_path, log.text, log.len, err);
        }
    }
    rl_progress_finish(&bar);
    signal(SIGINT, SIG_DFL);
    if (!rc && interrupted) {
        /* Ctrl-C: keep what was learned so far, then stop. */
        rc = save_model(net, path, &r->ds, o, &r->cfg, rl_trainer_steps_done(tr), err);
        if (!rc) rc = rl_write_file_atomic(log_path, log.text, log.len, err);
        if (!rc)
            rc = rl_error_set(err, RL_EINTERRUPTED, "interrupted at step %lld; model saved to %s",
                              (long long)rl_trainer_steps_done(tr), path);
    }
    if (!rc && !o->quiet)
        fprintf(stderr, "reflabel train: %d steps in %.1f s, final loss %.4f, model %s\n",
                o->steps, rl_now_seconds() - t0, ema, path);
    free(log.text);
    rl_trainer_free(tr);
    return rc;
}

/* Offline reference pseudo-labels between rounds: every case whose label is
 * not used gets the labels of its best-matching pixels among all pixels of
 * the cases whose label is used (the paper's rule, with net's features); its
 * samples then train as labeled in the next round. Quality against hidden
 * labels goes to rounds.csv. */
static int pseudo_label_round(train_run *r, rl_unet *net, int round, csv_log *rounds_log,
                              rl_error *err) {
    const rl_dataset *ds = &r->ds;
    int references = 0, max_pixels = 0;
    for (int i = 0; i < r->set.count; i++) {
        const rl_sample *s = &r->set.samples[i];
        references += r->keep[s->case_index] && ds->train[s->case_index].label_path;
        if (s->h * s->w > max_pixels) max_pixels = s->h * s->w;
    }
    rl_pseudolabel_config pc = rl_pseudolabel_default_config();
    pc.axis = r->o.axis;
    pc.ignore_label = ds->ignore_label;
    pc.seed = r->cfg.seed;
    pc.multilabel = ds->multilabel;
    rl_pseudolabeler *pl = NULL;
    rl_label_agreement agree;
    int rc = rl_label_agreement_init(&agree, ds->num_classes, err);
    if (rc) return rc;
    rc = rl_pseudolabeler_create(&pl, net, &pc, references, max_pixels, err);
    rl_volume *images = calloc((size_t)ds->num_channels, sizeof *images);
    if (!rc && !images) rc = rl_error_set(err, RL_ENOMEM, "out of memory");
    int queries = 0;
    for (int pass = 0; pass < 2 && !rc; pass++) {
        /* pass 0 fills the bank with the references, pass 1 labels the rest */
        for (int i = 0; i < ds->num_train && !rc; i++) {
            const rl_case *c = &ds->train[i];
            int is_reference = r->keep[i] && c->label_path;
            if (is_reference != (pass == 0)) continue;
            rl_volume label = {0};
            rc = rl_dataset_load_case(ds, c, images, c->label_path ? &label : NULL, err);
            if (rc) break;
            size_t n = rl_volume_numel(&images[0]);
            int32_t *truth = c->label_path ? malloc(n * sizeof *truth) : NULL;
            int32_t *pseudo = pass ? malloc(n * sizeof *pseudo) : NULL;
            if ((c->label_path && !truth) || (pass && !pseudo))
                rc = rl_error_set(err, RL_ENOMEM, "out of memory");
            if (!rc && truth) rc = rl_labels_from_volume(&label, truth, err);
            if (!rc && pass == 0)
                rc = rl_pseudolabeler_add_reference(pl, images, ds->num_channels, truth, err);
            if (!rc && pass == 1) {
                rc = rl_pseudolabeler_label_case(pl, images, ds->num_channels, pseudo, NULL, err);
                if (!rc)
                    rc = rl_sample_set_set_case_labels(&r->set, i, images[0].nx, images[0].ny,
                                                       images[0].nz, pseudo, err);
                if (!rc && truth)
                    rc = ds->multilabel ? rl_label_agreement_add_bitsets(&agree, pseudo, truth,
                                                                         (int64_t)n, err)
                                        : rl_label_agreement_add(&agree, pseudo, truth, (int64_t)n,
                                                                 ds->ignore_label, -1, err);
                queries++;
            }
            free(truth);
            free(pseudo);
            rl_dataset_free_case(ds, images, c->label_path ? &label : NULL);
        }
    }
    if (!rc) {
        double acc = rl_label_agreement_accuracy(&agree), mean = 0;
        char cell[64];
        snprintf(cell, sizeof cell, "%d,%d,%d,%.6g", round, references, queries, acc);
        rc = csv_append(rounds_log, cell) ? rl_error_set(err, RL_ENOMEM, "out of memory") : 0;
        for (int c = 0; c < ds->num_classes && !rc; c++) {
            double d = agree.voxels ? rl_label_agreement_dice(&agree, c) : NAN;
            if (c > 0) mean += d / (ds->num_classes - 1);
            snprintf(cell, sizeof cell, ",%.6g", d);
            if (csv_append(rounds_log, cell)) rc = rl_error_set(err, RL_ENOMEM, "out of memory");
        }
        if (!rc && csv_append(rounds_log, "\n")) rc = rl_error_set(err, RL_ENOMEM, "out of memory");
        if (!rc && !r->o.quiet && agree.voxels)
            fprintf(stderr,
                    "reflabel train: round %d pseudo-labels of %d cases from %d reference slices: "
                    "pixel accuracy %.4f, mean foreground Dice %.4f (against the hidden labels)\n",
                    round, queries, references, acc, mean);
    }
    free(images);
    rl_pseudolabeler_free(pl);
    rl_label_agreement_free(&agree);
    return rc;
}

static void build_configs(train_run *r) {
    const train_options *o = &r->o;
    rl_unet_config *nc = &r->net_config;
    *nc = rl_unet_default_config();
    nc->in_channels = r->ds.num_channels;
    nc->num_classes = rl_sample_set_outputs(&r->set);
    nc->depth = o->depth;
    nc->base_width = o->width;
    nc->norm = o->norm;
    rl_train_config *cfg = &r->cfg;
    *cfg = rl_train_default_config(o->steps, o->batch);
    cfg->optim = rl_optim_default_config(o->optimizer);
    if (o->weight_decay >= 0) cfg->optim.weight_decay = (float)o->weight_decay;
    else if (o->optimizer == RL_OPTIM_ADAMW) cfg->optim.weight_decay = 1e-4f;
    cfg->schedule.kind = o->schedule;
    cfg->schedule.base_lr = o->lr;
    if (o->warmup >= 0) cfg->schedule.warmup_steps = o->warmup;
    cfg->clip_norm = o->clip;
    cfg->dice_weight = (float)o->dice_weight;
    cfg->augment = o->augment;
    cfg->seed = (uint64_t)o->seed;
    cfg->semi = o->semi;
    if (o->patch_h) {
        cfg->patch_h = o->patch_h;
        cfg->patch_w = o->patch_w;
    } else {
        rl_train_auto_patch(&r->set, o->depth, 512, &cfg->patch_h, &cfg->patch_w);
    }
}

/* With labelled test cases, score the model on them. */
static int score_test_cases(const train_run *r, rl_unet *net, rl_error *err) {
    const train_options *o = &r->o;
    int have_labels = 0;
    for (int i = 0; i < r->ds.num_test; i++) have_labels |= r->ds.test[i].label_path != NULL;
    char ts_images[4096], ts_labels[4096], json[4096], pred_dir[4096];
    snprintf(ts_images, sizeof ts_images, "%s/imagesTs", o->data);
    snprintf(ts_labels, sizeof ts_labels, "%s/labelsTs", o->data);
    snprintf(pred_dir, sizeof pred_dir, "%s/test_predictions", o->out);
    snprintf(json, sizeof json, "%s/test_metrics.json", o->out);
    int rc = cli_predict_folder_ex(net, r->ds.multilabel, ts_images, pred_dir, o->axis, 0,
                                   o->quiet, err);
    if (!rc && have_labels)
        rc = cli_evaluate_and_report_ex(pred_dir, ts_labels, r->ds.num_classes,
                                        r->ds.ignore_label >= 0 ? r->ds.ignore_label
                                                                : RL_METRICS_NO_IGNORE,
                                        r->ds.multilabel, r->ds.class_names, json, !o->quiet,
                                        err);
    return rc;
}

int cmd_train(int argc, char **argv) {
    train_run r;
    memset(&r, 0, sizeof r);
    int prc = parse_options(argc, argv, &r.o);
    if (prc) return prc < 0 ? 0 : prc;
    const train_options *o = &r.o;
    rl_set_threads(o->threads);
    rl_error err = {0, ""};
    if (rl_dataset_open(o->data, &r.ds, &err)) return cli_fail(&err);
    rl_unet *net = NULL;
    csv_log rounds_log = {0};
    r.keep = calloc((size_t)r.ds.num_train + 1, 1);
    int rc = r.keep ? rl_choose_labeled(&r.ds, o->labeled, o->labeled_mode, (uint64_t)o->seed,
                                        r.keep, &err)
                    : rl_error_set(&err, RL_ENOMEM, "out of memory");
    if (!rc) rc = rl_sample_set_load(&r.set, &r.ds, r.ds.train, r.ds.num_train, r.keep, o->axis, &err);
    if (!rc) build_configs(&r);
    if (!rc && o->rounds > 1 && r.set.labeled_count == r.set.count)
        rc = rl_error_set(&err, RL_EINVAL, "--rounds needs unlabeled training cases (see --labeled)");
    if (!rc) rc = rl_make_dirs(o->out, &err);
    if (!rc) {
        char path[4096];
        snprintf(path, sizeof path, "%s/labeled.txt", o->out);
        rc = write_labeled_list(path, &r.ds, r.keep, &err);
    }
    if (!rc && o->rounds > 1) {
        char cell[512];
        rc = csv_append(&rounds_log, "round,references,cases,pl_accuracy");
        for (int c = 0; c < r.ds.num_classes && !rc; c++) {
            snprintf(cell, sizeof cell, ",pl_dice_%s", r.ds.class_names[c]);
            rc = csv_append(&rounds_log, cell);
        }
        if (!rc) rc = csv_append(&rounds_log, "\n");
        if (rc) rc = rl_error_set(&err, RL_ENOMEM, "out of memory");
    }
    for (int round = 1; !rc && round <= o->rounds; round++) {
        /* Each round trains a fresh network; after the first, on the
         * labeled cases plus the pseudo-labels of the previous round. */
        rl_unet_free(net);
        net = NULL;
        rc = rl_unet_create(&net, &r.net_config, (uint64_t)o->seed + (uint64_t)round - 1, &err);
        if (!rc) rc = train_round(&r, net, round, &err);
        if (!rc && round < o->rounds) {
            rc = pseudo_label_round(&r, net, round, &rounds_log, &err);
            r.cfg.semi.method = RL_METHOD_SUPERVISED;
            if (!rc) {
                char path[4096];
                snprintf(path, sizeof path, "%s/rounds.csv", o->out);
                rc = rl_write_file_atomic(path, rounds_log.text, rounds_log.len, &err);
            }
        }
    }
    if (!rc && r.ds.num_test > 0) rc = score_test_cases(&r, net, &err);
    free(rounds_log.text);
    rl_unet_free(net);
    rl_sample_set_free(&r.set);
    free(r.keep);
    rl_dataset_free(&r.ds);
    return rc ? cli_fail(&err) : 0;
}
