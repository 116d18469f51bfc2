/* The reflabel command: one file per subcommand, each exposing
 * int cmd_NAME(int argc, char **argv) that returns the process exit status.
 * Errors are printed as one line "reflabel: <message>" on stderr. */
#ifndef RL_CLI_H
#define RL_CLI_H

#include <stdint.h>

#include "reflabel/checkpoint.h"
#include "reflabel/core.h"
#include "reflabel/unet.h"

/* Prints "reflabel: <msg>\n" on stderr and returns 1 (or 2 for usage errors). */
int cli_fail(const rl_error *err);
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Option parsing helpers: return 0 and set *out, or print an error. */
/* snprintf into a path buffer; a path that does not fit is an error
 * ("path too long") rather than a silently truncated file name. */
int cli_make_path(char *out, size_t size, rl_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The Colin27/AAL files of Debian's mricron-data that `data atlas` and
 * `demo` read: 0 when all are readable, else 1 after one stderr line naming
 * the missing file and the package. */
int cli_check_atlas_sources(void);
/* Usage error for an option given last without its value: "needs a value"
 * when usage lists opt, else "unknown option". Returns 2. */
int cli_missing_value(const char *cmd, const char *opt, const char *usage);
int cli_parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi, int *out);
int cli_parse_float(const char *cmd, const char *opt, const char *s, double lo, double hi,
                    double *out);

/* Runs `python3 <source dir>/<script> <args>` (the Python with the
 * benchmark peers, fixed at build time) and returns the last line of its
 * stdout that starts with '{', parsed; NULL (err filled) if the script fails
 * or prints no JSON. */
struct cJSON;
struct cJSON *cli_run_json_script(const char *script, const char *args, rl_error *err);

int cmd_train(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_evaluate(int argc, char **argv);
int cmd_data_shapes(int argc, char **argv);
int cmd_data_stripes(int argc, char **argv);
int cmd_data_atlas(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_bench_match(int argc, char **argv);
int cmd_bench_train(int argc, char **argv);
int cmd_pseudolabel(int argc, char **argv);
/* Runs data atlas, train, pseudolabel and evaluate in turn and writes a report. */
int cmd_demo(int argc, char **argv);


/* Segments every case of a folder of images (CASE_0000<ending>, ...) into
 * out_dir/CASE<ending>, and with write_confidence also
 * out_dir/CASE_confidence<ending>. */
int cli_predict_folder(rl_unet *net, const char *in_dir, const char *out_dir, int axis,
                       int write_confidence, int quiet, rl_error *err);
/* The same for a multi-label model when multilabel is set: bit-set label
 * maps (rl_predict_case_multilabel, rl_volume_write_bitsets). */
int cli_predict_folder_ex(rl_unet *net, int multilabel, const char *in_dir, const char *out_dir,
                          int axis, int write_confidence, int quiet, rl_error *err);
/* Whether a checkpoint's metadata says "reflabel.multilabel": "true". */
int cli_model_is_multilabel(const rl_safetensors *meta);
/* Scores pred_dir against gt_dir, writes json_path, and prints a per-class
 * table on stdout when print_table is set. class_names may be NULL. */
int cli_evaluate_and_report(const char *pred_dir, const char *gt_dir, int num_classes,
                            int32_t ignore_label, char **class_names, const char *json_path,
                            int print_table, rl_error *err);
/* The same for multi-label label maps when multilabel is set (bit sets;
 * each structure scored on its own; ignore_label unused). */
int cli_evaluate_and_report_ex(const char *pred_dir, const char *gt_dir, int num_classes,
                               int32_t ignore_label, int multilabel, char **class_names,
                               const char *json_path, int print_table, rl_error *err);

#endif
