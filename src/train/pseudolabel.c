/* Offline reference-guided pseudo-labels: a bank of labeled reference pixels
 * in the network's feature space, matched by every pixel of unlabeled cases. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"
#include "reflabel/dist.h"
#include "reflabel/pseudolabel.h"
#include "reflabel/train.h"

int rl_choose_labeled(const rl_dataset *ds, const char *spec, rl_select_mode mode,
                      uint64_t seed, uint8_t *keep, rl_error *err) {
    int n = ds->num_train, k = 0;
    for (int i = 0; i < n; i++) keep[i] = ds->train[i].label_path != NULL;
    if (!spec) return RL_OK;
    const char **ids = malloc((size_t)(n > 0 ? n : 1) * sizeof *ids);
    int *map = malloc((size_t)(n > 0 ? n : 1) * sizeof *map);
    uint8_t *mask = malloc((size_t)(n > 0 ? n : 1));
    int rc = RL_OK;
    if (!ids || !map || !mask) rc = rl_error_set(err, RL_ENOMEM, "out of memory");
    /* candidates: the cases with a label file, in the dataset's (sorted) order */
    for (int i = 0; !rc && i < n; i++)
        if (ds->train[i].label_path) {
            ids[k] = ds->train[i].id;
            map[k++] = i;
        }
    if (!rc && k == 0) rc = rl_error_set(err, RL_EINVAL, "%s: no labeled training case", ds->root);
    if (!rc) rc = rl_select_labeled(spec, k, ids, mode, seed, mask, err);
    if (!rc) {
        for (int i = 0; i < n; i++) keep[i] = 0;
        for (int j = 0; j < k; j++) keep[map[j]] = mask[j];
    }
    free(ids);
    free(map);
    free(mask);
    return rc;
}

rl_bank_config rl_reference_bank_config(const rl_reference_config *refs, int dim,
                                        int num_labels) {
    rl_bank_config bc;
    memset(&bc, 0, sizeof bc);
    bc.dim = dim;
    bc.num_labels = num_labels;
    bc.similarity = refs->similarity;
    bc.sampling = refs->sampling;
    bc.per_class_cap = refs->per_class_cap;
    bc.sample_count = refs->sample_count;
    bc.class_floor = refs->class_floor;
    return bc;
}

rl_match_config rl_reference_match_config(const rl_reference_config *refs) {
    rl_match_config mc;
    memset(&mc, 0, sizeof mc);
    mc.mode = refs->match_mode;
    mc.top_k = refs->top_k > 0 ? refs->top_k : 1;
    return mc;
}

rl_pseudolabel_config rl_pseudolabel_default_config(void) {
    rl_pseudolabel_config c;
    memset(&c, 0, sizeof c);
    c.refs.features = RL_FEATURES_LAST;
    c.refs.similarity = RL_SIM_COSINE;
    c.refs.sampling = RL_SAMPLE_ALL;
    c.refs.per_class_cap = 1024;
    c.refs.sample_count = 4096;
    c.refs.class_floor = 64;
    c.refs.top_k = 1;
    c.refs.match_mode = RL_MATCH_POOLED;
    c.refs.min_margin = 0.0f;
    c.axis = 2;
    c.ignore_label = -1;
    c.seed = 0;
    return c;
}

struct rl_pseudolabeler {
    rl_unet *net;
    rl_pseudolabel_config cfg;
    int dim, num_classes, channels, depth;
    rl_bank *bank;
    rl_matcher matcher;
    rl_rng rng;
    int reference_slices, slices_added;
    /* per-slice scratch, grown to the largest slice seen */
    size_t padded_cap, plane_cap;
    float *x;           /* (C, ph, pw) network input */
    float *feat_padded; /* (D, ph, pw) */
    float *feat;        /* (D, h, w) cropped */
    float *slice;       /* (h, w) */
    int32_t *slice_labels;
    float *slice_margin;
    uint64_t *slice_masks; /* multi-label: the slice's bit sets as bank masks */
};

