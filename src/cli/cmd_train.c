/* reflabel train: train a U-Net on an nnU-Net raw dataset.
 *
 * Under MPI (reflabel/dist.h; docs/DISTRIBUTED.md) every rank reads the
 * data and runs the same loop, each rank's network pass on its share of
 * every step's images (src/train/shard.c), so every rank holds the same
 * weights after each step. Rank 0 alone makes the run folder and writes
 * the log, the checkpoints and the model; the other ranks print nothing.
 * A step's failures are the same on every rank (same data, same weights)
 * or agreed inside the step; everything else that one rank can fail alone
 * (reading the data, writing a file) ends in rl_dist_agree. */
#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "options.h"
#include "progress.h"
#include "run_files.h"
#include "reflabel/checkpoint.h"
#include "reflabel/dist.h"
#include "reflabel/health.h"
#include "reflabel/metrics.h"
#include "reflabel/pseudolabel.h"
#include "reflabel/rounds.h"
#include "reflabel/train.h"

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

/* Parses the words into o, which starts from the library's defaults,
 * checks what no single option can, and settles the defaults that follow
 * other options. Returns 0, 2 after a usage error, or -1 after --help. */
static int parse_options(int argc, char **argv, train_options *o) {
    const cli_command *cmd = &cli_train_command;
    train_options defaults;
    train_options_init(&defaults);
    train_options_init(o);
    cli_at at = train_options_at(o), default_at = train_options_at(&defaults);
    int rc = cli_parse(cmd, argc, argv, &at, &o->given, &default_at);
    if (rc) return rc;
    if (!o->data || !o->out)
        return cli_usage_error("train", "--data and --out (or --resume RUN_DIR) are required");
    rl_train_config *t = &o->train;
    if (cli_given_flag(cmd, &o->given, "--margin-accuracy") && t->semi.margin_accuracy > 0 &&
        t->semi.method != RL_METHOD_REFPL)
        return cli_usage_error("train", "--margin-accuracy is for --method refpl");
    /* the optimizer's own defaults, but AdamW's weight decay of the run
     * defaults; the warm-up as a share of the steps */
    rl_train_config d = rl_train_default_config(t->steps, t->batch);
    float weight_decay = t->optim.weight_decay;
    t->optim = rl_optim_default_config(t->optim.kind);
    if (cli_given_flag(cmd, &o->given, "--weight-decay")) t->optim.weight_decay = weight_decay;
    else if (t->optim.kind == RL_OPTIM_ADAMW) t->optim.weight_decay = d.optim.weight_decay;
    if (!cli_given_flag(cmd, &o->given, "--warmup"))
        t->schedule.warmup_steps = d.schedule.warmup_steps;
    t->schedule.total_steps = t->steps;
    return 0;
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
    if (!cli_given_flag(&cli_train_command, &r->o.given, "--sampling"))
        pc.refs.sampling = RL_SAMPLE_ALL;
    pc.axis = r->o.axis;
    pc.ignore_label = r->ds.ignore_label;
    pc.seed = r->cfg.seed;
    pc.multilabel = r->ds.multilabel;
    return pc;
}

/* Training settings and dataset facts stored in the checkpoint's metadata,
 * so that a model file alone says what it is and how it was made: the
 * option table's values as trained (cfg, with the method as given). */
