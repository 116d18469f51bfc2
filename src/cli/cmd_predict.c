/* reflabel predict: segment a folder of images with a trained model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "progress.h"
#include "reflabel/checkpoint.h"
#include "reflabel/dist.h"
#include "reflabel/folder.h"
#include "reflabel/image.h"
#include "reflabel/train.h"

static const char *predict_usage =
    "usage: reflabel predict --model RUN_DIR|MODEL.safetensors --in DIR --out DIR [options]\n"
    "\n"
    "Segments every case of DIR (nnU-Net naming: CASE_0000.nii.gz, CASE_0001.nii.gz, ...\n"
    "or .png) slice by slice and writes OUT/CASE.<ending> with the input's header and\n"
    "affine. A multi-label model (trained on a \"reflabel_multilabel\" dataset) writes\n"
    "bit sets: bit c-1 where structure c's sigmoid exceeds 0.5 (uint8 for up to 8\n"
    "structures, else uint16).\n"
    "\n"
    "  --axis A        slicing axis for 3D volumes (default: the model's training axis)\n"
    "  --confidence    also write OUT/CASE_confidence.<ending> (softmax probability of\n"
    "                  the chosen class; multi-label: of the least certain structure)\n"
    "  --threads N     threads (all cores)\n"
    "  --quiet         no progress bar\n";

int cli_predict_folder(rl_unet *net, const char *in_dir, const char *out_dir, int axis,
                       int write_confidence, int quiet, rl_error *err) {
    return cli_predict_folder_ex(net, 0, in_dir, out_dir, axis, write_confidence, quiet, err);
}

/* Reads, segments and writes one case of the folder. */
static int predict_case(rl_unet *net, int multilabel, const rl_folder *f, int i,
                        const char *out_dir, int axis, int write_confidence, rl_volume *images,
                        rl_error *err) {
    const rl_folder_entry *e = &f->entries[i];
    int32_t *labels = NULL;
    float *conf = NULL;
    int rc = RL_OK;
    for (int c = 0; !rc && c < f->channels; c++) {
        rc = rl_volume_read(e->paths[c], &images[c], err);
        if (!rc && c > 0 && (images[c].nx != images[0].nx || images[c].ny != images[0].ny ||
                             images[c].nz != images[0].nz))
            rc = rl_error_set(err, RL_EFORMAT, "%s: shape differs from %s", e->paths[c],
                              e->paths[0]);
    }
    if (!rc) {
        size_t n = rl_volume_numel(&images[0]);
        labels = malloc(n * sizeof *labels);
        conf = write_confidence ? malloc(n * sizeof *conf) : NULL;
        if (!labels || (write_confidence && !conf))
            rc = rl_error_set(err, RL_ENOMEM, "out of memory");
    }
    if (!rc) {
        rc = multilabel
                 ? rl_predict_case_multilabel(net, images, f->channels, axis, labels, conf, err)
                 : rl_predict_case(net, images, f->channels, axis, labels, conf, err);
        if (rc) rl_error_prefix(err, "%s", e->paths[0]);
    }
    char path[4096];
    if (!rc) {
        snprintf(path, sizeof path, "%s/%s%s", out_dir, e->id, e->ending);
        rc = multilabel ? rl_volume_write_bitsets(path, &images[0], labels,
                                                  rl_unet_get_config(net)->num_classes, err)
                        : rl_volume_write_labels(path, &images[0], labels, err);
    }
    if (!rc && conf) {
        snprintf(path, sizeof path, "%s/%s_confidence%s", out_dir, e->id, e->ending);
        rc = rl_volume_write_float(path, &images[0], conf, err);
    }
    for (int c = 0; c < f->channels; c++) rl_volume_free(&images[c]);
    free(labels);
    free(conf);
    return rc;
}

/* Under MPI the cases are dealt round-robin, case i to rank i % size; a
 * case's output depends on the model and the case alone, so the files are
 * those of one process. After each round of `size` cases the ranks agree on
 * whether any failed, so that a bad case on one rank stops all of them
 * within one case's time, each with the same line. */
