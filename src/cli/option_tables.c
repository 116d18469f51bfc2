/* The option tables of `reflabel train` and `reflabel pseudolabel`
 * (options.h). Row order is the order of the run's JSON, section by
 * section; --help lists the rows under their headings in the same order.
 * Defaults are not written here: the options start from the library's
 * default configs (train_options_init, pl_options_init) and --help prints
 * what they hold. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "options.h"

/* Enum options are stored through an int. */
_Static_assert(sizeof(rl_method) == sizeof(int), "enum size");
_Static_assert(sizeof(rl_teacher) == sizeof(int), "enum size");
_Static_assert(sizeof(rl_select_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(rl_optim_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(rl_schedule_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(rl_norm_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(rl_feature_source) == sizeof(int), "enum size");
_Static_assert(sizeof(rl_bank_sampling) == sizeof(int), "enum size");
_Static_assert(sizeof(rl_match_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(rl_similarity) == sizeof(int), "enum size");

#define T(field) .in = CLI_IN_OPTIONS, .offset = offsetof(train_options, field)
#define P(field) .in = CLI_IN_OPTIONS, .offset = offsetof(pl_options, field)
#define R(field) .in = CLI_IN_REFS, .offset = offsetof(rl_reference_config, field)
#define WORDS(...)                                                                             \
    .names = (const char *const[]){__VA_ARGS__},                                                \
    .count = (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))
#define VALUES(...) .values = (const int[]){__VA_ARGS__}
#define RANGE(a, b) .lo = (a), .hi = (b)
#define JSON(key, sections) .json = (key), .json_in = (sections)
#define TOP CLI_JSON_TOP
#define SEMI CLI_JSON_SEMI
#define ROUNDS CLI_JSON_ROUNDS

/* ---- reference matching: the rows both commands share ---------------------- */

static const cli_option opt_features = {
    "--features", NULL, "F",
    "matched features: last (last decoder map) or\n"
    "hypercolumn (every decoder level upsampled to full\n"
    "resolution, each L2-normalised, concatenated)",
    "matching", CLI_ENUM, R(features), WORDS("last", "hypercolumn"),
    VALUES(RL_FEATURES_LAST, RL_FEATURES_HYPERCOLUMN), JSON("features", SEMI | ROUNDS)};
static const cli_option opt_refs_per_class = {
    "--refs-per-class", "--per-class", "K",
    "per-class sampling: references per class, per labeled\n"
    "batch online, per reference slice offline",
    "matching", CLI_INT, R(per_class_cap), RANGE(1, 1 << 24), JSON("per_class_cap", SEMI | ROUNDS)};
static const cli_option opt_ref_count = {
    "--ref-count", NULL, "N", "proportional sampling: references per batch / slice", "matching",
    CLI_INT, R(sample_count), RANGE(1, 1 << 26), JSON("sample_count", SEMI | ROUNDS)};
static const cli_option opt_class_floor = {
    "--class-floor", NULL, "N", "proportional sampling: at least N per class", "matching", CLI_INT,
    R(class_floor), RANGE(0, 1 << 24), JSON("class_floor", SEMI | ROUNDS)};
static const cli_option opt_topk = {
    "--topk", NULL, "K", "similarity-weighted vote of the K best references", "matching", CLI_INT,
    R(top_k), RANGE(1, 1024), JSON("top_k", SEMI | ROUNDS)};
static const cli_option opt_per_image_vote = {
    "--per-image-vote", NULL, NULL,
    "best match per reference image (labeled image of the\n"
    "batch online, reference slice offline), then a vote",
    "matching", CLI_FLAG, R(match_mode), WORDS("pooled", "per-image"),
    .value = RL_MATCH_PER_IMAGE, JSON("match_mode", SEMI | ROUNDS)};
static const cli_option opt_similarity = {
    "--similarity", NULL, "S", "cosine or dot", "matching", CLI_ENUM, R(similarity),
    WORDS("cosine", "dot"), VALUES(RL_SIM_COSINE, RL_SIM_DOT), JSON("similarity", SEMI | ROUNDS)};

static const cli_option opt_labeled = {
    "--labeled", NULL, "SPEC",
    "keep labels of only these training cases: a count (5),\n"
    "a fraction (0.05) or a file of case ids",
    "labeled", CLI_STRING, .in = CLI_IN_LABELED, .offset = offsetof(cli_labeled, spec),
    .unset = "all", JSON("labeled", TOP)};
static const cli_option opt_labeled_mode = {
    "--labeled-mode", NULL, "MODE", "even (evenly spaced) or random (seeded)", "labeled", CLI_ENUM,
    .in = CLI_IN_LABELED, .offset = offsetof(cli_labeled, mode), WORDS("even", "random"),
    VALUES(RL_SELECT_EVEN, RL_SELECT_RANDOM), JSON("labeled_mode", TOP)};

/* ---- train ----------------------------------------------------------------- */

static void weight_decay_default(char *buf, size_t size) {
    snprintf(buf, size, "%g for adamw, %g for sgd",
             (double)rl_train_default_config(1, 1).optim.weight_decay,
             (double)rl_optim_default_config(RL_OPTIM_SGD).weight_decay);
}

static const cli_option
    t_method = {"--method", NULL, "M",
                "supervised, refpl (reference pseudo-labels, the\n"
                "paper), predpl (own predictions), meanteacher\n"
                "(EMA teacher), fixmatch (weak view's confident\n"
                "predictions train a strong view) or unimatch (two\n"
                "strong views and feature dropout)",
                "training", CLI_ENUM, T(train.semi.method),
                WORDS("supervised", "refpl", "predpl", "meanteacher", "fixmatch", "unimatch"),
                VALUES(RL_METHOD_SUPERVISED, RL_METHOD_REFPL, RL_METHOD_PREDPL,
                       RL_METHOD_MEANTEACHER, RL_METHOD_FIXMATCH, RL_METHOD_UNIMATCH),
                JSON("method", TOP)},
    t_data = {"--data", NULL, "DIR", "dataset folder (dataset.json, imagesTr/, labelsTr/)", "data",
              CLI_STRING, T(data), JSON("data", TOP)},
    t_steps = {"--steps", NULL, "N", "optimiser steps", "training", CLI_I64, T(train.steps),
               RANGE(1, 100000000), JSON("steps", TOP)},
    t_steps_done = {NULL, NULL, NULL, NULL, NULL, CLI_I64, T(steps_done), JSON("steps_done", TOP)},
    t_batch = {"--batch", NULL, "N", "images per step", "training", CLI_INT, T(train.batch),
               RANGE(1, 4096), JSON("batch", TOP)},
    t_patch = {"--patch", NULL, "HxW", "training patch, multiples of 2^depth", "training",
               CLI_SIZE, T(train.patch_h), .unset = "from the data", JSON("patch", TOP)},
    t_optimizer = {"--optimizer", NULL, "O", "adamw or sgd (Nesterov momentum 0.99)", "training",
                   CLI_ENUM, T(train.optim.kind), WORDS("adamw", "sgd"),
                   VALUES(RL_OPTIM_ADAMW, RL_OPTIM_SGD), JSON("optimizer", TOP)},
    t_lr = {"--lr", NULL, "X", "peak learning rate", "training", CLI_DOUBLE,
            T(train.schedule.base_lr), RANGE(1e-12, 10), JSON("lr", TOP)},
    t_weight_decay = {"--weight-decay", NULL, "X", "decoupled weight decay", "training", CLI_FLOAT,
                      T(train.optim.weight_decay), RANGE(0, 10),
                      .unset = "the optimizer's default", .describe_default = weight_decay_default,
                      JSON("weight_decay", TOP)},
    t_warmup = {"--warmup", NULL, "N", "linear warm-up steps", "training", CLI_I64,
                T(train.schedule.warmup_steps), RANGE(0, 100000000), .unset = "5% of --steps",
                JSON("warmup_steps", TOP)},
    t_schedule = {"--schedule", NULL, "S", "poly, cosine or constant", "training", CLI_ENUM,
                  T(train.schedule.kind), WORDS("poly", "cosine", "constant"),
                  VALUES(RL_SCHEDULE_POLY, RL_SCHEDULE_COSINE, RL_SCHEDULE_CONSTANT),
                  JSON("schedule", TOP)},
    t_clip = {"--clip", NULL, "X", "gradient-norm clipping, 0 = off", "training", CLI_DOUBLE,
              T(train.clip_norm), RANGE(0, 1e9), JSON("clip_norm", TOP)},
    t_dice_weight = {"--dice-weight", NULL, "X", "loss = CE + X * soft Dice", "training",
                     CLI_FLOAT, T(train.dice_weight), RANGE(0, 100), JSON("dice_weight", TOP)},
    t_no_augment = {"--no-augment", NULL, NULL, "no augmentation", "training", CLI_FLAG,
                    T(train.augment), .value = 0, JSON("augment", TOP)},
    t_seed = {"--seed", NULL, "N", "seed of every random choice", "run", CLI_U64, T(train.seed),
              RANGE(0, 4294967295.0), JSON("seed", TOP)},
    t_axis = {"--axis", NULL, "A", "slice 3D volumes along 0 sagittal, 1 coronal, 2 axial", "data",
              CLI_INT, T(axis), RANGE(0, 2), JSON("axis", TOP)},
    t_unlabeled_batch = {"--unlabeled-batch", NULL, "N", "unlabeled images per step", "semi",
                         CLI_INT, T(train.semi.unlabeled_batch), RANGE(1, 4096),
                         .unset = "same as --batch", JSON("unlabeled_batch", SEMI)},
    t_lambda = {"--lambda", NULL, "X", "weight of the unlabeled loss", "semi", CLI_FLOAT,
                T(train.semi.lambda), RANGE(0, 100), JSON("lambda", SEMI)},
    t_pl_warmup = {"--pl-warmup", NULL, "F", "supervised-only share of the steps", "semi",
                   CLI_DOUBLE, T(train.semi.warmup_fraction), RANGE(0, 100),
                   JSON("warmup_fraction", SEMI)},
    t_pl_ramp = {"--pl-ramp", NULL, "F", "share of the steps over which lambda ramps up", "semi",
                 CLI_DOUBLE, T(train.semi.ramp_fraction), RANGE(0, 100),
                 JSON("ramp_fraction", SEMI)},
    t_pl_dice = {"--pl-dice", NULL, "X", "pseudo-label loss = CE + X * Dice", "semi", CLI_FLOAT,
                 T(train.semi.pl_dice_weight), RANGE(0, 100), JSON("pl_dice_weight", SEMI)},
    t_rounds = {"--rounds", NULL, "N",
                "offline rounds: train, pseudo-label every unlabeled case with\n"
                "the options above (defaults: every labeled pixel, top-1\n"
                "cosine on the last decoder map, the paper's rule), retrain a\n"
                "fresh network on both; N trainings; pseudo-label quality\n"
                "per round in RUN_DIR/rounds.csv",
                "matching", CLI_INT, T(rounds), RANGE(1, 100), JSON("count", ROUNDS)},
    /* not a shared row: train's default differs between online and rounds
     * (so --resume tells "not given" from any value), pseudolabel's is all */
    t_sampling = {"--sampling", NULL, "S",
                  "which labeled pixels become references: per-class,\n"
                  "proportional or all; by default",
                  "matching", CLI_ENUM, R(sampling), WORDS("per-class", "proportional", "all"),
                  VALUES(RL_SAMPLE_PER_CLASS, RL_SAMPLE_PROPORTIONAL, RL_SAMPLE_ALL),
                  .unset = "proportional online, all between rounds",
                  JSON("sampling", SEMI | ROUNDS)},
    t_memory = {"--memory", NULL, "M", "refpl only: also keep the last M-1 labeled batches",
                "matching", CLI_INT, T(train.semi.memory_batches), RANGE(1, 4096),
                JSON("memory_batches", SEMI)},
    t_min_margin = {"--min-margin", NULL, "X",
                    "pixels whose match margin is below X get no label: no loss\n"
                    "online, ignored in the next round's labels offline",
                    "matching", CLI_FLOAT, R(min_margin), RANGE(-2, 2),
                    JSON("min_margin", SEMI | ROUNDS)},
    t_keep_fraction = {"--keep-fraction", NULL, "F",
                       "refpl only: keep the share F of each batch's unlabeled pixels\n"
                       "with the highest margins, ignore the rest; unlike\n"
                       "--min-margin, means the same on any data",
                       "matching", CLI_DOUBLE, T(train.semi.keep_fraction), RANGE(0, 1),
                       .lo_open = 1, JSON("keep_fraction", SEMI)},
    t_margin_accuracy = {"--margin-accuracy", NULL, "A",
                         "refpl only: each step, match every labeled image of the\n"
                         "batch against the other labeled images and ignore the\n"
                         "unlabeled pixels below the smallest margin at which\n"
                         "those matches are right in the share A (0: off;\n"
                         "off with a note where it cannot work: multi-label data,\n"
                         "--batch 1, one labeled slice)",
                         "matching", CLI_DOUBLE, T(train.semi.margin_accuracy), RANGE(0, 1),
                         JSON("margin_accuracy", SEMI)},
    t_min_confidence = {"--min-confidence", NULL, "X",
                        "predpl: ignore pixels whose softmax maximum is below X", "semi",
                        CLI_FLOAT, T(train.semi.min_confidence), RANGE(0, 100),
                        JSON("min_confidence", SEMI)},
    t_teacher = {"--teacher", NULL, "T",
                 "who predicts the weak views (refpl: and gives the\n"
                 "features): self (the student's own pass) or ema (an\n"
                 "exponential moving average of the student, --ema;\n"
                 "meanteacher always has one)",
                 "semi", CLI_ENUM, T(train.semi.teacher), WORDS("self", "ema"),
                 VALUES(RL_TEACHER_SELF, RL_TEACHER_EMA), JSON("teacher", SEMI)},
    t_ema = {"--ema", NULL, "X", "EMA decay of the teacher (meanteacher, --teacher ema)",
             "semi", CLI_FLOAT, T(train.semi.ema_decay), RANGE(0, 100), JSON("ema_decay", SEMI)},
    t_strong_views = {"--strong-views", NULL, "N",
                      "strong views of each unlabeled image: the weak view (the\n"
                      "augmentation) perturbed in intensity and CutMixed with the\n"
                      "next unlabeled image; the weak view's targets, no\n"
                      "gradient through them, train the strong views (0: the\n"
                      "weak view itself); not meanteacher",
                      "semi", CLI_INT, T(train.semi.strong_views), RANGE(0, 8),
                      .unset = "1 for fixmatch, 2 for unimatch, else 0",
                      JSON("strong_views", SEMI)},
    t_strong_confidence = {"--strong-confidence", NULL, "X",
                           "fixmatch, unimatch, --consistency: the weak view's\n"
                           "confidence a target pixel needs",
                           "semi", CLI_FLOAT, T(train.semi.strong_confidence), RANGE(0, 1),
                           JSON("strong_confidence", SEMI)},
    t_consistency = {"--consistency", NULL, "X",
                     "refpl: in parallel, the weak view's confident predictions\n"
                     "train the same view(s) with weight X (0: off)",
                     "semi", CLI_FLOAT, T(train.semi.consistency_weight), RANGE(0, 100),
                     JSON("consistency_weight", SEMI)},
    t_ref_images = {"--ref-images", NULL, "K",
                    "refpl only: references from K labeled images drawn apart\n"
                    "from the batch, in the same forward pass (0: the labeled\n"
                    "batch)",
                    "matching", CLI_INT, T(train.semi.ref_images), RANGE(0, 4096),
                    JSON("ref_images", SEMI)},
    t_feature_dropout = {"--feature-dropout", NULL, "P",
                         "unimatch: Dropout2d rate on the encoder features of the\n"
                         "perturbed copy",
                         "semi", CLI_FLOAT, T(train.semi.feature_dropout), RANGE(0, 1),
                         JSON("feature_dropout", SEMI)},
    t_depth = {"--depth", NULL, "N", "poolings", "network", CLI_INT, T(net.depth),
               RANGE(1, RL_UNET_MAX_DEPTH)},
    t_width = {"--width", NULL, "N", "base channels", "network", CLI_INT, T(net.base_width),
               RANGE(1, 1024)},
    t_norm = {"--norm", NULL, "N", "group, batch or none", "network", CLI_ENUM, T(net.norm),
              WORDS("group", "batch", "none"), VALUES(RL_NORM_GROUP, RL_NORM_BATCH, RL_NORM_NONE)},
    t_out = {"--out", NULL, "RUN_DIR", "the run's folder", "data", CLI_STRING, T(out),
             .resume_free = 1},
    t_threads = {"--threads", NULL, "N", "threads", "run", CLI_INT, T(threads), RANGE(0, 1024),
                 .unset = "all cores", .resume_free = 1},
    t_checkpoint_every = {"--checkpoint-every", NULL, "N",
                          "save the model and RUN_DIR/checkpoint.safetensors (the\n"
                          "resumable state) every N steps (0 = only at the end)",
                          "run", CLI_INT, T(checkpoint_every), RANGE(0, 100000000),
                          .resume_free = 1},
    t_resume = {"--resume", NULL, "RUN_DIR",
                "continue RUN_DIR from its checkpoint with its saved options;\n"
                "options given again must agree, except --threads,\n"
                "--checkpoint-every, --quiet and --skip-nonfinite",
                "run", CLI_STRING, T(resume), .resume_free = 1},
    t_skip_nonfinite = {"--skip-nonfinite", NULL, NULL,
                        "skip (and log) a batch whose output, loss or gradient is\n"
                        "not finite instead of stopping",
                        "run", CLI_FLAG, T(train.skip_nonfinite), .value = 1, .resume_free = 1},
    t_quiet = {"--quiet", NULL, NULL, "no progress bar", "run", CLI_FLAG, T(quiet), .value = 1,
               .resume_free = 1};

static const cli_option *const train_rows[] = {
    &t_method, &t_data, &opt_labeled, &opt_labeled_mode, &t_steps, &t_steps_done, &t_batch,
    &t_patch, &t_optimizer, &t_lr, &t_weight_decay, &t_warmup, &t_schedule, &t_clip,
    &t_dice_weight, &t_no_augment, &t_seed, &t_axis, &t_unlabeled_batch, &t_lambda,
    &t_pl_warmup, &t_pl_ramp, &t_pl_dice, &t_rounds, &opt_features, &t_sampling,
    &opt_refs_per_class, &opt_ref_count, &opt_class_floor, &t_memory, &opt_topk,
    &opt_per_image_vote, &opt_similarity, &t_min_margin, &t_keep_fraction, &t_margin_accuracy,
    &t_min_confidence, &t_teacher, &t_ema, &t_strong_views, &t_strong_confidence, &t_consistency,
    &t_ref_images, &t_feature_dropout, &t_depth, &t_width, &t_norm, &t_out, &t_threads,
    &t_checkpoint_every, &t_resume, &t_skip_nonfinite, &t_quiet};

static const cli_group train_groups[] = {
    {"data", "data:"},
    {"labeled", "labeled cases (pseudolabel takes the same):"},
    {"training", "training:"},
    {"semi", "semi-supervised (refpl, predpl, meanteacher, fixmatch, unimatch):"},
    {"matching",
     "reference matching: online for refpl (references: the labeled half of each\n"
     "batch) and, with --rounds, offline between rounds (references: every slice of\n"
     "the labeled cases) unless marked \"refpl only\":"},
    {"network", "network:"},
    {"run", "run:"}};

const cli_command cli_train_command = {
    "train",
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
    "\n",
    "Ctrl-C (or SIGTERM) saves the checkpoint and stops; a second Ctrl-C stops at once.\n",
    train_groups,
    (int)(sizeof train_groups / sizeof *train_groups),
    train_rows,
    (int)(sizeof train_rows / sizeof *train_rows)};
_Static_assert(sizeof train_rows / sizeof *train_rows <= CLI_MAX_ROWS, "too many rows");

cli_at train_options_at(train_options *o) {
    return (cli_at){{o, &o->train.semi.refs, &o->labeled}};
}

void train_options_init(train_options *o) {
    memset(o, 0, sizeof *o);
    o->train = rl_train_default_config(1000, 8);
    o->net = rl_unet_default_config();
    o->axis = 2;
    o->rounds = 1;
    o->checkpoint_every = 500;
}

/* ---- pseudolabel ------------------------------------------------------------ */

static const cli_option
    p_model = {"--model", NULL, "RUN_DIR|FILE", "the trained model (RUN_DIR/model.safetensors)",
               "files", CLI_STRING, P(model)},
    p_data = {"--data", NULL, "DIR", "dataset folder", "files", CLI_STRING, P(data)},
    p_out = {"--out", NULL, "DIR", "pseudo-labels and their margins", "files", CLI_STRING, P(out)},
    p_seed = {"--seed", NULL, "N", "seed of --labeled-mode random and of the sampling",
              "labeled", CLI_U64, P(cfg.seed), RANGE(0, 4294967295.0)},
    p_refs = {"--refs", NULL, "DIR",
              "take the references from the labeled training cases of\n"
              "another dataset (same channels and classes)",
              "labeled", CLI_STRING, P(refs)},
    p_sampling = {"--sampling", NULL, "S",
                  "which labeled pixels become references: all,\n"
                  "per-class or proportional (per reference slice)",
                  "matching", CLI_ENUM, R(sampling), WORDS("all", "per-class", "proportional"),
                  VALUES(RL_SAMPLE_ALL, RL_SAMPLE_PER_CLASS, RL_SAMPLE_PROPORTIONAL)},
    p_min_confidence = {"--min-confidence", "--min-margin", "X",
                        "pixels with margin < X get the ignore label K", "matching", CLI_DOUBLE,
                        P(min_confidence), RANGE(-1e30, 1e30), .unset = "off"},
    p_export = {"--export-nnunet", NULL, "DIR", "also write a complete nnU-Net v2 raw dataset there",
                "output", CLI_STRING, P(export_dir)},
    p_force = {"--force", NULL, NULL, "write into non-empty output folders", "output", CLI_FLAG,
               P(force), .value = 1},
    p_axis = {"--axis", NULL, "A", "slicing axis of 3D volumes", "output", CLI_INT, P(cfg.axis),
              RANGE(0, 2), .unset = "the model's"},
    p_threads = {"--threads", NULL, "N", "threads", "output", CLI_INT, P(threads), RANGE(0, 1024),
                 .unset = "all cores"},
    p_quiet = {"--quiet", NULL, NULL, "no progress output", "output", CLI_FLAG, P(quiet),
               .value = 1};

static const cli_option *const pseudolabel_rows[] = {
    &p_model, &p_data, &p_out, &opt_labeled, &opt_labeled_mode, &p_seed, &p_refs, &opt_features,
    &p_sampling, &opt_refs_per_class, &opt_ref_count, &opt_class_floor, &opt_topk,
    &opt_per_image_vote, &opt_similarity, &p_min_confidence, &p_export, &p_force, &p_axis,
    &p_threads, &p_quiet};

static const cli_group pseudolabel_groups[] = {
    {"files", "files:"},
    {"labeled", "references (the labeled cases, as train chooses them):"},
    {"matching", "matching (references: every slice of the reference cases):"},
    {"output", "output:"}};

const cli_command cli_pseudolabel_command = {
    "pseudolabel",
    "usage: reflabel pseudolabel --model RUN_DIR|MODEL.safetensors --data DIR --out DIR "
    "[options]\n"
    "\n"
    "Gives every pixel of the unlabeled training cases of DIR the label of its most\n"
    "similar labeled reference pixel, compared in the model's feature space (Seibold\n"
    "et al., AAAI 2022). Writes OUT/CASE<ending> (pseudo-label, with the input's\n"
    "header and affine) and OUT/CASE_confidence<ending> (the margin: best similarity\n"
    "minus the best similarity of another label). Queries are the training cases\n"
    "without a label or whose label --labeled hides; when those have hidden labels,\n"
    "OUT/pseudolabel_metrics.json scores the pseudo-labels against them.\n"
    "A multi-label model and dataset (\"reflabel_multilabel\") give each pixel its best\n"
    "match's whole bit set, scored per structure; --min-confidence and --export-nnunet\n"
    "are refused there.\n"
    "\n",
    NULL,
    pseudolabel_groups,
    (int)(sizeof pseudolabel_groups / sizeof *pseudolabel_groups),
    pseudolabel_rows,
    (int)(sizeof pseudolabel_rows / sizeof *pseudolabel_rows)};

cli_at pl_options_at(pl_options *o) {
    return (cli_at){{o, &o->cfg.refs, &o->labeled}};
}

void pl_options_init(pl_options *o) {
    memset(o, 0, sizeof *o);
    o->cfg = rl_pseudolabel_default_config();
}
