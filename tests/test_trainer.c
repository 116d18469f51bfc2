/* The training step: reproducible from a seed, no allocation once running,
 * a non-finite loss reported with the step and the cases of the batch (or
 * skipped without any state change), a saved state that resumes bit for bit
 * and refuses to load into another setup, slice-wise prediction that
 * covers every pixel, and refpl pseudo-labels from either feature source
 * that equal a brute-force match. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/layers.h"
#include "reflabel/pseudolabel.h"
#include "reflabel/synthetic.h"
#include "reflabel/train.h"
#include "testutil.h"

/* Counting allocator: the test executable's malloc family interposes the C
 * library's for the whole process. It counts the calls made directly from
 * this executable's code, which holds all of libreflabel (linked statically);
 * OpenBLAS's own job buffers (its threaded SGEMM allocates per call) are not
 * ours to remove and are not counted. Not under AddressSanitizer, which
 * brings its own allocator. */
#if defined(__SANITIZE_ADDRESS__)
#define COUNT_ALLOCATIONS 0
static long allocations = 0;
#else
#define COUNT_ALLOCATIONS 1
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern char __executable_start, etext; /* bounds of this executable's code */
static volatile long allocations = 0;
#define COUNT_IF_OURS()                                                          \
    do {                                                                         \
        const char *caller = __builtin_return_address(0);                        \
        if (caller >= &__executable_start && caller < &etext) allocations++;    \
    } while (0)
void *malloc(size_t n) {
    COUNT_IF_OURS();
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    COUNT_IF_OURS();
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    COUNT_IF_OURS();
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t align, size_t n) {
    COUNT_IF_OURS();
    return __libc_memalign(align, n);
}
int posix_memalign(void **p, size_t align, size_t n) {
    COUNT_IF_OURS();
    *p = __libc_memalign(align, n);
    return *p ? 0 : 12;
}
#endif

enum { H = 32, W = 32, CASES = 6 };

static void make_set(rl_sample_set *set, uint64_t seed) {
    memset(set, 0, sizeof *set);
    set->count = set->labeled_count = set->num_cases = CASES;
    set->channels = 1;
    set->num_classes = RL_SHAPES_CLASSES;
    set->axis = 2;
    set->samples = calloc(CASES, sizeof *set->samples);
    set->case_ids = calloc(CASES, sizeof *set->case_ids);
    rl_rng rng;
    rl_rng_seed(&rng, seed, 0);
    for (int i = 0; i < CASES; i++) {
        rl_sample *s = &set->samples[i];
        s->case_index = i;
        s->h = H;
        s->w = W;
        s->image = malloc(H * W * sizeof(float));
        s->labels = malloc(H * W * sizeof(int32_t));
        rl_synth_shapes(&rng, H, W, s->image, s->labels);
        snprintf(set->case_ids[i], RL_CASE_ID_MAX, "case%d", i);
    }
}

static rl_unet *make_net_with(rl_norm_kind norm) {
    rl_unet_config c = rl_unet_default_config();
    c.num_classes = RL_SHAPES_CLASSES;
    c.depth = 2;
    c.base_width = 4;
    c.groups = 2;
    c.norm = norm;
    rl_unet *net = NULL;
    CHECK_OK(rl_unet_create(&net, &c, 7, NULL));
    return net;
}

static rl_unet *make_net(void) { return make_net_with(RL_NORM_GROUP); }

static rl_train_config small_config(void) {
    rl_train_config cfg = rl_train_default_config(20, 3);
    cfg.patch_h = H;
    cfg.patch_w = W;
    cfg.seed = 11;
    return cfg;
}

static void run_steps(rl_sample_set *set, int steps, float *params_out, size_t *count,
                      long *allocs_in_steady_steps) {
    rl_unet *net = make_net();
    rl_train_config cfg = small_config();
    rl_trainer *tr = NULL;
    rl_error err = {0, ""};
    CHECK_OK(rl_trainer_create(&tr, net, &cfg, set, &err));
    rl_train_step_info info;
    long before = 0;
    for (int s = 0; s < steps; s++) {
        if (s == 2) before = allocations;
        CHECK_OK(rl_trainer_step(tr, &info, &err));
    }
    if (allocs_in_steady_steps) *allocs_in_steady_steps = allocations - before;
    CHECK(info.step == steps && isfinite(info.loss) && info.lr > 0);
    *count = rl_unet_param_count(net);
    memcpy(params_out, rl_unet_params(net), *count * sizeof(float));
    rl_trainer_free(tr);
    rl_unet_free(net);
}

static void test_reproducible_and_allocation_free(void) {
    rl_sample_set set;
    make_set(&set, 1);
    float *a = malloc(1 << 22), *b = malloc(1 << 22);
    size_t na = 0, nb = 0;
    long allocs = -1;
    run_steps(&set, 6, a, &na, &allocs);
    run_steps(&set, 6, b, &nb, NULL);
    CHECK(na == nb && na > 0);
    CHECK_MSG(memcmp(a, b, na * sizeof(float)) == 0, "same seed, different weights");
    if (COUNT_ALLOCATIONS) CHECK_MSG(allocs == 0, "%ld allocations in 4 training steps", allocs);
    free(a);
    free(b);
    rl_sample_set_free(&set);
}

static void test_nonfinite_loss_names_the_batch(void) {
    rl_sample_set set;
    make_set(&set, 2);
    for (int i = 0; i < CASES; i++) set.samples[i].image[5] = NAN;
    rl_unet *net = make_net();
    rl_train_config cfg = small_config();
    cfg.augment = 0;
    rl_trainer *tr = NULL;
    rl_error err = {0, ""};
    CHECK_OK(rl_trainer_create(&tr, net, &cfg, &set, &err));
    size_t n = rl_unet_param_count(net);
    float *before = malloc(n * sizeof(float));
    memcpy(before, rl_unet_params(net), n * sizeof(float));
    rl_train_step_info info;
    int rc = rl_trainer_step(tr, &info, &err);
    CHECK(rc == RL_ENONFINITE);
    CHECK_MSG(strstr(err.msg, "step 1") && strstr(err.msg, "case"), "message: %s", err.msg);
    CHECK(memcmp(before, rl_unet_params(net), n * sizeof(float)) == 0);
    free(before);
    rl_trainer_free(tr);
    rl_unet_free(net);
    rl_sample_set_free(&set);
}

