/* reflabel data atlas: the Colin27 + AAL lobe dataset (see reflabel/atlas.h). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "reflabel/atlas.h"


static const char *atlas_usage =
    "usage: reflabel data atlas --out DIR [--axis 0|1|2] [--downsample 1|2 [--in-plane]]\n"
    "                           [--min-voxels N] [--force]\n"
    "\n"
    "Builds a real 2D segmentation dataset in the nnU-Net v2 raw layout from the\n"
    "Colin27 T1 template and the AAL atlas of Debian's mricron-data package\n"
    "(" RL_ATLAS_DEFAULT_T1 ", aal.nii.gz, aal.nii.txt).\n"
    "Classes: 0 background, 1 frontal, 2 insula, 3 limbic, 4 occipital,\n"
    "5 parietal, 6 deep grey nuclei, 7 temporal, 8 cerebellum (AAL regions grouped\n"
    "by the leading digit of their AAL code).\n"
    "\n"
    "Cases are the slices along --axis (0 sagittal, 1 coronal, 2 axial; default 2)\n"
    "with at least --min-voxels labelled voxels (default 200), as 2D NIfTI files\n"
    "atlas_z087_0000.nii.gz (float32 T1) and atlas_z087.nii.gz (uint8 labels).\n"
    "Split: slabs of 8 consecutive such slices; every third slab (2, 5, 8, ...) is\n"
    "test (imagesTs/labelsTs); the slice on each side of a test slab is left out;\n"
    "the rest is training (imagesTr/labelsTr).\n"
    "--downsample 2 builds a 2 mm version (2x2x2 block mean for the image,\n"
    "majority vote for the labels, ties to the lower class) before slicing.\n"
    "--in-plane (with --downsample 2) halves the resolution within the slices only\n"
    "(2x2 blocks) and keeps every 1 mm slice: the same in-plane size as the 2 mm\n"
    "set with about twice its slices (axial: about 86 training, 48 test).\n"
    "A non-empty DIR is refused unless --force (which replaces the atlas_* cases).\n";

int cmd_data_atlas(int argc, char **argv) {
    const char *out = NULL;
    rl_atlas_options opt = {.axis = 2, .downsample = 1, .min_voxels = 200, .force = 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(atlas_usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--force")) {
            opt.force = 1;
            continue;
        }
        if (!strcmp(a, "--in-plane")) {
            opt.in_plane = 1;
            continue;
        }
        int rc = 0;
        if (!v) return cli_missing_value("data atlas", a, atlas_usage);
        if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--axis")) rc = cli_parse_int("data atlas", a, v, 0, 2, &opt.axis);
        else if (!strcmp(a, "--downsample"))
            rc = cli_parse_int("data atlas", a, v, 1, 2, &opt.downsample);
        else if (!strcmp(a, "--min-voxels"))
            rc = cli_parse_int("data atlas", a, v, 1, 100000000, &opt.min_voxels);
        else return cli_usage_error("data atlas", "unknown option '%s'", a);
        if (rc) return rc;
        i++;
    }
    if (!out) return cli_usage_error("data atlas", "--out is required");
    if (opt.in_plane && opt.downsample != 2)
        return cli_usage_error("data atlas", "--in-plane needs --downsample 2");
    int missing = cli_check_atlas_sources();
    if (missing) return missing;
    rl_error err = {0, ""};
    rl_atlas_summary sum;
    if (rl_atlas_build(RL_ATLAS_DEFAULT_T1, RL_ATLAS_DEFAULT_AAL, RL_ATLAS_DEFAULT_TXT, out, &opt,
                       &sum, &err))
        return cli_fail(&err);
    printf("atlas dataset in %s: volume %dx%dx%d, axis %d: %d slices, %d with >= %d labelled "
           "voxels -> %d training, %d test, %d left out\n",
           out, sum.nx, sum.ny, sum.nz, opt.axis, sum.num_slices, sum.num_qualifying,
           opt.min_voxels, sum.num_train, sum.num_test, sum.num_excluded);
    return 0;
}
