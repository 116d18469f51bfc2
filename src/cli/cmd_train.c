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
#include "reflabel/health.h"
#include "reflabel/metrics.h"
#include "reflabel/pseudolabel.h"
#include "reflabel/rounds.h"
#include "reflabel/train.h"

static const char *train_usage =
    "usage: reflabel train --data DIR --out RUN_DIR [options]\n"
    "       reflabel train --resume RUN_DIR [options]\n"
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
    "  --min-confidence X    predpl: ignore pixels whose softmax maximum is below X (0.9)\n"
    "  --ema X               meanteacher: teacher EMA decay (0.99)\n"
    "reference matching: online for refpl (references: the labeled half of each\n"
    "batch) and, with --rounds, offline between rounds (references: every slice of\n"
    "the labeled cases) unless marked \"refpl only\":\n"
    "  --features F          matched features: last (last decoder map, default) or\n"
    "                        hypercolumn (every decoder level upsampled to full\n"
    "                        resolution, each L2-normalised, concatenated)\n"
    "  --sampling S          which labeled pixels become references: per-class,\n"
    "                        proportional or all (default: proportional online,\n"
    "                        all between rounds)\n"
    "  --refs-per-class K    per-class cap, per labeled batch online, per reference\n"
    "                        slice between rounds (256)\n"
    "  --ref-count N         proportional: references per batch / slice (4096)\n"
    "  --class-floor N       proportional: at least N per class (32)\n"
    "  --topk K              similarity-weighted vote of the K best (1)\n"
    "  --per-image-vote      best match per reference image (labeled image of the batch\n"
    "                        online, reference slice between rounds), then a vote\n"
    "  --similarity S        cosine (default) or dot\n"
    "  --min-margin X        pixels whose match margin is below X get no label: no loss\n"
    "                        online, ignored in the next round's labels offline (0)\n"
    "  --memory M            refpl only: also keep the last M-1 labeled batches (1)\n"
    "  --keep-fraction F     refpl only: keep the share F of each batch's unlabeled pixels\n"
    "                        with the highest margins, ignore the rest; unlike\n"
    "                        --min-margin, means the same on any data (1)\n"
    "  --margin-accuracy A   refpl only: each step, match every labeled image of the\n"
    "                        batch against the other labeled images and ignore the\n"
    "                        unlabeled pixels below the smallest margin at which\n"
    "                        those matches are right in the share A (0.9; 0: off;\n"
    "                        off with a note where it cannot work: multi-label data,\n"
    "                        --batch 1, one labeled slice)\n"
    "  --rounds N            offline rounds: train, pseudo-label every unlabeled case with\n"
    "                        the options above (defaults: every labeled pixel, top-1\n"
    "                        cosine on the last decoder map, the paper's rule), retrain a\n"
    "                        fresh network on both; N trainings (1); pseudo-label quality\n"
    "                        per round in RUN_DIR/rounds.csv\n"
    "network:\n"
    "  --depth N             poolings (4)      --width N   base channels (16)\n"
    "  --norm N              group (default), batch or none\n"
    "run:\n"
    "  --seed N              seed of every random choice (0)\n"
    "  --threads N           threads (all cores)\n"
    "  --checkpoint-every N  save the model and RUN_DIR/checkpoint.safetensors (the\n"
    "                        resumable state) every N steps (500; 0 = only at the end)\n"
    "  --resume RUN_DIR      continue RUN_DIR from its checkpoint with its saved options;\n"
    "                        options given again must agree, except --threads,\n"
    "                        --checkpoint-every, --quiet and --skip-nonfinite\n"
    "  --skip-nonfinite      skip (and log) a batch whose output, loss or gradient is\n"
    "                        not finite instead of stopping\n"
    "  --quiet               no progress bar\n"
    "Ctrl-C (or SIGTERM) saves the checkpoint and stops; a second Ctrl-C stops at once.\n";

typedef struct train_options {
    const char *data, *out, *labeled, *method, *resume;
    rl_semi_config semi;
    rl_select_mode labeled_mode;
    int axis, batch, threads, depth, width, patch_h, patch_w, augment, quiet, warmup;
    int checkpoint_every;
    int skip_nonfinite;
    int steps;
    int rounds;
    /* --sampling was given: rounds then use it, else every labeled pixel */
    int sampling_given;
    int margin_accuracy_given;
    long seed;
    double lr, weight_decay, clip, dice_weight;
    rl_norm_kind norm;
    rl_optim_kind optimizer;
    rl_schedule_kind schedule;
} train_options;

/* Set by the first SIGINT or SIGTERM: the training loop finishes its step,
 * saves a resumable checkpoint and stops. A signal handler can only talk to
 * the program through such a flag, hence the one piece of global state. */
static volatile sig_atomic_t interrupted = 0;
static void on_interrupt(int sig) {
    (void)sig;
    if (interrupted) _Exit(130); /* second Ctrl-C: stop at once (files stay whole) */
    interrupted = 1;
}

