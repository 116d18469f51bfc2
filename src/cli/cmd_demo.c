/* reflabel demo: the first command a new user runs. It builds (or reuses)
 * the 2 mm brain atlas dataset, trains `refpl` with the labels of 5% of the
 * training slices, pseudo-labels the other slices, scores pseudo-labels and
 * test predictions against the expert labels, and writes report.html.
 *
 * The demo only orchestrates: every step is an ordinary `reflabel ...`
 * command line, run in this process through its cmd_* entry point and
 * listed verbatim in the report, so that a user can rerun or vary any step
 * by hand. */
#include <ctype.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "reflabel/atlas.h"
#include "reflabel/dataset.h"
#include "report.h"

/* ---- the training preset: the ONE place to tune what the demo trains ------- */

typedef struct demo_preset {
    const char *name;
    const char *train_args[24];      /* options of `reflabel train`, NULL-terminated */
    const char *pseudolabel_args[8]; /* options of `reflabel pseudolabel`, NULL-terminated */
    double minutes;                  /* the whole demo on 2 idle cores (docs/DEMO.md) */
} demo_preset;

static const demo_preset demo_presets[] = {
    {"default",
     {"--method", "refpl", "--steps", "400", "--batch", "4", "--depth", "4", "--width", "16",
      "--lr", "2e-3", NULL},
     {NULL},
     2},
    {"quick",
     {"--method", "refpl", "--steps", "100", "--batch", "4", "--depth", "4", "--width", "16",
      "--lr", "2e-3", NULL},
     {NULL},
     1},
    /* not in --help: the end-to-end test, seconds; the pseudo-labels match
     * 64 pixels per class and reference slice instead of all of them */
    {"smoke",
     {"--method", "refpl", "--steps", "2", "--batch", "2", "--depth", "2", "--width", "4", NULL},
     {"--sampling", "per-class", "--per-class", "64", NULL},
     0.2},
};
#define DEMO_NUM_PRESETS ((int)(sizeof demo_presets / sizeof *demo_presets))

/* Share of the training slices that keep their expert label, and how they
 * are chosen: evenly spaced, hence the same slices for every seed. */
#define DEMO_LABELED "0.05"
#define DEMO_LABELED_MODE "even"
/* Overlay rows per group (pseudo-labeled, test) in the report. */
#define DEMO_OVERLAY_CASES 4

static void print_usage(void) {
    printf("usage: reflabel demo [--out DIR] [--threads N] [--seed N] [--quick]\n"
           "\n"
           "The first command to run. Builds the 2 mm brain MRI dataset of\n"
           "'reflabel data atlas' (Colin27 T1 + AAL lobes, Debian's mricron-data) in\n"
           "DIR/data, or reuses it; keeps the expert labels of only 5%% of the training\n"
           "slices (evenly spaced); trains a U-Net with reference-guided pseudo-labels\n"
           "(--method refpl); pseudo-labels the other training slices; scores the\n"
           "pseudo-labels and the test predictions against the expert labels; and writes\n"
           "DIR/report/report.html (overlays, training curves, Dice per class).\n"
           "About %.0f minutes on 2 cores (--quick: about %.0f).\n"
           "\n"
           "  --out DIR     output folder (reflabel-demo)\n"
           "  --threads N   threads (all cores)\n"
           "  --seed N      seed of every random choice (0)\n"
           "  --quick       a shorter training: a rougher model, sooner\n",
           demo_presets[0].minutes, demo_presets[1].minutes);
}

typedef struct demo_options {
    const char *out;
    int threads;
    long seed;
    const demo_preset *preset;
} demo_options;

