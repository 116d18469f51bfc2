/* fuzz/fuzz_nifti.c - libFuzzer target for the NIfTI-1/2 reader
 * (src/io/nifti.c, on top of niftilib).
 *
 * The reader picks plain or gzip by extension, so an input that starts with
 * the gzip magic (1f 8b) is written as input.nii.gz and anything else as
 * input.nii: the corpus holds seeds of both kinds and the fuzzer moves
 * between them by mutating the first two bytes. A volume that is read is
 * also sliced along each axis, the first thing every caller does with it. */
#include "fuzz_common.h"
#include "reflabel/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const int gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    char path[1024];
    rl_fuzz_path(path, sizeof path, rl_fuzz_workdir("nifti"), gz ? "input.nii.gz" : "input.nii");
    rl_fuzz_write(path, data, size);

    rl_volume vol;
    rl_error err = {0};
    memset(&vol, 0, sizeof vol);
    if (rl_nifti_read(path, &vol, &err) == RL_OK) {
        for (int axis = 0; axis < 3; axis++) {
            int h = 0, w = 0;
            rl_slice_shape(vol.nx, vol.ny, vol.nz, axis, &h, &w);
            float *slice = malloc((size_t)h * (size_t)w * sizeof *slice + 1);
            if (!slice) break;
            double spacing_hw[2];
            int last = rl_volume_num_slices(&vol, axis) - 1;
            (void)rl_volume_get_slice(&vol, axis, last, slice, &h, &w, spacing_hw, &err);
            free(slice);
        }
        (void)rl_volume_nifti_version(&vol);
        (void)rl_volume_nifti_datatype(&vol);
    }
    rl_volume_free(&vol);
    return 0;
}