static void catch_interrupts(int on) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on ? on_interrupt : SIG_DFL;
    sa.sa_flags = SA_RESTART; /* writes in progress go on; the loop polls the flag */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
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
        else if (!strcmp(a, "--resume")) o->resume = v;
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
                else if (is_margin) sc->refs.min_margin = (float)d;
                else if (!strcmp(a, "--min-confidence")) sc->min_confidence = (float)d;
                else sc->ema_decay = (float)d;
            }
        } else if (!strcmp(a, "--features")) {
            int f = rl_feature_source_from_name(v);
            if (f < 0) rc = cli_usage_error("train", "--features must be last or hypercolumn");
            else sc->refs.features = (rl_feature_source)f;
        } else if (!strcmp(a, "--sampling")) {
            o->sampling_given = 1;
            if (v && !strcmp(v, "per-class")) sc->refs.sampling = RL_SAMPLE_PER_CLASS;
            else if (v && !strcmp(v, "proportional")) sc->refs.sampling = RL_SAMPLE_PROPORTIONAL;
            else if (v && !strcmp(v, "all")) sc->refs.sampling = RL_SAMPLE_ALL;
            else rc = cli_usage_error("train", "--sampling must be per-class, proportional or all");
        } else if (!strcmp(a, "--refs-per-class"))
            rc = cli_parse_int("train", a, v, 1, 1 << 24, &sc->refs.per_class_cap);
        else if (!strcmp(a, "--ref-count")) rc = cli_parse_int("train", a, v, 1, 1 << 26, &sc->refs.sample_count);
        else if (!strcmp(a, "--class-floor")) rc = cli_parse_int("train", a, v, 0, 1 << 24, &sc->refs.class_floor);
        else if (!strcmp(a, "--memory")) rc = cli_parse_int("train", a, v, 1, 4096, &sc->memory_batches);
        else if (!strcmp(a, "--margin-accuracy")) {
            o->margin_accuracy_given = 1;
            rc = cli_parse_float("train", a, v, 0.0, 1.0, &sc->margin_accuracy);
        }
        else if (!strcmp(a, "--keep-fraction")) {
            rc = cli_parse_float("train", a, v, 0.0, 1.0, &d);
            if (!rc && !(d > 0))
                rc = cli_usage_error("train", "%s expects a number in (0, 1], got '%s'", a, v);
            if (!rc) sc->keep_fraction = d;
        }
        else if (!strcmp(a, "--topk")) rc = cli_parse_int("train", a, v, 1, 1024, &sc->refs.top_k);
        else if (!strcmp(a, "--similarity")) {
            if (v && !strcmp(v, "cosine")) sc->refs.similarity = RL_SIM_COSINE;
            else if (v && !strcmp(v, "dot")) sc->refs.similarity = RL_SIM_DOT;
            else rc = cli_usage_error("train", "--similarity must be cosine or dot");
        } else if (!strcmp(a, "--per-image-vote")) {
            sc->refs.match_mode = RL_MATCH_PER_IMAGE;
            used = 0;
        } else if (!strcmp(a, "--no-augment")) {
            o->augment = 0;
            used = 0;
        } else if (!strcmp(a, "--quiet")) {
            o->quiet = 1;
            used = 0;
        } else if (!strcmp(a, "--skip-nonfinite")) {
            o->skip_nonfinite = 1;
            used = 0;
        } else return cli_usage_error("train", "unknown option '%s'", a);
        if (rc) return rc;
        if (used) {
            if (!v) return cli_missing_value("train", a, train_usage);
            i++;
        }
    }
    if (!o->data || !o->out)
        return cli_usage_error("train", "--data and --out (or --resume RUN_DIR) are required");
    int method = rl_method_from_name(o->method);
    if (method < 0)
        return cli_usage_error("train", "--method must be supervised, refpl, predpl or meanteacher");
    o->semi.method = (rl_method)method;
    if (o->margin_accuracy_given && o->semi.margin_accuracy > 0 &&
        o->semi.method != RL_METHOD_REFPL)
        return cli_usage_error("train", "--margin-accuracy is for --method refpl");
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
        cJSON_AddStringToObject(s, "features", rl_feature_source_name(sc->refs.features));
        cJSON_AddStringToObject(s, "sampling", sc->refs.sampling == RL_SAMPLE_ALL ? "all"
                                               : sc->refs.sampling == RL_SAMPLE_PER_CLASS ? "per-class"
                                                                                      : "proportional");
        cJSON_AddNumberToObject(s, "per_class_cap", sc->refs.per_class_cap);
        cJSON_AddNumberToObject(s, "sample_count", sc->refs.sample_count);
        cJSON_AddNumberToObject(s, "class_floor", sc->refs.class_floor);
        cJSON_AddNumberToObject(s, "memory_batches", sc->memory_batches);
        cJSON_AddNumberToObject(s, "top_k", sc->refs.top_k);
        cJSON_AddStringToObject(s, "match_mode", sc->refs.match_mode == RL_MATCH_POOLED ? "pooled" : "per-image");
        cJSON_AddStringToObject(s, "similarity", sc->refs.similarity == RL_SIM_COSINE ? "cosine" : "dot");
        cJSON_AddNumberToObject(s, "min_margin", sc->refs.min_margin);
        cJSON_AddNumberToObject(s, "keep_fraction", sc->keep_fraction);
        cJSON_AddNumberToObject(s, "margin_accuracy", sc->margin_accuracy);
        cJSON_AddNumberToObject(s, "min_confidence", sc->min_confidence);
        cJSON_AddNumberToObject(s, "ema_decay", sc->ema_decay);
    }
    if (o->rounds > 1) {
        /* The matching between rounds (see rounds_pseudolabel_config). */
        const rl_semi_config *sc = &o->semi;
        rl_bank_sampling sampling = o->sampling_given ? sc->refs.sampling : RL_SAMPLE_ALL;
        cJSON *rj = cJSON_AddObjectToObject(j, "rounds");
        cJSON_AddNumberToObject(rj, "count", o->rounds);
        cJSON_AddStringToObject(rj, "features", rl_feature_source_name(sc->refs.features));
        cJSON_AddStringToObject(rj, "sampling", sampling == RL_SAMPLE_ALL ? "all"
                                                : sampling == RL_SAMPLE_PER_CLASS ? "per-class"
                                                                                  : "proportional");
        cJSON_AddNumberToObject(rj, "per_class_cap", sc->refs.per_class_cap);
        cJSON_AddNumberToObject(rj, "sample_count", sc->refs.sample_count);
        cJSON_AddNumberToObject(rj, "class_floor", sc->refs.class_floor);
        cJSON_AddNumberToObject(rj, "top_k", sc->refs.top_k);
        cJSON_AddStringToObject(rj, "match_mode",
                                sc->refs.match_mode == RL_MATCH_POOLED ? "pooled" : "per-image");
        cJSON_AddStringToObject(rj, "similarity", sc->refs.similarity == RL_SIM_COSINE ? "cosine" : "dot");
        cJSON_AddNumberToObject(rj, "min_margin", sc->refs.min_margin);
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

static int csv_header(csv_log *log, const rl_dataset *ds) {
    char col[512];
    if (csv_append(log, "step,loss,ce,dice,lr,grad_norm,unsup_loss,lambda,pl_kept,pl_accuracy,"
                        "pl_drift,pl_min_margin"))
        return -1;
    for (int pass = 0; pass < 3; pass++)
        for (int c = 0; c < ds->num_classes; c++) {
            static const char *prefix[] = {"pl_dice_", "pl_share_", "labeled_share_"};
            snprintf(col, sizeof col, ",%s%s", prefix[pass], ds->class_names[c]);
            if (csv_append(log, col)) return -1;
        }
    return csv_append(log, ",skipped,seconds\n");
}

static int csv_row(csv_log *log, const rl_train_step_info *info, int k, double seconds) {
    char cell[64];
    snprintf(cell, sizeof cell, "%lld", (long long)info->step);
    if (csv_append(log, cell)) return -1;
    double values[] = {info->loss, info->ce, info->dice, info->lr, info->grad_norm,
                       info->unsup_loss, info->lambda, info->pl_kept, info->pl_accuracy,
                       info->pl_drift, info->pl_min_margin};
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
    snprintf(cell, sizeof cell, ",%lld,%.3f\n", (long long)info->skipped_total, seconds);
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
    /* The options of the run, as command-line words (stored in every
     * checkpoint, so that --resume can rebuild them). */
    const char **args;
    int arg_count;
    /* --resume: the checkpoint read at start-up, restored into round 1. */
    rl_safetensors *resume_state;
} train_run;

#define CHECKPOINT_NAME "checkpoint.safetensors"

static char *args_json(const char **args, int count) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < count; i++) cJSON_AddItemToArray(a, cJSON_CreateString(args[i]));
    char *s = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return s;
}

