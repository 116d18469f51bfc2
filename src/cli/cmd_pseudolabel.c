/* reflabel pseudolabel: reference-guided pseudo-labels for the unlabeled
 * training cases of a dataset, optionally exported as an nnU-Net dataset.
 *
 * Under MPI (reflabel/dist.h; docs/DISTRIBUTED.md) rank 0 stages the output
 * folders and builds the reference bank, which it broadcasts; the query
 * cases are dealt round-robin, each rank writing its cases' files into rank
 * 0's staging folders (a shared file system, as for predict); the counts
 * behind the metrics are summed over the ranks, and rank 0 writes the shared
 * files and publishes the folders. Every step that can fail on one rank ends
 * in rl_dist_agree before the next collective, so that a failure anywhere
 * stops every rank with the same line and no published folder. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "options.h"
#include "progress.h"
#include "run_files.h"
#include "staged_dir.h"
#include "reflabel/checkpoint.h"
#include "reflabel/dist.h"
#include "reflabel/pseudolabel.h"
#include "reflabel/rounds.h"

/* Parses the words into o, which starts from the library's defaults, and
 * checks what no single option can. Returns 0, 2 after a usage error, or
 * -1 after --help. */
static int parse_options(int argc, char **argv, pl_options *o) {
    const char *cmd = "pseudolabel";
    pl_options defaults;
    pl_options_init(&defaults);
    pl_options_init(o);
    cli_at at = pl_options_at(o), default_at = pl_options_at(&defaults);
    int rc = cli_parse(&cli_pseudolabel_command, argc, argv, &at, &o->given, &default_at);
    if (rc) return rc;
    if (!o->model || !o->data || !o->out)
        return cli_usage_error(cmd, "--model, --data and --out are required");
    if (o->cfg.refs.top_k > 1 && o->cfg.refs.match_mode == RL_MATCH_PER_IMAGE)
        return cli_usage_error(cmd, "--topk and --per-image-vote exclude each other");
    if (o->export_dir) {
        size_t a = strlen(o->out), b = strlen(o->export_dir), n = a < b ? a : b;
        if (!strncmp(o->out, o->export_dir, n) &&
            (a == b || o->out[n] == '/' || o->export_dir[n] == '/'))
            return cli_usage_error(cmd, "--out and --export-nnunet must be separate folders");
    }
    return 0;
}

/* --min-confidence (or --min-margin) was given. */
static int have_min_confidence(const pl_options *o) {
    return cli_given_flag(&cli_pseudolabel_command, &o->given, "--min-confidence");
}

/* ---- model and dataset agreement ----------------------------------------- */

/* The model's stored names (a JSON array) must equal the dataset's. */
static int check_names(const rl_safetensors *meta, const char *key, const char *what,
                       char **names, int count, const char *model, const char *data,
                       rl_error *err) {
    const char *json = rl_safetensors_metadata(meta, key);
    if (!json) return RL_OK; /* older checkpoints: the counts were checked */
    cJSON *a = cJSON_Parse(json);
    int rc = RL_OK;
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != count) {
        rc = rl_error_set(err, RL_EINVAL, "%s: the model's %s %s do not match the %d of %s",
                          model, what, json, count, data);
    } else {
        for (int i = 0; i < count && !rc; i++) {
            const cJSON *s = cJSON_GetArrayItem(a, i);
            if (!cJSON_IsString(s) || strcmp(s->valuestring, names[i]) != 0)
                rc = rl_error_set(err, RL_EINVAL,
                                  "%s: the model's %s %s do not match those of %s ('%s' is %d)",
                                  model, what, json, data, names[i], i);
        }
    }
    cJSON_Delete(a);
    return rc;
}

static int check_dataset(const rl_unet *net, const rl_safetensors *meta, const char *model,
                         const rl_dataset *ds, rl_error *err) {
    const rl_unet_config *nc = rl_unet_get_config(net);
    int multilabel = cli_model_is_multilabel(meta);
    if (ds->multilabel != multilabel)
        return rl_error_set(err, RL_EINVAL, "%s: the model is %s but %s is %s", model,
                            multilabel ? "multi-label" : "multi-class", ds->root,
                            ds->multilabel ? "multi-label" : "multi-class");
    if (ds->num_channels != nc->in_channels)
        return rl_error_set(err, RL_EINVAL, "%s: the model has %d input channels, %s has %d",
                            model, nc->in_channels, ds->root, ds->num_channels);
    /* a multi-label model has one output per structure, background excluded */
    if (ds->num_classes - multilabel != nc->num_classes)
        return rl_error_set(err, RL_EINVAL, "%s: the model has %d %s, %s has %d", model,
                            nc->num_classes, multilabel ? "structures" : "classes", ds->root,
                            ds->num_classes - multilabel);
    int rc = check_names(meta, "reflabel.class_names", "classes", ds->class_names,
                         ds->num_classes, model, ds->root, err);
    if (!rc)
        rc = check_names(meta, "reflabel.channel_names", "channels", ds->channel_names,
                         ds->num_channels, model, ds->root, err);
    return rc;
}

