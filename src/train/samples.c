/* Training samples: every slice of every case, normalised once at load time
 * so that a training step only copies and augments. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/train.h"

int rl_normalize_volume(rl_volume *vol, rl_error *err) {
    return rl_zscore_normalize(vol->data, rl_volume_numel(vol), RL_NORM_CLIP_LOW_PCT,
                               RL_NORM_CLIP_HIGH_PCT, err);
}

void rl_sample_set_free(rl_sample_set *set) {
    for (int i = 0; i < set->count; i++) {
        free(set->samples[i].image);
        free(set->samples[i].labels);
        free(set->samples[i].hidden_labels);
    }
    free(set->samples);
    free(set->case_ids);
    memset(set, 0, sizeof *set);
}

/* Appends every slice of one case. label is NULL for an unlabeled case;
 * hidden: the label goes to hidden_labels instead of labels. */
static int append_case_slices(rl_sample_set *set, const rl_dataset *ds, int case_index,
                              const rl_volume *images, const rl_volume *label, int hidden,
                              int *capacity, float *label_slice, rl_error *err) {
    const rl_volume *v0 = &images[0];
    int axis = v0->nz == 1 ? 2 : set->axis;
    int slices = rl_volume_num_slices(v0, axis);
    int h, w;
    rl_slice_shape(v0->nx, v0->ny, v0->nz, axis, &h, &w);
    size_t plane = (size_t)h * (size_t)w;
    if (set->count + slices > *capacity) {
        int grown = *capacity ? *capacity * 2 : 64;
        while (grown < set->count + slices) grown *= 2;
        rl_sample *p = realloc(set->samples, (size_t)grown * sizeof *p);
        if (!p) return rl_error_set(err, RL_ENOMEM, "out of memory loading samples");
        set->samples = p;
        *capacity = grown;
    }
    for (int s = 0; s < slices; s++) {
        rl_sample *smp = &set->samples[set->count];
        memset(smp, 0, sizeof *smp);
        smp->case_index = case_index;
        smp->slice_index = s;
        smp->h = h;
        smp->w = w;
        smp->image = malloc(plane * (size_t)set->channels * sizeof(float));
        int32_t *dst = label ? malloc(plane * sizeof(int32_t)) : NULL;
        if (hidden) smp->hidden_labels = dst;
        else smp->labels = dst;
        if (!smp->image || (label && !dst)) {
            free(smp->image);
            free(dst);
            return rl_error_set(err, RL_ENOMEM, "out of memory loading samples");
        }
        int rc = RL_OK;
        for (int c = 0; c < set->channels && !rc; c++)
            rc = rl_volume_get_slice(&images[c], axis, s, smp->image + (size_t)c * plane, &h,
                                     &w, NULL, err);
        if (!rc && label) {
            /* Label values were checked to be declared whole numbers when
             * the case was loaded, so the float-to-int conversion is exact. */
            rc = rl_volume_get_slice(label, axis, s, label_slice, &h, &w, NULL, err);
            for (size_t i = 0; !rc && i < plane; i++) {
                int32_t v = (int32_t)label_slice[i];
                dst[i] = v == ds->ignore_label ? RL_IGNORE : v;
            }
        }
        if (rc) {
            free(smp->image);
            free(dst);
            return rc;
        }
        set->count++;
        if (label && !hidden) set->labeled_count++;
        if (label && hidden) set->hidden_count++;
    }
    return RL_OK;
}

int rl_sample_set_load(rl_sample_set *set, const rl_dataset *ds, const rl_case *cases,
                       int num_cases, const uint8_t *keep_label, int axis, rl_error *err) {
    memset(set, 0, sizeof *set);
    if (axis < 0 || axis > 2) return rl_error_set(err, RL_EINVAL, "axis must be 0, 1 or 2");
    set->channels = ds->num_channels;
    set->num_classes = ds->num_classes;
    set->multilabel = ds->multilabel;
    set->axis = axis;
    set->case_ids = calloc((size_t)(num_cases > 0 ? num_cases : 1), sizeof *set->case_ids);
    if (!set->case_ids) return rl_error_set(err, RL_ENOMEM, "out of memory");
    set->num_cases = num_cases;
    int capacity = 0;
    rl_volume *images = calloc((size_t)ds->num_channels, sizeof *images);
    if (!images) {
        rl_sample_set_free(set);
        return rl_error_set(err, RL_ENOMEM, "out of memory");
    }
    int rc = RL_OK;
    for (int i = 0; i < num_cases && !rc; i++) {
        const rl_case *c = &cases[i];
        memcpy(set->case_ids[i], c->id, RL_CASE_ID_MAX);
        /* A hidden label is still read: it measures pseudo-label quality. */
        int want_label = c->label_path != NULL;
        int hidden = want_label && keep_label && !keep_label[i];
        rl_volume label = {0};
        rc = rl_dataset_load_case(ds, c, images, want_label ? &label : NULL, err);
        if (rc) break;
        for (int ch = 0; ch < ds->num_channels && !rc; ch++) {
            rc = rl_normalize_volume(&images[ch], err);
            if (rc) rl_error_prefix(err, "%s", c->image_paths[ch]);
        }
        float *label_slice = NULL;
        if (!rc && want_label) {
            /* One slice buffer; a whole volume is a safe upper bound. */
            label_slice = malloc(rl_volume_numel(&label) * sizeof *label_slice);
            if (!label_slice) rc = rl_error_set(err, RL_ENOMEM, "out of memory");
        }
        if (!rc)
            rc = append_case_slices(set, ds, i, images, want_label ? &label : NULL, hidden,
                                    &capacity, label_slice, err);
        free(label_slice);
        rl_dataset_free_case(ds, images, want_label ? &label : NULL);
    }
    free(images);
    if (!rc && set->count == 0) rc = rl_error_set(err, RL_EINVAL, "%s: no training slices", ds->root);
    if (rc) rl_sample_set_free(set);
    return rc;
}

int rl_sample_set_set_case_labels(rl_sample_set *set, int case_index, int nx, int ny, int nz,
                                  const int32_t *labels, rl_error *err) {
    int axis = nz == 1 ? 2 : set->axis;
    int h, w;
    rl_slice_shape(nx, ny, nz, axis, &h, &w);
    for (int i = 0; i < set->count; i++) {
        rl_sample *smp = &set->samples[i];
        if (smp->case_index != case_index) continue;
        if (smp->h != h || smp->w != w)
            return rl_error_set(err, RL_EINVAL, "case %s: labels of %dx%dx%d do not fit its %dx%d slices",
                                set->case_ids[case_index], nx, ny, nz, smp->h, smp->w);
        if (!smp->labels) {
            smp->labels = malloc((size_t)h * w * sizeof *smp->labels);
            if (!smp->labels) return rl_error_set(err, RL_ENOMEM, "out of memory");
            set->labeled_count++;
        }
        int rc = rl_labels_get_slice(labels, nx, ny, nz, axis, smp->slice_index, smp->labels, err);
        if (rc) return rc;
    }
    return RL_OK;
}
