/* Builds the atlas dataset from mricron-data for the numpy oracle
 * (tests/oracle/test_numpy_atlas.py).
 * Usage: tool_atlas OUT_DIR AXIS DOWNSAMPLE MIN_VOXELS
 * DOWNSAMPLE: 1, 2, or 2p (2 within the slices only, --in-plane).
 * Prints "nx ny nz slices qualifying train test excluded" on success. */
#include <stdio.h>
#include <stdlib.h>

#include "reflabel/atlas.h"

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: tool_atlas OUT_DIR AXIS DOWNSAMPLE MIN_VOXELS\n");
        return 2;
    }
    rl_atlas_options opt = {.axis = atoi(argv[2]),
                            .downsample = atoi(argv[3]),
                            .in_plane = argv[3][0] && argv[3][1] == 'p',
                            .min_voxels = atoi(argv[4]),
                            .force = 1};
    rl_atlas_summary s;
    rl_error err = {0, ""};
    if (rl_atlas_build(RL_ATLAS_DEFAULT_T1, RL_ATLAS_DEFAULT_AAL, RL_ATLAS_DEFAULT_TXT, argv[1],
                       &opt, &s, &err)) {
        fprintf(stderr, "tool_atlas: %s\n", err.msg);
        return 1;
    }
    printf("%d %d %d %d %d %d %d %d\n", s.nx, s.ny, s.nz, s.num_slices, s.num_qualifying,
           s.num_train, s.num_test, s.num_excluded);
    return 0;
}
