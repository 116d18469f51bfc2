/* The options of `reflabel train` and `reflabel pseudolabel`, one table per
 * command (src/cli/option_tables.c). A row names the flag, its metavar, its
 * help, the heading it is listed under, its kind and range, where its value
 * lands (an offset into the command's options, or into the reference config
 * it matches with) and whether --resume may change it; the rows of the
 * reference matching options are shared by both commands. One table drives
 * the parser, --help (the defaults printed from the library's default
 * configs the options start from), the run's JSON and train's --resume
 * check, so that an option is written down once. */
#ifndef RL_CLI_OPTIONS_H
#define RL_CLI_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "reflabel/dataset.h"
#include "reflabel/pseudolabel.h"
#include "reflabel/train.h"

struct cJSON;

typedef enum cli_kind {
    CLI_INT,    /* int in [lo, hi] */
    CLI_I64,    /* int64_t, an integer in [lo, hi] */
    CLI_U64,    /* uint64_t (a seed): a number in [lo, hi], its integer part */
    CLI_FLOAT,  /* float, a number in [lo, hi] (or (lo, hi] with lo_open) */
    CLI_DOUBLE, /* double, likewise */
    CLI_ENUM,   /* int (an enum): one of names, stored as the matching value */
    CLI_FLAG,   /* int set to value; takes no argument */
    CLI_STRING, /* const char *, the argument itself */
    CLI_SIZE    /* two ints (h, then w) from HxW */
} cli_kind;

/* Which training cases keep their labels (--labeled, --labeled-mode). */
typedef struct cli_labeled {
    const char *spec; /* NULL: all */
    rl_select_mode mode;
} cli_labeled;

/* Where a row's value lands: the command's options struct, the reference
 * config it matches with (train: train.semi.refs, pseudolabel: cfg.refs) or
 * its choice of labeled cases, so that those rows serve both commands. */
enum { CLI_IN_OPTIONS, CLI_IN_REFS, CLI_IN_LABELED, CLI_IN_COUNT };
typedef struct cli_at {
    void *in[CLI_IN_COUNT];
} cli_at;

/* The sections of train's run JSON (reflabel.training) a row is written to. */
enum { CLI_JSON_TOP = 1, CLI_JSON_SEMI = 2, CLI_JSON_ROUNDS = 4 };

typedef struct cli_option {
    const char *flag;    /* "--steps"; NULL: no option, a JSON value only */
    const char *alias;   /* a second spelling, or NULL */
    const char *metavar; /* the argument in --help; NULL for flags */
    const char *help;    /* lines separated by '\n'; the default is appended */
    const char *group;   /* key of the heading it is listed under */
    cli_kind kind;
    int in; /* CLI_IN_* */
    size_t offset;
    double lo, hi;
    int lo_open;              /* lo itself is refused */
    const char *const *names; /* CLI_ENUM: the words, in the order of the error
                                 message; CLI_FLAG: words of the stored value in
                                 the JSON, by value (NULL: true/false) */
    const int *values;        /* CLI_ENUM: the value of each word */
    int count;                /* of names */
    int value;                /* CLI_FLAG: the value it stores */
    const char *unset;        /* the value in words while the option is not given
                                 (help, --resume; a NULL string in the JSON);
                                 NULL: the stored default */
    void (*describe_default)(char *buf, size_t size); /* --help only */
    int resume_free;          /* --resume may give it another value */
    const char *json;         /* key in the run's JSON, or NULL */
    int json_in;              /* CLI_JSON_* */
} cli_option;

typedef struct cli_group {
    const char *key, *heading;
} cli_group;

#define CLI_MAX_ROWS 64

typedef struct cli_command {
    const char *name;     /* "train" */
    const char *synopsis; /* --help before the options */
    const char *epilogue; /* --help after them, or NULL */
    const cli_group *groups;
    int group_count;
    const cli_option *const *rows;
    int count; /* <= CLI_MAX_ROWS */
} cli_command;

/* Which rows a command line gave. */
typedef struct cli_given {
    unsigned char row[CLI_MAX_ROWS];
} cli_given;

/* Parses argv[1..argc-1] into at; given records the rows given. Returns 0,
 * 2 after a usage error (printed, as "reflabel CMD: ..."), or -1 after
 * printing --help, whose defaults are read from `defaults`. */
int cli_parse(const cli_command *cmd, int argc, char **argv, const cli_at *at, cli_given *given,
              const cli_at *defaults);
/* Whether the option spelt flag (its main spelling) was given. */
int cli_given_flag(const cli_command *cmd, const cli_given *given, const char *flag);
/* The first row (not resume_free) whose value in words differs between two
 * parsed command lines, with both values in words; NULL when none does. */
const cli_option *cli_first_conflict(const cli_command *cmd, const cli_at *was,
                                     const cli_given *given_was, const cli_at *now,
                                     const cli_given *given_now, char *was_text,
                                     char *now_text, size_t size);
/* Adds the rows of one JSON section to obj, in table order. */
void cli_json_section(const cli_command *cmd, int section, const cli_at *at, struct cJSON *obj);

/* ---- the two commands ------------------------------------------------------ */

typedef struct train_options {
    const char *data, *out, *resume;
    cli_labeled labeled;
    int axis, threads, checkpoint_every, quiet, rounds;
    rl_train_config train; /* from rl_train_default_config */
    rl_unet_config net;    /* from rl_unet_default_config; channels and classes from the data */
    int64_t steps_done;    /* for the JSON only */
    cli_given given;
} train_options;

typedef struct pl_options {
    const char *model, *data, *out, *refs, *export_dir;
    cli_labeled labeled;
    int threads, quiet, force;
    double min_confidence;    /* as given, for pseudolabel_metrics.json */
    rl_pseudolabel_config cfg; /* from rl_pseudolabel_default_config */
    cli_given given;
} pl_options;

extern const cli_command cli_train_command, cli_pseudolabel_command;

/* The places the rows of each command land in. */
cli_at train_options_at(train_options *o);
cli_at pl_options_at(pl_options *o);
/* The options before any word is parsed: the library's defaults, and
 * train's steps and batch. */
void train_options_init(train_options *o);
void pl_options_init(pl_options *o);

#endif