int cli_predict_folder_ex(rl_unet *net, int multilabel, const char *in_dir, const char *out_dir,
                          int axis, int write_confidence, int quiet, rl_error *err) {
    rl_folder f;
    memset(&f, 0, sizeof f);
    int rc = rl_folder_list_images(in_dir, rl_unet_get_config(net)->in_channels, &f, err);
    if (!rc) rc = rl_make_dirs(out_dir, err);
    rl_volume *images = rc ? NULL : calloc((size_t)f.channels, sizeof *images);
    if (!rc && !images) rc = rl_error_set(err, RL_ENOMEM, "out of memory");
    rc = rl_dist_agree(rc, err);
    /* Every rank walks the same rounds, each ending in rl_dist_agree: a rank
     * whose folder listed another number of cases (a node whose copy of the
     * data differs) would leave the others waiting in a round it never
     * reaches, so the counts must agree before the first one. */
    int32_t count0 = f.count;
    if (!rc) rc = rl_dist_broadcast(&count0, sizeof count0, 0, err);
    if (!rc && count0 != f.count)
        rc = rl_error_set(err, RL_EINVAL, "%s: %d cases here, %d on rank 0", in_dir, f.count,
                          (int)count0);
    rc = rl_dist_agree(rc, err);
    const int rank = rl_dist_rank(), ranks = rl_dist_size();
    rl_progress bar;
    rl_progress_start(&bar, "predict", rc ? 0 : f.count, quiet || rank != 0);
    for (int round = 0; !rc && round < f.count; round += ranks) {
        int i = round + rank;
        if (i < f.count)
            rc = predict_case(net, multilabel, &f, i, out_dir, axis, write_confidence, images, err);
        rc = rl_dist_agree(rc, err);
        int done = round + ranks < f.count ? round + ranks : f.count;
        if (!rc) rl_progress_update(&bar, done, f.entries[done - 1].id);
    }
    rl_progress_finish(&bar);
    free(images);
    rl_folder_free(&f);
    return rc;
}

int cli_model_is_multilabel(const rl_safetensors *meta) {
    const char *v = rl_safetensors_metadata(meta, "reflabel.multilabel");
    return v && strcmp(v, "true") == 0;
}

/* A run folder holds model.safetensors; a file path is used as it is. */
static void model_path(const char *arg, char *out, size_t size) {
    struct stat st;
    if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(out, size, "%s/model.safetensors", arg);
    else snprintf(out, size, "%s", arg);
}

int cmd_predict(int argc, char **argv) {
    const char *model = NULL, *in = NULL, *out = NULL;
    int axis = -1, threads = 0, quiet = 0, confidence = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(predict_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--quiet")) quiet = 1;
        else if (!strcmp(a, "--confidence")) confidence = 1;
        else if (!v) return cli_missing_value("predict", a, predict_usage);
        else if (!strcmp(a, "--model")) model = argv[++i];
        else if (!strcmp(a, "--in")) in = argv[++i];
        else if (!strcmp(a, "--out")) out = argv[++i];
        else if (!strcmp(a, "--axis")) {
            if (cli_parse_int("predict", a, v, 0, 2, &axis)) return 2;
            i++;
        } else if (!strcmp(a, "--threads")) {
            if (cli_parse_int("predict", a, v, 0, 1024, &threads)) return 2;
            i++;
        } else return cli_usage_error("predict", "unknown option '%s'", a);
    }
    if (!model || !in || !out) return cli_usage_error("predict", "--model, --in and --out are required");
    rl_set_threads(threads);
    char path[4096];
    model_path(model, path, sizeof path);
    rl_error err = {0, ""};
    rl_unet *net = NULL;
    rl_safetensors meta;
    if (rl_unet_load(path, &net, &meta, &err)) return cli_fail(&err);
    if (axis < 0) {
        const char *a = rl_safetensors_metadata(&meta, "reflabel.axis");
        axis = a && a[0] >= '0' && a[0] <= '2' ? a[0] - '0' : 2;
    }
    int multilabel = cli_model_is_multilabel(&meta);
    rl_safetensors_free(&meta);
    int rc = cli_predict_folder_ex(net, multilabel, in, out, axis, confidence, quiet, &err);
    rl_unet_free(net);
    return rc ? cli_fail(&err) : 0;
}