/* ---- the run --------------------------------------------------------------- */

typedef struct pl_run {
    pl_options o;
    char model_file[4096];
    rl_unet *net;
    rl_safetensors meta;
    int have_meta;
    rl_dataset ds, refs_ds;
    int have_ds, have_refs_ds;
    uint8_t *keep;
    const rl_dataset *refs_src; /* the dataset of the references: ds or refs_ds */
    const rl_case **refs;
    int num_refs;
    rl_pseudolabeler *pl;
    staged_dir out, exp;   /* the staging folders are rank 0's, known to every rank */
    int out_staged, exp_staged; /* this rank owns them (rank 0): removes or publishes them */
    int queries;            /* cases to pseudo-label */
    int *query;             /* (queries) their indices in ds.train, in dataset order */
    rl_offline_stats stats;
    int have_stats;
} pl_run;

static int add_references(pl_run *r, rl_error *err) {
    rl_progress bar;
    rl_progress_start(&bar, "references", r->num_refs, r->o.quiet);
    int rc = RL_OK;
    for (int i = 0; i < r->num_refs && !rc; i++) {
        rc = rl_offline_add_reference(r->pl, r->refs_src, r->refs[i], err);
        rl_progress_update(&bar, i + 1, r->refs[i]->id);
    }
    rl_progress_finish(&bar);
    return rc;
}

/* The confidence file: NIfTI keeps the margin itself; PNG can only hold
 * [0, 1], so it stores margin / 2 (the cosine margin's range [0, 2] mapped
 * onto [0, 1]; clipped there). Scales margin in place for PNG. */
static int write_confidence(const char *path, const rl_volume *like, float *margin, size_t n,
                            rl_error *err) {
    if (rl_format_from_path(path) == RL_FORMAT_PNG)
        for (size_t i = 0; i < n; i++) margin[i] *= 0.5f; /* the margin is not used afterwards */
    return rl_volume_write_float(path, like, margin, err);
}

/* Pseudo-labels one query case and writes its labels and margins (and the
 * labels into the exported dataset). */
static int label_query(pl_run *r, const rl_case *c, rl_error *err) {
    const rl_dataset *ds = &r->ds;
    /* without --min-confidence every voxel keeps its label */
    float min_margin = have_min_confidence(&r->o) ? (float)r->o.min_confidence : -INFINITY;
    rl_offline_case oc;
    int rc = rl_offline_label_case(r->pl, ds, c, min_margin, &r->stats, &oc, err);
    if (rc) return rc;
    const rl_volume *like = &oc.images[0];
    char path[4096];
    rc = cli_make_path(path, sizeof path, err, "%s/%s%s", r->out.stage, c->id, ds->file_ending);
    if (!rc)
        rc = ds->multilabel ? rl_volume_write_bitsets(path, like, oc.labels, ds->num_classes - 1, err)
                            : rl_volume_write_labels(path, like, oc.labels, err);
    if (!rc)
        rc = cli_make_path(path, sizeof path, err, "%s/%s_confidence%s", r->out.stage, c->id,
                           ds->file_ending);
    if (!rc) rc = write_confidence(path, like, oc.margin, oc.n, err);
    if (!rc && r->o.export_dir) {
        rc = cli_make_path(path, sizeof path, err, "%s/labelsTr/%s%s", r->exp.stage, c->id,
                           ds->file_ending);
        if (!rc) rc = rl_volume_write_labels(path, like, oc.labels, err);
    }
    rl_offline_case_free(ds, &oc);
    return rc;
}

/* The exported dataset's copies of the images and kept labels, dealt among
 * the ranks like the query cases (case i to rank i mod N; the folders they
 * make are made by whichever rank comes first, rl_make_dirs tolerating the
 * others), and its dataset.json, written by rank 0. */
