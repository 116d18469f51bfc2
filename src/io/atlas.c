/* The atlas dataset: Colin27 T1 slices labelled with AAL regions grouped
 * into lobes (see include/reflabel/atlas.h and docs/DATA.md). */
#include "reflabel/atlas.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reflabel/dataset.h"

const char *const rl_atlas_class_names[RL_ATLAS_NUM_CLASSES] = {
    "background", "frontal",          "insula",   "limbic",    "occipital",
    "parietal",   "deep grey nuclei", "temporal", "cerebellum"};

/* A region list is a few kB; 1 MiB leaves ample room and bounds the read. */
#define ATLAS_TXT_MAX_BYTES (1u << 20)

/* Parses a decimal integer token in [lo, hi]; returns 0 on success. */
static int parse_long_token(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int rl_atlas_read_lobes(const char *txt_path, uint8_t *lobe_of_value, rl_error *err) {
    char *text = NULL;
    size_t size = 0;
    int rc = rl_read_file(txt_path, ATLAS_TXT_MAX_BYTES, &text, &size, err);
    if (rc) return rc;
    memset(lobe_of_value, 0, (size_t)RL_ATLAS_MAX_REGION + 1);
    /* Seen values, to refuse duplicates (a second line for a value would
     * silently override the first one's lobe). */
    uint8_t *seen = calloc((size_t)RL_ATLAS_MAX_REGION + 1, 1);
    if (!seen) {
        free(text);
        return rl_error_set(err, RL_ENOMEM, "%s: out of memory", txt_path);
    }
    int line_no = 0, regions = 0;
    char *save_line = NULL;
    for (char *line = strtok_r(text, "\n", &save_line); line && !rc;
         line = strtok_r(NULL, "\n", &save_line)) {
        line_no++;
        char *tokens[4] = {NULL, NULL, NULL, NULL};
        int count = 0;
        char *save_tok = NULL;
        for (char *t = strtok_r(line, " \t\r", &save_tok); t;
             t = strtok_r(NULL, " \t\r", &save_tok))
            if (count < 4) tokens[count++] = t;
            else count++;
        if (count == 0) continue; /* blank line (the real file ends with one) */
        long value, code;
        if (count != 3 || parse_long_token(tokens[0], 1, RL_ATLAS_MAX_REGION, &value) ||
            parse_long_token(tokens[2], 0, LONG_MAX, &code)) {
            rc = rl_error_set(err, RL_EFORMAT,
                              "%s: line %d is not \"VALUE NAME CODE\" with VALUE in 1..%d",
                              txt_path, line_no, RL_ATLAS_MAX_REGION);
            break;
        }
        if (seen[value]) {
            rc = rl_error_set(err, RL_EFORMAT, "%s: line %d repeats region value %ld", txt_path,
                              line_no, value);
            break;
        }
        seen[value] = 1;
        long lead = code;
        while (lead >= 10) lead /= 10;
        lobe_of_value[value] = (uint8_t)(lead >= 2 && lead <= 9 ? lead - 1 : 0);
        regions++;
    }
    if (!rc && regions == 0) rc = rl_error_set(err, RL_EFORMAT, "%s: no regions listed", txt_path);
    free(seen);
    free(text);
    return rc;
}

int rl_atlas_map_lobes(const rl_volume *atlas, const uint8_t *lobe_of_value, uint8_t *out,
                       rl_error *err) {
    size_t n = rl_volume_numel(atlas);
    for (size_t i = 0; i < n; i++) {
        float v = atlas->data[i];
        if (!(v >= 0.0f && v <= (float)RL_ATLAS_MAX_REGION) || v != floorf(v)) {
            int x = (int)(i % (size_t)atlas->nx);
            int y = (int)(i / (size_t)atlas->nx % (size_t)atlas->ny);
            int z = (int)(i / ((size_t)atlas->nx * (size_t)atlas->ny));
            return rl_error_set(err, RL_EFORMAT,
                                "atlas voxel (%d, %d, %d) holds %g, not a region value 0..%d", x, y,
                                z, (double)v, RL_ATLAS_MAX_REGION);
        }
        out[i] = lobe_of_value[(int)v];
    }
    return RL_OK;
}

int rl_atlas_downsample(const rl_volume *image, const uint8_t *labels, const int factor[3],
                        rl_volume *image_out, uint8_t **labels_out, rl_error *err) {
    *labels_out = NULL;
    const int n[3] = {image->nx, image->ny, image->nz};
    int out[3];
    for (int i = 0; i < 3; i++) {
        if (factor[i] != 1 && factor[i] != 2)
            return rl_error_set(err, RL_EINVAL, "downsampling factor %d along axis %d (1 or 2)",
                                factor[i], i);
        if (n[i] < factor[i])
            return rl_error_set(err, RL_EINVAL,
                                "a %dx%dx%d volume is too small to downsample by 2 along axis %d",
                                n[0], n[1], n[2], i);
        out[i] = n[i] / factor[i];
    }
    int ox = out[0], oy = out[1], oz = out[2], fx = factor[0], fy = factor[1], fz = factor[2];
    int rc = rl_volume_create(image_out, ox, oy, oz, err);
    if (rc) return rc;
    uint8_t *lab = malloc((size_t)ox * oy * oz);
    if (!lab) {
        rl_volume_free(image_out);
        return rl_error_set(err, RL_ENOMEM, "out of memory downsampling the atlas");
    }
    for (int i = 0; i < 3; i++) image_out->spacing[i] = factor[i] * image->spacing[i];
    const size_t sx = 1, sy = (size_t)image->nx, sz = (size_t)image->nx * image->ny;
    const double voxels = (double)(fx * fy * fz);
    for (int z = 0; z < oz; z++)
        for (int y = 0; y < oy; y++)
            for (int x = 0; x < ox; x++) {
                size_t base = (size_t)fz * z * sz + (size_t)fy * y * sy + (size_t)fx * x * sx;
                double sum = 0.0;
                int votes[256] = {0};
                for (int dz = 0; dz < fz; dz++)
                    for (int dy = 0; dy < fy; dy++)
                        for (int dx = 0; dx < fx; dx++) {
                            size_t i = base + dz * sz + dy * sy + dx * sx;
                            sum += image->data[i];
                            votes[labels[i]]++;
                        }
                /* Strictly greater keeps the lowest class among tied ones. */
                int best = 0;
                for (int c = 1; c < 256; c++)
                    if (votes[c] > votes[best]) best = c;
                size_t o = ((size_t)z * oy + y) * ox + x;
                image_out->data[o] = (float)(sum / voxels);
                lab[o] = (uint8_t)best;
            }
    *labels_out = lab;
    return RL_OK;
}

void rl_atlas_split(int n, uint8_t *role) {
    for (int i = 0; i < n; i++)
        role[i] = (i / RL_ATLAS_SLAB) % 3 == 2 ? RL_ATLAS_TEST : RL_ATLAS_TRAIN;
    /* A training slice next to a test slice would leak its anatomy (adjacent
     * 1 mm slices are nearly identical), so the neighbours are dropped. */
    for (int i = 0; i < n; i++) {
        if (role[i] == RL_ATLAS_TEST) continue;
        int next_to_test =
            (i > 0 && role[i - 1] == RL_ATLAS_TEST) || (i + 1 < n && role[i + 1] == RL_ATLAS_TEST);
        if (next_to_test) role[i] = RL_ATLAS_EXCLUDED;
    }
}

/* ---- the output folder -------------------------------------------------- */

static const char *const case_dirs[4] = {"imagesTr", "labelsTr", "imagesTs", "labelsTs"};

static int has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* *nonempty = 1 when dir exists and holds anything, 0 when it is absent or
 * empty; an existing non-folder is an error. */
static int folder_is_nonempty(const char *dir, int *nonempty, rl_error *err) {
    *nonempty = 0;
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT) return RL_OK;
        return rl_error_set(err, RL_EIO, "%s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return rl_error_set(err, RL_EIO, "%s exists and is not a folder", dir);
    DIR *d = opendir(dir);
    if (!d) return rl_error_set(err, RL_EIO, "cannot list %s: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            *nonempty = 1;
            break;
        }
    closedir(d);
    return RL_OK;
}

/* Removes the cases an earlier run left (atlas_*.nii.gz) so that a forced
 * rebuild with other options does not mix old and new slices. Nothing else
 * in the folder is touched. */
static int remove_old_cases(const char *out_dir, rl_error *err) {
    char path[4096];
    for (int k = 0; k < 4; k++) {
        snprintf(path, sizeof path, "%s/%s", out_dir, case_dirs[k]);
        DIR *d = opendir(path);
        if (!d) continue; /* absent: nothing to clean */
        struct dirent *e;
        int rc = RL_OK;
        while (!rc && (e = readdir(d)) != NULL) {
            if (strncmp(e->d_name, "atlas_", 6) != 0 || !has_suffix(e->d_name, ".nii.gz")) continue;
            char file[4096 + 256];
            snprintf(file, sizeof file, "%s/%s", path, e->d_name);
            if (unlink(file) != 0)
                rc = rl_error_set(err, RL_EIO, "cannot remove old case %s: %s", file,
                                  strerror(errno));
        }
        closedir(d);
        if (rc) return rc;
    }
    return RL_OK;
}

static int prepare_output(const char *out_dir, int force, rl_error *err) {
    int nonempty = 0;
    int rc = folder_is_nonempty(out_dir, &nonempty, err);
    if (rc) return rc;
    if (nonempty && !force)
        return rl_error_set(err, RL_EINVAL,
                            "%s is not empty; choose a new folder or pass --force to rebuild "
                            "the atlas dataset in it",
                            out_dir);
    if (nonempty) {
        rc = remove_old_cases(out_dir, err);
        if (rc) return rc;
    }
    char path[4096];
    for (int k = 0; k < 4; k++) {
        snprintf(path, sizeof path, "%s/%s", out_dir, case_dirs[k]);
        rc = rl_make_dirs(path, err);
        if (rc) return rc;
    }
    return RL_OK;
}

/* ---- the cases ---------------------------------------------------------- */

/* Number of labelled voxels in slice `index` along axis. */
static int64_t labelled_in_slice(const uint8_t *labels, int nx, int ny, int nz, int axis,
                                 int index) {
    /* The slice is the box [lo, hi) with one axis pinned to index. */
    int lo[3] = {0, 0, 0}, hi[3] = {nx, ny, nz};
    lo[axis] = index;
    hi[axis] = index + 1;
    int64_t count = 0;
    for (int z = lo[2]; z < hi[2]; z++)
        for (int y = lo[1]; y < hi[1]; y++)
            for (int x = lo[0]; x < hi[0]; x++) count += labels[((size_t)z * ny + y) * nx + x] != 0;
    return count;
}

/* Writes one slice as a 2D case: image (float32) and labels (uint8).
 * label_vol holds the labels as floats so that both go through the same
 * slicer and can never disagree on orientation. */
static int write_case(const char *out_dir, int test, const char *id, const rl_volume *image,
                      const rl_volume *label_vol, int axis, int index, float *slice,
                      float *label_slice, int32_t *label_ints, rl_error *err) {
    int h = 0, w = 0;
    double spacing_hw[2];
    int rc = rl_volume_get_slice(image, axis, index, slice, &h, &w, spacing_hw, err);
    if (!rc) rc = rl_volume_get_slice(label_vol, axis, index, label_slice, &h, &w, spacing_hw, err);
    if (rc) return rc;
    for (size_t i = 0; i < (size_t)h * w; i++) label_ints[i] = (int32_t)label_slice[i];

    rl_volume like;
    rc = rl_volume_create(&like, w, h, 1, err);
    if (rc) return rc;
    like.spacing[0] = spacing_hw[1];
    like.spacing[1] = spacing_hw[0];
    like.spacing[2] = image->spacing[axis];
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s_0000.nii.gz", out_dir, test ? "imagesTs" : "imagesTr",
             id);
    rc = rl_volume_write_float(path, &like, slice, err);
    if (!rc) {
        snprintf(path, sizeof path, "%s/%s/%s.nii.gz", out_dir, test ? "labelsTs" : "labelsTr", id);
        rc = rl_volume_write_labels(path, &like, label_ints, err);
    }
    rl_volume_free(&like);
    return rc;
}

