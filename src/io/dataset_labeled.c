/* The choice of labeled cases (reflabel/dataset.h, rl_select_labeled): the
 * --labeled value as a count, a fraction or a file of case ids, and the
 * selection, evenly spaced or at random from a seeded stream of its own. */
#define _XOPEN_SOURCE 700 /* strtok_r */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/dataset.h"

/* Reads a list of case ids and marks them; unknown ids are errors. */
static int select_from_file(const char *path, int n, const char *const *ids, uint8_t *mask,
                            rl_error *err) {
    char *text = NULL;
    size_t size = 0;
    int rc = rl_read_file(path, (size_t)64 << 20, &text, &size, err);
    if (rc) return rc;
    int line_no = 0, selected = 0;
    char *save = NULL;
    /* strtok_r skips empty lines, which is what we want. */
    for (char *line = strtok_r(text, "\n", &save); line && !rc;
         line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        char *end = line + strlen(line);
        while (end > line && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t')) *--end = '\0';
        while (*line == ' ' || *line == '\t') line++;
        if (!*line || *line == '#') continue;
        int found = -1;
        for (int i = 0; i < n && found < 0; i++)
            if (strcmp(ids[i], line) == 0) found = i;
        if (found < 0)
            rc = rl_error_set(err, RL_EINVAL, "%s: case \"%s\" is not among the training cases",
                              path, line);
        else if (!mask[found]) {
            mask[found] = 1;
            selected++;
        }
    }
    free(text);
    if (!rc && selected == 0) rc = rl_error_set(err, RL_EINVAL, "%s: lists no case", path);
    return rc;
}

/* Parses spec as a count or a fraction of n into *k; leaves *k = 0 when spec
 * is not a number (it is a path then). */
static int parse_amount(const char *spec, int n, int *k, rl_error *err) {
    *k = 0;
    char *end = NULL;
    errno = 0;
    double v = strtod(spec, &end);
    if (end == spec || *end != '\0' || errno) return RL_OK;
    if (strpbrk(spec, ".eE")) {
        if (!(v > 0 && v <= 1))
            return rl_error_set(err, RL_EINVAL, "--labeled %s: a fraction must be in (0, 1]",
                                spec);
        long rounded = lround(v * n);
        *k = rounded < 1 ? 1 : (int)rounded;
        return RL_OK;
    }
    if (!(v >= 1 && v <= n) || v != floor(v))
        return rl_error_set(err, RL_EINVAL,
                            "--labeled %s: the count must be a whole number in 1..%d", spec, n);
    *k = (int)v;
    return RL_OK;
}

int rl_select_labeled(const char *spec, int n_candidates, const char *const *candidate_ids,
                      rl_select_mode mode, uint64_t seed, uint8_t *mask_out, rl_error *err) {
    int n = n_candidates;
    if (n < 1) return rl_error_set(err, RL_EINVAL, "no candidate cases to label");
    memset(mask_out, 0, (size_t)n);
    int k = 0;
    int rc = parse_amount(spec, n, &k, err);
    if (rc) return rc;
    if (k == 0) return select_from_file(spec, n, candidate_ids, mask_out, err);
    if (mode == RL_SELECT_EVEN) {
        for (int i = 0; i < k; i++)
            mask_out[(int)(((int64_t)2 * i + 1) * n / (2 * (int64_t)k))] = 1;
        return RL_OK;
    }
    int *order = malloc(sizeof *order * (size_t)n);
    if (!order) return rl_error_set(err, RL_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) order[i] = i;
    rl_rng rng;
    rl_rng_seed(&rng, seed, 0x1abe1ed); /* a stream of its own: "labeled" */
    rl_rng_shuffle(&rng, order, n);
    for (int i = 0; i < k; i++) mask_out[order[i]] = 1;
    free(order);
    return RL_OK;
}