static int export_dataset(pl_run *r, rl_error *err) {
    const rl_dataset *ds = &r->ds;
    const int rank = rl_dist_rank(), ranks = rl_dist_size();
    char dir[4096], path[4096];
    int rc = RL_OK;
    for (int i = rank; i < ds->num_train && !rc; i += ranks) {
        const rl_case *c = &ds->train[i];
        for (int ch = 0; ch < ds->num_channels && !rc; ch++) {
            rc = cli_make_path(path, sizeof path, err, "%s/imagesTr/%s", r->exp.stage,
                           base_name(c->image_paths[ch]));
            if (!rc) rc = copy_file(c->image_paths[ch], path, err);
        }
        if (!rc && r->keep[i]) {
            rc = cli_make_path(path, sizeof path, err, "%s/labelsTr/%s", r->exp.stage,
                           base_name(c->label_path));
            if (!rc) rc = copy_file(c->label_path, path, err);
        }
    }
    for (int i = rank; i < ds->num_test && !rc; i += ranks) {
        const rl_case *c = &ds->test[i];
        rc = cli_make_path(dir, sizeof dir, err, "%s/imagesTs", r->exp.stage);
        if (!rc) rc = rl_make_dirs(dir, err);
        for (int ch = 0; ch < ds->num_channels && !rc; ch++) {
            rc = cli_make_path(path, sizeof path, err, "%s/%s", dir, base_name(c->image_paths[ch]));
            if (!rc) rc = copy_file(c->image_paths[ch], path, err);
        }
        if (!rc && c->label_path) {
            rc = cli_make_path(dir, sizeof dir, err, "%s/labelsTs", r->exp.stage);
            if (!rc) rc = rl_make_dirs(dir, err);
            if (!rc) rc = cli_make_path(path, sizeof path, err, "%s/%s", dir, base_name(c->label_path));
            if (!rc) rc = copy_file(c->label_path, path, err);
        }
    }
    if (rc || rank != 0) return rc;
    /* labels 0..K-1 by name, plus "ignore": K when some label file may hold it */
    int K = ds->num_classes, with_ignore = have_min_confidence(&r->o) || ds->ignore_label >= 0;
    const char **names = malloc((size_t)(K + 1) * sizeof *names);
    int *values = malloc((size_t)(K + 1) * sizeof *values);
    if (!names || !values) rc = rl_error_set(err, RL_ENOMEM, "out of memory");
    for (int k = 0; !rc && k < K; k++) {
        names[k] = ds->class_names[k];
        values[k] = k;
    }
    if (!rc && with_ignore) {
        names[K] = "ignore";
        values[K] = K;
    }
    if (!rc) rc = cli_make_path(path, sizeof path, err, "%s/dataset.json", r->exp.stage);
    if (!rc)
        rc = rl_dataset_json_write(path, ds->num_channels, (const char *const *)ds->channel_names,
                                   K + with_ignore, names, values, ds->file_ending, ds->num_train,
                                   err);
    free(names);
    free(values);
    return rc;
}

static void add_agreement_json(cJSON *parent, const char *key, const rl_label_agreement *a,
                               const rl_dataset *ds) {
    cJSON *j = cJSON_AddObjectToObject(parent, key);
    cJSON_AddNumberToObject(j, "voxels", (double)a->voxels);
    cJSON_AddNumberToObject(j, "accuracy", a->voxels ? rl_label_agreement_accuracy(a) : 0);
    cJSON *dice = cJSON_AddObjectToObject(j, "dice");
    double fg = 0;
    for (int k = 0; k < a->num_classes; k++) {
        double d = rl_label_agreement_dice(a, k);
        cJSON_AddNumberToObject(dice, ds->class_names[k], d);
        if (k > 0) fg += d;
    }
    cJSON_AddNumberToObject(j, "mean_foreground_dice", a->num_classes > 1 ? fg / (a->num_classes - 1) : 0);
}

static void print_agreement(const char *what, const rl_label_agreement *a, const rl_dataset *ds) {
    printf("%s: pixel accuracy %.4f over %lld voxels; Dice", what, rl_label_agreement_accuracy(a),
           (long long)a->voxels);
    for (int k = 0; k < a->num_classes; k++)
        printf(" %s %.4f", ds->class_names[k], rl_label_agreement_dice(a, k));
    printf("\n");
}