static void test_bad_configs(void) {
    rl_sample_set set;
    make_set(&set, 3);
    rl_unet *net = make_net();
    rl_train_config cfg = small_config();
    rl_trainer *tr = NULL;
    rl_error err = {0, ""};
    cfg.patch_h = 30; /* not a multiple of 2^depth = 4 */
    CHECK(rl_trainer_create(&tr, net, &cfg, &set, &err) == RL_EINVAL && tr == NULL);
    cfg = small_config();
    for (int i = 0; i < CASES; i++) {
        free(set.samples[i].labels);
        set.samples[i].labels = NULL;
    }
    set.labeled_count = 0;
    CHECK(rl_trainer_create(&tr, net, &cfg, &set, &err) == RL_EINVAL);
    CHECK(strstr(err.msg, "labeled") != NULL);
    rl_unet_free(net);
    rl_sample_set_free(&set);
}

static void test_predict_case_shape(void) {
    /* A 3D volume of 5 odd-sized slices: every voxel gets a class. */
    rl_unet *net = make_net();
    rl_volume vol;
    CHECK_OK(rl_volume_create(&vol, 13, 9, 5, NULL));
    rl_rng rng;
    rl_rng_seed(&rng, 5, 0);
    for (size_t i = 0; i < rl_volume_numel(&vol); i++) vol.data[i] = rl_rng_normal(&rng);
    int32_t *labels = malloc(rl_volume_numel(&vol) * sizeof *labels);
    float *conf = malloc(rl_volume_numel(&vol) * sizeof *conf);
    for (size_t i = 0; i < rl_volume_numel(&vol); i++) labels[i] = -7;
    for (int axis = 0; axis < 3; axis++) {
        rl_error err = {0, ""};
        CHECK_OK(rl_predict_case(net, &vol, 1, axis, labels, conf, &err));
        int ok = 1;
        for (size_t i = 0; i < rl_volume_numel(&vol); i++)
            ok &= labels[i] >= 0 && labels[i] < RL_SHAPES_CLASSES && conf[i] >= 0.25f - 1e-6f &&
                  conf[i] <= 1.0f;
        CHECK_MSG(ok, "axis %d: a voxel without a valid class or confidence", axis);
    }
    free(labels);
    free(conf);
    rl_volume_free(&vol);
    rl_unet_free(net);
}

/* Pseudo-label rounds hand a whole case's labels back to its samples: the
 * slices must be cut exactly as rl_volume_get_slice cuts images. */
static void test_set_case_labels(void) {
    enum { NX = 5, NY = 4, NZ = 3 };
    rl_volume vol;
    CHECK_OK(rl_volume_create(&vol, NX, NY, NZ, NULL));
    int32_t labels[NX * NY * NZ];
    for (int i = 0; i < NX * NY * NZ; i++) {
        labels[i] = i;
        vol.data[i] = (float)i;
    }
    for (int axis = 0; axis < 3; axis++) {
        rl_sample_set set;
        memset(&set, 0, sizeof set);
        set.axis = axis;
        set.num_cases = 1;
        set.case_ids = calloc(1, sizeof *set.case_ids);
        set.count = rl_volume_num_slices(&vol, axis);
        set.samples = calloc((size_t)set.count, sizeof *set.samples);
        int h, w;
        rl_slice_shape(NX, NY, NZ, axis, &h, &w);
        for (int s = 0; s < set.count; s++) {
            set.samples[s].slice_index = s;
            set.samples[s].h = h;
            set.samples[s].w = w;
        }
        CHECK_OK(rl_sample_set_set_case_labels(&set, 0, NX, NY, NZ, labels, NULL));
        CHECK(set.labeled_count == set.count);
        float slice[NX * NY * NZ];
        int same = 1;
        for (int s = 0; s < set.count; s++) {
            CHECK_OK(rl_volume_get_slice(&vol, axis, s, slice, &h, &w, NULL, NULL));
            for (int i = 0; i < h * w; i++) same &= set.samples[s].labels[i] == (int32_t)slice[i];
        }
        CHECK_MSG(same, "axis %d: labels sliced differently from images", axis);
        /* A volume whose slices have another shape is refused before any read. */
        CHECK(rl_sample_set_set_case_labels(&set, 0, axis ? NX + 1 : NX, axis ? NY : NY + 1, NZ,
                                            labels, NULL) == RL_EINVAL);
        rl_sample_set_free(&set);
    }
    rl_volume_free(&vol);
}


/* ---- batch sampling --------------------------------------------------- */

/* Which sample image b of the last batch is: without augmentation, and with
 * the patch the size of every sample, the batch holds the images as they are. */
static int batch_sample(const rl_trainer_batch *b, const rl_sample_set *set, int image) {
    const float *x = b->x + (size_t)image * H * W;
    for (int i = 0; i < set->count; i++)
        if (memcmp(x, set->samples[i].image, H * W * sizeof(float)) == 0) return i;
    return -1;
}

/* Each half of a batch walks its pool in shuffled epochs: with fewer labeled
 * samples than the batch holds, every labeled sample is in every batch (drawn
 * with replacement, a batch of 4 from 2 samples held one of them only in one
 * step of eight), and a sample is drawn again only when all others have been. */
static void check_epochs(int labeled, int batch, int unlabeled_batch, int steps) {
    rl_sample_set set;
    make_set(&set, 12);
    for (int i = labeled; i < CASES; i++) {
        set.samples[i].hidden_labels = set.samples[i].labels;
        set.samples[i].labels = NULL;
    }
    set.labeled_count = labeled;
    set.hidden_count = CASES - labeled;
    rl_train_config cfg = small_config();
    cfg.augment = 0;
    cfg.batch = batch;
    cfg.semi.method = RL_METHOD_PREDPL;
    cfg.semi.unlabeled_batch = unlabeled_batch;
    rl_unet *net = make_net();
    rl_trainer *tr = NULL;
    rl_error err = {0, ""};
    CHECK_OK(rl_trainer_create(&tr, net, &cfg, &set, &err));
    int drawn[CASES] = {0}, position[2] = {0, 0};
    for (int step = 0; step < steps; step++) {
        CHECK_OK(rl_trainer_step(tr, NULL, &err));
        rl_trainer_batch b;
        rl_trainer_last_batch(tr, &b);
        for (int image = 0; image < b.labeled + b.unlabeled; image++) {
            int i = batch_sample(&b, &set, image);
            int pool = image >= b.labeled, size = pool ? CASES - labeled : labeled;
            CHECK_MSG(i >= 0 && (i >= labeled) == pool, "step %d image %d: sample %d", step,
                      image, i);
            if (i < 0) continue;
            /* Within epoch e of a pool, every member is drawn e or e+1 times. */
            int epoch = position[pool]++ / size;
            CHECK_MSG(drawn[i] == epoch, "step %d: sample %d drawn %d times in epoch %d", step,
                      i, drawn[i], epoch);
            drawn[i]++;
        }
    }
    rl_trainer_free(tr);
    rl_unet_free(net);
    rl_sample_set_free(&set);
}

