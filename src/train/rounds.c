/* Offline reference pseudo-labels of whole cases (reflabel/rounds.h): the
 * one implementation behind `reflabel pseudolabel` and `train --rounds`. */
#include "reflabel/rounds.h"

#include "reflabel/dist.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int rl_offline_stats_init(rl_offline_stats *s, int num_classes, rl_error *err) {
    memset(s, 0, sizeof *s);
    int rc = rl_label_agreement_init(&s->all, num_classes, err);
    if (!rc) rc = rl_label_agreement_init(&s->kept, num_classes, err);
    if (rc) rl_offline_stats_free(s);
    return rc;
}

void rl_offline_stats_free(rl_offline_stats *s) {
    rl_label_agreement_free(&s->all);
    rl_label_agreement_free(&s->kept);
    memset(s, 0, sizeof *s);
}

/* The counts of one agreement, in one fixed order, to or from buf. */
static size_t agreement_io(rl_label_agreement *a, int64_t *buf, int out) {
    int64_t *fields[] = {&a->voxels, &a->correct, &a->abstained};
    size_t at = 0;
    for (size_t f = 0; f < sizeof fields / sizeof *fields; f++, at++)
        if (out) buf[at] = *fields[f];
        else *fields[f] = buf[at];
    int64_t *arrays[] = {a->pred, a->truth, a->both};
    for (size_t f = 0; f < sizeof arrays / sizeof *arrays; f++)
        for (int k = 0; k < a->num_classes; k++, at++)
            if (out) buf[at] = arrays[f][k];
            else arrays[f][k] = buf[at];
    return at;
}

int rl_offline_stats_sum(rl_offline_stats *s, rl_error *err) {
    if (rl_dist_size() == 1) return RL_OK;
    /* one reduction over one flat buffer: 4 scalars, then both agreements */
    size_t n = 4 + 2 * (3 + 3 * (size_t)s->all.num_classes);
    int64_t *buf = malloc(n * sizeof *buf);
    /* every rank must reach the reduction, so a failed allocation is agreed
     * on first rather than leaving the others waiting in it */
    int rc = rl_dist_agree(buf ? RL_OK : rl_error_set(err, RL_ENOMEM, "out of memory"), err);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[0] = s->cases;
    buf[1] = s->scored_cases;
    buf[2] = s->voxels;
    buf[3] = s->abstained;
    size_t at = 4;
    at += agreement_io(&s->all, buf + at, 1);
    agreement_io(&s->kept, buf + at, 1);
    rc = rl_dist_sum_i64(buf, n, err);
    if (!rc) {
        s->cases = (int)buf[0];
        s->scored_cases = (int)buf[1];
        s->voxels = buf[2];
        s->abstained = buf[3];
        at = 4;
        at += agreement_io(&s->all, buf + at, 0);
        agreement_io(&s->kept, buf + at, 0);
    }
    free(buf);
    return rc;
}

double rl_offline_stats_kept(const rl_offline_stats *s) {
    return s->voxels ? 1.0 - (double)s->abstained / (double)s->voxels : NAN;
}

int rl_offline_measure_references(const rl_case *const *cases, int count, int axis, int *slices,
                                  int *max_pixels, rl_error *err) {
    *slices = 0;
    *max_pixels = 0;
    for (int i = 0; i < count; i++) {
        rl_volume lab;
        int rc = rl_volume_read_labels(cases[i]->label_path, &lab, err);
        if (rc) return rc;
        int a = lab.nz == 1 ? 2 : axis, h, w;
        rl_slice_shape(lab.nx, lab.ny, lab.nz, a, &h, &w);
        int64_t pixels = (int64_t)h * w, total = (int64_t)*slices + rl_volume_num_slices(&lab, a);
        rl_volume_free(&lab);
        if (pixels > INT_MAX || total > INT_MAX)
            return rl_error_set(err, RL_ERANGE, "%s: too many reference pixels or slices",
                                cases[i]->label_path);
        *slices = (int)total;
        if (pixels > *max_pixels) *max_pixels = (int)pixels;
    }
    return RL_OK;
}

/* The label volume as class values (or bit sets), freshly allocated. */
static int label_values(const rl_volume *label, int32_t **out, rl_error *err) {
    *out = malloc(rl_volume_numel(label) * sizeof **out);
    return *out ? rl_labels_from_volume(label, *out, err)
                : rl_error_set(err, RL_ENOMEM, "out of memory");
}

int rl_offline_add_reference(rl_pseudolabeler *pl, const rl_dataset *ds, const rl_case *c,
                             rl_error *err) {
    rl_volume *images = calloc((size_t)ds->num_channels, sizeof *images);
    rl_volume label = {0};
    int rc = images ? rl_dataset_load_case(ds, c, images, &label, err)
                    : rl_error_set(err, RL_ENOMEM, "out of memory");
    if (!rc) {
        int32_t *labels = NULL;
        rc = label_values(&label, &labels, err);
        if (!rc) rc = rl_pseudolabeler_add_reference(pl, images, ds->num_channels, labels, err);
        if (rc) rl_error_prefix(err, "%s", c->label_path);
        rl_dataset_free_case(ds, images, &label);
        free(labels);
    }
    free(images);
    return rc;
}

