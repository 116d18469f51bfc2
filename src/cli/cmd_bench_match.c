/* Placeholder until the subcommand lands; replaced by its implementation. */
#include <stdio.h>

#include "cli.h"

int cmd_bench_match(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "reflabel: 'bench_match' is not available in this build\n");
    return 1;
}