int rl_pseudolabeler_create(rl_pseudolabeler **out, rl_unet *net,
                            const rl_pseudolabel_config *cfg, int reference_slices,
                            int max_slice_pixels, rl_error *err) {
    *out = NULL;
    const rl_unet_config *nc = rl_unet_get_config(net);
    if (reference_slices < 1)
        return rl_error_set(err, RL_EINVAL, "pseudolabel: no reference slice");
    if (max_slice_pixels < 1)
        return rl_error_set(err, RL_EINVAL, "pseudolabel: bad reference slice size %d",
                            max_slice_pixels);
    if (cfg->axis < 0 || cfg->axis > 2)
        return rl_error_set(err, RL_EINVAL, "pseudolabel: axis %d is not 0, 1 or 2", cfg->axis);
    if (cfg->refs.top_k < 1) return rl_error_set(err, RL_EINVAL, "pseudolabel: top_k must be >= 1");
    int dim = rl_feature_dim(nc, cfg->refs.features);
    if (dim < 1) return rl_error_set(err, RL_EINVAL, "pseudolabel: unknown feature source");
    rl_pseudolabeler *pl = calloc(1, sizeof *pl);
    if (!pl) return rl_error_set(err, RL_ENOMEM, "out of memory");
    pl->net = net;
    pl->cfg = *cfg;
    pl->dim = dim;
    pl->num_classes = nc->num_classes;
    pl->channels = nc->in_channels;
    pl->depth = nc->depth;
    pl->reference_slices = reference_slices;
    rl_rng_seed(&pl->rng, cfg->seed, 0x7073u /* "ps": the bank sampling stream */);

    rl_bank_config bc = rl_reference_bank_config(&cfg->refs, dim, nc->num_classes);
    bc.ignore_label = cfg->ignore_label;
    if (cfg->multilabel) {
        if (nc->num_classes > RL_MULTILABEL_MAX_STRUCTURES) {
            free(pl);
            return rl_error_set(err, RL_ERANGE, "pseudolabel: %d structures (bit sets hold %d)",
                                nc->num_classes, RL_MULTILABEL_MAX_STRUCTURES);
        }
        bc.multilabel = 1;
        bc.num_labels = rl_encoding_bank_labels(1, nc->num_classes);
    }
    bc.max_images = 1; /* one reference slice per batch */
    bc.max_image_pixels = max_slice_pixels;
    bc.memory_batches = reference_slices; /* nothing is ever evicted */
    rl_match_config mc = rl_reference_match_config(&cfg->refs);
    mc.threading = RL_THREAD_AUTO;
    int rc = rl_bank_create(&pl->bank, &bc, err);
    if (rc) {
        free(pl);
        return rc;
    }
    rc = rl_matcher_init(&pl->matcher, &mc, &bc, err);
    if (rc) {
        rl_bank_free(pl->bank);
        free(pl);
        return rc;
    }
    *out = pl;
    return RL_OK;
}

void rl_pseudolabeler_free(rl_pseudolabeler *pl) {
    if (!pl) return;
    rl_matcher_free(&pl->matcher);
    rl_bank_free(pl->bank);
    free(pl->x);
    free(pl->feat_padded);
    free(pl->feat);
    free(pl->slice);
    free(pl->slice_labels);
    free(pl->slice_margin);
    free(pl->slice_masks);
    free(pl);
}

/* ---- the bank, from one rank to all -------------------------------------- *
 * The exported arrays in one buffer: for each, a header (name, type, shape)
 * then its data, padded to 8 bytes so that every array stays aligned for its
 * int64 or float elements. Only ranks of one launch of one build read it. */

typedef struct packed_array {
    char name[32];
    int64_t type, ndim, shape[2];
} packed_array;

static size_t array_bytes(const rl_array *a) {
    size_t elems = (size_t)a->shape[0] * (a->ndim == 2 ? (size_t)a->shape[1] : 1);
    return elems * (a->type == RL_ARRAY_F32 ? sizeof(float) : sizeof(int64_t));
}

static size_t pad8(size_t n) { return (n + 7) & ~(size_t)7; }