static char *training_json(const train_run *r, const rl_train_config *cfg, int64_t done) {
    const cli_command *cmd = &cli_train_command;
    train_options v = r->o;
    v.train = *cfg;
    v.train.semi.method = r->o.train.semi.method;
    if (!v.train.semi.unlabeled_batch) v.train.semi.unlabeled_batch = cfg->batch;
    v.steps_done = done;
    cli_at at = train_options_at(&v);
    cJSON *j = cJSON_CreateObject();
    cli_json_section(cmd, CLI_JSON_TOP, &at, j);
    if (cfg->semi.method != RL_METHOD_SUPERVISED)
        cli_json_section(cmd, CLI_JSON_SEMI, &at, cJSON_AddObjectToObject(j, "semi"));
    if (r->o.rounds > 1) { /* the matching between rounds */
        rl_pseudolabel_config pc = rounds_pseudolabel_config(r);
        at.in[CLI_IN_REFS] = &pc.refs;
        cli_json_section(cmd, CLI_JSON_ROUNDS, &at, cJSON_AddObjectToObject(j, "rounds"));
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

static int save_model(const train_run *r, const rl_unet *net, const char *path, int64_t done,
                      rl_error *err) {
    const rl_dataset *ds = &r->ds;
    char *training = training_json(r, &r->cfg, done);
    char *classes = json_string_array((const char *const *)ds->class_names, ds->num_classes);
    char *channels = json_string_array((const char *const *)ds->channel_names, ds->num_channels);
    char axis[8];
    snprintf(axis, sizeof axis, "%d", r->o.axis);
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

/* One checkpoint: log.csv, then the resumable state, then the plain model,
 * each written atomically. The log goes first so that it always holds at
 * least the rows of the state on disk (a resume drops rows beyond it); the
 * state is one file, so it can never be half old, half new. */
static int write_checkpoint(const train_run *r, const rl_trainer *tr, const rl_unet *net,
                            int round, const csv_log *log, const char *log_path, rl_error *err) {
    const train_options *o = &r->o;
    char path[4096];
    int rc = rl_write_file_atomic(log_path, log->text, log->len, err);
    char *args = json_string_array(r->args, r->arg_count);
    char round_text[16];
    snprintf(round_text, sizeof round_text, "%d", round);
    rl_kv extra[] = {{"reflabel.args", args}, {"reflabel.round", round_text}};
    if (!rc && !args) rc = rl_error_set(err, RL_ENOMEM, "out of memory");
    snprintf(path, sizeof path, "%s/%s", o->out, CHECKPOINT_NAME);
    if (!rc) rc = rl_trainer_save(tr, path, extra, 2, err);
    free(args);
    snprintf(path, sizeof path, "%s/model.safetensors", o->out);
    if (!rc) rc = save_model(r, net, path, rl_trainer_steps_done(tr), err);
    return rc;
}

/* Collective: rank 0 writes, every rank learns whether it could. */
static int save_checkpoint(const train_run *r, const rl_trainer *tr, const rl_unet *net,
                           int round, const csv_log *log, const char *log_path, rl_error *err) {
    int rc = rl_dist_rank() == 0 ? write_checkpoint(r, tr, net, round, log, log_path, err) : RL_OK;
    return rl_dist_agree(rc, err);
}

/* Collective: whether any rank was interrupted (mpirun passes a signal on
 * to every rank, but not at the same step), so that all stop after the
 * same step. */
static int any_interrupted(rl_error *err, int *rc) {
    int64_t any = interrupted ? 1 : 0;
    if (rl_dist_size() > 1 && !*rc) *rc = rl_dist_sum_i64(&any, 1, err);
    return any > 0;
}

/* Collective, after a round: every rank's weights are the same bits
 * (shard.c sums the gradients so that they must be); a difference would
 * mean ranks that trained different models, so it fails the run. */
static int check_same_weights(rl_unet *net, int quiet, rl_error *err) {
    if (rl_dist_size() == 1) return RL_OK;
    const float *p = rl_unet_params(net);
    size_t n = rl_unet_param_count(net);
    uint64_t hash = rl_dist_hash(RL_DIST_HASH_START, p, n * sizeof *p), root = hash;
    int rc = rl_dist_broadcast(&root, sizeof root, 0, err);
    if (!rc && root != hash)
        rc = rl_error_set(err, RL_EINVAL,
                          "the weights of rank %d differ from rank 0's after training (hash "
                          "%016llx, rank 0 %016llx)",
                          rl_dist_rank(), (unsigned long long)hash, (unsigned long long)root);
    rc = rl_dist_agree(rc, err);
    if (!rc && !quiet && rl_dist_rank() == 0)
        fprintf(stderr, "reflabel train: the weights are the same on all %d ranks (hash %016llx)\n",
                rl_dist_size(), (unsigned long long)hash);
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
    const int64_t steps = o->train.steps;
    rl_trainer *tr = NULL;
    csv_log log = {0};
    char log_path[4096];
    if (round == 1) snprintf(log_path, sizeof log_path, "%s/log.csv", o->out);
    else snprintf(log_path, sizeof log_path, "%s/log_round%d.csv", o->out, round);
    int rc = rl_trainer_create(&tr, net, &r->cfg, &r->set, err);
    /* The run folder is made once the trainer has accepted the options, so
     * that a refused run leaves nothing behind. */
    rc = rl_dist_agree(rc, err);
    if (!rc && round == 1) rc = rl_dist_agree(rl_dist_rank() == 0 ? make_run_dir(r, err) : RL_OK, err);
    if (!rc && csv_header(&log, &r->ds)) rc = rl_error_set(err, RL_ENOMEM, "out of memory");
    double seconds_before = 0;
    if (!rc && r->resume_state && round == 1) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", o->out, CHECKPOINT_NAME);
        rc = rl_trainer_restore(tr, r->resume_state, path, err);
        if (!rc) rc = resume_log(&log, log_path, rl_trainer_steps_done(tr), &seconds_before, err);
        rc = rl_dist_agree(rc, err);
    }
    int64_t start = tr ? rl_trainer_steps_done(tr) : 0;
    /* rank 0 speaks for the launch */
    const int quiet = o->quiet || rl_dist_rank() != 0;
    /* From here on, Ctrl-C saves before stopping (the line below tells a
     * watching test that it does). */
    catch_interrupts(1);
    if (!rc && !quiet)
        fprintf(stderr,
                "reflabel train: %s%s, %d slices (%d labeled) of %d cases, patch %dx%d, "
                "batch %d, %lld steps, %zu parameters%s\n",
                rl_method_name(r->cfg.semi.method), round > 1 ? " (pseudo-label round)" : "",
                r->set.count, r->set.labeled_count, r->ds.num_train, r->cfg.patch_h,
                r->cfg.patch_w, r->cfg.batch, (long long)steps, rl_unet_param_count(net),
                start > 0 ? ", resumed" : "");
    if (!rc && !quiet && rl_dist_size() > 1)
        fprintf(stderr,
                "reflabel train: %d ranks, each running the network on its share of every "
                "step's images, %d threads each\n",
                rl_dist_size(), rl_get_threads());
    if (!rc && start > 0 && !quiet)
        fprintf(stderr, "reflabel train: resuming %s at step %lld of %lld\n", o->out,
                (long long)start, (long long)steps);
    rl_health *health = NULL;
    if (!rc) rc = rl_health_create(&health, &r->cfg, r->ds.num_classes, r->ds.class_names,
                                   log_path, err);
    rl_progress bar;
    rl_progress_start(&bar, "train", (long)steps, quiet);
    double t0 = rl_now_seconds() - seconds_before, ema = NAN;
    int stop = 0;
    while (!rc && rl_trainer_steps_done(tr) < steps && !(stop = any_interrupted(err, &rc))) {
        rl_train_step_info info;
        rc = rl_trainer_step(tr, &info, err);
        if (rc) break;
        if (!info.skipped) ema = isnan(ema) ? info.loss : 0.95 * ema + 0.05 * info.loss;
        if (csv_row(&log, &info, r->ds.num_classes, rl_now_seconds() - t0))
            rc = rl_error_set(err, RL_ENOMEM, "out of memory");
        int warnings = rl_health_step(health, &info);
        if (rl_dist_rank() != 0) warnings = 0; /* rank 0 speaks for the launch */
        if (warnings > 0) rl_progress_finish(&bar);
        for (int i = 0; i < warnings; i++)
            fprintf(stderr, "reflabel train: warning: %s\n", rl_health_warning(health, i));
        char line[256];
        if (r->cfg.semi.method != RL_METHOD_SUPERVISED && !isnan(info.pl_accuracy))
            snprintf(line, sizeof line, "loss %.4f pl-acc %.3f", ema, info.pl_accuracy);
        else
            snprintf(line, sizeof line, "loss %.4f", ema);
        rl_progress_update(&bar, (long)info.step, line);
        int last = info.step == steps;
        if (!rc && (last || (o->checkpoint_every && info.step % o->checkpoint_every == 0)))
            rc = save_checkpoint(r, tr, net, round, &log, log_path, err);
    }
    rl_progress_finish(&bar);
    if (rc == RL_ENONFINITE) {
        /* The log up to the failing step helps to find the cause; the state
         * on disk stays at the last checkpoint, from which --resume (with
         * --skip-nonfinite, or other options in a new run) can go on. */
        rl_error ignored;
        if (rl_dist_rank() == 0) rl_write_file_atomic(log_path, log.text, log.len, &ignored);
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
    if (!rc && stop) {
        /* Ctrl-C: save a state to resume from, then stop. */
        rc = save_checkpoint(r, tr, net, round, &log, log_path, err);
        if (!rc)
            rc = rl_error_set(err, RL_EINTERRUPTED,
                              "interrupted at step %lld; continue with: reflabel train --resume %s",
                              (long long)rl_trainer_steps_done(tr), o->out);
    }
    catch_interrupts(0);
    int64_t skipped = health ? rl_health_skipped(health) : 0;
    if (!rc && skipped > 0 && rl_dist_rank() == 0)
        fprintf(stderr, "reflabel train: warning: %lld of %lld batches skipped as not finite (see "
                        "the skipped column of %s)\n",
                (long long)skipped, (long long)steps, log_path);
    if (!rc) rc = check_same_weights(net, quiet, err);
    if (!rc && !quiet)
        fprintf(stderr,
                "reflabel train: %lld steps in %.1f s, final loss %.4f, model "
                "%s/model.safetensors\n",
                (long long)(steps - start), rl_now_seconds() - t0 - seconds_before, ema, o->out);
    free(log.text);
    rl_health_free(health);
    rl_trainer_free(tr);
    return rc;
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
    r->net_config = o->net;
    r->net_config.in_channels = r->ds.num_channels;
    r->net_config.num_classes = rl_sample_set_outputs(&r->set);
    r->cfg = o->train;
    if (!r->cfg.patch_h)
        rl_train_auto_patch(&r->set, o->net.depth, 512, &r->cfg.patch_h, &r->cfg.patch_w);
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
    /* the cases shared among the ranks; the scores are rank 0's */
    int rc = cli_predict_folder_ex(net, r->ds.multilabel, ts_images, pred_dir, o->axis, 0,
                                   o->quiet, err);
    if (!rc && have_labels && rl_dist_rank() == 0)
        rc = cli_evaluate_and_report_ex(pred_dir, ts_labels, r->ds.num_classes,
                                        r->ds.ignore_label >= 0 ? r->ds.ignore_label
                                                                : RL_METRICS_NO_IGNORE,
                                        r->ds.multilabel, r->ds.class_names, json, !o->quiet,
                                        err);
    return rl_dist_agree(rc, err);
}

/* ---- --resume ------------------------------------------------------------------ */

/* --resume RUN_DIR: rebuilds the options from the checkpoint followed by
 * the words given now (later words win, as on any command line), and
 * refuses words that would change what the run computes. Returns 0, an
 * exit status for a usage error, or -1 after --help. */
static int resume_options(int argc, char **argv, const char *dir, train_run *r, resume_input *in,
                          rl_error *err) {
    int rc = rl_dist_agree(read_resume_state(dir, in, err), err);
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
    /* Options that decide what the run computes must agree; the others
     * (resume_free rows) change how it is carried out (--threads only in
     * the last bits of float sums; see docs/TRAINING.md). */
    char was[1024], now[1024];
    cli_at at_was = train_options_at(&saved), at_now = train_options_at(&r->o);
    const cli_option *c = cli_first_conflict(&cli_train_command, &at_was, &saved.given, &at_now,
                                             &r->o.given, was, now, sizeof was);
    if (c) {
        rl_error_set(err, RL_EINVAL,
                     "--resume %s: %s %s conflicts with the run's %s %s (a resumed run keeps "
                     "the options it was started with)",
                     dir, c->flag, now, c->flag, was);
        return cli_fail(err);
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
    rl_semi_config *sc = &r->o.train.semi;
    if (sc->method != RL_METHOD_REFPL ||
        cli_given_flag(&cli_train_command, &r->o.given, "--margin-accuracy") ||
        !(sc->margin_accuracy > 0))
        return;
    int refs = sc->ref_images > 0 ? sc->ref_images : r->o.train.batch;
    const char *why = rl_margin_calibration_obstacle(&r->set, refs);
    if (!why) return;
    sc->margin_accuracy = 0;
    fprintf(stderr,
            "reflabel train: note: no margin calibration (--margin-accuracy): %s; pseudo-labels "
            "are thresholded at --min-margin %g alone\n",
            why, sc->refs.min_margin);
}

/* Collective, after the data are read (rc: how that went here): every
 * rank must train on the same slices, or the ranks' shares of a batch
 * would be different images than one process draws, so each compares a
 * fingerprint of its slices (sizes, labeled choice, pixels and labels)
 * with rank 0's; a node with another copy of the data stops every rank. */
static int same_data_on_all_ranks(const train_run *r, int rc, rl_error *err) {
    rc = rl_dist_agree(rc, err);
    if (rc || rl_dist_size() == 1) return rc;
    const rl_sample_set *set = &r->set;
    uint64_t h = rl_dist_hash(RL_DIST_HASH_START, &set->count, sizeof set->count);
    for (int i = 0; i < set->count; i++) {
        const rl_sample *sm = &set->samples[i];
        size_t hw = (size_t)sm->h * sm->w;
        int head[4] = {sm->h, sm->w, sm->case_index, sm->labels != NULL};
        h = rl_dist_hash(h, head, sizeof head);
        h = rl_dist_hash(h, sm->image, hw * (size_t)set->channels * sizeof *sm->image);
        if (sm->labels) h = rl_dist_hash(h, sm->labels, hw * sizeof *sm->labels);
    }
    uint64_t root = h;
    rc = rl_dist_broadcast(&root, sizeof root, 0, err);
    if (!rc && root != h)
        rc = rl_error_set(err, RL_EINVAL,
                          "%s: the training slices read here differ from rank 0's (another "
                          "copy of the data, or another --labeled choice)",
                          r->o.data);
    return rl_dist_agree(rc, err);
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
    if (rl_dist_agree(rl_dataset_open(o->data, &r.ds, &err), &err)) {
        rl_dataset_free(&r.ds);
        resume_input_free(&resume);
        return cli_fail(&err);
    }
    rl_unet *net = NULL;
    csv_log rounds_log = {0};
    int rc = cli_choose_labeled(&r.ds, &o->labeled, o->train.seed, &r.keep, &err);
    if (!rc) rc = rl_sample_set_load(&r.set, &r.ds, r.ds.train, r.ds.num_train, r.keep, o->axis, &err);
    rc = same_data_on_all_ranks(&r, rc, &err);
    if (!rc) default_margin_off_where_impossible(&r);
    if (!rc) build_configs(&r);
    if (!rc && o->rounds > 1 && r.set.labeled_count == r.set.count)
        rc = rl_error_set(&err, RL_EINVAL, "--rounds needs unlabeled training cases (see --labeled)");
    /* A bit set has no spare value for "no label", so multi-label rounds
     * keep every voxel's copied mask. */
    if (!rc && o->rounds > 1 && r.ds.multilabel && o->train.semi.refs.min_margin > 0)
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
        rc = rl_unet_create(&net, &r.net_config, o->train.seed + (uint64_t)round - 1, &err);
        if (!rc) rc = train_round(&r, net, round, &err);
        if (!rc && round < o->rounds) {
            /* every rank labels every case (the next round's data) */
            rc = rl_dist_agree(pseudo_label_round(&r, net, round, &rounds_log, &err), &err);
            /* later rounds are supervised: the pseudo-labels are their
             * labels, and no teacher predicts anything */
            r.cfg.semi.method = RL_METHOD_SUPERVISED;
            r.cfg.semi.teacher = RL_TEACHER_SELF;
            r.cfg.semi.strong_views = -1;
            r.cfg.semi.ref_images = 0;
            r.cfg.semi.consistency_weight = 0;
            if (!rc && rl_dist_rank() == 0) {
                char path[4096];
                snprintf(path, sizeof path, "%s/rounds.csv", o->out);
                rc = rl_write_file_atomic(path, rounds_log.text, rounds_log.len, &err);
            }
            rc = rl_dist_agree(rc, &err);
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
