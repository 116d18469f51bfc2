/* The reflabel command: one file per subcommand, each exposing
 * int cmd_NAME(int argc, char **argv) that returns the process exit status.
 * Errors are printed as one line "reflabel: <message>" on stderr. */
#ifndef RL_CLI_H
#define RL_CLI_H

#include "reflabel/core.h"

/* Prints "reflabel: <msg>\n" on stderr and returns 1 (or 2 for usage errors). */
int cli_fail(const rl_error *err);
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Option parsing helpers: return 0 and set *out, or print an error. */
int cli_parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi, int *out);
int cli_parse_float(const char *cmd, const char *opt, const char *s, double lo, double hi,
                    double *out);

int cmd_bench_match(int argc, char **argv);
int cmd_bench_train(int argc, char **argv);

#endif