/* The arrays of a packed buffer, as rl_bank_import's source reads them. */
typedef struct packed_bank {
    rl_array arrays[RL_BANK_STATE_ARRAYS];
    char names[RL_BANK_STATE_ARRAYS][sizeof(((packed_array *)0)->name)];
    int count;
} packed_bank;

static int unpack_bank(const char *buf, size_t bytes, packed_bank *pb, rl_error *err) {
    memset(pb, 0, sizeof *pb);
    int64_t count;
    if (bytes < sizeof count) return rl_error_set(err, RL_EFORMAT, "bank broadcast: truncated");
    memcpy(&count, buf, sizeof count);
    if (count < 0 || count > RL_BANK_STATE_ARRAYS)
        return rl_error_set(err, RL_EFORMAT, "bank broadcast: %lld arrays", (long long)count);
    size_t at = sizeof count;
    for (int i = 0; i < (int)count; i++) {
        packed_array h;
        if (bytes - at < sizeof h) return rl_error_set(err, RL_EFORMAT, "bank broadcast: truncated");
        memcpy(&h, buf + at, sizeof h);
        at += sizeof h;
        rl_array *a = &pb->arrays[i];
        /* names are those of rl_bank_export, matched by the source below */
        h.name[sizeof h.name - 1] = '\0';
        memcpy(pb->names[i], h.name, sizeof h.name);
        a->name = pb->names[i];
        if ((h.type != RL_ARRAY_I64 && h.type != RL_ARRAY_F32) || h.ndim < 1 || h.ndim > 2 ||
            h.shape[0] < 0 || h.shape[1] < 0)
            return rl_error_set(err, RL_EFORMAT, "bank broadcast: bad header of %s", h.name);
        a->type = (rl_array_type)h.type;
        a->ndim = (int)h.ndim;
        a->shape[0] = h.shape[0];
        a->shape[1] = h.shape[1];
        size_t n = array_bytes(a);
        if (bytes - at < pad8(n)) return rl_error_set(err, RL_EFORMAT, "bank broadcast: truncated");
        a->data = (void *)(buf + at);
        at += pad8(n);
    }
    pb->count = (int)count;
    return RL_OK;
}

static const void *packed_source(void *ctx, const char *name, rl_array_type type, int ndim,
                                 int64_t *shape, rl_error *err) {
    const packed_bank *pb = ctx;
    for (int i = 0; i < pb->count; i++) {
        const rl_array *a = &pb->arrays[i];
        if (strcmp(a->name, name) != 0) continue;
        if (a->type != type || a->ndim != ndim || (shape[0] >= 0 && a->shape[0] != shape[0]) ||
            (ndim == 2 && a->shape[1] != shape[1])) {
            rl_error_set(err, RL_EFORMAT, "bank broadcast: %s has another type or shape", name);
            return NULL;
        }
        shape[0] = a->shape[0];
        return a->data;
    }
    rl_error_set(err, RL_EFORMAT, "bank broadcast: no array %s", name);
    return NULL;
}

/* Root's bank in one freshly allocated buffer. */
static int pack_bank(const rl_bank *bank, char **out, int64_t *out_bytes, rl_error *err) {
    rl_bank_state st;
    int rc = rl_bank_export(bank, &st, err);
    if (rc) return rc;
    int64_t count = st.count;
    size_t bytes = sizeof count;
    for (int i = 0; i < st.count; i++) bytes += sizeof(packed_array) + pad8(array_bytes(&st.arrays[i]));
    char *buf = calloc(1, bytes);
    if (!buf) {
        rl_bank_state_free(&st);
        return rl_error_set(err, RL_ENOMEM, "out of memory for the bank (%zu bytes)", bytes);
    }
    memcpy(buf, &count, sizeof count);
    size_t at = sizeof count;
    for (int i = 0; i < st.count; i++) {
        const rl_array *a = &st.arrays[i];
        packed_array h;
        memset(&h, 0, sizeof h);
        snprintf(h.name, sizeof h.name, "%s", a->name);
        h.type = a->type;
        h.ndim = a->ndim;
        h.shape[0] = a->shape[0];
        h.shape[1] = a->ndim == 2 ? a->shape[1] : 0;
        memcpy(buf + at, &h, sizeof h);
        at += sizeof h;
        memcpy(buf + at, a->data, array_bytes(a));
        at += pad8(array_bytes(a));
    }
    rl_bank_state_free(&st);
    *out = buf;
    *out_bytes = (int64_t)bytes;
    return RL_OK;
}