/* One checkpoint: log.csv, then the resumable state, then the plain model,
 * each written atomically. The log goes first so that it always holds at
 * least the rows of the state on disk (a resume drops rows beyond it); the
 * state is one file, so it can never be half old, half new. */
static int save_checkpoint(const train_run *r, const rl_trainer *tr, const rl_unet *net,
                           int round, const csv_log *log, const char *log_path, rl_error *err) {
    const train_options *o = &r->o;
    char path[4096];
    int rc = rl_write_file_atomic(log_path, log->text, log->len, err);
    char *args = args_json(r->args, r->arg_count);
    char round_text[16];
    snprintf(round_text, sizeof round_text, "%d", round);
    rl_kv extra[] = {{"reflabel.args", args}, {"reflabel.round", round_text}};
    if (!rc && !args) rc = rl_error_set(err, RL_ENOMEM, "out of memory");
    snprintf(path, sizeof path, "%s/%s", o->out, CHECKPOINT_NAME);
    if (!rc) rc = rl_trainer_save(tr, path, extra, 2, err);
    free(args);
    snprintf(path, sizeof path, "%s/model.safetensors", o->out);
    if (!rc) rc = save_model(net, path, &r->ds, o, &r->cfg, rl_trainer_steps_done(tr), err);
    return rc;
}