static void test_batches_walk_the_pools_in_epochs(void) {
    check_epochs(2, 4, 3, 4); /* 2 labeled, 4 per batch: both, twice, in every batch */
    check_epochs(3, 2, 2, 6); /* batches straddle the epochs of both pools */
}

/* ---- refpl feature sources ---------------------------------------------- */

/* Hides the labels of the second half of the set (semi-supervised methods). */
static void hide_half_of_the_labels(rl_sample_set *set) {
    for (int i = CASES / 2; i < CASES; i++) {
        set->samples[i].hidden_labels = set->samples[i].labels;
        set->samples[i].labels = NULL;
    }
    set->labeled_count = CASES / 2;
    set->hidden_count = CASES - CASES / 2;
}

/* Image i's pixel p of feats (images, D, H, W) as a unit row of D doubles
 * (a zero vector stays zero, as the matcher's cosine treats it). */
static void unit_row(const float *feats, int i, size_t p, int dim, double *row) {
    size_t hw = (size_t)H * W;
    double norm = 0;
    for (int d = 0; d < dim; d++) {
        row[d] = feats[((size_t)i * dim + d) * hw + p];
        norm += row[d] * row[d];
    }
    for (int d = 0; d < dim; d++) row[d] = norm > 0 ? row[d] / sqrt(norm) : 0.0;
}

/* The paper's rule computed the slow way: every unlabeled pixel of the
 * batch takes the label of its most cosine-similar labeled pixel. feats is
 * (labeled + unlabeled, D, H, W). Writes the best label per query and the
 * gap between the best and the second-best class (a near tie may go either
 * way in float). */
static void brute_force_match(const float *feats, const int32_t *labels, int nl, int nu, int dim,
                              int32_t *best_label, double *gap) {
    size_t hw = (size_t)H * W, refs = (size_t)nl * hw;
    double *ref_rows = malloc(refs * dim * sizeof *ref_rows);
    double *query = malloc((size_t)dim * sizeof *query);
    for (size_t r = 0; r < refs; r++)
        unit_row(feats, (int)(r / hw), r % hw, dim, ref_rows + r * dim);
    for (int u = 0; u < nu; u++)
        for (size_t q = 0; q < hw; q++) {
            unit_row(feats, nl + u, q, dim, query);
            double best[RL_SHAPES_CLASSES];
            for (int c = 0; c < RL_SHAPES_CLASSES; c++) best[c] = -INFINITY;
            for (size_t r = 0; r < refs; r++) {
                int32_t c = labels[r];
                if (c < 0) continue;
                double sim = 0;
                for (int d = 0; d < dim; d++) sim += query[d] * ref_rows[r * dim + d];
                if (sim > best[c]) best[c] = sim;
            }
            int top = 0;
            for (int c = 1; c < RL_SHAPES_CLASSES; c++)
                if (best[c] > best[top]) top = c;
            double second = -INFINITY;
            for (int c = 0; c < RL_SHAPES_CLASSES; c++)
                if (c != top && best[c] > second) second = best[c];
            best_label[(size_t)u * hw + q] = top;
            gap[(size_t)u * hw + q] = best[top] - second;
        }
    free(ref_rows);
    free(query);
}

/* One refpl step with each feature source: its pseudo-labels are the
 * brute-force top-1 cosine match of the unlabeled half's features against
 * every labeled pixel, with the features recomputed by a twin network (same
 * weights as before the step) on the batch the trainer used. */
static void test_refpl_pseudo_labels_match_brute_force(void) {
    for (int source = RL_FEATURES_LAST; source <= RL_FEATURES_HYPERCOLUMN; source++) {
        const char *name = rl_feature_source_name((rl_feature_source)source);
        rl_sample_set set;
        make_set(&set, 8);
        hide_half_of_the_labels(&set);
        rl_train_config cfg = small_config();
        cfg.augment = 0;
        cfg.semi.method = RL_METHOD_REFPL;
        cfg.semi.refs.features = (rl_feature_source)source;
        cfg.semi.refs.sampling = RL_SAMPLE_ALL; /* every labeled pixel is a reference */
        cfg.semi.refs.min_margin = -1.0f;       /* keep every pixel */
        cfg.semi.margin_accuracy = 0;      /* (not only the calibrated margin's) */
        rl_unet *net = make_net(), *twin = make_net();
        rl_trainer *tr = NULL;
        rl_error err = {0, ""};
        CHECK_OK(rl_trainer_create(&tr, net, &cfg, &set, &err));
        CHECK_OK(rl_trainer_step(tr, NULL, &err));
        rl_trainer_batch b;
        rl_trainer_last_batch(tr, &b);
        CHECK(b.labeled == 3 && b.unlabeled == 3 && b.h == H && b.w == W && b.pseudo != NULL);

        int dim = rl_feature_dim(rl_unet_get_config(twin), (rl_feature_source)source);
        CHECK(dim == (source == RL_FEATURES_LAST ? 4 : 4 + 8));
        size_t hw = (size_t)H * W, queries = (size_t)b.unlabeled * hw;
        float *feats = malloc((size_t)(b.labeled + b.unlabeled) * dim * hw * sizeof *feats);
        int32_t *want = malloc(queries * sizeof *want);
        double *gap = malloc(queries * sizeof *gap);
        CHECK_OK(rl_unet_plan(twin, b.labeled + b.unlabeled, H, W, 1, &err));
        CHECK_OK(rl_unet_forward(twin, b.x, 1, &err));
        CHECK_OK(rl_unet_extract_features(twin, (rl_feature_source)source, feats, &err));
        if (source == RL_FEATURES_HYPERCOLUMN) {
            /* Its first block is the last decoder map, L2-normalised per pixel. */
            rl_tensor last = rl_unet_features(twin);
            double worst = 0;
            for (size_t p = 0; p < hw; p++) {
                double norm = 0;
                for (int c = 0; c < last.c; c++) norm += pow(last.data[c * hw + p], 2);
                for (int c = 0; c < last.c; c++) {
                    double want_c = norm > 0 ? last.data[c * hw + p] / sqrt(norm) : 0.0;
                    worst = fmax(worst, fabs(feats[c * hw + p] - want_c));
                }
            }
            CHECK_MSG(worst < 1e-5, "hypercolumn level 0 differs from the normalised map by %g",
                      worst);
        }
        brute_force_match(feats, b.labels, b.labeled, b.unlabeled, dim, want, gap);
        /* Near ties (tiny class margins; common in the 4-dimensional last
         * map) may go either way in float; anything else must agree. */
        size_t same = 0, differ_clearly = 0, classes_seen = 0;
        int seen[RL_SHAPES_CLASSES] = {0};
        for (size_t i = 0; i < queries; i++) {
            same += b.pseudo[i] == want[i];
            differ_clearly += b.pseudo[i] != want[i] && gap[i] > 1e-4;
            if (b.pseudo[i] >= 0 && b.pseudo[i] < RL_SHAPES_CLASSES && !seen[b.pseudo[i]]++)
                classes_seen++;
        }
        CHECK_MSG(differ_clearly == 0, "%s: %zu pseudo-labels differ from the brute-force match",
                  name, differ_clearly);
        CHECK_MSG(same >= queries - queries / 100, "%s: only %zu of %zu pseudo-labels agree", name,
                  same, queries);
        CHECK_MSG(classes_seen >= 2, "%s: the pseudo-labels hold %zu class", name, classes_seen);
        free(feats);
        free(want);
        free(gap);
        rl_trainer_free(tr);
        rl_unet_free(net);
        rl_unet_free(twin);
        rl_sample_set_free(&set);
    }
}