int rl_pseudolabeler_broadcast_bank(rl_pseudolabeler *pl, int root, rl_error *err) {
    if (rl_dist_size() == 1) return RL_OK;
    const int here = rl_dist_rank() == root;
    char *buf = NULL;
    int64_t bytes = 0;
    /* Each step that can fail on one rank ends in rl_dist_agree before the
     * next collective, so that a failure stops every rank instead of
     * leaving the others in a broadcast the failed one never joins. */
    int rc = here ? pack_bank(pl->bank, &buf, &bytes, err) : RL_OK;
    rc = rl_dist_agree(rc, err);
    if (!rc) rc = rl_dist_broadcast(&bytes, sizeof bytes, root, err);
    if (!rc && !here && !(buf = malloc(bytes > 0 ? (size_t)bytes : 1)))
        rc = rl_error_set(err, RL_ENOMEM, "out of memory for the bank (%lld bytes)", (long long)bytes);
    rc = rl_dist_agree(rc, err);
    if (!rc) rc = rl_dist_broadcast(buf, (size_t)bytes, root, err);
    if (!rc && !here) {
        packed_bank pb;
        rc = unpack_bank(buf, (size_t)bytes, &pb, err);
        /* a check pass first: a bank that does not fit is an error, not a
         * half-applied copy */
        if (!rc) rc = rl_bank_import(pl->bank, packed_source, &pb, "bank broadcast", 0, err);
        if (!rc) rc = rl_bank_import(pl->bank, packed_source, &pb, "bank broadcast", 1, err);
        /* root added every reference slice; none may be added here */
        if (!rc) pl->slices_added = pl->reference_slices;
    }
    free(buf);
    return rl_dist_agree(rc, err);
}

int rl_pseudolabeler_references(const rl_pseudolabeler *pl) { return rl_bank_count(pl->bank); }

size_t rl_pseudolabeler_bank_bytes(const rl_pseudolabeler *pl) {
    return (size_t)rl_bank_capacity(pl->bank) * (size_t)pl->dim * sizeof(float);
}

/* Grows the per-slice buffers to hold a (h, w) slice padded to (ph, pw). */
static int ensure_scratch(rl_pseudolabeler *pl, size_t plane, size_t padded, rl_error *err) {
    if (padded > pl->padded_cap) {
        float *x = realloc(pl->x, padded * (size_t)pl->channels * sizeof *x);
        if (x) pl->x = x;
        float *f = x ? realloc(pl->feat_padded, padded * (size_t)pl->dim * sizeof *f) : NULL;
        if (f) pl->feat_padded = f;
        if (!x || !f) return rl_error_set(err, RL_ENOMEM, "out of memory for slice features");
        pl->padded_cap = padded;
    }
    if (plane > pl->plane_cap) {
        float *f = realloc(pl->feat, plane * (size_t)pl->dim * sizeof *f);
        if (f) pl->feat = f;
        float *s = f ? realloc(pl->slice, plane * sizeof *s) : NULL;
        if (s) pl->slice = s;
        int32_t *l = s ? realloc(pl->slice_labels, plane * sizeof *l) : NULL;
        if (l) pl->slice_labels = l;
        float *m = l ? realloc(pl->slice_margin, plane * sizeof *m) : NULL;
        if (m) pl->slice_margin = m;
        uint64_t *b = m ? realloc(pl->slice_masks, plane * sizeof *b) : NULL;
        if (b) pl->slice_masks = b;
        if (!f || !s || !l || !m || !b)
            return rl_error_set(err, RL_ENOMEM, "out of memory for slice features");
        pl->plane_cap = plane;
    }
    return RL_OK;
}

/* A case prepared for slicing: normalised copies of its channels and the
 * slice geometry (the same as rl_predict_case). */
