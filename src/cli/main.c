/* reflabel: entry point and subcommand dispatch. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "reflabel/dist.h"

static const char *usage =
    "usage: reflabel <command> [options]\n"
    "\n"
    "commands:\n"
    "  demo          the first command to run: a brain MRI example end to end, with a report\n"
    "  train         train a U-Net on an nnU-Net raw dataset\n"
    "  predict       segment a folder of images with a trained model\n"
    "  pseudolabel   reference-guided pseudo-labels for the unlabeled cases of a dataset\n"
    "  evaluate      Dice, IoU, HD95, ASSD of predictions against references\n"
    "  data shapes   generate a synthetic dataset with a known answer (also: data stripes)\n"
    "  data atlas    the Colin27 brain MRI + AAL lobes as an nnU-Net dataset\n"
    "  convert       JSRT chest X-rays or RETOUCH OCT into the nnU-Net layout\n"
    "  bench match   time the reference matcher (JSON line)\n"
    "  bench train   time a U-Net training step (JSON line)\n"
    "\n"
    "'reflabel <command> --help' describes each command.\n";

static int dispatch(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "demo")) return cmd_demo(argc - 1, argv + 1);
    if (!strcmp(argv[1], "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "predict")) return cmd_predict(argc - 1, argv + 1);
    if (!strcmp(argv[1], "evaluate")) return cmd_evaluate(argc - 1, argv + 1);
    if (!strcmp(argv[1], "data")) return cmd_data(argc - 1, argv + 1);
    if (!strcmp(argv[1], "convert")) return cmd_convert(argc - 1, argv + 1);
    if (!strcmp(argv[1], "pseudolabel")) return cmd_pseudolabel(argc - 1, argv + 1);
    if (!strcmp(argv[1], "bench") && argc >= 3) {
        if (!strcmp(argv[2], "match")) return cmd_bench_match(argc - 2, argv + 2);
        if (!strcmp(argv[2], "train")) return cmd_bench_train(argc - 2, argv + 2);
    }
    fprintf(stderr, "reflabel: unknown command '%s'\n%s", argv[1], usage);
    return 2;
}

/* Under mpirun or srun every rank runs the same command line; commands that
 * know how to share their work ask reflabel/dist.h for their rank, the
 * others run whole in each rank. */
int main(int argc, char **argv) {
    rl_error err = {0, ""};
    if (rl_dist_init(&argc, &argv, &err)) return cli_fail(&err);
    /* predict deals its cases among the ranks; every other command would
     * run whole in each rank and write the same files at once. */
    int shares = argc >= 2 && (!strcmp(argv[1], "predict"));
    if (rl_dist_size() > 1 && !shares) {
        rl_error_set(&err, RL_EUNSUPPORTED, "'%s' does not run under MPI (%d ranks); run it "
                     "as one process (commands that do: predict)",
                     argc >= 2 ? argv[1] : "", rl_dist_size());
        int rc = cli_fail(&err); /* while the rank is known: rank 0 prints */
        rl_dist_finalize();
        return rc;
    }
    int rc = dispatch(argc, argv);
    rl_dist_finalize();
    return rc;
}
