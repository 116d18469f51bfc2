/* The files of a training run that `reflabel train` writes and --resume
 * reads back (log.csv and log_round<R>.csv, the option words saved in
 * checkpoint.safetensors, labeled.txt), and the choice of labeled cases that
 * train and pseudolabel share. */
#ifndef RL_CLI_RUN_FILES_H
#define RL_CLI_RUN_FILES_H

#include <stddef.h>
#include <stdint.h>

#include "options.h"
#include "reflabel/checkpoint.h"
#include "reflabel/dataset.h"
#include "reflabel/train.h"

#define CHECKPOINT_NAME "checkpoint.safetensors"

/* rl_choose_labeled into a fresh *keep (ds->num_train + 1 bytes, the
 * caller frees it): `--labeled SPEC --labeled-mode MODE --seed N`. */
int cli_choose_labeled(const rl_dataset *ds, const cli_labeled *labeled, uint64_t seed,
                       uint8_t **keep, rl_error *err);

/* A CSV log, kept in memory and rewritten atomically, so that the file on
 * disk is always complete (never a half-written last line). */
typedef struct csv_log {
    char *text;
    size_t len, cap;
} csv_log;

/* Append a line or cell; -1 when out of memory. */
int csv_append(csv_log *log, const char *line);
/* log.csv: the header for ds's classes, and one row per step. */
int csv_header(csv_log *log, const rl_dataset *ds);
int csv_row(csv_log *log, const rl_train_step_info *info, int k, double seconds);
/* --resume: the log written so far, cut back to the rows of steps 1..done
 * (a kill after the log was written but before the state was leaves rows
 * beyond it). Refuses a log that lacks any of those rows or has another
 * header than the one in log, since the resumed log would then not be the
 * run's log. Returns the seconds column of the last kept row in *seconds. */
int resume_log(csv_log *log, const char *log_path, int64_t done, double *seconds, rl_error *err);

/* RUN_DIR/labeled.txt: the ids of the cases whose labels were used. */
int write_labeled_list(const char *path, const rl_dataset *ds, const uint8_t *keep, rl_error *err);

/* Words as a JSON array (the run's option words, class and channel names,
 * stored in every checkpoint); NULL when out of memory. */
char *json_string_array(const char *const *words, int count);

/* The state read by --resume and the words its options are rebuilt from. */
typedef struct resume_input {
    rl_safetensors state;
    int have_state;
    char **saved; /* the run's option words, from the checkpoint */
    int saved_count;
    const char **args; /* "train", the saved words, then the words given now */
    int arg_count;
} resume_input;

/* Reads RUN_DIR/checkpoint.safetensors and its saved option words; refuses
 * a state saved after the first round of --rounds. */
int read_resume_state(const char *dir, resume_input *in, rl_error *err);
void resume_input_free(resume_input *in);

#endif