static int write_metrics(pl_run *r, rl_error *err) {
    cJSON *j = cJSON_CreateObject();
    const rl_label_agreement *all = &r->stats.all, *confident = &r->stats.kept;
    cJSON_AddNumberToObject(j, "cases", r->stats.scored_cases);
    cJSON_AddNumberToObject(j, "references", r->num_refs);
    add_agreement_json(j, "all", all, &r->ds);
    print_agreement("pseudo-labels vs hidden labels", all, &r->ds);
    if (have_min_confidence(&r->o)) {
        cJSON_AddNumberToObject(j, "min_confidence", r->o.min_confidence);
        int64_t compared = confident->voxels + confident->abstained;
        cJSON_AddNumberToObject(j, "coverage", compared ? (double)confident->voxels / (double)compared : 0);
        add_agreement_json(j, "confident", confident, &r->ds);
        printf("confident pixels: %.2f%% of the compared voxels\n",
               compared ? 100.0 * (double)confident->voxels / (double)compared : 0.0);
        print_agreement("confident pseudo-labels vs hidden labels", confident, &r->ds);
    }
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return rl_error_set(err, RL_ENOMEM, "out of memory");
    char path[4096];
    int rc = cli_make_path(path, sizeof path, err, "%s/pseudolabel_metrics.json", r->out.stage);
    if (!rc) rc = rl_write_file_atomic(path, text, strlen(text), err);
    free(text);
    return rc;
}

/* A run folder holds model.safetensors; a file path is used as it is. */
static void model_path(const char *arg, char *out, size_t size) {
    struct stat st;
    if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(out, size, "%s/model.safetensors", arg);
    else snprintf(out, size, "%s", arg);
}

/* Everything each rank reads for itself before any work: the model, the
 * dataset, the labeled choice, the references and the query cases. */
static int open_inputs(pl_run *r, rl_error *err) {
    pl_options *o = &r->o;
    model_path(o->model, r->model_file, sizeof r->model_file);
    int rc = rl_unet_load(r->model_file, &r->net, &r->meta, err);
    if (rc) return rc;
    r->have_meta = 1;
    if (!cli_given_flag(&cli_pseudolabel_command, &o->given, "--axis")) {
        const char *a = rl_safetensors_metadata(&r->meta, "reflabel.axis");
        o->cfg.axis = a && a[0] >= '0' && a[0] <= '2' && !a[1] ? a[0] - '0' : 2;
    }
    if ((rc = rl_dataset_open(o->data, &r->ds, err))) return rc;
    r->have_ds = 1;
    if ((rc = check_dataset(r->net, &r->meta, r->model_file, &r->ds, err))) return rc;
    /* Bit sets have no value left for "ignore", and nnU-Net v2 encodes
     * overlapping structures as regions, not bit sets. */
    if (r->ds.multilabel && (have_min_confidence(o) || o->export_dir))
        return rl_error_set(err, RL_EUNSUPPORTED,
                            "%s: %s does not support multi-label data", r->ds.root,
                            o->export_dir ? "--export-nnunet" : "--min-confidence");
    o->cfg.multilabel = r->ds.multilabel;
    if ((rc = cli_choose_labeled(&r->ds, &o->labeled, o->cfg.seed, &r->keep, err)))
        return rc;

    /* references: the kept cases, or every labeled case of --refs */
    const rl_dataset *src = &r->ds;
    if (o->refs) {
        if ((rc = rl_dataset_open(o->refs, &r->refs_ds, err))) return rc;
        r->have_refs_ds = 1;
        if ((rc = check_dataset(r->net, &r->meta, r->model_file, &r->refs_ds, err))) return rc;
        src = &r->refs_ds;
    }
    r->refs_src = src;
    r->refs = calloc((size_t)src->num_train + 1, sizeof *r->refs);
    r->query = calloc((size_t)r->ds.num_train + 1, sizeof *r->query);
    if (!r->refs || !r->query) return rl_error_set(err, RL_ENOMEM, "out of memory");
    for (int i = 0; i < src->num_train; i++)
        if (src->train[i].label_path && (o->refs || r->keep[i]))
            r->refs[r->num_refs++] = &src->train[i];
    if (r->num_refs == 0)
        return rl_error_set(err, RL_EINVAL, "%s: no labeled training case to use as reference",
                            src->root);
    for (int i = 0; i < r->ds.num_train; i++)
        if (!r->keep[i]) r->query[r->queries++] = i;
    if (r->queries == 0)
        return rl_error_set(err, RL_EINVAL,
                            "%s: every training case keeps its label: nothing to pseudo-label "
                            "(hide some with --labeled)",
                            r->ds.root);
    return RL_OK;
}

