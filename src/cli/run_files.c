/* The files of a training run that train writes and --resume reads back:
 * log.csv, the saved option words, labeled.txt (run_files.h). */
#include "run_files.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_choose_labeled(const rl_dataset *ds, const cli_labeled *labeled, uint64_t seed,
                       uint8_t **keep, rl_error *err) {
    *keep = calloc((size_t)ds->num_train + 1, 1);
    if (!*keep) return rl_error_set(err, RL_ENOMEM, "out of memory");
    return rl_choose_labeled(ds, labeled->spec, labeled->mode, seed, *keep, err);
}

int csv_append(csv_log *log, const char *line) {
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

int csv_header(csv_log *log, const rl_dataset *ds) {
    char col[512];
    if (csv_append(log, "step,loss,ce,dice,lr,grad_norm,unsup_loss,lambda,pl_kept,pl_accuracy,"
                        "pl_drift,pl_min_margin,matched_accuracy,pred_accuracy"))
        return -1;
    for (int pass = 0; pass < 3; pass++)
        for (int c = 0; c < ds->num_classes; c++) {
            static const char *prefix[] = {"pl_dice_", "pl_share_", "labeled_share_"};
            snprintf(col, sizeof col, ",%s%s", prefix[pass], ds->class_names[c]);
            if (csv_append(log, col)) return -1;
        }
    return csv_append(log, ",skipped,seconds\n");
}

int csv_row(csv_log *log, const rl_train_step_info *info, int k, double seconds) {
    char cell[64];
    snprintf(cell, sizeof cell, "%lld", (long long)info->step);
    if (csv_append(log, cell)) return -1;
    double values[] = {info->loss, info->ce, info->dice, info->lr, info->grad_norm,
                       info->unsup_loss, info->lambda, info->pl_kept, info->pl_accuracy,
                       info->pl_drift, info->pl_min_margin, info->matched_accuracy,
                       info->pred_accuracy};
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

char *json_string_array(const char *const *words, int count) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < count; i++) cJSON_AddItemToArray(a, cJSON_CreateString(words[i]));
    char *s = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return s;
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
int resume_log(csv_log *log, const char *log_path, int64_t done, double *seconds,
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

int write_labeled_list(const char *path, const rl_dataset *ds, const uint8_t *keep,
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

void resume_input_free(resume_input *in) {
    if (in->have_state) rl_safetensors_free(&in->state);
    for (int i = 0; i < in->saved_count; i++) free(in->saved[i]);
    free(in->saved);
    free(in->args);
    memset(in, 0, sizeof *in);
}

/* Reads RUN_DIR/checkpoint.safetensors and its saved option words. */
int read_resume_state(const char *dir, resume_input *in, rl_error *err) {
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