/* refpl --margin-accuracy: the step's threshold (pl_min_margin) is the one
 * rl_pseudolabel_margin_for_accuracy finds for the labeled half matched
 * against itself, image by image against the other labeled samples, here
 * matched the slow way on features recomputed by a twin network. The
 * thresholds must agree to within 1e-4: float and double margins differ by
 * about 1e-7, and a near tie settled the other way moves the threshold to
 * a neighbouring margin. Of the accuracies, 0.95 is below that of all the
 * matches (threshold -INFINITY, so min_margin applies), the two others not. */
static void test_refpl_margin_accuracy_calibrates_on_the_labeled_half(void) {
    enum { TRAINED_STEPS = 40 };
    const double accuracies[] = {0.95, 0.97, 0.98};
    int finite = 0;
    for (int a = 0; a < 3; a++) {
        rl_sample_set set;
        make_set(&set, 8);
        hide_half_of_the_labels(&set); /* 3 labeled samples, all in every batch of 3 */
        rl_train_config cfg = small_config();
        cfg.steps = TRAINED_STEPS;
        cfg.schedule.base_lr = 1e-2;
        cfg.augment = 0;
        cfg.semi.method = RL_METHOD_REFPL;
        cfg.semi.refs.sampling = RL_SAMPLE_ALL;
        cfg.semi.refs.min_margin = -1.0f; /* the calibrated threshold alone */
        cfg.semi.margin_accuracy = accuracies[a];
        rl_unet *net = make_net(), *twin = make_net();
        rl_trainer *tr = NULL;
        rl_error err = {0, ""};
        CHECK_OK(rl_trainer_create(&tr, net, &cfg, &set, &err));
        rl_train_step_info info;
        /* Trained a little first: the features of a fresh network are so
         * alike that every margin is under 0.002. The twin takes the
         * weights of the last step's forward pass (group norm: no
         * running statistics). */
        long before = 0;
        for (int step = 1; step < TRAINED_STEPS; step++) {
            if (step == 3) before = allocations;
            CHECK_OK(rl_trainer_step(tr, &info, &err));
        }
        long allocs = allocations - before;
        if (COUNT_ALLOCATIONS)
            CHECK_MSG(allocs == 0, "%ld allocations in calibrated refpl steps", allocs);
        memcpy(rl_unet_params(twin), rl_unet_params(net), rl_unet_param_count(net) * sizeof(float));
        CHECK_OK(rl_trainer_step(tr, &info, &err));
        rl_trainer_batch b;
        rl_trainer_last_batch(tr, &b);
        int dim = rl_feature_dim(rl_unet_get_config(twin), RL_FEATURES_LAST);
        size_t hw = (size_t)H * W;
        float *feats = malloc((size_t)(b.labeled + b.unlabeled) * dim * hw * sizeof *feats);
        float *trio = malloc(3 * (size_t)dim * hw * sizeof *trio);
        int32_t *trio_labels = malloc(2 * hw * sizeof *trio_labels), *want = malloc(hw * sizeof *want);
        double *gap = malloc(hw * sizeof *gap);
        float *right = malloc(3 * hw * sizeof *right), *wrong = malloc(3 * hw * sizeof *wrong);
        CHECK_OK(rl_unet_plan(twin, b.labeled + b.unlabeled, H, W, 1, &err));
        CHECK_OK(rl_unet_forward(twin, b.x, 1, &err));
        CHECK_OK(rl_unet_extract_features(twin, RL_FEATURES_LAST, feats, &err));
        int64_t n_right = 0, n_wrong = 0;
        size_t image = (size_t)dim * hw;
        for (int q = 0; q < b.labeled; q++) {
            /* the two other labeled images as references, image q as the query */
            int r = 0;
            for (int j = 0; j < b.labeled; j++) {
                if (j == q) continue;
                memcpy(trio + r * image, feats + j * image, image * sizeof *feats);
                memcpy(trio_labels + r * hw, b.labels + j * hw, hw * sizeof *b.labels);
                r++;
            }
            memcpy(trio + 2 * image, feats + q * image, image * sizeof *feats);
            brute_force_match(trio, trio_labels, 2, 1, dim, want, gap);
            for (size_t p = 0; p < hw; p++) {
                int32_t truth = b.labels[q * hw + p];
                if (truth < 0) continue;
                if (want[p] == truth) right[n_right++] = (float)gap[p];
                else wrong[n_wrong++] = (float)gap[p];
            }
        }
        float expect = rl_pseudolabel_margin_for_accuracy(right, n_right, wrong, n_wrong,
                                                          accuracies[a]);
        /* the step applies the larger of it and min_margin */
        double got = info.pl_min_margin, effective = fmax(expect, cfg.semi.refs.min_margin);
        CHECK_MSG(n_wrong > 0 && n_right > 0, "A %g: %lld right, %lld wrong", accuracies[a],
                  (long long)n_right, (long long)n_wrong);
        CHECK_MSG(got == effective || fabs(got - effective) <= 1e-4,
                  "A %g: calibrated threshold %g, brute force %g", accuracies[a], got, effective);
        finite += isfinite(expect);
        free(feats);
        free(trio);
        free(trio_labels);
        free(want);
        free(gap);
        free(right);
        free(wrong);
        rl_trainer_free(tr);
        rl_unet_free(net);
        rl_unet_free(twin);
        rl_sample_set_free(&set);
    }
    CHECK_MSG(finite >= 2, "only %d of 3 accuracies gave a finite threshold", finite);

    /* Refused: an accuracy outside (0, 1] and
     * a batch with one labeled image. */
    rl_sample_set set;
    make_set(&set, 8);
    rl_unet *net = make_net();
    rl_error err = {0, ""};
    rl_trainer *tr = NULL;
    hide_half_of_the_labels(&set);
    const double bad[] = {1.5, -0.1, NAN};
    for (int i = 0; i < 3; i++) {
        rl_train_config cfg = small_config();
        cfg.semi.method = RL_METHOD_REFPL;
        cfg.semi.margin_accuracy = bad[i];
        CHECK(rl_trainer_create(&tr, net, &cfg, &set, &err) == RL_EINVAL && tr == NULL);
        CHECK(strstr(err.msg, "margin accuracy") != NULL);
    }
    rl_train_config one = small_config();
    one.batch = 1;
    one.semi.method = RL_METHOD_REFPL;
    one.semi.margin_accuracy = 0.9;
    CHECK(rl_trainer_create(&tr, net, &one, &set, &err) == RL_EINVAL && tr == NULL);
    CHECK_MSG(strstr(err.msg, "2 labeled images per step") != NULL, "%s", err.msg);
    rl_unet_free(net);
    rl_sample_set_free(&set);
}

