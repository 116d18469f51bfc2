/* Warnings about a training run, from its step infos (reflabel/health.h). */
#include "reflabel/health.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The longest warning: the share warning with a long class name and log
 * path, or a skip reason naming the cases of a batch. */
#define LINE_MAX_CHARS 2048

enum { SHARE_STARVED = 1, SHARE_REPORTED = 2 };

struct rl_health {
    int64_t steps; /* of the run */
    rl_method method;
    float min_margin;
    double margin_accuracy;
    int num_classes;
    char **class_names; /* (K) copies */
    char *log_name;     /* NULL: none */
    int64_t last_drift; /* step of the last drift warning; -1: none yet */
    int64_t skipped;
    /* the kept share of the first RL_HEALTH_KEPT_STEPS steps of the unlabeled loss */
    int kept_steps;
    double kept_sum;
    /* the current window of class shares */
    int share_steps;
    int64_t share_first;  /* step that opened the window */
    double *share_sum;    /* (K) pl_share summed over the window */
    unsigned char *state; /* (K) 0, SHARE_STARVED (report now) or SHARE_REPORTED */
    /* the last step's warnings */
    int count;
    char (*lines)[LINE_MAX_CHARS]; /* (K + 3): skip, drift, one per class, kept */
};

int rl_health_create(rl_health **out, const rl_train_config *cfg, int num_classes,
                     char *const *class_names, const char *log_name, rl_error *err) {
    *out = NULL;
    if (num_classes < 1)
        return rl_error_set(err, RL_EINVAL, "health checks need at least one class, got %d",
                            num_classes);
    rl_health *h = calloc(1, sizeof *h);
    if (!h) return rl_error_set(err, RL_ENOMEM, "out of memory");
    h->steps = cfg->steps;
    h->method = cfg->semi.method;
    h->min_margin = cfg->semi.refs.min_margin;
    h->margin_accuracy = cfg->semi.margin_accuracy;
    h->num_classes = num_classes;
    h->last_drift = -1;
    h->class_names = calloc((size_t)num_classes, sizeof *h->class_names);
    h->share_sum = calloc((size_t)num_classes, sizeof *h->share_sum);
    h->state = calloc((size_t)num_classes, sizeof *h->state);
    h->lines = calloc((size_t)num_classes + 3, sizeof *h->lines);
    int failed = !h->class_names || !h->share_sum || !h->state || !h->lines;
    for (int c = 0; c < num_classes && !failed; c++)
        failed = !(h->class_names[c] = strdup(class_names[c]));
    if (!failed && log_name) failed = !(h->log_name = strdup(log_name));
    if (failed) {
        rl_health_free(h);
        return rl_error_set(err, RL_ENOMEM, "out of memory");
    }
    *out = h;
    return RL_OK;
}

void rl_health_free(rl_health *h) {
    if (!h) return;
    for (int c = 0; h->class_names && c < h->num_classes; c++) free(h->class_names[c]);
    free(h->class_names);
    free(h->log_name);
    free(h->share_sum);
    free(h->state);
    free(h->lines);
    free(h);
}

/* A step that trained the unlabeled loss: the shares and the kept pixels
 * of the pseudo-labels mean something. */
static int unlabeled_loss_on(const rl_train_step_info *info) {
    return info->lambda > 0 && !info->skipped;
}

/* Class c's mean share of the pseudo-labels over the current window. */
static double share_mean(const rl_health *h, int c) {
    return h->share_sum[c] / RL_HEALTH_SHARE_STEPS;
}

/* Adds a step to the share window. At the step that completes a window,
 * marks the classes to report now SHARE_STARVED and returns how many. The
 * window's sums stay until the next step adds to a new window. */
static int share_window_add(rl_health *h, const rl_train_step_info *info) {
    if (!unlabeled_loss_on(info) || !info->pl_share || isnan(info->pl_drift)) return 0;
    if (h->share_steps == RL_HEALTH_SHARE_STEPS) { /* the previous window was reported */
        h->share_steps = 0;
        for (int c = 0; c < h->num_classes; c++) h->share_sum[c] = 0;
    }
    if (h->share_steps == 0) h->share_first = info->step;
    for (int c = 0; c < h->num_classes; c++) h->share_sum[c] += info->pl_share[c];
    if (++h->share_steps < RL_HEALTH_SHARE_STEPS) return 0;
    int starved = 0;
    for (int c = 0; c < h->num_classes; c++) {
        double labeled = info->labeled_share[c];
        if (h->state[c] == 0 && labeled >= RL_HEALTH_SHARE_FLOOR &&
            share_mean(h, c) < RL_HEALTH_SHARE_RATIO * labeled) {
            h->state[c] = SHARE_STARVED;
            starved++;
        }
    }
    return starved;
}

