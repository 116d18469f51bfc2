/* The training step: reproducible from a seed, no allocation once running,
 * a non-finite loss reported with the step and the cases of the batch, and
 * slice-wise prediction that covers every pixel. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

static rl_unet *make_net(void) {
    rl_unet_config c = rl_unet_default_config();
    c.num_classes = RL_SHAPES_CLASSES;
    c.depth = 2;
    c.base_width = 4;
    c.groups = 2;
    rl_unet *net = NULL;
    CHECK_OK(rl_unet_create(&net, &c, 7, NULL));
    return net;
}

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

int main(void) {
    rl_set_threads(2);
    test_reproducible_and_allocation_free();
    test_nonfinite_loss_names_the_batch();
    test_bad_configs();
    test_predict_case_shape();
    test_set_case_labels();
    return rl_test_report("test_trainer");
}
