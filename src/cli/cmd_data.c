/* reflabel data shapes, reflabel data stripes: generate synthetic
 * nnU-Net datasets whose right answer is known (tests, quick experiments). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "reflabel/dataset.h"
#include "reflabel/image.h"
#include "reflabel/synthetic.h"

static const char *shapes_usage =
    "usage: reflabel data shapes --out DIR [--train N] [--test N] [--size HxW] [--seed S]\n"
    "                            [--multilabel]\n"
    "\n"
    "Writes a synthetic 2D dataset in the nnU-Net v2 raw layout (16-bit PNG images,\n"
    "8-bit PNG labels: 0 background, 1 disk, 2 square, 3 triangle):\n"
    "DIR/dataset.json, imagesTr/, labelsTr/, imagesTs/, labelsTs/.\n"
    "Defaults: 64 training and 16 test cases of 64x64, seed 0.\n"
    "--multilabel: overlapping structures instead (a disc and a bar crossing it), labels\n"
    "as bit sets (1 disc, 2 bar, 3 both) and \"reflabel_multilabel\": true (docs/DATA.md).\n";

static const char *stripes_usage =
    "usage: reflabel data stripes --out DIR [--train N] [--test N] [--size HxW] [--seed S]\n"
    "\n"
    "The layout and defaults of 'reflabel data shapes'; striped blobs on a flat\n"
    "background whose class is the stripes' orientation (0 background, 1 horizontal,\n"
    "2 vertical, 3 diagonal): a task where visually similar regions share their label,\n"
    "on which refpl's defaults are tested (docs/TRAINING.md, \"Status of the defaults\").\n";

/* The generated datasets: shapes, multi-label shapes, stripes. */
typedef enum synthetic_kind { SYNTH_SHAPES, SYNTH_SHAPES_MULTILABEL, SYNTH_STRIPES } synthetic_kind;

/* Images are stored as 16-bit PNG: intensity v maps to round(v * 20000),
 * clamped, which keeps the generated range [-0.3, 1.3] with 3e-5 resolution. */
static int write_case(const char *dir, const char *sub, const char *id, int is_label, int h,
                      int w, const float *image, const int32_t *labels, rl_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s%s.png", dir, sub, id, is_label ? "" : "_0000");
    uint16_t *v = malloc((size_t)h * w * sizeof *v);
    if (!v) return rl_error_set(err, RL_ENOMEM, "out of memory");
    for (size_t i = 0; i < (size_t)h * w; i++) {
        double x = is_label ? labels[i] : fmin(65535.0, fmax(0.0, round((image[i] + 0.3) * 20000.0)));
        v[i] = (uint16_t)x;
    }
    int rc = rl_png_write_u16(path, v, w, h, is_label ? 8 : 16, err);
    free(v);
    return rc;
}

static int make_synthetic(const char *out, synthetic_kind kind, int n_train, int n_test, int h,
                          int w, uint64_t seed, rl_error *err) {
    const char *subs[] = {"imagesTr", "labelsTr", "imagesTs", "labelsTs"};
    char path[4096];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", out, subs[i]);
        int rc = rl_make_dirs(path, err);
        if (rc) return rc;
    }
    float *image = malloc((size_t)h * w * sizeof *image);
    int32_t *labels = malloc((size_t)h * w * sizeof *labels);
    if (!image || !labels) {
        free(image);
        free(labels);
        return rl_error_set(err, RL_ENOMEM, "out of memory");
    }
    rl_rng rng;
    rl_rng_seed(&rng, seed, 0);
    int rc = RL_OK;
    for (int i = 0; !rc && i < n_train + n_test; i++) {
        int test = i >= n_train;
        char id[64];
        snprintf(id, sizeof id, "%s_%03d", kind == SYNTH_STRIPES ? "stripes" : "shapes", i);
        if (kind == SYNTH_SHAPES_MULTILABEL) rl_synth_shapes_multilabel(&rng, h, w, image, labels);
        else if (kind == SYNTH_STRIPES) rl_synth_stripes(&rng, h, w, image, labels);
        else rl_synth_shapes(&rng, h, w, image, labels);
        rc = write_case(out, test ? "imagesTs" : "imagesTr", id, 0, h, w, image, labels, err);
        if (!rc) rc = write_case(out, test ? "labelsTs" : "labelsTr", id, 1, h, w, image, labels, err);
    }
    free(image);
    free(labels);
    if (rc) return rc;
    const char *channels[] = {"synthetic"};
    const char *shape_names[] = {"background", "disk", "square", "triangle"};
    const char *stripe_names[] = {"background", "horizontal", "vertical", "diagonal"};
    const int values[] = {0, 1, 2, 3};
    snprintf(path, sizeof path, "%s/dataset.json", out);
    if (kind == SYNTH_SHAPES_MULTILABEL) {
        const char *structures[] = {"background", "disc", "bar"};
        return rl_dataset_json_write_multilabel(path, 1, channels, 1 + RL_SHAPES_ML_STRUCTURES,
                                                structures, ".png", n_train, err);
    }
    return rl_dataset_json_write(path, 1, channels, 4,
                                 kind == SYNTH_STRIPES ? stripe_names : shape_names, values, ".png",
                                 n_train, err);
}

/* `data shapes` and `data stripes` (argv[0]) share their options. */
static int data_synthetic(int argc, char **argv, int stripes) {
    const char *cmd = stripes ? "data stripes" : "data shapes";
    const char *usage = stripes ? stripes_usage : shapes_usage;
    const char *out = NULL;
    int n_train = 64, n_test = 16, h = 64, w = 64, multilabel = 0;
    double seed = 0;
    /* Every option but the --multilabel switch takes a value. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        char tail;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--multilabel")) {
            if (stripes) return cli_usage_error(cmd, "--multilabel applies to shapes only");
            multilabel = 1;
            continue;
        }
        if (!v) return cli_missing_value(cmd, a, usage);
        i++;
        if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--train")) rc = cli_parse_int(cmd, a, v, 1, 1000000, &n_train);
        else if (!strcmp(a, "--test")) rc = cli_parse_int(cmd, a, v, 0, 1000000, &n_test);
        else if (!strcmp(a, "--seed")) rc = cli_parse_float(cmd, a, v, 0, 4294967295.0, &seed);
        else if (!strcmp(a, "--size")) {
            if (sscanf(v, "%dx%d%c", &h, &w, &tail) != 2 || h < 16 || w < 16 || h > 4096 || w > 4096)
                rc = cli_usage_error(cmd, "--size expects HxW between 16 and 4096");
        } else return cli_usage_error(cmd, "unknown option '%s'", a);
        if (rc) return rc;
    }
    if (!out) return cli_usage_error(cmd, "--out is required");
    rl_error err = {0, ""};
    synthetic_kind kind = stripes      ? SYNTH_STRIPES
                          : multilabel ? SYNTH_SHAPES_MULTILABEL
                                       : SYNTH_SHAPES;
    if (make_synthetic(out, kind, n_train, n_test, h, w, (uint64_t)seed, &err))
        return cli_fail(&err);
    return 0;
}

int cmd_data_shapes(int argc, char **argv) { return data_synthetic(argc, argv, 0); }

int cmd_data_stripes(int argc, char **argv) { return data_synthetic(argc, argv, 1); }