static int write_dataset_json(const char *out_dir, int num_training, rl_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/dataset.json", out_dir);
    const char *channels[] = {"T1"};
    int values[RL_ATLAS_NUM_CLASSES];
    for (int c = 0; c < RL_ATLAS_NUM_CLASSES; c++) values[c] = c;
    return rl_dataset_json_write(path, 1, channels, RL_ATLAS_NUM_CLASSES, rl_atlas_class_names,
                                 values, ".nii.gz", num_training, err);
}

/* Slices the (image, labels) pair into cases and writes the dataset. */
static int write_cases(const char *out_dir, const rl_volume *image, const uint8_t *labels,
                       const rl_atlas_options *opt, rl_atlas_summary *sum, rl_error *err) {
    const int axis = opt->axis;
    const int n_slices = rl_volume_num_slices(image, axis);
    int *qualifying = malloc((size_t)n_slices * sizeof *qualifying);
    uint8_t *role = malloc((size_t)n_slices);
    size_t plane = (size_t)image->nx * image->ny + (size_t)image->ny * image->nz +
                   (size_t)image->nx * image->nz; /* bigger than any slice */
    float *slice = malloc(plane * sizeof *slice);
    float *label_slice = malloc(plane * sizeof *label_slice);
    int32_t *label_ints = malloc(plane * sizeof *label_ints);
    rl_volume label_vol = {0};
    int rc = rl_volume_create(&label_vol, image->nx, image->ny, image->nz, err);
    if (!rc) {
        memcpy(label_vol.spacing, image->spacing, sizeof label_vol.spacing);
        for (size_t i = 0; i < rl_volume_numel(image); i++) label_vol.data[i] = labels[i];
    }
    if (!rc && (!qualifying || !role || !slice || !label_slice || !label_ints))
        rc = rl_error_set(err, RL_ENOMEM, "out of memory");
    int nq = 0;
    for (int s = 0; !rc && s < n_slices; s++)
        if (labelled_in_slice(labels, image->nx, image->ny, image->nz, axis, s) >= opt->min_voxels)
            qualifying[nq++] = s;
    if (!rc) rl_atlas_split(nq, role);
    sum->nx = image->nx;
    sum->ny = image->ny;
    sum->nz = image->nz;
    sum->num_slices = n_slices;
    sum->num_qualifying = nq;
    sum->num_train = sum->num_test = sum->num_excluded = 0;
    for (int i = 0; !rc && i < nq; i++) {
        if (role[i] == RL_ATLAS_EXCLUDED) {
            sum->num_excluded++;
            continue;
        }
        char id[64];
        snprintf(id, sizeof id, "atlas_%c%03d", "xyz"[axis], qualifying[i]);
        int test = role[i] == RL_ATLAS_TEST;
        rc = write_case(out_dir, test, id, image, &label_vol, axis, qualifying[i], slice,
                        label_slice, label_ints, err);
        if (test) sum->num_test++;
        else sum->num_train++;
    }
    if (!rc && nq == 0)
        rc = rl_error_set(err, RL_EINVAL, "no slice along axis %d has %d or more labelled voxels",
                          axis, opt->min_voxels);
    if (!rc) rc = write_dataset_json(out_dir, sum->num_train, err);
    rl_volume_free(&label_vol);
    free(qualifying);
    free(role);
    free(slice);
    free(label_slice);
    free(label_ints);
    return rc;
}