/* Hypercolumn refpl: steady steps call no allocator, and a saved state
 * does not load into a trainer that matches the last decoder map. */
static void test_refpl_hypercolumn_steady_and_signed(void) {
    const char *dir = rl_test_tmpdir("trainer_hypercolumn");
    char path[4096];
    snprintf(path, sizeof path, "%s/state.safetensors", dir);
    rl_sample_set set;
    make_set(&set, 9);
    hide_half_of_the_labels(&set);
    rl_train_config cfg = small_config();
    cfg.semi.method = RL_METHOD_REFPL;
    cfg.semi.refs.features = RL_FEATURES_HYPERCOLUMN;
    cfg.semi.margin_accuracy = 0;   /* every pixel keeps its pseudo-label */
    cfg.semi.warmup_fraction = 0.0; /* the unlabeled loss acts from step 1 */
    cfg.semi.memory_batches = 2;
    cfg.semi.refs.sampling = RL_SAMPLE_PER_CLASS;
    cfg.semi.refs.per_class_cap = 32;
    rl_unet *net = make_net(), *other = make_net();
    rl_trainer *tr = NULL, *last = NULL;
    rl_error err = {0, ""};
    CHECK_OK(rl_trainer_create(&tr, net, &cfg, &set, &err));
    rl_train_step_info info;
    long before = 0;
    for (int s = 0; s < 5; s++) {
        if (s == 2) before = allocations;
        CHECK_OK(rl_trainer_step(tr, &info, &err));
    }
    long allocs = allocations - before;
    if (COUNT_ALLOCATIONS)
        CHECK_MSG(allocs == 0, "%ld allocations in 3 hypercolumn refpl steps", allocs);
    CHECK(isfinite(info.loss) && info.lambda > 0 && info.pl_kept > 0.5 && !isnan(info.pl_accuracy));

    CHECK_OK(rl_trainer_save(tr, path, NULL, 0, &err));
    rl_safetensors st;
    CHECK_OK(rl_safetensors_read(path, &st, &err));
    const rl_st_tensor *vectors = rl_safetensors_find(&st, "bank.vectors");
    CHECK(vectors != NULL && vectors->shape[1] == 4 + 8);
    rl_train_config last_cfg = cfg;
    last_cfg.semi.refs.features = RL_FEATURES_LAST;
    CHECK_OK(rl_trainer_create(&last, other, &last_cfg, &set, &err));
    CHECK(rl_trainer_restore(last, &st, path, &err) == RL_EINVAL);
    CHECK_MSG(strstr(err.msg, "features=hypercolumn") && strstr(err.msg, "features=last"),
              "message: %s", err.msg);
    rl_safetensors_free(&st);
    rl_trainer_free(last);
    rl_trainer_free(tr);
    rl_unet_free(net);
    rl_unet_free(other);
    rl_sample_set_free(&set);
}

/* ---- resumable state ---------------------------------------------------- */

static size_t tensor_bytes(const rl_unet_tensor *t) {
    return t->numel * (t->kind == RL_UNET_COUNTER ? sizeof(int64_t) : sizeof(float));
}

/* Every float of the network (weights and batch-norm statistics) and its
 * counters, in table order, into out (NULL: just count); returns bytes. */
static size_t net_state(rl_unet *net, unsigned char *out) {
    int count;
    const rl_unet_tensor *t = rl_unet_tensors(net, &count);
    size_t bytes = 0;
    for (int i = 0; i < count; i++) {
        size_t n = tensor_bytes(&t[i]);
        if (out) memcpy(out + bytes, rl_unet_tensor_data(net, &t[i]), n);
        bytes += n;
    }
    return bytes;
}

typedef struct method_case {
    const char *name;
    rl_method method;
    rl_norm_kind norm;
    rl_optim_kind optimizer;
    rl_feature_source features; /* refpl */
    int views; /* refpl: a strong view, 2 reference images, consistency */
    rl_teacher teacher;
} method_case;