/* Returns 0, -1 after --help, or the exit status of a usage error. */
static int parse_options(int argc, char **argv, demo_options *o) {
    memset(o, 0, sizeof *o);
    o->out = "reflabel-demo";
    o->preset = &demo_presets[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        double d;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_usage();
            return -1;
        } else if (!strcmp(a, "--quick")) {
            o->preset = &demo_presets[1];
            continue;
        }
        int takes_value = !strcmp(a, "--out") || !strcmp(a, "--threads") ||
                          !strcmp(a, "--seed") || !strcmp(a, "--preset");
        if (!takes_value) return cli_usage_error("demo", "unknown option '%s'", a);
        if (!v) return cli_usage_error("demo", "%s needs a value", a);
        if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--threads")) rc = cli_parse_int("demo", a, v, 0, 1024, &o->threads);
        else if (!strcmp(a, "--seed")) {
            rc = cli_parse_float("demo", a, v, 0, 4294967295.0, &d);
            o->seed = (long)d;
        } else { /* --preset, not in --help: see demo_presets */
            o->preset = NULL;
            for (int p = 0; p < DEMO_NUM_PRESETS; p++)
                if (!strcmp(v, demo_presets[p].name)) o->preset = &demo_presets[p];
            if (!o->preset) rc = cli_usage_error("demo", "unknown preset '%s'", v);
        }
        if (rc) return rc;
        i++;
    }
    if (!o->out[0]) return cli_usage_error("demo", "--out must not be empty");
    return 0;
}

/* ---- command lines ---------------------------------------------------------------- */

#define DEMO_MAX_ARGS 64

/* One `reflabel <name> ...` invocation: argv as the cmd_* entry point
 * expects it (argv[0] is the last word of the name). */
typedef struct command {
    const char *name; /* "train", "data atlas", ... */
    int (*entry)(int argc, char **argv);
    int argc;
    char *argv[DEMO_MAX_ARGS];
    int out_of_memory;
} command;

static void command_add(command *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void command_add(command *c, const char *fmt, ...) {
    if (c->argc >= DEMO_MAX_ARGS) {
        c->out_of_memory = 1;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!s) {
        c->out_of_memory = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    c->argv[c->argc++] = s;
}

static void command_start(command *c, const char *name, int (*entry)(int, char **)) {
    memset(c, 0, sizeof *c);
    c->name = name;
    c->entry = entry;
    const char *last = strrchr(name, ' ');
    command_add(c, "%s", last ? last + 1 : name);
}

static void command_free(command *c) {
    for (int i = 0; i < c->argc; i++) free(c->argv[i]);
    c->argc = 0;
}

/* Appends " ARG" at line[*len] in its shell form: as it is when every
 * character is one that no shell treats specially, else in single quotes
 * (a quote inside becoming '\''). Needs 4 * strlen(arg) + 3 more bytes. */
static void append_shell_word(char *line, size_t *len, const char *arg) {
    int plain = arg[0] != '\0';
    for (const char *p = arg; *p; p++)
        plain &= isalnum((unsigned char)*p) || strchr("-_./=:,+%@", *p) != NULL;
    line[(*len)++] = ' ';
    if (!plain) line[(*len)++] = '\'';
    for (const char *p = arg; *p; p++) {
        if (*p == '\'') {
            memcpy(line + *len, "'\\''", 4);
            *len += 4;
        } else {
            line[(*len)++] = *p;
        }
    }
    if (!plain) line[(*len)++] = '\'';
    line[*len] = '\0';
}

/* "reflabel train --data ..." for the terminal and the report. */
static char *command_line(const command *c) {
    size_t size = sizeof "reflabel " + strlen(c->name);
    for (int i = 1; i < c->argc; i++) size += 4 * strlen(c->argv[i]) + 3;
    char *line = malloc(size);
    if (!line) return NULL;
    size_t len = (size_t)snprintf(line, size, "reflabel %s", c->name);
    for (int i = 1; i < c->argc; i++) append_shell_word(line, &len, c->argv[i]);
    return line;
}

/* ---- the demo ------------------------------------------------------------------------- */

typedef struct demo_run {
    demo_options o;
    char data[4096], run[4096], pseudo[4096], hidden[4096], pseudo_eval[4096], test_eval[4096],
        report[4096];
    char *lines[16]; /* what was run, for the report */
    int num_lines;
    int step, num_steps;
} demo_run;

static int join(char *out, size_t size, const char *dir, const char *name) {
    return snprintf(out, size, "%s/%s", dir, name) < (int)size ? 0 : -1;
}

static int set_paths(demo_run *d) {
    const char *out = d->o.out;
    return join(d->data, sizeof d->data, out, "data") || join(d->run, sizeof d->run, out, "run") ||
           join(d->pseudo, sizeof d->pseudo, out, "pseudolabels") ||
           join(d->hidden, sizeof d->hidden, out, "hidden_labels") ||
           join(d->pseudo_eval, sizeof d->pseudo_eval, out, "pseudolabels_eval.json") ||
           join(d->test_eval, sizeof d->test_eval, d->run, "test_metrics.json") ||
           join(d->report, sizeof d->report, out, "report");
}

/* Remembers a line (a command or a '#' note) for the report. */
static int note_line(demo_run *d, const char *line) {
    if (d->num_lines >= (int)(sizeof d->lines / sizeof *d->lines)) return -1;
    return (d->lines[d->num_lines++] = strdup(line)) ? 0 : -1;
}

static int out_of_memory(void) {
    fprintf(stderr, "reflabel: out of memory\n");
    return 1;
}

/* Runs one command, announced on stderr; returns its exit status (its own
 * error line is already printed). */
static int run_command(demo_run *d, command *c) {
    char *line = c->out_of_memory ? NULL : command_line(c);
    if (!line || note_line(d, line)) {
        free(line);
        command_free(c);
        return out_of_memory();
    }
    fprintf(stderr, "\nreflabel demo: [%d/%d] %s\n", ++d->step, d->num_steps, line);
    free(line);
    int status = c->entry(c->argc, c->argv);
    command_free(c);
    return status;
}

static int dataset_is_built(const demo_run *d) {
    char path[4096];
    /* the atlas writes dataset.json last: its presence means a complete build */
    return !join(path, sizeof path, d->data, "dataset.json") && access(path, R_OK) == 0;
}

static int is_listed(const char *list, const char *id) {
    size_t n = strlen(id);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, "\n");
        if (len == n && !strncmp(p, id, n)) return 1;
        p += len + (p[len] == '\n');
    }
    return 0;
}