/* Adds a refpl step to the kept window; true once, at the step that
 * completes it with a mean share below RL_HEALTH_KEPT_MIN. */
static int kept_too_few(rl_health *h, const rl_train_step_info *info) {
    if (h->method != RL_METHOD_REFPL || !unlabeled_loss_on(info) ||
        h->kept_steps >= RL_HEALTH_KEPT_STEPS)
        return 0;
    h->kept_sum += info->pl_kept;
    return ++h->kept_steps == RL_HEALTH_KEPT_STEPS &&
           h->kept_sum / RL_HEALTH_KEPT_STEPS < RL_HEALTH_KEPT_MIN;
}

/* "; see LOG" or nothing. */
static const char *see_log(const rl_health *h, char *buf, size_t size) {
    if (!h->log_name) return "";
    snprintf(buf, size, "; see %s", h->log_name);
    return buf;
}

int rl_health_step(rl_health *h, const rl_train_step_info *info) {
    char see[LINE_MAX_CHARS / 2];
    h->count = 0;
    h->skipped = info->skipped_total;
    if (info->skipped && info->skipped_total <= RL_HEALTH_SKIP_REPORTS)
        snprintf(h->lines[h->count++], LINE_MAX_CHARS, "%s; batch skipped (--skip-nonfinite)%s",
                 info->skip_reason ? info->skip_reason : "not finite",
                 info->skipped_total == RL_HEALTH_SKIP_REPORTS ? "; further skips only in the log"
                                                               : "");
    /* Pseudo-labels whose class shares drift far from the labeled images'
     * are the first sign of collapse: said at most 10 times a run. */
    if (info->lambda > 0 && info->pl_drift > RL_HEALTH_DRIFT &&
        (h->last_drift < 0 || info->step - h->last_drift >= h->steps / 10)) {
        h->last_drift = info->step;
        snprintf(h->lines[h->count++], LINE_MAX_CHARS,
                 "step %lld: pseudo-label class shares differ from the labeled images' by %.2f "
                 "(total variation)%s",
                 (long long)info->step, info->pl_drift, see_log(h, see, sizeof see));
    }
    if (share_window_add(h, info) > 0)
        for (int c = 0; c < h->num_classes; c++) {
            if (h->state[c] != SHARE_STARVED) continue;
            h->state[c] = SHARE_REPORTED;
            snprintf(h->lines[h->count++], LINE_MAX_CHARS,
                     "steps %lld-%lld: '%s' is %.1f%% of the pseudo-labels against %.1f%% of the "
                     "labeled pixels; unless the unlabeled images hold less of it, the "
                     "pseudo-labels are losing it and the network will follow "
                     "(docs/TRAINING.md)%s",
                     (long long)h->share_first, (long long)info->step, h->class_names[c],
                     100.0 * share_mean(h, c), 100.0 * info->labeled_share[c],
                     see_log(h, see, sizeof see));
        }
    if (kept_too_few(h, info)) {
        char threshold[128];
        if (h->margin_accuracy > 0 && h->min_margin > 0)
            snprintf(threshold, sizeof threshold,
                     "--min-margin %g or the margin calibrated for --margin-accuracy %g",
                     h->min_margin, h->margin_accuracy);
        else if (h->margin_accuracy > 0)
            snprintf(threshold, sizeof threshold, "the margin calibrated for --margin-accuracy %g",
                     h->margin_accuracy);
        else
            snprintf(threshold, sizeof threshold, "--min-margin %g", h->min_margin);
        snprintf(h->lines[h->count++], LINE_MAX_CHARS,
                 "only %.1f%% of the unlabeled pixels reached %s in the first %d steps of the "
                 "unlabeled loss, so refpl trains almost on the labeled images alone; a lower %s "
                 "keeps more (docs/TRAINING.md)",
                 100.0 * h->kept_sum / RL_HEALTH_KEPT_STEPS, threshold, RL_HEALTH_KEPT_STEPS,
                 h->margin_accuracy > 0 ? "accuracy" : "--min-margin");
    }
    return h->count;
}

const char *rl_health_warning(const rl_health *h, int i) {
    return i >= 0 && i < h->count ? h->lines[i] : "";
}

int64_t rl_health_skipped(const rl_health *h) { return h->skipped; }
