/* Offline pseudo-labels of whole cases (reflabel/rounds.h) on a small PNG
 * dataset: a query case identical to its reference gets the reference's
 * labels back, the minimum margin abstains exactly where it should, the
 * counts against hidden labels add up, and a round hands the labels to the
 * sample set. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/rounds.h"
#include "testutil.h"

enum { W = 16, H = 12, K = 3 };

/* Case a and case b are the same image and label; case c another image. */
static int32_t label_at(int x, int y) { return (x / 4 + y / 3) % K; }
static int32_t image_at(int x, int y, int c) {
    unsigned v = (unsigned)(x * 73 + y * 151 + c * 977) * 2654435761u;
    return (int32_t)(label_at(x, y) * 70 + (v >> 27)); /* class level + noise, < 256 */
}

static void write_png(const char *path, int c, int is_label) {
    rl_volume like;
    CHECK_OK(rl_volume_create(&like, W, H, 1, NULL));
    int32_t v[W * H];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) v[y * W + x] = is_label ? label_at(x, y) : image_at(x, y, c);
    rl_error err = {0, ""};
    CHECK_MSG(rl_volume_write_labels(path, &like, v, &err) == RL_OK, "%s", err.msg);
    rl_volume_free(&like);
}

static const char *build_dataset(void) {
    static char base[3072];
    snprintf(base, sizeof base, "%s/ds", rl_test_tmpdir("test_rounds"));
    char path[4096];
    const char *subs[] = {"imagesTr", "labelsTr"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", base, subs[i]);
        CHECK_OK(rl_make_dirs(path, NULL));
    }
    static const char *const channel[] = {"ct"}, *const names[] = {"background", "a", "b"};
    static const int values[] = {0, 1, 2};
    snprintf(path, sizeof path, "%s/dataset.json", base);
    CHECK_OK(rl_dataset_json_write(path, 1, channel, K, names, values, ".png", 3, NULL));
    const char *ids[] = {"case_a", "case_b", "case_c"};
    const int image_of[] = {0, 0, 1};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/imagesTr/%s_0000.png", base, ids[i]);
        write_png(path, image_of[i], 0);
        snprintf(path, sizeof path, "%s/labelsTr/%s.png", base, ids[i]);
        write_png(path, 0, 1);
    }
    return base;
}

static rl_unet *make_net(void) {
    rl_unet_config c = rl_unet_default_config();
    c.num_classes = K;
    c.depth = 2;
    c.base_width = 4;
    c.max_width = 16;
    c.groups = 2;
    rl_unet *net = NULL;
    CHECK_OK(rl_unet_create(&net, &c, 5, NULL));
    return net;
}

static void test_cases(const rl_dataset *ds, rl_unet *net) {
    const rl_case *refs[] = {&ds->train[0]};
    int slices = 0, max_pixels = 0;
    CHECK_OK(rl_offline_measure_references(refs, 1, 2, &slices, &max_pixels, NULL));
    CHECK(slices == 1 && max_pixels == W * H);
    rl_pseudolabel_config cfg = rl_pseudolabel_default_config();
    rl_pseudolabeler *pl = NULL;
    CHECK_OK(rl_pseudolabeler_create(&pl, net, &cfg, slices, max_pixels, NULL));
    CHECK_OK(rl_offline_add_reference(pl, ds, refs[0], NULL));
    CHECK(rl_pseudolabeler_references(pl) == W * H);

    /* no minimum: case b, the reference's twin, gets its labels back */
    rl_offline_stats st;
    CHECK_OK(rl_offline_stats_init(&st, K, NULL));
    rl_offline_case oc;
    CHECK_OK(rl_offline_label_case(pl, ds, &ds->train[1], -INFINITY, &st, &oc, NULL));
    CHECK(oc.n == W * H && oc.images && oc.images[0].nx == W && oc.images[0].ny == H);
    size_t right = 0;
    for (size_t i = 0; i < oc.n; i++) right += oc.labels[i] == label_at((int)i % W, (int)i / W);
    CHECK_MSG(right == oc.n, "%zu of %zu labels recovered", right, oc.n);
    rl_offline_case_free(ds, &oc);
    CHECK(st.cases == 1 && st.scored_cases == 1 && st.voxels == W * H && st.abstained == 0);
    CHECK(st.all.voxels == W * H && st.all.correct == (int64_t)right);
    CHECK(st.kept.voxels == W * H && st.kept.abstained == 0);
    CHECK(rl_offline_stats_kept(&st) == 1.0);

    /* a minimum no margin reaches: every voxel abstains (marked K), all of
     * them counted in `all` and none in `kept` */
    CHECK_OK(rl_offline_label_case(pl, ds, &ds->train[2], 3.0f, &st, &oc, NULL));
    size_t abstained = 0;
    for (size_t i = 0; i < oc.n; i++) abstained += oc.labels[i] == K;
    rl_offline_case_free(ds, &oc);
    CHECK(abstained == W * H);
    CHECK(st.cases == 2 && st.scored_cases == 2 && st.voxels == 2 * W * H);
    CHECK(st.abstained == W * H && st.kept.abstained == W * H && st.kept.voxels == W * H);
    CHECK(st.all.voxels == 2 * W * H);
    CHECK(rl_offline_stats_kept(&st) == 0.5);
    rl_offline_stats_free(&st);
    rl_pseudolabeler_free(pl);
}

static void test_round(const rl_dataset *ds, rl_unet *net) {
    uint8_t keep[3] = {1, 0, 0};
    rl_sample_set set;
    CHECK_OK(rl_sample_set_load(&set, ds, ds->train, ds->num_train, keep, 2, NULL));
    CHECK(set.labeled_count == 1 && set.count == 3);
    rl_pseudolabel_config cfg = rl_pseudolabel_default_config();
    rl_offline_stats st;
    CHECK_OK(rl_offline_stats_init(&st, K, NULL));
    rl_error err = {0, ""};
    CHECK_MSG(rl_rounds_pseudolabel(net, &cfg, ds, keep, &set, &st, &err) == RL_OK, "%s", err.msg);
    CHECK(st.references == 1 && st.cases == 2 && st.scored_cases == 2);
    CHECK(st.voxels == 2 * W * H && st.abstained == 0); /* min_margin 0: top-1 margins >= 0 */
    /* the queries now train as labeled; case b with the reference's labels */
    int labeled = 0;
    for (int i = 0; i < set.count; i++) {
        const rl_sample *s = &set.samples[i];
        labeled += s->labels != NULL;
        if (s->case_index != 1 || !s->labels) continue;
        int same = 0;
        for (int p = 0; p < s->h * s->w; p++) same += s->labels[p] == s->hidden_labels[p];
        CHECK_MSG(same == s->h * s->w, "case b: %d of %d labels", same, s->h * s->w);
    }
    CHECK(labeled == 3);
    rl_offline_stats_free(&st);
    rl_sample_set_free(&set);
}

int main(void) {
    rl_set_threads(1);
    const char *base = build_dataset();
    rl_dataset ds;
    rl_error err = {0, ""};
    int rc = rl_dataset_open(base, &ds, &err);
    CHECK_MSG(rc == RL_OK, "%s", err.msg);
    if (rc) return rl_test_report("test_rounds");
    rl_unet *net = make_net();
    test_cases(&ds, net);
    test_round(&ds, net);
    rl_unet_free(net);
    rl_dataset_free(&ds);
    return rl_test_report("test_rounds");
}