/* Removes the label files (names ending in `ending`) of an earlier demo. */
static int clear_label_files(const char *dir, const char *ending, rl_error *err) {
    DIR *dp = opendir(dir);
    if (!dp) return rl_error_set(err, RL_EIO, "%s: cannot list the folder", dir);
    struct dirent *e;
    int rc = RL_OK;
    size_t n = strlen(ending);
    while (!rc && (e = readdir(dp)) != NULL) {
        size_t len = strlen(e->d_name);
        char path[4096];
        if (e->d_name[0] == '.' || len <= n || strcmp(e->d_name + len - n, ending) != 0) continue;
        if (join(path, sizeof path, dir, e->d_name) || unlink(path) != 0)
            rc = rl_error_set(err, RL_EIO, "%s/%s: cannot remove the file of an earlier demo", dir,
                              e->d_name);
    }
    closedir(dp);
    return rc;
}

/* `reflabel evaluate` needs a folder with exactly the references to score:
 * the expert labels of the training cases that training did not use
 * (RUN/labeled.txt lists the used ones). Byte copies, written atomically. */
static int copy_hidden_labels(demo_run *d, rl_error *err) {
    rl_dataset ds;
    int rc = rl_dataset_open(d->data, &ds, err);
    if (rc) return rc;
    char path[4096], *labeled = NULL;
    size_t size;
    if (join(path, sizeof path, d->run, "labeled.txt"))
        rc = rl_error_set(err, RL_EINVAL, "%s: path too long", d->run);
    if (!rc) rc = rl_read_file(path, 1u << 26, &labeled, &size, err);
    if (!rc) rc = rl_make_dirs(d->hidden, err);
    if (!rc) rc = clear_label_files(d->hidden, ds.file_ending, err);
    int copied = 0;
    for (int i = 0; i < ds.num_train && !rc; i++) {
        const rl_case *c = &ds.train[i];
        if (!c->label_path || is_listed(labeled, c->id)) continue;
        char *bytes = NULL;
        const char *base = strrchr(c->label_path, '/');
        rc = rl_read_file(c->label_path, (size_t)1 << 31, &bytes, &size, err);
        if (!rc && join(path, sizeof path, d->hidden, base ? base + 1 : c->label_path))
            rc = rl_error_set(err, RL_EINVAL, "%s: path too long", d->hidden);
        if (!rc) rc = rl_write_file_atomic(path, bytes, size, err);
        free(bytes);
        copied++;
    }
    if (!rc && copied == 0)
        rc = rl_error_set(err, RL_EINVAL, "%s: every training case kept its label", d->run);
    free(labeled);
    rl_dataset_free(&ds);
    return rc;
}