/* The step number of a log row ("12,0.53,..."); -1 if it has none. */
static long log_row_step(const char *row) {
    char *end;
    long step = strtol(row, &end, 10);
    return end != row && *end == ',' ? step : -1;
}

/* --resume: the log written so far, cut back to the rows of steps 1..done
 * (a kill after the log was written but before the state was leaves rows
 * beyond it). Refuses a log that lacks any of those rows or has another
 * header, since the resumed log would then not be the run's log. Returns
 * the seconds column of the last kept row in *seconds. */
static int resume_log(csv_log *log, const char *log_path, int64_t done, double *seconds,
                      rl_error *err) {
    char *text = NULL;
    size_t size = 0;
    int rc = rl_read_file(log_path, (size_t)1 << 30, &text, &size, err);
    if (rc) return rl_error_prefix(err, "--resume");
    char *header_end = strchr(text, '\n');
    if (!header_end || (size_t)(header_end - text + 1) != log->len ||
        memcmp(text, log->text, log->len) != 0)
        rc = rl_error_set(err, RL_EFORMAT,
                          "%s: its header differs from this run's (another dataset or version?)",
                          log_path);
    char *row = header_end ? header_end + 1 : text;
    int64_t expect = 1;
    *seconds = 0;
    while (!rc && expect <= done) {
        char *end = strchr(row, '\n');
        if (!end || log_row_step(row) != expect) break;
        const char *last_comma = end;
        while (last_comma > row && *last_comma != ',') last_comma--;
        *seconds = strtod(last_comma + 1, NULL);
        row = end + 1;
        expect++;
    }
    if (!rc && expect <= done)
        rc = rl_error_set(err, RL_EFORMAT,
                          "%s: has rows only up to step %lld but the checkpoint is at step %lld",
                          log_path, (long long)expect - 1, (long long)done);
    if (!rc) {
        log->len = 0;
        *row = '\0';
        if (csv_append(log, text)) rc = rl_error_set(err, RL_ENOMEM, "out of memory");
    }
    free(text);
    return rc;
}

/* RUN_DIR and RUN_DIR/labeled.txt, the labeled cases of the run. */
static int make_run_dir(const train_run *r, rl_error *err) {
    char path[4096];
    int rc = rl_make_dirs(r->o.out, err);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/labeled.txt", r->o.out);
    return write_labeled_list(path, &r->ds, r->keep, err);
}

/* Trains net for the configured steps, with the progress bar, the CSV log
 * (log.csv, or log_round<R>.csv for rounds after the first), checkpoints
 * and Ctrl-C handling. */