/* Collective: every rank walks the same rounds, each ending in
 * rl_dist_agree, and writes the files of its share of the cases, so the
 * ranks must see the same cases and the same labeled choice; a node whose
 * copy of the data differs stops every rank here with one line instead of
 * leaving the others waiting in a round it never reaches, or writing
 * another case's file. The ids and the choice are compared as one hash. */
static int agree_on_cases(pl_run *r, rl_error *err) {
    if (rl_dist_size() == 1) return RL_OK;
    uint64_t h = RL_DIST_HASH_START;
    for (int i = 0; i < r->ds.num_train; i++) {
        const uint8_t kept = r->keep[i] ? 2 : 1;
        h = rl_dist_hash(h, r->ds.train[i].id, strlen(r->ds.train[i].id));
        h = rl_dist_hash(h, &kept, 1);
    }
    int64_t mine[3] = {r->ds.num_train, r->queries, (int64_t)h}, root[3];
    memcpy(root, mine, sizeof root);
    int rc = rl_dist_broadcast(root, sizeof root, 0, err);
    if (!rc && (root[0] != mine[0] || root[1] != mine[1]))
        rc = rl_error_set(err, RL_EINVAL,
                          "%s: %d training cases (%d to pseudo-label) here, %d (%d) on rank 0",
                          r->ds.root, r->ds.num_train, r->queries, (int)root[0], (int)root[1]);
    else if (!rc && root[2] != mine[2])
        rc = rl_error_set(err, RL_EINVAL,
                          "%s: the training cases or the labeled choice differ from rank 0's",
                          r->ds.root);
    return rl_dist_agree(rc, err);
}

/* Rank 0: the staging folders; refuses non-empty targets before any work. */
static int open_outputs(pl_run *r, rl_error *err) {
    pl_options *o = &r->o;
    int rc = stage_open(&r->out, o->out, o->force, "--out", err);
    if (rc) return rc;
    r->out_staged = 1;
    if (!o->export_dir) return RL_OK;
    if ((rc = stage_open(&r->exp, o->export_dir, o->force, "--export-nnunet", err))) return rc;
    r->exp_staged = 1;
    char dir[4096];
    rc = cli_make_path(dir, sizeof dir, err, "%s/imagesTr", r->exp.stage);
    if (!rc) rc = rl_make_dirs(dir, err);
    if (!rc) rc = cli_make_path(dir, sizeof dir, err, "%s/labelsTr", r->exp.stage);
    if (!rc) rc = rl_make_dirs(dir, err);
    return rc;
}

/* The reference bank: measured, made and filled on rank 0 alone (the only
 * rank to read the reference cases and run them through the network), then
 * broadcast; every rank creates a bank of rank 0's sizes to receive it. */
static int build_bank(pl_run *r, rl_error *err) {
    pl_options *o = &r->o;
    const int rank = rl_dist_rank();
    int sizes[2] = {0, 0}; /* reference slices, largest slice's pixels */
    int rc = rank == 0 ? rl_offline_measure_references(r->refs, r->num_refs, o->cfg.axis,
                                                       &sizes[0], &sizes[1], err)
                       : RL_OK;
    rc = rl_dist_agree(rc, err);
    if (!rc) rc = rl_dist_broadcast(sizes, sizeof sizes, 0, err);
    if (rc) return rc;
    o->cfg.ignore_label = r->refs_src->ignore_label;
    rc = rl_pseudolabeler_create(&r->pl, r->net, &o->cfg, sizes[0], sizes[1], err);
    if ((rc = rl_dist_agree(rc, err))) return rc;
    if (!o->quiet && rank == 0)
        fprintf(stderr,
                "reflabel pseudolabel: %d reference cases (%d slices), %d query cases, "
                "%s features (D = %d), %.1f MB bank\n",
                r->num_refs, sizes[0], r->queries, rl_feature_source_name(o->cfg.refs.features),
                rl_feature_dim(rl_unet_get_config(r->net), o->cfg.refs.features),
                (double)rl_pseudolabeler_bank_bytes(r->pl) / 1e6);
    double t0 = rl_now_seconds();
    rc = rank == 0 ? add_references(r, err) : RL_OK;
    rc = rl_dist_agree(rc, err);
    if (!rc) rc = rl_pseudolabeler_broadcast_bank(r->pl, 0, err);
    if (!rc && !o->quiet && rank == 0)
        fprintf(stderr, "reflabel pseudolabel: %d reference pixels in the bank (%.1f s)\n",
                rl_pseudolabeler_references(r->pl), rl_now_seconds() - t0);
    return rc;
}

