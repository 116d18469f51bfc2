/* Shared helpers of the subcommands: error lines and option parsing. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "reflabel/dist.h"
#include "reflabel/atlas.h"

/* Under MPI the commands that run there agree on a failure before they
 * return (rl_dist_agree), so every rank holds the same line and rank 0
 * alone prints it: one line, not one per rank. */
int cli_fail(const rl_error *err) {
    if (rl_dist_rank() == 0)
        fprintf(stderr, "reflabel: %s\n", err && err->msg[0] ? err->msg : "unknown error");
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    if (rl_dist_rank() != 0) return 2; /* the same words, the same error: rank 0 says it */
    va_list ap;
    fprintf(stderr, "reflabel %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'reflabel %s --help')\n", cmd);
    return 2;
}

/* An option at the end of the command line: "needs a value" if usage lists
 * it (as a whole word), else "unknown option", so that a misspelt or
 * foreign flag (say --force where the command has none) is named as such
 * rather than as a known option missing its value. */
int cli_missing_value(const char *cmd, const char *opt, const char *usage) {
    size_t n = strlen(opt);
    for (const char *p = usage ? strstr(usage, opt) : NULL; p && n; p = strstr(p + 1, opt)) {
        int starts = p == usage || p[-1] == ' ' || p[-1] == '\n' || p[-1] == '[';
        char after = p[n];
        int ends = after == ' ' || after == '\n' || after == '=' || after == ']' || after == ',' ||
                   after == '\0';
        if (starts && ends) return cli_usage_error(cmd, "%s needs a value", opt);
    }
    return cli_usage_error(cmd, "unknown option '%s'", opt);
}

int cli_parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi, int *out) {
    if (!s) return cli_usage_error(cmd, "%s needs a value", opt);
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return cli_usage_error(cmd, "%s expects an integer in [%ld, %ld], got '%s'", opt, lo,
                               hi, s);
    *out = (int)v;
    return 0;
}

int cli_parse_float(const char *cmd, const char *opt, const char *s, double lo, double hi,
                    double *out) {
    if (!s) return cli_usage_error(cmd, "%s needs a value", opt);
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
        return cli_usage_error(cmd, "%s expects a number in [%g, %g], got '%s'", opt, lo, hi,
                               s);
    *out = v;
    return 0;
}

cJSON *cli_run_json_script(const char *script, const char *args, rl_error *err) {
    char command[8192];
    snprintf(command, sizeof command, "'%s' '%s/%s' %s", RL_PYTHON, RL_SOURCE_DIR, script, args);
    FILE *p = popen(command, "r");
    if (!p) {
        rl_error_set(err, RL_EIO, "cannot run %s", command);
        return NULL;
    }
    char line[8192], last[8192] = "";
    while (fgets(line, sizeof line, p))
        if (line[0] == '{') snprintf(last, sizeof last, "%s", line);
    int status = pclose(p);
    cJSON *json = last[0] ? cJSON_Parse(last) : NULL;
    if (status != 0 || !json) {
        cJSON_Delete(json);
        rl_error_set(err, RL_EIO, "%s failed (status %d): %s", script, status,
                     last[0] ? last : "no JSON line");
        return NULL;
    }
    return json;
}

int cli_check_atlas_sources(void) {
    const char *sources[] = {RL_ATLAS_DEFAULT_T1, RL_ATLAS_DEFAULT_AAL, RL_ATLAS_DEFAULT_TXT};
    for (int k = 0; k < 3; k++)
        if (access(sources[k], R_OK) != 0) {
            fprintf(stderr,
                    "reflabel: %s is missing: install the atlas with "
                    "`apt-get install mricron-data`\n",
                    sources[k]);
            return 1;
        }
    return 0;
}

int cli_make_path(char *out, size_t size, rl_error *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size)
        return rl_error_set(err, RL_EINVAL, "path too long: %.200s...", out);
    return RL_OK;
}
