/* reflabel: entry point and subcommand dispatch.
 *
 * One table names every command with its one-line summary and either its
 * entry point or, for a group such as `data` or `bench`, its own table of
 * subcommands. The top-level help, `reflabel GROUP --help` and the errors for
 * an unknown command or subcommand are all written from it, so that a new
 * command is added in one place.
 *
 * Under mpirun or srun every rank runs the same command line. A command
 * marked `mpi` shares its work among the ranks (reflabel/dist.h); any other
 * would run whole in each rank and write the same files at once, so it is
 * refused there. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "reflabel/dist.h"
#include "conv_option.h"

typedef struct command_entry {
    const char *name;
    const char *summary;                   /* one line in --help; NULL for a group */
    int (*run)(int argc, char **argv);     /* argv[0] is name; NULL for a group */
    const struct command_entry *subcommands; /* a group's, ended by an empty entry */
    const char *noun;                      /* what a group calls them: "dataset" */
    int mpi;                               /* runs in several MPI ranks */
} command_entry;

/* Designated fields: a group names its subcommands and their noun, a command
 * its entry point, and `mpi` stays 0 unless the command shares its work. */
static const command_entry data_commands[] = {
    {.name = "shapes",
     .summary = "synthetic disks, squares, triangles: a dataset with a known answer",
     .run = cmd_data_shapes},
    {.name = "stripes",
     .summary = "synthetic striped blobs whose class is their orientation",
     .run = cmd_data_stripes},
    {.name = "atlas",
     .summary = "the Colin27 brain MRI + AAL lobes as an nnU-Net dataset",
     .run = cmd_data_atlas},
    {0},
};

static const command_entry bench_commands[] = {
    {.name = "match", .summary = "time the reference matcher (JSON line)", .run = cmd_bench_match},
    {.name = "train", .summary = "time a U-Net training step (JSON line)", .run = cmd_bench_train},
    {0},
};

static const command_entry commands[] = {
    {.name = "demo",
     .summary = "the first command to run: a brain MRI example end to end, with a report",
     .run = cmd_demo},
    {.name = "train",
     .summary = "train a U-Net on an nnU-Net raw dataset",
     .run = cmd_train,
     .mpi = 1},
    {.name = "predict",
     .summary = "segment a folder of images with a trained model",
     .run = cmd_predict,
     .mpi = 1},
    {.name = "pseudolabel",
     .summary = "reference-guided pseudo-labels for the unlabeled cases of a dataset",
     .run = cmd_pseudolabel,
     .mpi = 1},
    {.name = "evaluate",
     .summary = "Dice, IoU, HD95, ASSD of predictions against references",
     .run = cmd_evaluate},
    {.name = "data", .subcommands = data_commands, .noun = "dataset"},
    {.name = "convert",
     .summary = "JSRT chest X-rays or RETOUCH OCT into the nnU-Net layout",
     .run = cmd_convert},
    {.name = "bench", .subcommands = bench_commands, .noun = "benchmark"},
    {0},
};

static int is_help(const char *arg) { return !strcmp(arg, "--help") || !strcmp(arg, "-h"); }

static const command_entry *find_command(const command_entry *table, const char *name) {
    for (const command_entry *c = table; c->name; c++)
        if (!strcmp(c->name, name)) return c;
    return NULL;
}

/* A group's subcommands are listed under their full name ("data shapes"),
 * the way they are typed. */
static void print_usage(FILE *f) {
    fputs("usage: reflabel <command> [options]\n\ncommands:\n", f);
    char name[64];
    for (const command_entry *c = commands; c->name; c++) {
        if (!c->subcommands) fprintf(f, "  %-13s %s\n", c->name, c->summary);
        for (const command_entry *s = c->subcommands; s && s->name; s++) {
            snprintf(name, sizeof name, "%s %s", c->name, s->name);
            fprintf(f, "  %-13s %s\n", name, s->summary);
        }
    }
    fputs("\n'reflabel <command> --help' describes each command.\n", f);
}

static void print_group_usage(const command_entry *group, FILE *f) {
    fprintf(f, "usage: reflabel %s <%s> [options]\n\n%ss:\n", group->name, group->noun,
            group->noun);
    for (const command_entry *s = group->subcommands; s->name; s++)
        fprintf(f, "  %-9s %s\n", s->name, s->summary);
    fprintf(f, "\n'reflabel %s <%s> --help' describes each.\n", group->name, group->noun);
}

/* argv[0] is the group's name. No subcommand is a usage error that lists
 * them on stderr; an unknown one, one line naming it and the known ones. */
static int run_group(const command_entry *group, int argc, char **argv) {
    if (argc < 2 || is_help(argv[1])) {
        print_group_usage(group, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const command_entry *sub = find_command(group->subcommands, argv[1]);
    if (sub) return sub->run(argc - 1, argv + 1);
    char names[256] = "";
    for (const command_entry *s = group->subcommands; s->name; s++) {
        size_t len = strlen(names);
        snprintf(names + len, sizeof names - len, "%s%s", len ? ", " : "", s->name);
    }
    return cli_usage_error(group->name, "unknown %s '%s' (available: %s)", group->noun, argv[1],
                           names);
}

static int dispatch(int argc, char **argv) {
    if (argc < 2 || is_help(argv[1])) {
        print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const command_entry *c = find_command(commands, argv[1]);
    if (!c) {
        fprintf(stderr, "reflabel: unknown command '%s'\n", argv[1]);
        print_usage(stderr);
        return 2;
    }
    int conv_rc = cli_conv_backend_from_env(); /* RL_CONV, for every command */
    if (conv_rc) return conv_rc;
    if (rl_dist_size() > 1 && !c->mpi) {
        char shared[256] = "";
        for (const command_entry *m = commands; m->name; m++) {
            size_t len = strlen(shared);
            if (m->mpi) snprintf(shared + len, sizeof shared - len, "%s%s", len ? ", " : "", m->name);
        }
        rl_error err = {0, ""};
        rl_error_set(&err, RL_EUNSUPPORTED,
                     "'%s' does not run under MPI (%d ranks); run it as one process "
                     "(commands that do: %s)",
                     c->name, rl_dist_size(), shared);
        return cli_fail(&err);
    }
    return c->subcommands ? run_group(c, argc - 1, argv + 1) : c->run(argc - 1, argv + 1);
}

int main(int argc, char **argv) {
    rl_error err = {0, ""};
    if (rl_dist_init(&argc, &argv, &err)) return cli_fail(&err);
    int rc = dispatch(argc, argv);
    rl_dist_finalize();
    return rc;
}