/* Trains 9 steps straight; trains 4, saves, and restores into a fresh
 * network and trainer that do the other 5: the networks must end equal bit
 * for bit, batch-norm statistics and counters included. */
static void test_save_restore_resumes_bit_for_bit(void) {
    const method_case cases[] = {
        {"supervised", RL_METHOD_SUPERVISED, RL_NORM_BATCH, RL_OPTIM_SGD, RL_FEATURES_LAST, 0,
         RL_TEACHER_SELF},
        {"refpl", RL_METHOD_REFPL, RL_NORM_GROUP, RL_OPTIM_ADAMW, RL_FEATURES_LAST, 0,
         RL_TEACHER_SELF},
        {"meanteacher", RL_METHOD_MEANTEACHER, RL_NORM_BATCH, RL_OPTIM_ADAMW, RL_FEATURES_LAST,
         0, RL_TEACHER_SELF},
        {"refpl hypercolumn", RL_METHOD_REFPL, RL_NORM_BATCH, RL_OPTIM_ADAMW,
         RL_FEATURES_HYPERCOLUMN, 0, RL_TEACHER_SELF},
        {"fixmatch", RL_METHOD_FIXMATCH, RL_NORM_BATCH, RL_OPTIM_ADAMW, RL_FEATURES_LAST, 0,
         RL_TEACHER_SELF},
        {"unimatch", RL_METHOD_UNIMATCH, RL_NORM_GROUP, RL_OPTIM_ADAMW, RL_FEATURES_LAST, 0,
         RL_TEACHER_SELF},
        {"refpl views", RL_METHOD_REFPL, RL_NORM_GROUP, RL_OPTIM_ADAMW, RL_FEATURES_LAST, 1,
         RL_TEACHER_SELF},
        {"refpl views, EMA teacher", RL_METHOD_REFPL, RL_NORM_BATCH, RL_OPTIM_ADAMW,
         RL_FEATURES_HYPERCOLUMN, 1, RL_TEACHER_EMA},
        {"fixmatch, EMA teacher", RL_METHOD_FIXMATCH, RL_NORM_GROUP, RL_OPTIM_SGD,
         RL_FEATURES_LAST, 0, RL_TEACHER_EMA},
    };
    const char *dir = rl_test_tmpdir("trainer_state");
    char path[4096];
    snprintf(path, sizeof path, "%s/state.safetensors", dir);
    for (size_t m = 0; m < sizeof cases / sizeof *cases; m++) {
        const method_case *mc = &cases[m];
        rl_sample_set set;
        make_set(&set, 4);
        if (mc->method != RL_METHOD_SUPERVISED) hide_half_of_the_labels(&set);
        rl_train_config cfg = small_config();
        cfg.semi.method = mc->method;
        cfg.semi.refs.features = mc->features;
        cfg.semi.teacher = mc->teacher;
        cfg.semi.warmup_fraction = 0.1; /* the unlabeled loss acts from step 1 */
        cfg.semi.memory_batches = 3;
        cfg.semi.refs.sampling = RL_SAMPLE_PER_CLASS;
        cfg.semi.refs.per_class_cap = 32;
        cfg.optim = rl_optim_default_config(mc->optimizer);
        /* every weak pixel a target, so the strong views train from step 1 */
        cfg.semi.strong_confidence = 0;
        if (mc->views) {
            cfg.semi.strong_views = 1;
            cfg.semi.ref_images = 2;
            cfg.semi.consistency_weight = 1;
        }
        rl_error err = {0, ""};

        rl_unet *straight = make_net_with(mc->norm), *first = make_net_with(mc->norm),
                *second = make_net_with(mc->norm);
        rl_trainer *a = NULL, *b = NULL, *c = NULL;
        CHECK_OK(rl_trainer_create(&a, straight, &cfg, &set, &err));
        CHECK_OK(rl_trainer_create(&b, first, &cfg, &set, &err));
        for (int s = 0; s < 9; s++) CHECK_OK(rl_trainer_step(a, NULL, &err));
        for (int s = 0; s < 4; s++) CHECK_OK(rl_trainer_step(b, NULL, &err));
        rl_kv note = {"test.note", "kept"};
        CHECK_OK(rl_trainer_save(b, path, &note, 1, &err));

        rl_safetensors st;
        CHECK_OK(rl_safetensors_read(path, &st, &err));
        CHECK(strcmp(rl_safetensors_metadata(&st, "test.note"), "kept") == 0);
        CHECK_OK(rl_trainer_create(&c, second, &cfg, &set, &err));
        CHECK_OK(rl_trainer_restore(c, &st, path, &err));
        CHECK(rl_trainer_steps_done(c) == 4);
        for (int s = 0; s < 5; s++) CHECK_OK(rl_trainer_step(c, NULL, &err));

        size_t bytes = net_state(straight, NULL);
        unsigned char *want = malloc(bytes), *got = malloc(bytes);
        net_state(straight, want);
        net_state(second, got);
        CHECK_MSG(memcmp(want, got, bytes) == 0, "%s: resumed training differs", mc->name);
        /* The restore is needed: the trainer that only did 4 steps and a fresh
         * one that did 5 both differ from the straight run. */
        net_state(first, got);
        CHECK_MSG(memcmp(want, got, bytes) != 0, "%s: 4 steps equal 9 steps", mc->name);
        free(want);
        free(got);
        rl_safetensors_free(&st);
        rl_trainer_free(a);
        rl_trainer_free(b);
        rl_trainer_free(c);
        rl_unet_free(straight);
        rl_unet_free(first);
        rl_unet_free(second);
        rl_sample_set_free(&set);
    }
}

/* refpl with the views of test_save_restore_resumes_bit_for_bit and a
 * teacher of decay `decay`. */
static rl_train_config teacher_config(rl_teacher teacher, float decay) {
    rl_train_config cfg = small_config();
    cfg.semi.method = RL_METHOD_REFPL;
    cfg.semi.warmup_fraction = 0.1;
    cfg.semi.strong_views = 1;
    cfg.semi.ref_images = 2;
    cfg.semi.consistency_weight = 1;
    cfg.semi.strong_confidence = 0;
    cfg.semi.teacher = teacher;
    cfg.semi.ema_decay = decay;
    return cfg;
}