void rl_offline_case_free(const rl_dataset *ds, rl_offline_case *oc) {
    if (oc->images) rl_dataset_free_case(ds, oc->images, NULL);
    free(oc->images);
    free(oc->labels);
    free(oc->margin);
    memset(oc, 0, sizeof *oc);
}

/* Counts a labelled case against its hidden label: `all` before the
 * minimum margin, `kept` after it (abstentions, marked num_classes, are
 * skipped and counted). Bit sets have no abstentions: both see them all. */
static int score_case(rl_offline_stats *s, const rl_dataset *ds, const int32_t *labels,
                      const int32_t *truth, int64_t n, int margin_applied, rl_error *err) {
    if (ds->multilabel) return rl_label_agreement_add_bitsets(margin_applied ? &s->kept : &s->all,
                                                              labels, truth, n, err);
    return margin_applied
               ? rl_label_agreement_add(&s->kept, labels, truth, n, ds->ignore_label,
                                        ds->num_classes, err)
               : rl_label_agreement_add(&s->all, labels, truth, n, ds->ignore_label, -1, err);
}

int rl_offline_label_case(rl_pseudolabeler *pl, const rl_dataset *ds, const rl_case *c,
                          float min_margin, rl_offline_stats *stats, rl_offline_case *out,
                          rl_error *err) {
    memset(out, 0, sizeof *out);
    rl_volume hidden = {0};
    out->images = calloc((size_t)ds->num_channels, sizeof *out->images);
    int rc = out->images ? rl_dataset_load_case(ds, c, out->images, &hidden, err)
                         : rl_error_set(err, RL_ENOMEM, "out of memory");
    if (rc) {
        free(out->images);
        out->images = NULL;
        return rc;
    }
    out->n = rl_volume_numel(&out->images[0]);
    int64_t n = (int64_t)out->n;
    out->labels = malloc(out->n * sizeof *out->labels);
    out->margin = malloc(out->n * sizeof *out->margin);
    int32_t *truth = NULL;
    if (!out->labels || !out->margin) rc = rl_error_set(err, RL_ENOMEM, "out of memory");
    if (!rc) {
        rc = rl_pseudolabeler_label_case(pl, out->images, ds->num_channels, out->labels,
                                         out->margin, err);
        if (rc) rl_error_prefix(err, "%s", c->image_paths[0]);
    }
    if (!rc && hidden.data) {
        rc = label_values(&hidden, &truth, err);
        if (!rc) rc = score_case(stats, ds, out->labels, truth, n, 0, err);
        stats->scored_cases += !rc;
    }
    if (!rc) {
        if (!ds->multilabel) /* num_classes may be a valid bit set there */
            stats->abstained += rl_pseudolabel_apply_min_margin(out->labels, out->margin, n,
                                                                min_margin, ds->num_classes);
        stats->voxels += n;
        stats->cases++;
        if (truth) rc = score_case(stats, ds, out->labels, truth, n, 1, err);
    }
    free(truth);
    rl_volume_free(&hidden);
    if (rc) rl_offline_case_free(ds, out);
    return rc;
}

int rl_rounds_pseudolabel(rl_unet *net, const rl_pseudolabel_config *cfg, const rl_dataset *ds,
                          const uint8_t *keep, rl_sample_set *set, rl_offline_stats *stats,
                          rl_error *err) {
    /* the references are the samples of the kept cases, one bank batch each */
    int references = 0, max_pixels = 0;
    for (int i = 0; i < set->count; i++) {
        const rl_sample *s = &set->samples[i];
        references += keep[s->case_index] && ds->train[s->case_index].label_path;
        if (s->h * s->w > max_pixels) max_pixels = s->h * s->w;
    }
    stats->references = references;
    rl_pseudolabeler *pl = NULL;
    int rc = rl_pseudolabeler_create(&pl, net, cfg, references, max_pixels, err);
    for (int i = 0; i < ds->num_train && !rc; i++)
        if (keep[i] && ds->train[i].label_path) rc = rl_offline_add_reference(pl, ds, &ds->train[i], err);
    for (int i = 0; i < ds->num_train && !rc; i++) {
        if (keep[i] && ds->train[i].label_path) continue;
        rl_offline_case oc;
        rc = rl_offline_label_case(pl, ds, &ds->train[i], cfg->refs.min_margin, stats, &oc, err);
        if (rc) break;
        const rl_volume *like = &oc.images[0];
        for (size_t v = 0; v < oc.n && !ds->multilabel; v++)
            if (oc.labels[v] == ds->num_classes) oc.labels[v] = RL_IGNORE;
        rc = rl_sample_set_set_case_labels(set, i, like->nx, like->ny, like->nz, oc.labels, err);
        rl_offline_case_free(ds, &oc);
    }
    rl_pseudolabeler_free(pl);
    return rc;
}