static int train_round(train_run *r, rl_unet *net, int round, rl_error *err) {
    const train_options *o = &r->o;
    rl_trainer *tr = NULL;
    csv_log log = {0};
    char log_path[4096];
    if (round == 1) snprintf(log_path, sizeof log_path, "%s/log.csv", o->out);
    else snprintf(log_path, sizeof log_path, "%s/log_round%d.csv", o->out, round);
    int rc = rl_trainer_create(&tr, net, &r->cfg, &r->set, err);
    /* The run folder is made once the trainer has accepted the options, so
     * that a refused run leaves nothing behind. */
    if (!rc && round == 1) rc = make_run_dir(r, err);
    if (!rc && csv_header(&log, &r->ds)) rc = rl_error_set(err, RL_ENOMEM, "out of memory");
    double seconds_before = 0;
    if (!rc && r->resume_state && round == 1) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", o->out, CHECKPOINT_NAME);
        rc = rl_trainer_restore(tr, r->resume_state, path, err);
        if (!rc) rc = resume_log(&log, log_path, rl_trainer_steps_done(tr), &seconds_before, err);
    }
    int64_t start = tr ? rl_trainer_steps_done(tr) : 0;
    /* From here on, Ctrl-C saves before stopping (the line below tells a
     * watching test that it does). */
    catch_interrupts(1);
    if (!rc && !o->quiet)
        fprintf(stderr,
                "reflabel train: %s%s, %d slices (%d labeled) of %d cases, patch %dx%d, "
                "batch %d, %d steps, %zu parameters%s\n",
                rl_method_name(r->cfg.semi.method), round > 1 ? " (pseudo-label round)" : "",
                r->set.count, r->set.labeled_count, r->ds.num_train, r->cfg.patch_h,
                r->cfg.patch_w, r->cfg.batch, o->steps, rl_unet_param_count(net),
                start > 0 ? ", resumed" : "");
    if (!rc && start > 0 && !o->quiet)
        fprintf(stderr, "reflabel train: resuming %s at step %lld of %d\n", o->out,
                (long long)start, o->steps);
    rl_health *health = NULL;
    if (!rc) rc = rl_health_create(&health, &r->cfg, r->ds.num_classes, r->ds.class_names,
                                   log_path, err);
    rl_progress bar;
    rl_progress_start(&bar, "train", o->steps, o->quiet);
    double t0 = rl_now_seconds() - seconds_before, ema = NAN;
    while (!rc && rl_trainer_steps_done(tr) < o->steps && !interrupted) {
        rl_train_step_info info;
        rc = rl_trainer_step(tr, &info, err);
        if (rc) break;
        if (!info.skipped) ema = isnan(ema) ? info.loss : 0.95 * ema + 0.05 * info.loss;
        if (csv_row(&log, &info, r->ds.num_classes, rl_now_seconds() - t0))
            rc = rl_error_set(err, RL_ENOMEM, "out of memory");
        int warnings = rl_health_step(health, &info);
        if (warnings > 0) rl_progress_finish(&bar);
        for (int i = 0; i < warnings; i++)
            fprintf(stderr, "reflabel train: warning: %s\n", rl_health_warning(health, i));
        char line[256];
        if (r->cfg.semi.method != RL_METHOD_SUPERVISED && !isnan(info.pl_accuracy))
            snprintf(line, sizeof line, "loss %.4f pl-acc %.3f", ema, info.pl_accuracy);
        else
            snprintf(line, sizeof line, "loss %.4f", ema);
        rl_progress_update(&bar, (long)info.step, line);
        int last = info.step == o->steps;
        if (!rc && (last || (o->checkpoint_every && info.step % o->checkpoint_every == 0)))
            rc = save_checkpoint(r, tr, net, round, &log, log_path, err);
    }
    rl_progress_finish(&bar);
    if (rc == RL_ENONFINITE) {
        /* The log up to the failing step helps to find the cause; the state
         * on disk stays at the last checkpoint, from which --resume (with
         * --skip-nonfinite, or other options in a new run) can go on. */
        rl_error ignored;
        rl_write_file_atomic(log_path, log.text, log.len, &ignored);
        int64_t done = rl_trainer_steps_done(tr);
        int64_t saved = o->checkpoint_every ? done / o->checkpoint_every * o->checkpoint_every : 0;
        if (saved < start) saved = start;
        size_t len = strlen(err->msg);
        if (saved > 0)
            snprintf(err->msg + len, sizeof err->msg - len,
                     "; %s/%s (step %lld) is kept; --skip-nonfinite skips such batches", o->out,
                     CHECKPOINT_NAME, (long long)saved);
        else
            snprintf(err->msg + len, sizeof err->msg - len,
                     "; no checkpoint was saved yet; --skip-nonfinite skips such batches");
    }
    if (!rc && interrupted) {
        /* Ctrl-C: save a state to resume from, then stop. */
        rc = save_checkpoint(r, tr, net, round, &log, log_path, err);
        if (!rc)
            rc = rl_error_set(err, RL_EINTERRUPTED,
                              "interrupted at step %lld; continue with: reflabel train --resume %s",
                              (long long)rl_trainer_steps_done(tr), o->out);
    }
    catch_interrupts(0);
    int64_t skipped = health ? rl_health_skipped(health) : 0;
    if (!rc && skipped > 0)
        fprintf(stderr, "reflabel train: warning: %lld of %d batches skipped as not finite (see "
                        "the skipped column of %s)\n",
                (long long)skipped, o->steps, log_path);
    if (!rc && !o->quiet)
        fprintf(stderr,
                "reflabel train: %lld steps in %.1f s, final loss %.4f, model "
                "%s/model.safetensors\n",
                (long long)(o->steps - start), rl_now_seconds() - t0 - seconds_before, ema, o->out);
    free(log.text);
    rl_health_free(health);
    rl_trainer_free(tr);
    return rc;
}

/* The offline pseudo-labelling between rounds, set by the matching options
 * given to train (docs/TRAINING.md): references are every slice of the
 * labeled cases, each one bank batch, so the sampling caps apply per
 * reference slice. Without --sampling every labeled pixel is a reference
 * (the paper's offline rule), not the online default. */
static rl_pseudolabel_config rounds_pseudolabel_config(const train_run *r) {
    const rl_semi_config *sc = &r->cfg.semi;
    rl_pseudolabel_config pc = rl_pseudolabel_default_config();
    pc.refs = sc->refs;
    if (!r->o.sampling_given) pc.refs.sampling = RL_SAMPLE_ALL;
    pc.axis = r->o.axis;
    pc.ignore_label = r->ds.ignore_label;
    pc.seed = r->cfg.seed;
    pc.multilabel = r->ds.multilabel;
    return pc;
}