static void print_plan(const demo_run *d, int build) {
    const demo_preset *p = d->o.preset;
    fprintf(stderr,
            "reflabel demo: reference-guided pseudo-labels on a brain MRI (Colin27 + AAL lobes).\n"
            "  1. %s the 2 mm atlas dataset in %s\n"
            "  2. train a U-Net with the labels of 5%% of the training slices\n"
            "     (refpl, preset '%s')\n"
            "  3. pseudo-label the other training slices\n"
            "  4. score pseudo-labels and test predictions against the expert labels\n"
            "  5. write %s/report.html\n"
            "About %.0f minute%s on 2 cores.\n",
            build ? "build" : "reuse", d->data, p->name, d->report, p->minutes < 1 ? 1 : p->minutes,
            p->minutes < 1.5 ? "" : "s");
}

/* Appends NULL-terminated options. */
static void command_add_all(command *c, const char *const *args) {
    for (; *args; args++) command_add(c, "%s", *args);
}

/* Step 1: `reflabel data atlas`, or a note that the dataset is reused. */
static int step_dataset(demo_run *d, int build) {
    if (!build) {
        char line[4096 + 128];
        snprintf(line, sizeof line, "# reusing the dataset %s (reflabel data atlas --downsample 2)",
                 d->data);
        fprintf(stderr, "reflabel demo: %s\n", line + 2);
        return note_line(d, line) ? out_of_memory() : 0;
    }
    command c;
    command_start(&c, "data atlas", cmd_data_atlas);
    command_add_all(&c, (const char *const[]){"--out", d->data, "--downsample", "2", NULL});
    /* a folder without dataset.json is an interrupted build of ours */
    struct stat st;
    if (stat(d->data, &st) == 0) command_add(&c, "--force");
    return run_command(d, &c);
}

/* Step 2: `reflabel train` with the preset; it ends by predicting and
 * scoring the test slices. */
static int step_train(demo_run *d) {
    const demo_options *o = &d->o;
    command c;
    command_start(&c, "train", cmd_train);
    command_add_all(&c, (const char *const[]){"--data", d->data, "--out", d->run, "--labeled",
                                              DEMO_LABELED, "--labeled-mode", DEMO_LABELED_MODE,
                                              NULL});
    command_add_all(&c, o->preset->train_args);
    command_add(&c, "--seed");
    command_add(&c, "%ld", o->seed);
    command_add(&c, "--threads");
    command_add(&c, "%d", o->threads);
    command_add_all(&c, (const char *const[]){"--checkpoint-every", "0", NULL});
    int status = run_command(d, &c);
    if (status) return status;
    char line[2 * 4096 + 128];
    snprintf(line, sizeof line,
             "# train ends by predicting the test slices into %s/test_predictions, scored in %s",
             d->run, d->test_eval);
    return note_line(d, line) ? out_of_memory() : 0;
}