/* 6 steps of teacher_config; the student's parameters into params. */
static void train_with_teacher(rl_teacher teacher, float decay, float *params) {
    rl_sample_set set;
    make_set(&set, 6);
    hide_half_of_the_labels(&set);
    rl_train_config cfg = teacher_config(teacher, decay);
    rl_error err = {0, ""};
    rl_unet *net = make_net();
    rl_trainer *tr = NULL;
    CHECK_OK(rl_trainer_create(&tr, net, &cfg, &set, &err));
    for (int s = 0; s < 6; s++) CHECK_OK(rl_trainer_step(tr, NULL, &err));
    memcpy(params, rl_unet_params(net), rl_unet_param_count(net) * sizeof *params);
    rl_trainer_free(tr);
    rl_unet_free(net);
    rl_sample_set_free(&set);
}

/* --teacher ema. After every step the teacher is decay teacher + (1 - decay)
 * student, parameters and batch-norm statistics alike, and its counters
 * those of the copy it started as: computed here from the student after
 * each step, and compared bit for bit with the state file's teacher.*
 * tensors. And the teacher's pass is what gives the targets: with decay 0
 * the teacher is the student of the step, so on the reference convolution
 * path (where an image's output does not depend on the rest of its batch)
 * and with group norm (no batch statistics), training is bit for bit that
 * without a teacher; with decay 0.9 it is not. */
static void test_ema_teacher(void) {
    const float decay = 0.9f;
    rl_sample_set set;
    make_set(&set, 6);
    hide_half_of_the_labels(&set);
    rl_train_config cfg = teacher_config(RL_TEACHER_EMA, decay);
    rl_error err = {0, ""};
    /* expect: the teacher as the test computes it, from the same initial
     * weights as the student (the same seed) */
    rl_unet *net = make_net_with(RL_NORM_BATCH), *expect = make_net_with(RL_NORM_BATCH);
    rl_trainer *tr = NULL;
    CHECK_OK(rl_trainer_create(&tr, net, &cfg, &set, &err));
    int count;
    const rl_unet_tensor *t = rl_unet_tensors(net, &count);
    for (int s = 0; s < 5; s++) {
        CHECK_OK(rl_trainer_step(tr, NULL, &err));
        for (int i = 0; i < count; i++) {
            if (t[i].kind == RL_UNET_COUNTER) continue;
            float *e = rl_unet_tensor_data(expect, &t[i]);
            const float *student = rl_unet_tensor_data(net, &t[i]);
            for (size_t j = 0; j < t[i].numel; j++)
                e[j] = decay * e[j] + (1.0f - decay) * student[j];
        }
    }
    const char *dir = rl_test_tmpdir("trainer_teacher");
    char path[4096];
    snprintf(path, sizeof path, "%s/state.safetensors", dir);
    CHECK_OK(rl_trainer_save(tr, path, NULL, 0, &err));
    rl_safetensors st;
    CHECK_OK(rl_safetensors_read(path, &st, &err));
    for (int i = 0; i < count; i++) {
        char name[256];
        snprintf(name, sizeof name, "teacher.%s", t[i].name);
        const rl_st_tensor *saved = rl_safetensors_find(&st, name);
        CHECK_MSG(saved && memcmp(saved->data, rl_unet_tensor_data(expect, &t[i]),
                                  tensor_bytes(&t[i])) == 0,
                  "%s is not the EMA of the student", name);
    }
    rl_safetensors_free(&st);
    rl_trainer_free(tr);
    rl_unet_free(net);
    rl_unet_free(expect);
    rl_sample_set_free(&set);

    rl_conv_backend backend = rl_get_conv_backend();
    CHECK_OK(rl_set_conv_backend(RL_CONV_IM2COL, &err));
    rl_unet *probe = make_net();
    size_t params = rl_unet_param_count(probe);
    rl_unet_free(probe);
    float *self = malloc(params * sizeof *self), *ema0 = malloc(params * sizeof *ema0),
          *ema = malloc(params * sizeof *ema);
    train_with_teacher(RL_TEACHER_SELF, 0.99f, self);
    train_with_teacher(RL_TEACHER_EMA, 0.0f, ema0);
    train_with_teacher(RL_TEACHER_EMA, decay, ema);
    CHECK_MSG(memcmp(self, ema0, params * sizeof *self) == 0,
              "a teacher of decay 0 trains differently from the student itself");
    CHECK_MSG(memcmp(self, ema, params * sizeof *self) != 0,
              "a teacher of decay %g trains as the student itself", (double)decay);
    free(self);
    free(ema0);
    free(ema);
    CHECK_OK(rl_set_conv_backend(backend, &err));
}

/* A state only loads into the setup that saved it, and a damaged state is
 * refused before anything changes. */
static void test_restore_refuses_other_setups(void) {
    const char *dir = rl_test_tmpdir("trainer_state_refused");
    char path[4096];
    snprintf(path, sizeof path, "%s/state.safetensors", dir);
    rl_sample_set set;
    make_set(&set, 5);
    hide_half_of_the_labels(&set);
    rl_train_config cfg = small_config();
    cfg.semi.method = RL_METHOD_REFPL;
    cfg.semi.memory_batches = 2;
    rl_error err = {0, ""};
    rl_unet *net = make_net(), *other = make_net();
    rl_trainer *tr = NULL, *fresh = NULL;
    CHECK_OK(rl_trainer_create(&tr, net, &cfg, &set, &err));
    for (int s = 0; s < 3; s++) CHECK_OK(rl_trainer_step(tr, NULL, &err));
    CHECK_OK(rl_trainer_save(tr, path, NULL, 0, &err));
    rl_safetensors st;
    CHECK_OK(rl_safetensors_read(path, &st, &err));

    size_t bytes = net_state(other, NULL);
    unsigned char *before = malloc(bytes), *after = malloc(bytes);
    net_state(other, before);
    rl_train_config bigger = cfg;
    bigger.batch = 4;
    CHECK_OK(rl_trainer_create(&fresh, other, &bigger, &set, &err));
    CHECK(rl_trainer_restore(fresh, &st, path, &err) == RL_EINVAL);
    CHECK_MSG(strstr(err.msg, "different training setup") && strstr(err.msg, "batch=4"),
              "message: %s", err.msg);
    rl_trainer_free(fresh);

    /* Same setup, but a reference label outside the classes: refused, and
     * the network is left as it was (the check runs before any copy). */
    CHECK_OK(rl_trainer_create(&fresh, other, &cfg, &set, &err));
    rl_st_tensor *refs = NULL;
    for (int i = 0; i < st.count; i++)
        if (!strcmp(st.tensors[i].name, "bank.refs")) refs = &st.tensors[i];
    CHECK(refs != NULL && refs->shape[0] > 0);
    if (refs && refs->shape[0] > 0) {
        ((int64_t *)refs->data)[3 * (refs->shape[0] - 1)] = RL_SHAPES_CLASSES;
        CHECK(rl_trainer_restore(fresh, &st, path, &err) == RL_EFORMAT);
        CHECK_MSG(strstr(err.msg, "bank.refs") != NULL, "message: %s", err.msg);
        net_state(other, after);
        CHECK(memcmp(before, after, bytes) == 0);
        CHECK(rl_trainer_steps_done(fresh) == 0);
    }
    /* Not a training state at all. */
    rl_kv *format = NULL;
    for (int i = 0; i < st.metadata_count; i++)
        if (!strcmp(st.metadata[i].key, "reflabel.format")) format = &st.metadata[i];
    CHECK(format != NULL);
    if (format) {
        const char *saved = format->value; /* owned by st */
        format->value = RL_UNET_FORMAT;
        CHECK(rl_trainer_restore(fresh, &st, path, &err) == RL_EFORMAT);
        format->value = saved;
    }
    free(before);
    free(after);
    rl_safetensors_free(&st);
    rl_trainer_free(fresh);
    rl_trainer_free(tr);
    rl_unet_free(net);
    rl_unet_free(other);
    rl_sample_set_free(&set);
}

