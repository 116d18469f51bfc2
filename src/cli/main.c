/* reflabel: entry point and subcommand dispatch. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "conv_option.h"

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

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    int conv_rc = cli_conv_backend_from_env(); /* RL_CONV, for every command */
    if (conv_rc) return conv_rc;
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