/* Appends the round's row to rounds.csv (in memory) and reports it. */
static int log_round(train_run *r, int round, const rl_offline_stats *st, csv_log *rounds_log,
                     rl_error *err) {
    const rl_dataset *ds = &r->ds;
    const rl_label_agreement *agree = &st->kept;
    double acc = rl_label_agreement_accuracy(agree), mean = 0, kept = rl_offline_stats_kept(st);
    char cell[96];
    snprintf(cell, sizeof cell, "%d,%d,%d,%.6g,%.6g", round, st->references, st->cases, acc, kept);
    int failed = csv_append(rounds_log, cell);
    for (int c = 0; c < ds->num_classes && !failed; c++) {
        double d = agree->voxels ? rl_label_agreement_dice(agree, c) : NAN;
        if (c > 0) mean += d / (ds->num_classes - 1);
        snprintf(cell, sizeof cell, ",%.6g", d);
        failed = csv_append(rounds_log, cell);
    }
    if (!failed) failed = csv_append(rounds_log, "\n");
    if (failed) return rl_error_set(err, RL_ENOMEM, "out of memory");
    if (r->o.quiet) return RL_OK;
    fprintf(stderr,
            "reflabel train: round %d pseudo-labels of %d cases from %d reference slices: "
            "%.4f of the voxels labeled",
            round, st->cases, st->references, kept);
    if (agree->voxels)
        fprintf(stderr, "; pixel accuracy %.4f, mean foreground Dice %.4f (against the hidden "
                        "labels)", acc, mean);
    fputc('\n', stderr);
    return RL_OK;
}

/* Offline reference pseudo-labels between rounds (rl_rounds_pseudolabel),
 * with the matching options of the run (rounds_pseudolabel_config); the
 * quality against hidden labels and the share of voxels kept above
 * --min-margin go to rounds.csv. */