typedef struct prepared_case {
    rl_volume *norm; /* channels volumes */
    int channels, axis, slices, h, w, ph, pw;
} prepared_case;

static void prepared_free(prepared_case *pc) {
    for (int c = 0; pc->norm && c < pc->channels; c++) rl_volume_free(&pc->norm[c]);
    free(pc->norm);
    pc->norm = NULL;
}

static int prepare_case(rl_pseudolabeler *pl, const rl_volume *images, int channels,
                        prepared_case *pc, rl_error *err) {
    memset(pc, 0, sizeof *pc);
    if (channels != pl->channels)
        return rl_error_set(err, RL_EINVAL, "case has %d channels, the model expects %d",
                            channels, pl->channels);
    const rl_volume *v0 = &images[0];
    for (int c = 1; c < channels; c++)
        if (images[c].nx != v0->nx || images[c].ny != v0->ny || images[c].nz != v0->nz)
            return rl_error_set(err, RL_EINVAL, "channel %d has another shape than channel 0", c);
    int m = 1 << pl->depth;
    pc->channels = channels;
    pc->axis = v0->nz == 1 ? 2 : pl->cfg.axis;
    rl_slice_shape(v0->nx, v0->ny, v0->nz, pc->axis, &pc->h, &pc->w);
    pc->ph = (pc->h + m - 1) / m * m;
    pc->pw = (pc->w + m - 1) / m * m;
    pc->slices = rl_volume_num_slices(v0, pc->axis);
    int rc = ensure_scratch(pl, (size_t)pc->h * pc->w, (size_t)pc->ph * pc->pw, err);
    if (rc) return rc;
    pc->norm = calloc((size_t)channels, sizeof *pc->norm);
    if (!pc->norm) return rl_error_set(err, RL_ENOMEM, "out of memory");
    for (int c = 0; c < channels && !rc; c++) {
        rc = rl_volume_create_like(&pc->norm[c], &images[c], err);
        if (!rc) {
            memcpy(pc->norm[c].data, images[c].data, rl_volume_numel(v0) * sizeof(float));
            rc = rl_normalize_volume(&pc->norm[c], err);
        }
    }
    if (!rc) rc = rl_unet_plan(pl->net, 1, pc->ph, pc->pw, 0, err);
    if (rc) prepared_free(pc);
    return rc;
}

/* Features of slice s into pl->feat (D, h, w): the padded slice goes through
 * the network and its (D, ph, pw) features are cropped to the slice. */
static int slice_features(rl_pseudolabeler *pl, const prepared_case *pc, int s, rl_error *err) {
    size_t pplane = (size_t)pc->ph * pc->pw, plane = (size_t)pc->h * pc->w;
    memset(pl->x, 0, pplane * (size_t)pc->channels * sizeof *pl->x);
    int h, w, rc = RL_OK;
    for (int c = 0; c < pc->channels && !rc; c++) {
        rc = rl_volume_get_slice(&pc->norm[c], pc->axis, s, pl->slice, &h, &w, NULL, err);
        for (int y = 0; !rc && y < h; y++)
            memcpy(pl->x + (size_t)c * pplane + (size_t)y * pc->pw, pl->slice + (size_t)y * w,
                   (size_t)w * sizeof *pl->x);
    }
    if (!rc) rc = rl_unet_forward(pl->net, pl->x, 0, err);
    if (!rc) rc = rl_unet_extract_features(pl->net, pl->cfg.refs.features, pl->feat_padded, err);
    if (rc) return rc;
    for (int d = 0; d < pl->dim; d++)
        for (int y = 0; y < pc->h; y++)
            memcpy(pl->feat + (size_t)d * plane + (size_t)y * pc->w,
                   pl->feat_padded + (size_t)d * pplane + (size_t)y * pc->pw,
                   (size_t)pc->w * sizeof *pl->feat);
    return RL_OK;
}

/* Slice s of an int32 label map (nx, ny, nz), with the axis conventions of
 * rl_volume_get_slice. */
