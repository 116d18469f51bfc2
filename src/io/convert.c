/* Converters from the paper's source datasets (JSRT + SCR, RETOUCH) to
 * nnU-Net v2 raw datasets of NIfTI files. See include/reflabel/convert.h. */
#include "reflabel/convert.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "reflabel/dataset.h"
#include "reflabel/formats.h"
#include "reflabel/image.h"

const char *const rl_jsrt_structures[RL_JSRT_NUM_STRUCTURES] = {"left lung", "right lung", "heart",
                                                                "left clavicle", "right clavicle"};

static const char *const retouch_vendors[3] = {"Cirrus", "Spectralis", "Topcon"};
static const char *const retouch_classes[4] = {"background", "IRF", "SRF", "PED"};

/* ---- shared helpers ----------------------------------------------------- */

static int path_exists(const char *path, int want_dir) {
    struct stat st;
    return stat(path, &st) == 0 && (want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* Sorted names in dir that are folders (want_dir) or files ending in
 * suffix (case-insensitive); hidden entries are skipped. */
static int list_dir(const char *dir, int want_dir, const char *suffix, char ***out, int *count,
                    rl_error *err) {
    *out = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) return rl_error_set(err, RL_EIO, "cannot open folder %s: %s", dir, strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0, rc = RL_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char full[4096 + 256];
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        if (!path_exists(full, want_dir)) continue;
        size_t len = strlen(e->d_name), slen = suffix ? strlen(suffix) : 0;
        if (suffix && (len <= slen || strcasecmp(e->d_name + len - slen, suffix) != 0)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(names, (size_t)cap * sizeof *names);
            if (!grown) {
                rc = rl_error_set(err, RL_ENOMEM, "out of memory listing %s", dir);
                break;
            }
            names = grown;
        }
        if (!(names[n] = strdup(e->d_name))) {
            rc = rl_error_set(err, RL_ENOMEM, "out of memory listing %s", dir);
            break;
        }
        n++;
    }
    closedir(d);
    if (rc) {
        free_names(names, n);
        return rc;
    }
    if (n > 1) qsort(names, (size_t)n, sizeof *names, compare_names);
    *out = names;
    *count = n;
    return RL_OK;
}

/* Creates out_dir/{imagesTr,labelsTr}; a non-empty out_dir needs force. */
static int prepare_output(const char *out_dir, int force, rl_error *err) {
    DIR *d = opendir(out_dir);
    if (d) {
        struct dirent *e;
        int nonempty = 0;
        while (!nonempty && (e = readdir(d)) != NULL)
            nonempty = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
        closedir(d);
        if (nonempty && !force)
            return rl_error_set(err, RL_EINVAL,
                                "%s is not empty; choose a new folder or pass --force to write "
                                "into it",
                                out_dir);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/imagesTr", out_dir);
    int rc = rl_make_dirs(path, err);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/labelsTr", out_dir);
    return rl_make_dirs(path, err);
}

/* Writes dataset.json, with "reflabel_multilabel": true when asked. */
static int write_json(const char *out_dir, const char *channel, int num_labels,
                      const char *const *names, int num_training, int multilabel, rl_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/dataset.json", out_dir);
    if (multilabel)
        return rl_dataset_json_write_multilabel(path, 1, &channel, num_labels, names, ".nii.gz",
                                                num_training, err);
    int values[16];
    for (int i = 0; i < num_labels; i++) values[i] = i;
    return rl_dataset_json_write(path, 1, &channel, num_labels, names, values, ".nii.gz",
                                 num_training, err);
}

/* ---- JSRT + SCR ---------------------------------------------------------- */

/* Reads one SCR mask into a 0/1 array; *edge receives its (square) size. */
static int read_mask(const char *path, uint8_t **mask, int *edge, rl_error *err) {
    rl_gif_image gif;
    int rc = rl_gif_read(path, &gif, err);
    if (rc) return rc;
    if (gif.width != gif.height || (gif.width != 1024 && gif.width != 2048)) {
        rc = rl_error_set(err, RL_EFORMAT, "%s: mask is %dx%d, expected 1024x1024 or 2048x2048",
                          path, gif.width, gif.height);
    } else {
        *mask = malloc((size_t)gif.width * gif.height);
        if (!*mask) rc = rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
        else rl_gif_foreground(&gif, *mask);
        *edge = gif.width;
    }
    rl_gif_free(&gif);
    return rc;
}

/* Sets `bit` in every label pixel (size x size) that the mask covers. The
 * mask is on the same grid or half of it; a half-resolution mask is
 * upsampled by nearest neighbour (each mask pixel covers 2x2 pixels), so
 * masks are never resampled into soft values. */
static void add_mask_bits(int32_t *labels, int size, const uint8_t *mask, int mask_edge, int bit) {
    int factor = size / mask_edge; /* 1 or 2 */
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++)
            if (mask[(size_t)(y / factor) * mask_edge + x / factor])
                labels[(size_t)y * size + x] |= 1 << bit;
}

/* 2048 -> 1024 by 2x2 block means (the masks' grid). */
static void halve_image(const float *in, int edge, float *out) {
    int half = edge / 2;
    for (int y = 0; y < half; y++)
        for (int x = 0; x < half; x++) {
            const float *p = in + (size_t)2 * y * edge + 2 * x;
            out[(size_t)y * half + x] = 0.25f * (p[0] + p[1] + p[edge] + p[edge + 1]);
        }
}

static int convert_jsrt_case(const char *images_dir, const char *masks_dir, const char *out_dir,
                             const char *file, int size, int *labeled, rl_error *err) {
    char id[RL_CASE_ID_MAX], path[4096 + 512];
    snprintf(id, sizeof id, "%.*s", (int)(strlen(file) - 4), file);
    /* Which masks exist decides labelled, unlabelled or inconsistent. */
    int present = 0;
    for (int s = 0; s < RL_JSRT_NUM_STRUCTURES; s++) {
        snprintf(path, sizeof path, "%s/%s/%s.gif", masks_dir, rl_jsrt_structures[s], id);
        present += path_exists(path, 0);
    }
    if (present != 0 && present != RL_JSRT_NUM_STRUCTURES)
        return rl_error_set(err, RL_EFORMAT, "%s: only %d of the 5 SCR masks exist for %s",
                            masks_dir, present, id);
    *labeled = present == RL_JSRT_NUM_STRUCTURES;

    rl_volume img = {0};
    snprintf(path, sizeof path, "%s/%s", images_dir, file);
    int rc = rl_jsrt_read(path, &img, err);
    rl_volume out = {0};
    if (!rc) rc = rl_volume_create(&out, size, size, 1, err);
    if (!rc) {
        double factor = (double)RL_JSRT_EDGE / size;
        out.spacing[0] = out.spacing[1] = RL_JSRT_SPACING_MM * factor;
        if (size == RL_JSRT_EDGE) memcpy(out.data, img.data, (size_t)size * size * sizeof(float));
        else halve_image(img.data, RL_JSRT_EDGE, out.data);
        snprintf(path, sizeof path, "%s/imagesTr/%s_0000.nii.gz", out_dir, id);
        rc = rl_volume_write_float(path, &out, out.data, err);
    }
    rl_volume_free(&img);
    int32_t *labels = NULL;
    if (!rc && *labeled) {
        labels = calloc((size_t)size * size, sizeof *labels);
        if (!labels) rc = rl_error_set(err, RL_ENOMEM, "out of memory");
        for (int s = 0; !rc && s < RL_JSRT_NUM_STRUCTURES; s++) {
            uint8_t *mask = NULL;
            int edge = 0;
            snprintf(path, sizeof path, "%s/%s/%s.gif", masks_dir, rl_jsrt_structures[s], id);
            rc = read_mask(path, &mask, &edge, err);
            if (!rc && edge > size)
                rc = rl_error_set(err, RL_EFORMAT, "%s: a %dx%d mask for a %dx%d output", path,
                                  edge, edge, size, size);
            if (!rc) add_mask_bits(labels, size, mask, edge, s);
            free(mask);
        }
        if (!rc) {
            snprintf(path, sizeof path, "%s/labelsTr/%s.nii.gz", out_dir, id);
            rc = rl_volume_write_labels(path, &out, labels, err);
        }
    }
    free(labels);
    rl_volume_free(&out);
    return rc;
}

int rl_convert_jsrt(const char *images_dir, const char *masks_dir, const char *out_dir, int size,
                    int force, rl_convert_summary *summary, rl_error *err) {
    rl_convert_summary local;
    if (!summary) summary = &local;
    memset(summary, 0, sizeof *summary);
    if (size != 1024 && size != 2048)
        return rl_error_set(err, RL_EINVAL, "JSRT output size must be 1024 or 2048 (got %d)", size);
    char path[4096];
    for (int s = 0; s < RL_JSRT_NUM_STRUCTURES; s++) {
        snprintf(path, sizeof path, "%s/%s", masks_dir, rl_jsrt_structures[s]);
        if (!path_exists(path, 1))
            return rl_error_set(err, RL_EIO,
                                "%s: no folder \"%s\" (expected SCR's masks folder "
                                "with one folder per structure)",
                                masks_dir, rl_jsrt_structures[s]);
    }
    char **files = NULL;
    int n = 0;
    int rc = list_dir(images_dir, 0, ".IMG", &files, &n, err);
    if (rc) return rc;
    if (n == 0) rc = rl_error_set(err, RL_EIO, "%s holds no JSRT .IMG files", images_dir);
    if (!rc) rc = prepare_output(out_dir, force, err);
    for (int i = 0; !rc && i < n; i++) {
        int labeled = 0;
        rc = convert_jsrt_case(images_dir, masks_dir, out_dir, files[i], size, &labeled, err);
        if (labeled) summary->num_labeled++;
        else summary->num_unlabeled++;
    }
    free_names(files, n);
    const char *names[RL_JSRT_NUM_STRUCTURES + 1] = {"background"};
    for (int s = 0; s < RL_JSRT_NUM_STRUCTURES; s++) names[s + 1] = rl_jsrt_structures[s];
    if (!rc)
        rc = write_json(out_dir, "radiograph", RL_JSRT_NUM_STRUCTURES + 1, names,
                        summary->num_labeled + summary->num_unlabeled, 1, err);
    return rc;
}

/* ---- RETOUCH --------------------------------------------------------------- */

static int convert_retouch_case(const char *case_dir, const char *id, const char *out_dir,
                                int *labeled, rl_error *err) {
    char path[4096 + 512];
    rl_volume img = {0}, ref = {0};
    snprintf(path, sizeof path, "%s/oct.mhd", case_dir);
    int rc = rl_metaimage_read(path, &img, err);
    if (!rc) {
        snprintf(path, sizeof path, "%s/imagesTr/%s_0000.nii.gz", out_dir, id);
        rc = rl_volume_write_float(path, &img, img.data, err);
    }
    snprintf(path, sizeof path, "%s/reference.mhd", case_dir);
    *labeled = path_exists(path, 0);
    int32_t *labels = NULL;
    if (!rc && *labeled) {
        rc = rl_metaimage_read(path, &ref, err);
        if (!rc && (ref.nx != img.nx || ref.ny != img.ny || ref.nz != img.nz))
            rc = rl_error_set(err, RL_EFORMAT, "%s is %dx%dx%d but its oct.mhd is %dx%dx%d", path,
                              ref.nx, ref.ny, ref.nz, img.nx, img.ny, img.nz);
        if (!rc) {
            labels = malloc(rl_volume_numel(&ref) * sizeof *labels);
            if (!labels) rc = rl_error_set(err, RL_ENOMEM, "out of memory");
        }
        if (!rc) {
            rc = rl_labels_from_volume(&ref, labels, err);
            if (rc) rl_error_prefix(err, "%s", path);
        }
        for (size_t i = 0; !rc && i < rl_volume_numel(&ref); i++)
            if (labels[i] > 3)
                rc =
                    rl_error_set(err, RL_EFORMAT, "%s: voxel %zu holds %d; RETOUCH labels are 0..3",
                                 path, i, labels[i]);
        if (!rc) {
            snprintf(path, sizeof path, "%s/labelsTr/%s.nii.gz", out_dir, id);
            rc = rl_volume_write_labels(path, &img, labels, err);
        }
    }
    free(labels);
    rl_volume_free(&img);
    rl_volume_free(&ref);
    return rc;
}

int rl_convert_retouch(const char *in_dir, const char *out_dir, int force,
                       rl_convert_summary *summary, rl_error *err) {
    rl_convert_summary local;
    if (!summary) summary = &local;
    memset(summary, 0, sizeof *summary);
    int rc = RL_OK, prepared = 0;
    char vendor_dir[4096];
    for (int v = 0; !rc && v < 3; v++) {
        snprintf(vendor_dir, sizeof vendor_dir, "%s/%s", in_dir, retouch_vendors[v]);
        if (!path_exists(vendor_dir, 1)) continue;
        char **cases = NULL;
        int n = 0;
        rc = list_dir(vendor_dir, 1, NULL, &cases, &n, err);
        for (int i = 0; !rc && i < n; i++) {
            char case_dir[4096 + 256], oct[4096 + 512], id[RL_CASE_ID_MAX];
            snprintf(case_dir, sizeof case_dir, "%s/%s", vendor_dir, cases[i]);
            snprintf(oct, sizeof oct, "%s/oct.mhd", case_dir);
            if (!path_exists(oct, 0)) continue; /* not a case folder */
            snprintf(id, sizeof id, "%s_%s", retouch_vendors[v], cases[i]);
            for (char *p = id; *p; p++) {
                *p = (char)tolower((unsigned char)*p);
                if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-') *p = '_';
            }
            if (!prepared) {
                rc = prepare_output(out_dir, force, err);
                prepared = 1;
                if (rc) break;
            }
            int labeled = 0;
            rc = convert_retouch_case(case_dir, id, out_dir, &labeled, err);
            if (labeled) summary->num_labeled++;
            else summary->num_unlabeled++;
        }
        free_names(cases, n);
    }
    if (!rc && summary->num_labeled + summary->num_unlabeled == 0)
        rc = rl_error_set(err, RL_EIO,
                          "%s holds no RETOUCH cases ({Cirrus,Spectralis,Topcon}/<case>/oct.mhd)",
                          in_dir);
    if (!rc)
        rc = write_json(out_dir, "OCT", 4, retouch_classes,
                        summary->num_labeled + summary->num_unlabeled, 0, err);
    return rc;
}