static int pseudo_label_round(train_run *r, rl_unet *net, int round, csv_log *rounds_log,
                              rl_error *err) {
    rl_pseudolabel_config pc = rounds_pseudolabel_config(r);
    rl_offline_stats st;
    int rc = rl_offline_stats_init(&st, r->ds.num_classes, err);
    if (rc) return rc;
    rc = rl_rounds_pseudolabel(net, &pc, &r->ds, r->keep, &r->set, &st, err);
    if (!rc) rc = log_round(r, round, &st, rounds_log, err);
    rl_offline_stats_free(&st);
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
    cfg->skip_nonfinite = o->skip_nonfinite;
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

/* ---- --resume ------------------------------------------------------------------ */

/* Setting i of the options that decide what a run computes, as the option
 * that sets it (returned; NULL past the last) and its value in words (buf).
 * Two option sets train the same run exactly when all of these agree; the
 * options left out (--out, --threads, --checkpoint-every, --quiet,
 * --skip-nonfinite) change how a run is carried out, not what it computes
 * (--threads only in the last bits of float sums; see docs/TRAINING.md).
 * A new option that changes the computation belongs in this list. */
static const char *run_setting(const train_options *o, int i, char *buf, size_t size) {
    const rl_semi_config *sc = &o->semi;
    static const char *sampling[] = {"all", "per-class", "proportional"};
    static const char *schedules[] = {"constant", "poly", "cosine"};
#define TEXT(opt, value) return snprintf(buf, size, "%s", value), opt
#define INT(opt, value) return snprintf(buf, size, "%d", value), opt
#define REAL(opt, value) return snprintf(buf, size, "%.17g", (double)(value)), opt
    switch (i) {
    case 0: TEXT("--data", o->data);
    case 1: TEXT("--labeled", o->labeled ? o->labeled : "all");
    case 2: TEXT("--labeled-mode", o->labeled_mode == RL_SELECT_EVEN ? "even" : "random");
    case 3: INT("--axis", o->axis);
    case 4: TEXT("--method", o->method);
    case 5: INT("--steps", o->steps);
    case 6: INT("--batch", o->batch);
    case 7: REAL("--lr", o->lr);
    case 8: TEXT("--optimizer", rl_optim_name(o->optimizer));
    case 9: REAL("--weight-decay", o->weight_decay); /* -1: the optimizer's default */
    case 10: TEXT("--schedule", schedules[o->schedule]);
    case 11: INT("--warmup", o->warmup); /* -1: 5% of the steps */
    case 12: REAL("--clip", o->clip);
    case 13: REAL("--dice-weight", o->dice_weight);
    case 14: return snprintf(buf, size, "%dx%d", o->patch_h, o->patch_w), "--patch";
    case 15: TEXT("--no-augment", o->augment ? "no" : "yes");
    case 16: INT("--unlabeled-batch", sc->unlabeled_batch);
    case 17: REAL("--lambda", sc->lambda);
    case 18: REAL("--pl-warmup", sc->warmup_fraction);
    case 19: REAL("--pl-ramp", sc->ramp_fraction);
    case 20: REAL("--pl-dice", sc->pl_dice_weight);
    case 21:
        /* not given: the rounds use every labeled pixel, not the online default */
        if (!o->sampling_given) TEXT("--sampling", "proportional online, all between rounds");
        TEXT("--sampling", sampling[sc->refs.sampling]);
    case 22: INT("--refs-per-class", sc->refs.per_class_cap);
    case 23: INT("--ref-count", sc->refs.sample_count);
    case 24: INT("--class-floor", sc->refs.class_floor);
    case 25: INT("--memory", sc->memory_batches);
    case 26: INT("--topk", sc->refs.top_k);
    case 27: TEXT("--per-image-vote", sc->refs.match_mode == RL_MATCH_PER_IMAGE ? "yes" : "no");
    case 28: TEXT("--similarity", sc->refs.similarity == RL_SIM_COSINE ? "cosine" : "dot");
    case 29: REAL("--min-margin", sc->refs.min_margin);
    case 30: REAL("--min-confidence", sc->min_confidence);
    case 31: REAL("--ema", sc->ema_decay);
    case 32: INT("--rounds", o->rounds);
    case 33: INT("--depth", o->depth);
    case 34: INT("--width", o->width);
    case 35: TEXT("--norm", rl_norm_name(o->norm));
    case 36: return snprintf(buf, size, "%ld", o->seed), "--seed";
    case 37: TEXT("--features", rl_feature_source_name(sc->refs.features));
    case 38: REAL("--keep-fraction", sc->keep_fraction);
    case 39: REAL("--margin-accuracy", sc->margin_accuracy);
    default: return NULL;
    }
#undef TEXT
#undef INT
#undef REAL
}

/* The state read by --resume and the words its options are rebuilt from. */
typedef struct resume_input {
    rl_safetensors state;
    int have_state;
    char **saved;      /* the run's option words, from the checkpoint */
    int saved_count;
    const char **args; /* "train", the saved words, then the words given now */
    int arg_count;
} resume_input;

static void resume_input_free(resume_input *in) {
    if (in->have_state) rl_safetensors_free(&in->state);
    for (int i = 0; i < in->saved_count; i++) free(in->saved[i]);
    free(in->saved);
    free(in->args);
    memset(in, 0, sizeof *in);
}

/* Reads RUN_DIR/checkpoint.safetensors and its saved option words. */
static int read_resume_state(const char *dir, resume_input *in, rl_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, CHECKPOINT_NAME);
    int rc = rl_safetensors_read(path, &in->state, err);
    if (rc) return rl_error_prefix(err, "--resume %s", dir);
    in->have_state = 1;
    const char *words = rl_safetensors_metadata(&in->state, "reflabel.args");
    const char *round = rl_safetensors_metadata(&in->state, "reflabel.round");
    cJSON *list = words ? cJSON_Parse(words) : NULL;
    int count = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : -1;
    in->saved = calloc((size_t)(count > 0 ? count : 0) + 1, sizeof *in->saved);
    if (count < 0 || !round)
        rc = rl_error_set(err, RL_EFORMAT, "%s: the run's options are missing or damaged", path);
    else if (!in->saved)
        rc = rl_error_set(err, RL_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < count; i++) {
        const cJSON *w = cJSON_GetArrayItem(list, i);
        if (!cJSON_IsString(w))
            rc = rl_error_set(err, RL_EFORMAT, "%s: the run's options are damaged", path);
        else if (!(in->saved[in->saved_count++] = strdup(w->valuestring)))
            rc = rl_error_set(err, RL_ENOMEM, "out of memory");
    }
    cJSON_Delete(list);
    /* Later rounds train on pseudo-labels made by the previous round's final
     * network, which no checkpoint keeps. */
    if (!rc && strcmp(round, "1") != 0)
        rc = rl_error_set(err, RL_EUNSUPPORTED,
                          "%s: saved in pseudo-label round %s; only the first round of --rounds "
                          "can be resumed (start the run again)",
                          path, round);
    return rc;
}

/* --resume RUN_DIR: rebuilds the options from the checkpoint followed by
 * the words given now (later words win, as on any command line), and
 * refuses words that would change what the run computes. Returns 0, an
 * exit status for a usage error, or -1 after --help. */