static void labels_get_slice(const int32_t *labels, int nx, int ny, int nz, int axis, int s,
                             int32_t *out) {
    if (axis == 2) {
        memcpy(out, labels + (size_t)s * nx * ny, (size_t)nx * ny * sizeof *out);
    } else if (axis == 1) {
        for (int z = 0; z < nz; z++)
            memcpy(out + (size_t)z * nx, labels + ((size_t)z * ny + s) * nx,
                   (size_t)nx * sizeof *out);
    } else {
        for (int z = 0; z < nz; z++)
            for (int y = 0; y < ny; y++)
                out[(size_t)z * ny + y] = labels[((size_t)z * ny + y) * nx + s];
    }
}

int rl_pseudolabeler_add_reference(rl_pseudolabeler *pl, const rl_volume *images, int channels,
                                   const int32_t *labels, rl_error *err) {
    prepared_case pc;
    int rc = prepare_case(pl, images, channels, &pc, err);
    if (rc) return rc;
    if (pl->slices_added + pc.slices > pl->reference_slices)
        rc = rl_error_set(err, RL_ERANGE,
                          "pseudolabel: %d reference slices exceed the %d the bank was made for",
                          pl->slices_added + pc.slices, pl->reference_slices);
    if (!rc && (int64_t)pc.h * pc.w > rl_bank_get_config(pl->bank)->max_image_pixels)
        rc = rl_error_set(err, RL_ERANGE,
                          "pseudolabel: reference slice %dx%d exceeds the %d pixels the bank "
                          "was made for",
                          pc.h, pc.w, rl_bank_get_config(pl->bank)->max_image_pixels);
    const rl_volume *v0 = &images[0];
    for (int s = 0; s < pc.slices && !rc; s++) {
        rc = slice_features(pl, &pc, s, err);
        if (rc) break;
        labels_get_slice(labels, v0->nx, v0->ny, v0->nz, pc.axis, s, pl->slice_labels);
        if (pl->cfg.multilabel) {
            for (size_t i = 0; i < (size_t)pc.h * pc.w; i++)
                pl->slice_masks[i] = (uint64_t)(uint32_t)pl->slice_labels[i];
            rc = rl_bank_add(pl->bank, pl->feat, NULL, pl->slice_masks, 1, pc.h, pc.w, &pl->rng,
                             err);
        } else {
            rc = rl_bank_add(pl->bank, pl->feat, pl->slice_labels, NULL, 1, pc.h, pc.w,
                             &pl->rng, err);
        }
        if (!rc) pl->slices_added++;
    }
    prepared_free(&pc);
    return rc;
}

int rl_pseudolabeler_label_case(rl_pseudolabeler *pl, const rl_volume *images, int channels,
                                int32_t *labels_out, float *margin_out, rl_error *err) {
    if (rl_bank_count(pl->bank) == 0)
        return rl_error_set(err, RL_EINVAL,
                            "pseudolabel: the bank holds no reference pixel (all ignored?)");
    prepared_case pc;
    int rc = prepare_case(pl, images, channels, &pc, err);
    if (rc) return rc;
    const rl_volume *v0 = &images[0];
    /* margin_out seen as a volume, to write slices into it */
    rl_volume margin_vol = {0};
    margin_vol.nx = v0->nx;
    margin_vol.ny = v0->ny;
    margin_vol.nz = v0->nz;
    margin_vol.data = margin_out;
    rl_match_out mo;
    memset(&mo, 0, sizeof mo);
    mo.label = pl->slice_labels;
    mo.mask = pl->cfg.multilabel ? pl->slice_masks : NULL;
    mo.margin = pl->slice_margin;
    for (int s = 0; s < pc.slices && !rc; s++) {
        rc = slice_features(pl, &pc, s, err);
        if (!rc) rc = rl_match(&pl->matcher, pl->bank, pl->feat, 1, pc.h, pc.w, &mo, err);
        /* multi-label: the bank's label ids stand for masks; keep the masks */
        for (size_t i = 0; !rc && mo.mask && i < (size_t)pc.h * pc.w; i++)
            pl->slice_labels[i] = (int32_t)pl->slice_masks[i];
        if (!rc)
            rc = rl_labels_set_slice(labels_out, v0->nx, v0->ny, v0->nz, pc.axis, s,
                                     pl->slice_labels, err);
        if (!rc && margin_out) rc = rl_volume_set_slice(&margin_vol, pc.axis, s, pl->slice_margin, err);
    }
    prepared_free(&pc);
    return rc;
}