static int run(pl_run *r, rl_error *err) {
    pl_options *o = &r->o;
    const int rank = rl_dist_rank(), ranks = rl_dist_size();
    int rc = rl_dist_agree(open_inputs(r, err), err);
    if (!rc) rc = agree_on_cases(r, err);
    if (rc) return rc;

    /* outputs: rank 0's staging folders, where every rank writes */
    rc = rl_dist_agree(rank == 0 ? open_outputs(r, err) : RL_OK, err);
    if (!rc) rc = rl_dist_broadcast(r->out.stage, sizeof r->out.stage, 0, err);
    if (!rc) rc = rl_dist_broadcast(r->exp.stage, sizeof r->exp.stage, 0, err);
    double t0 = rl_now_seconds();
    if (!rc) rc = build_bank(r, err);
    if (rc) return rc;

    int K = r->ds.num_classes;
    rc = rl_offline_stats_init(&r->stats, K, err);
    r->have_stats = !rc;
    if ((rc = rl_dist_agree(rc, err))) return rc;
    /* Query j goes to rank j mod N, in the dataset's order, as predict deals
     * its cases; after each round of N the ranks agree, so that a bad case
     * stops every rank within one case's time. */
    rl_progress bar;
    rl_progress_start(&bar, "pseudolabel", r->queries, o->quiet || rank != 0);
    for (int round = 0; !rc && round < r->queries; round += ranks) {
        int j = round + rank;
        if (j < r->queries) rc = label_query(r, &r->ds.train[r->query[j]], err);
        rc = rl_dist_agree(rc, err);
        int done = round + ranks < r->queries ? round + ranks : r->queries;
        if (!rc) rl_progress_update(&bar, done, r->ds.train[r->query[done - 1]].id);
    }
    rl_progress_finish(&bar);
    /* the counts of every rank's cases: those of one process */
    if (!rc) rc = rl_offline_stats_sum(&r->stats, err);
    if (rc) return rc;
    if (!o->quiet && rank == 0)
        fprintf(stderr, "reflabel pseudolabel: %d cases labeled in %.1f s\n", r->queries,
                rl_now_seconds() - t0);
    if (have_min_confidence(o) && !o->quiet && rank == 0)
        fprintf(stderr, "reflabel pseudolabel: %lld of %lld voxels (%.2f%%) below margin %g set to ignore (%d)\n",
                (long long)r->stats.abstained, (long long)r->stats.voxels,
                r->stats.voxels ? 100.0 * (double)r->stats.abstained / (double)r->stats.voxels : 0.0,
                o->min_confidence, K);
    if (rank == 0 && r->stats.scored_cases > 0) rc = write_metrics(r, err);
    if (!rc && o->export_dir) rc = export_dataset(r, err);
    if ((rc = rl_dist_agree(rc, err))) return rc;

    /* everything succeeded on every rank: rank 0 moves the outputs into
     * place, and the others learn whether that worked */
    if (rank == 0) {
        rc = stage_publish(&r->out, err);
        if (!rc) r->out_staged = 0;
        if (!rc && r->exp_staged) rc = stage_publish(&r->exp, err);
        if (!rc) r->exp_staged = 0;
    }
    return rl_dist_agree(rc, err);
}

int cmd_pseudolabel(int argc, char **argv) {
    pl_run r;
    memset(&r, 0, sizeof r);
    int prc = parse_options(argc, argv, &r.o);
    if (prc) return prc < 0 ? 0 : prc;
    rl_set_threads(r.o.threads);
    rl_error err = {0, ""};
    int rc = run(&r, &err);
    if (rc && r.out.stage[0]) stage_name_in_error(&r.out, &err);
    if (rc && r.exp.stage[0]) stage_name_in_error(&r.exp, &err);
    if (r.out_staged) remove_tree(r.out.stage);
    if (r.exp_staged) remove_tree(r.exp.stage);
    if (r.have_stats) rl_offline_stats_free(&r.stats);
    rl_pseudolabeler_free(r.pl);
    free(r.refs);
    free(r.query);
    free(r.keep);
    if (r.have_refs_ds) rl_dataset_free(&r.refs_ds);
    if (r.have_ds) rl_dataset_free(&r.ds);
    if (r.have_meta) rl_safetensors_free(&r.meta);
    rl_unet_free(r.net);
    return rc ? cli_fail(&err) : 0;
}