/* Step 3: `reflabel pseudolabel` of the slices whose labels training hid. */
static int step_pseudolabel(demo_run *d) {
    const demo_options *o = &d->o;
    command c;
    command_start(&c, "pseudolabel", cmd_pseudolabel);
    command_add_all(&c, (const char *const[]){"--model", d->run, "--data", d->data, "--out",
                                              d->pseudo, "--labeled", DEMO_LABELED,
                                              "--labeled-mode", DEMO_LABELED_MODE, NULL});
    command_add_all(&c, o->preset->pseudolabel_args);
    command_add(&c, "--seed");
    command_add(&c, "%ld", o->seed);
    command_add(&c, "--threads");
    command_add(&c, "%d", o->threads);
    command_add(&c, "--force"); /* a rerun replaces the pseudo-labels of the last one */
    return run_command(d, &c);
}

/* Step 4: `reflabel evaluate` of the pseudo-labels against the hidden
 * expert labels. */
static int step_score_pseudolabels(demo_run *d) {
    rl_error err = {0, ""};
    if (copy_hidden_labels(d, &err)) return cli_fail(&err);
    char line[2 * 4096 + 128], labels[4096 + 16];
    snprintf(line, sizeof line,
             "# the expert labels of the pseudo-labeled slices copied from %s/labelsTr to %s",
             d->data, d->hidden);
    if (note_line(d, line)) return out_of_memory();
    snprintf(labels, sizeof labels, "%s/dataset.json", d->data);
    command c;
    command_start(&c, "evaluate", cmd_evaluate);
    command_add_all(&c, (const char *const[]){"--pred", d->pseudo, "--gt", d->hidden, "--labels",
                                              labels, "--json", d->pseudo_eval, NULL});
    return run_command(d, &c);
}

/* Step 5: the report, and the headline numbers on stdout. */
static int step_report(demo_run *d, double seconds) {
    fprintf(stderr, "\nreflabel demo: [%d/%d] writing %s/report.html\n", ++d->step, d->num_steps,
            d->report);
    report_input in = {.report_dir = d->report,
                       .data_dir = d->data,
                       .run_dir = d->run,
                       .pseudo_dir = d->pseudo,
                       .pseudo_eval_json = d->pseudo_eval,
                       .test_eval_json = d->test_eval,
                       .commands = (const char *const *)d->lines,
                       .num_commands = d->num_lines,
                       .preset_name = d->o.preset->name,
                       .overlay_cases = DEMO_OVERLAY_CASES,
                       .seconds = seconds};
    report_headline h;
    rl_error err = {0, ""};
    if (report_write(&in, &h, &err)) return cli_fail(&err);
    printf("\nreflabel demo: pseudo-labels of %d unlabeled training slices: mean foreground Dice "
           "%.4f\n"
           "reflabel demo: predictions of %d test slices: mean foreground Dice %.4f\n"
           "reflabel demo: report: %s/report.html (%.1f minutes)\n",
           h.pseudo_cases, h.pseudo_dice, h.test_cases, h.test_dice, d->report, seconds / 60);
    return 0;
}

static int run_demo(demo_run *d) {
    int build = !dataset_is_built(d), status;
    if (build && (status = cli_check_atlas_sources())) return status;
    print_plan(d, build);
    d->num_steps = 4 + build;
    double t0 = rl_now_seconds();
    if ((status = step_dataset(d, build))) return status;
    if ((status = step_train(d))) return status;
    if ((status = step_pseudolabel(d))) return status;
    if ((status = step_score_pseudolabels(d))) return status;
    return step_report(d, rl_now_seconds() - t0);
}

int cmd_demo(int argc, char **argv) {
    demo_run d;
    memset(&d, 0, sizeof d);
    int prc = parse_options(argc, argv, &d.o);
    if (prc) return prc < 0 ? 0 : prc;
    if (set_paths(&d)) return cli_usage_error("demo", "--out is too long");
    int status = run_demo(&d);
    for (int i = 0; i < d.num_lines; i++) free(d.lines[i]);
    return status;
}