int64_t rl_pseudolabel_apply_min_margin(int32_t *labels, const float *margin, int64_t n,
                                        float min_margin, int32_t ignore_value) {
    int64_t changed = 0;
    for (int64_t i = 0; i < n; i++)
        if (margin[i] < min_margin) { /* NaN never occurs: the matcher rejects it */
            labels[i] = ignore_value;
            changed++;
        }
    return changed;
}

/* Sorts v[0..n) into descending order in place: heapsort, so that a
 * training step that calibrates its margin allocates nothing (glibc's qsort
 * may take a buffer from malloc). A min-heap whose root is moved to the end
 * leaves the smallest values last. */
static void sift_down_min(float *v, int64_t root, int64_t n) {
    for (;;) {
        int64_t child = 2 * root + 1;
        if (child >= n) return;
        if (child + 1 < n && v[child + 1] < v[child]) child++;
        if (!(v[child] < v[root])) return;
        float t = v[root];
        v[root] = v[child];
        v[child] = t;
        root = child;
    }
}

static void sort_descending(float *v, int64_t n) {
    for (int64_t i = n / 2 - 1; i >= 0; i--) sift_down_min(v, i, n);
    for (int64_t end = n - 1; end > 0; end--) {
        float t = v[0];
        v[0] = v[end];
        v[end] = t;
        sift_down_min(v, 0, end);
    }
}

float rl_pseudolabel_margin_for_accuracy(float *right, int64_t n_right, float *wrong,
                                         int64_t n_wrong, double accuracy) {
    if (n_right + n_wrong == 0) return NAN;
    sort_descending(right, n_right);
    sort_descending(wrong, n_wrong);
    /* Lower the threshold one distinct margin at a time; every pixel equal
     * to it joins the kept set together, so ties are kept or dropped alike. */
    float best = INFINITY;
    int64_t i = 0, j = 0;
    while (i < n_right || j < n_wrong) {
        float t = i == n_right ? wrong[j] : j == n_wrong ? right[i] : fmaxf(right[i], wrong[j]);
        while (i < n_right && right[i] == t) i++;
        while (j < n_wrong && wrong[j] == t) j++;
        if ((double)i >= accuracy * (double)(i + j)) best = t;
    }
    /* best is the lowest margin of all: every pixel is kept, and so should
     * an unlabeled pixel of lower margin still be. */
    if (best != INFINITY) {
        float lowest = n_right == 0               ? wrong[n_wrong - 1]
                       : n_wrong == 0             ? right[n_right - 1]
                                                  : fminf(right[n_right - 1], wrong[n_wrong - 1]);
        if (best == lowest) return -INFINITY;
    }
    return best;
}

/* The k-th largest of v[0..m), 1 <= k <= m, by Hoare's selection (v is
 * reordered). Deterministic, as the answer is a value, not a position. */
static float kth_largest(float *v, int64_t m, int64_t k) {
    int64_t lo = 0, hi = m - 1, target = k - 1; /* position in descending order */
    while (lo < hi) {
        float a = v[lo], b = v[lo + (hi - lo) / 2], c = v[hi];
        float pivot = a < b ? (b < c ? b : a < c ? c : a) : (a < c ? a : b < c ? c : b);
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] > pivot) i++;
            while (v[j] < pivot) j--;
            if (i <= j) {
                float t = v[i];
                v[i++] = v[j];
                v[j--] = t;
            }
        }
        /* v[lo..j] >= pivot >= v[i..hi], and v[j+1..i-1] == pivot */
        if (target <= j) hi = j;
        else if (target >= i) lo = i;
        else return pivot;
    }
    return v[target];
}