static int resume_options(int argc, char **argv, const char *dir, train_run *r, resume_input *in,
                          rl_error *err) {
    int rc = read_resume_state(dir, in, err);
    if (rc) return cli_fail(err);
    in->args = calloc((size_t)(in->saved_count + argc) + 1, sizeof *in->args);
    if (!in->args) return cli_fail(&(rl_error){RL_ENOMEM, "out of memory"});
    in->args[in->arg_count++] = "train";
    for (int i = 0; i < in->saved_count; i++) in->args[in->arg_count++] = in->saved[i];
    const char *out_given = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--resume") && i + 1 < argc) {
            i++;
            continue;
        }
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out_given = argv[i + 1];
        in->args[in->arg_count++] = argv[i];
    }
    train_options saved;
    if (parse_options(in->saved_count + 1, (char **)in->args, &saved))
        return cli_fail(&(rl_error){RL_EFORMAT, "--resume: the options saved in the checkpoint "
                                                "are not valid for this version"});
    int prc = parse_options(in->arg_count, (char **)in->args, &r->o);
    if (prc) return prc;
    if (out_given && strcmp(out_given, dir) != 0)
        return cli_usage_error("train", "--out %s differs from --resume %s", out_given, dir);
    r->o.out = dir;
    r->o.resume = dir;
    char was[1024], now[1024];
    const char *option;
    for (int i = 0; (option = run_setting(&saved, i, was, sizeof was)) != NULL; i++) {
        run_setting(&r->o, i, now, sizeof now);
        if (strcmp(was, now) != 0) {
            rl_error_set(err, RL_EINVAL,
                         "--resume %s: %s %s conflicts with the run's %s %s (a resumed run keeps "
                         "the options it was started with)",
                         dir, option, now, option, was);
            return cli_fail(err);
        }
    }
    r->args = in->args + 1;
    r->arg_count = in->arg_count - 1;
    r->resume_state = &in->state;
    return 0;
}

/* The directory after --resume, or NULL. */
static const char *resume_dir(int argc, char **argv) {
    const char *dir = NULL;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--resume")) dir = argv[++i];
    return dir;
}

/* The default --margin-accuracy cannot calibrate every setup
 * (rl_margin_calibration_obstacle). Given explicitly, the trainer refuses
 * such a setup; left at its default, it is turned off here, with a note,
 * and --min-margin alone thresholds the pseudo-labels. Runs on --resume
 * too, with the same data and options, so the resumed run decides the same. */
static void default_margin_off_where_impossible(train_run *r) {
    rl_semi_config *sc = &r->o.semi;
    if (sc->method != RL_METHOD_REFPL || r->o.margin_accuracy_given || !(sc->margin_accuracy > 0))
        return;
    const char *why = rl_margin_calibration_obstacle(&r->set, r->o.batch);
    if (!why) return;
    sc->margin_accuracy = 0;
    fprintf(stderr,
            "reflabel train: note: no margin calibration (--margin-accuracy): %s; pseudo-labels "
            "are thresholded at --min-margin %g alone\n",
            why, sc->refs.min_margin);
}

int cmd_train(int argc, char **argv) {
    train_run r;
    memset(&r, 0, sizeof r);
    resume_input resume;
    memset(&resume, 0, sizeof resume);
    const char *dir = resume_dir(argc, argv);
    rl_error err = {0, ""};
    int prc = dir ? resume_options(argc, argv, dir, &r, &resume, &err)
                  : parse_options(argc, argv, &r.o);
    if (prc) {
        resume_input_free(&resume);
        return prc < 0 ? 0 : prc;
    }
    if (!dir) {
        r.args = (const char **)argv + 1;
        r.arg_count = argc - 1;
    }
    const train_options *o = &r.o;
    rl_set_threads(o->threads);
    if (rl_dataset_open(o->data, &r.ds, &err)) {
        resume_input_free(&resume);
        return cli_fail(&err);
    }
    rl_unet *net = NULL;
    csv_log rounds_log = {0};
    r.keep = calloc((size_t)r.ds.num_train + 1, 1);
    int rc = r.keep ? rl_choose_labeled(&r.ds, o->labeled, o->labeled_mode, (uint64_t)o->seed,
                                        r.keep, &err)
                    : rl_error_set(&err, RL_ENOMEM, "out of memory");
    if (!rc) rc = rl_sample_set_load(&r.set, &r.ds, r.ds.train, r.ds.num_train, r.keep, o->axis, &err);
    if (!rc) default_margin_off_where_impossible(&r);
    if (!rc) build_configs(&r);
    if (!rc && o->rounds > 1 && r.set.labeled_count == r.set.count)
        rc = rl_error_set(&err, RL_EINVAL, "--rounds needs unlabeled training cases (see --labeled)");
    /* A bit set has no spare value for "no label", so multi-label rounds
     * keep every voxel's copied mask. */
    if (!rc && o->rounds > 1 && r.ds.multilabel && o->semi.refs.min_margin > 0)
        rc = rl_error_set(&err, RL_EINVAL,
                          "%s: --min-margin between rounds is not supported for multi-label data",
                          o->data);
    if (!rc && o->rounds > 1) {
        char cell[512];
        rc = csv_append(&rounds_log, "round,references,cases,pl_accuracy,kept");
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
    resume_input_free(&resume);
    if (rc == RL_EINTERRUPTED) {
        cli_fail(&err);
        return 130; /* the shell's status for a command stopped by SIGINT */
    }
    return rc ? cli_fail(&err) : 0;
}
