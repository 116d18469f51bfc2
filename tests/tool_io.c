/* Helper for tests/oracle/test_nibabel_io.py: reads a volume with reflabel
 * and writes what the oracle checks with nibabel.
 *
 *   tool_io info IN
 *       prints "nx ny nz sx sy sz version datatype min max"
 *   tool_io roundtrip IN DATA.npy LABELS_OUT FLOAT_OUT MOD
 *       DATA.npy: the voxels as read, float32 of shape (nz, ny, nx);
 *       LABELS_OUT: labels[i] = i % MOD written like IN (i = x-fastest index);
 *       FLOAT_OUT: the voxels as read, written like IN as float.
 *   tool_io image IN OUT
 *       writes the voxels as read back as an image like IN (its own dtype).
 * Exit status 0 on success; 1 with the error on stderr otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/image.h"
#include "testutil.h"

static int fail(const rl_error *err) {
    fprintf(stderr, "tool_io: %s\n", err->msg);
    return 1;
}

static int cmd_info(const char *in) {
    rl_error err = {0, ""};
    rl_volume vol;
    if (rl_volume_read(in, &vol, &err)) return fail(&err);
    float lo = vol.data[0], hi = vol.data[0];
    for (size_t i = 0; i < rl_volume_numel(&vol); i++) {
        if (vol.data[i] < lo) lo = vol.data[i];
        if (vol.data[i] > hi) hi = vol.data[i];
    }
    printf("%d %d %d %.9g %.9g %.9g %d %d %.9g %.9g\n", vol.nx, vol.ny, vol.nz, vol.spacing[0],
           vol.spacing[1], vol.spacing[2], rl_volume_nifti_version(&vol),
           rl_volume_nifti_datatype(&vol), (double)lo, (double)hi);
    rl_volume_free(&vol);
    return 0;
}

static int cmd_roundtrip(const char *in, const char *npy, const char *labels_out,
                         const char *float_out, int mod) {
    rl_error err = {0, ""};
    rl_volume vol;
    if (rl_volume_read(in, &vol, &err)) return fail(&err);
    size_t n = rl_volume_numel(&vol);
    int shape[3] = {vol.nz, vol.ny, vol.nx};
    int rc = rl_npy_write(npy, vol.data, "<f4", shape, 3);
    if (rc) {
        rl_volume_free(&vol);
        fprintf(stderr, "tool_io: cannot write %s\n", npy);
        return 1;
    }
    int32_t *labels = malloc(sizeof *labels * n);
    for (size_t i = 0; labels && i < n; i++) labels[i] = (int32_t)(i % (size_t)mod);
    rc = labels ? rl_volume_write_labels(labels_out, &vol, labels, &err) : RL_ENOMEM;
    if (!rc) rc = rl_volume_write_float(float_out, &vol, vol.data, &err);
    free(labels);
    rl_volume_free(&vol);
    return rc ? fail(&err) : 0;
}

static int cmd_image(const char *in, const char *out) {
    rl_error err = {0, ""};
    rl_volume vol;
    if (rl_volume_read(in, &vol, &err)) return fail(&err);
    int rc = rl_volume_write_image(out, &vol, &err);
    rl_volume_free(&vol);
    return rc ? fail(&err) : 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "info") == 0) return cmd_info(argv[2]);
    if (argc == 7 && strcmp(argv[1], "roundtrip") == 0)
        return cmd_roundtrip(argv[2], argv[3], argv[4], argv[5], atoi(argv[6]));
    if (argc == 4 && strcmp(argv[1], "image") == 0) return cmd_image(argv[2], argv[3]);
    fprintf(stderr, "usage: tool_io info IN | roundtrip IN DATA.npy LABELS FLOAT MOD | "
                    "image IN OUT\n");
    return 2;
}