int64_t rl_pseudolabel_keep_fraction(int32_t *labels, const float *confidence, int64_t n,
                                     double fraction, int32_t ignore_value, float *scratch) {
    if (!(fraction < 1.0)) return 0;
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (labels[i] != ignore_value) scratch[m++] = confidence[i];
    int64_t k = (int64_t)ceil(fraction * (double)m);
    if (m == 0 || k >= m) return 0;
    float cut = kth_largest(scratch, m, k < 1 ? 1 : k);
    int64_t changed = 0;
    for (int64_t i = 0; i < n; i++)
        if (labels[i] != ignore_value && confidence[i] < cut) {
            labels[i] = ignore_value;
            changed++;
        }
    return changed;
}

/* ---- agreement with hidden labels --------------------------------------- */

int rl_label_agreement_init(rl_label_agreement *a, int num_classes, rl_error *err) {
    memset(a, 0, sizeof *a);
    if (num_classes < 1) return rl_error_set(err, RL_EINVAL, "agreement: no class");
    a->num_classes = num_classes;
    a->pred = calloc((size_t)num_classes, sizeof *a->pred);
    a->truth = calloc((size_t)num_classes, sizeof *a->truth);
    a->both = calloc((size_t)num_classes, sizeof *a->both);
    if (!a->pred || !a->truth || !a->both) {
        rl_label_agreement_free(a);
        return rl_error_set(err, RL_ENOMEM, "out of memory");
    }
    return RL_OK;
}

void rl_label_agreement_free(rl_label_agreement *a) {
    free(a->pred);
    free(a->truth);
    free(a->both);
    memset(a, 0, sizeof *a);
}

int rl_label_agreement_add(rl_label_agreement *a, const int32_t *pred, const int32_t *truth,
                           int64_t n, int32_t truth_ignore, int32_t pred_ignore, rl_error *err) {
    int k = a->num_classes;
    for (int64_t i = 0; i < n; i++) {
        int32_t t = truth[i], p = pred[i];
        if (truth_ignore >= 0 && t == truth_ignore) continue;
        if (t < 0 || t >= k)
            return rl_error_set(err, RL_ERANGE, "agreement: reference label %d at voxel %lld is "
                                "outside [0, %d)", (int)t, (long long)i, k);
        if (pred_ignore >= 0 && p == pred_ignore) {
            a->abstained++;
            continue;
        }
        if (p < 0 || p >= k)
            return rl_error_set(err, RL_ERANGE, "agreement: predicted label %d at voxel %lld is "
                                "outside [0, %d)", (int)p, (long long)i, k);
        a->voxels++;
        a->truth[t]++;
        a->pred[p]++;
        if (p == t) {
            a->correct++;
            a->both[t]++;
        }
    }
    return RL_OK;
}

int rl_label_agreement_add_bitsets(rl_label_agreement *a, const int32_t *pred,
                                   const int32_t *truth, int64_t n, rl_error *err) {
    int k = a->num_classes;
    for (int64_t i = 0; i < n; i++) {
        int32_t t = truth[i], p = pred[i];
        if (t < 0 || t >> (k - 1) || p < 0 || p >> (k - 1))
            return rl_error_set(err, RL_ERANGE,
                                "agreement: %s %d at voxel %lld is not a bit set of %d structures",
                                t < 0 || t >> (k - 1) ? "reference" : "predicted",
                                (int)(t < 0 || t >> (k - 1) ? t : p), (long long)i, k - 1);
        a->voxels++;
        a->correct += p == t;
        for (int c = 0; c < k; c++) {
            int in_p = c == 0 ? p == 0 : (p >> (c - 1)) & 1;
            int in_t = c == 0 ? t == 0 : (t >> (c - 1)) & 1;
            a->pred[c] += in_p;
            a->truth[c] += in_t;
            a->both[c] += in_p && in_t;
        }
    }
    return RL_OK;
}

double rl_label_agreement_accuracy(const rl_label_agreement *a) {
    return a->voxels ? (double)a->correct / (double)a->voxels : NAN;
}

double rl_label_agreement_dice(const rl_label_agreement *a, int c) {
    int64_t denom = a->pred[c] + a->truth[c];
    return denom ? 2.0 * (double)a->both[c] / (double)denom : 1.0;
}