int rl_atlas_build(const char *t1_path, const char *atlas_path, const char *txt_path,
                   const char *out_dir, const rl_atlas_options *opt, rl_atlas_summary *summary,
                   rl_error *err) {
    if (opt->axis < 0 || opt->axis > 2)
        return rl_error_set(err, RL_EINVAL, "axis must be 0, 1 or 2 (got %d)", opt->axis);
    if (opt->downsample != 1 && opt->downsample != 2)
        return rl_error_set(err, RL_EINVAL, "downsample must be 1 or 2 (got %d)", opt->downsample);
    if (opt->in_plane && opt->downsample != 2)
        return rl_error_set(err, RL_EINVAL, "in-plane downsampling needs downsample 2");
    if (opt->min_voxels < 1)
        return rl_error_set(err, RL_EINVAL, "min-voxels must be at least 1 (got %d)",
                            opt->min_voxels);
    rl_atlas_summary local;
    if (!summary) summary = &local;
    memset(summary, 0, sizeof *summary);

    uint8_t *lobe_of_value = malloc((size_t)RL_ATLAS_MAX_REGION + 1);
    if (!lobe_of_value) return rl_error_set(err, RL_ENOMEM, "out of memory");
    rl_volume t1 = {0}, atlas = {0}, t1_small = {0};
    uint8_t *labels = NULL, *labels_small = NULL;
    int rc = rl_atlas_read_lobes(txt_path, lobe_of_value, err);
    if (!rc) rc = rl_volume_read(t1_path, &t1, err);
    if (!rc) rc = rl_volume_read_labels(atlas_path, &atlas, err);
    if (!rc && (t1.nx != atlas.nx || t1.ny != atlas.ny || t1.nz != atlas.nz))
        rc = rl_error_set(err, RL_EFORMAT, "%s is %dx%dx%d but %s is %dx%dx%d: not the same grid",
                          atlas_path, atlas.nx, atlas.ny, atlas.nz, t1_path, t1.nx, t1.ny, t1.nz);
    if (!rc) {
        labels = malloc(rl_volume_numel(&atlas));
        if (!labels) rc = rl_error_set(err, RL_ENOMEM, "out of memory");
    }
    if (!rc) {
        rc = rl_atlas_map_lobes(&atlas, lobe_of_value, labels, err);
        if (rc) rl_error_prefix(err, "%s", atlas_path);
    }
    rl_volume_free(&atlas);
    free(lobe_of_value);
    const rl_volume *image = &t1;
    const uint8_t *lab = labels;
    if (!rc && opt->downsample == 2) {
        int factor[3] = {2, 2, 2};
        if (opt->in_plane) factor[opt->axis] = 1;
        rc = rl_atlas_downsample(&t1, labels, factor, &t1_small, &labels_small, err);
        image = &t1_small;
        lab = labels_small;
    }
    /* The output folder is touched only once every input has been read. */
    if (!rc) rc = prepare_output(out_dir, opt->force, err);
    if (!rc) rc = write_cases(out_dir, image, lab, opt, summary, err);
    rl_volume_free(&t1);
    rl_volume_free(&t1_small);
    free(labels);
    free(labels_small);
    return rc;
}