/* The tensors of two saved states that a skipped step must not change
 * (everything but the step counters and the random streams) are equal. */
static int same_except_counters(const char *path_a, const char *path_b) {
    rl_safetensors a, b;
    rl_error err = {0, ""};
    if (rl_safetensors_read(path_a, &a, &err)) return 0;
    if (rl_safetensors_read(path_b, &b, &err)) {
        rl_safetensors_free(&a);
        return 0;
    }
    int same = a.count == b.count;
    for (int i = 0; same && i < a.count; i++) {
        const rl_st_tensor *ta = &a.tensors[i], *tb = rl_safetensors_find(&b, ta->name);
        if (!tb) {
            same = 0;
        } else if (!strcmp(ta->name, "trainer.counters")) {
            same = ((int64_t *)ta->data)[2] == ((int64_t *)tb->data)[2]; /* optimizer steps */
        } else if (strcmp(ta->name, "trainer.rng") != 0) {
            size_t n = rl_dtype_size(ta->dtype);
            for (int d = 0; d < ta->ndim; d++) n *= (size_t)ta->shape[d];
            same = memcmp(ta->data, tb->data, n) == 0;
        }
    }
    rl_safetensors_free(&a);
    rl_safetensors_free(&b);
    return same;
}

/* skip_nonfinite: a batch holding the poisoned case is skipped with the
 * step and its cases named, and changes nothing: weights, batch-norm
 * statistics, optimizer moments and step count stay; clean batches train. */
static void test_skip_nonfinite_changes_nothing(void) {
    const char *dir = rl_test_tmpdir("trainer_skip");
    char paths[2][4096];
    snprintf(paths[0], sizeof paths[0], "%s/state0.safetensors", dir);
    snprintf(paths[1], sizeof paths[1], "%s/state1.safetensors", dir);
    rl_sample_set set;
    make_set(&set, 6);
    set.samples[2].image[7] = INFINITY;
    rl_unet *net = make_net_with(RL_NORM_BATCH);
    rl_train_config cfg = small_config();
    cfg.batch = 1; /* so that clean batches exist too */
    cfg.skip_nonfinite = 1;
    rl_trainer *tr = NULL;
    rl_error err = {0, ""};
    CHECK_OK(rl_trainer_create(&tr, net, &cfg, &set, &err));
    int skipped = 0, trained = 0;
    CHECK_OK(rl_trainer_save(tr, paths[0], NULL, 0, &err));
    for (int s = 0; s < 12; s++) {
        /* the state after one step is the state before the next */
        const char *before = paths[s % 2], *after = paths[(s + 1) % 2];
        rl_train_step_info info;
        CHECK_OK(rl_trainer_step(tr, &info, &err));
        CHECK(info.step == s + 1 && rl_trainer_steps_done(tr) == s + 1);
        CHECK_OK(rl_trainer_save(tr, after, NULL, 0, &err));
        if (info.skipped) {
            skipped++;
            CHECK_MSG(strstr(info.skip_reason, "case2/0") && strstr(info.skip_reason, "not finite"),
                      "reason: %s", info.skip_reason);
            CHECK_MSG(same_except_counters(before, after), "step %d: a skipped step changed state",
                      s + 1);
        } else {
            trained++;
            CHECK(!same_except_counters(before, after));
        }
        CHECK(info.skipped_total == skipped);
    }
    CHECK_MSG(skipped > 0 && trained > 0, "%d skipped, %d trained", skipped, trained);
    /* Without the option the same poisoned batch is an error. */
    rl_trainer_free(tr);
    cfg.skip_nonfinite = 0;
    CHECK_OK(rl_trainer_create(&tr, net, &cfg, &set, &err));
    int rc = RL_OK;
    for (int s = 0; s < 16 && rc == RL_OK; s++) rc = rl_trainer_step(tr, NULL, &err);
    CHECK(rc == RL_ENONFINITE && strstr(err.msg, "case2/0") != NULL);
    rl_trainer_free(tr);
    rl_unet_free(net);
    rl_sample_set_free(&set);
}

int main(void) {
    rl_set_threads(2);
    test_reproducible_and_allocation_free();
    test_nonfinite_loss_names_the_batch();
    test_bad_configs();
    test_predict_case_shape();
    test_set_case_labels();
    test_batches_walk_the_pools_in_epochs();
    test_refpl_pseudo_labels_match_brute_force();
    test_refpl_margin_accuracy_calibrates_on_the_labeled_half();
    test_refpl_hypercolumn_steady_and_signed();
    /* One thread from here: these tests are about what the state holds, and
     * tests/cli/test_resume.py covers resuming with two threads. */
    rl_set_threads(1);
    test_save_restore_resumes_bit_for_bit();
    test_ema_teacher();
    test_restore_refuses_other_setups();
    test_skip_nonfinite_changes_nothing();
    return rl_test_report("test_trainer");
}
