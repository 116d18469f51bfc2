/* nnU-Net v2 raw datasets: a small tree built in a scratch folder with
 * labeled and unlabeled cases; every malformed variant must fail with an
 * error naming the offending file; choosing the labeled cases. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reflabel/dataset.h"
#include "testutil.h"

static char g_root[2048]; /* this run's scratch folder */

/* path = g_root/<fmt...> into a static buffer. */
static const char *at(const char *rel) {
    static char path[3072];
    snprintf(path, sizeof path, "%s/%s", g_root, rel);
    return path;
}

static void write_text(const char *path, const char *text) {
    rl_error err = {0, ""};
    CHECK_OK(rl_write_file_atomic(path, text, strlen(text), &err));
}

/* A PNG label map or image of w x h with values (x + y + seed) % mod. */
static void write_png(const char *path, int w, int h, int seed, int mod) {
    rl_volume like;
    rl_error err = {0, ""};
    CHECK_OK(rl_volume_create(&like, w, h, 1, &err));
    int32_t *v = malloc(sizeof *v * (size_t)w * (size_t)h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) v[y * w + x] = (x + y + seed) % mod;
    CHECK_OK(rl_volume_write_labels(path, &like, v, &err));
    free(v);
    rl_volume_free(&like);
}

static void make_dirs(const char *base) {
    const char *subs[] = {"imagesTr", "labelsTr", "imagesTs", "labelsTs"};
    rl_error err = {0, ""};
    for (int i = 0; i < 4; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", base, subs[i]);
        CHECK_OK(rl_make_dirs(path, &err));
    }
}

static const char *const CHANNELS[2] = {"T1", "T2"};
static const char *const LABEL_NAMES[4] = {"background", "liver", "tumour", "ignore"};
static const int LABEL_VALUES[4] = {0, 1, 2, 3};

/* The valid dataset "good": cases a, b labeled; c, d unlabeled; test case t
 * labeled; plus files that must be ignored. */
static void build_good(const char *base) {
    char path[4096];
    make_dirs(base);
    snprintf(path, sizeof path, "%s/dataset.json", base);
    rl_error err = {0, ""};
    CHECK_OK(rl_dataset_json_write(path, 2, CHANNELS, 4, LABEL_NAMES, LABEL_VALUES, ".png", 4,
                                   &err));
    const char *train[4] = {"case_d", "case_a", "case_c", "case_b"}; /* unsorted on purpose */
    for (int i = 0; i < 4; i++) {
        for (int ch = 0; ch < 2; ch++) {
            snprintf(path, sizeof path, "%s/imagesTr/%s_%04d.png", base, train[i], ch);
            write_png(path, 8, 6, i + 10 * ch, 250);
        }
        if (strcmp(train[i], "case_a") == 0 || strcmp(train[i], "case_b") == 0) {
            snprintf(path, sizeof path, "%s/labelsTr/%s.png", base, train[i]);
            write_png(path, 8, 6, i, 4); /* 0..3, 3 = ignore */
        }
    }
    for (int ch = 0; ch < 2; ch++) {
        snprintf(path, sizeof path, "%s/imagesTs/case_t_%04d.png", base, ch);
        write_png(path, 5, 5, ch, 200);
    }
    snprintf(path, sizeof path, "%s/labelsTs/case_t.png", base);
    write_png(path, 5, 5, 0, 3);
    /* Ignored: other endings, hidden files (e.g. our own temporaries). */
    snprintf(path, sizeof path, "%s/imagesTr/notes.txt", base);
    write_text(path, "not an image\n");
    snprintf(path, sizeof path, "%s/imagesTr/.case_x_0000.png", base);
    write_text(path, "hidden\n");
    snprintf(path, sizeof path, "%s/imagesTr/case_a_0000.nii.gz", base);
    write_text(path, "other ending\n");
}

static void test_open_good(void) {
    char base[3072];
    snprintf(base, sizeof base, "%s", at("good"));
    build_good(base);
    rl_dataset ds;
    rl_error err = {0, ""};
    int rc = rl_dataset_open(base, &ds, &err);
    CHECK_MSG(rc == RL_OK, "%s", err.msg);
    if (rc) return;
    CHECK(ds.num_channels == 2 && strcmp(ds.channel_names[1], "T2") == 0);
    CHECK(ds.num_classes == 3 && ds.ignore_label == 3);
    CHECK(strcmp(ds.class_names[2], "tumour") == 0 && strcmp(ds.file_ending, ".png") == 0);
    CHECK(ds.num_training_declared == 4);
    CHECK(ds.num_train == 4 && ds.num_train_labeled == 2 && ds.num_test == 1);
    const char *sorted[4] = {"case_a", "case_b", "case_c", "case_d"};
    for (int i = 0; i < ds.num_train && i < 4; i++) {
        CHECK_MSG(strcmp(ds.train[i].id, sorted[i]) == 0, "case %d is %s", i, ds.train[i].id);
        CHECK((ds.train[i].label_path != NULL) == (i < 2));
        CHECK(strstr(ds.train[i].image_paths[1], "_0001.png") != NULL);
    }
    CHECK(strcmp(ds.test[0].id, "case_t") == 0 && ds.test[0].label_path != NULL);

    rl_volume images[2], label;
    CHECK_OK(rl_dataset_load_case(&ds, &ds.train[0], images, &label, &err));
    CHECK(images[0].nx == 8 && images[0].ny == 6 && label.nx == 8 && label.data != NULL);
    /* case_a was written with seed 1 (its position in the unsorted list). */
    CHECK(label.data && label.data[0] == 1.0f && label.data[2] == 3.0f);
    rl_dataset_free_case(&ds, images, &label);
    CHECK_OK(rl_dataset_load_case(&ds, &ds.train[2], images, &label, &err));
    CHECK(label.data == NULL && images[1].data != NULL);
    rl_dataset_free_case(&ds, images, &label);
    CHECK_OK(rl_dataset_load_case(&ds, &ds.test[0], images, NULL, &err));
    rl_dataset_free_case(&ds, images, NULL);
    rl_dataset_free(&ds);
    rl_dataset_free(&ds); /* safe twice */
}

/* Copies "good" to a fresh folder named name, for one mutation. */
static const char *variant(const char *name) {
    static char base[3072];
    snprintf(base, sizeof base, "%s", at(name));
    build_good(base);
    return base;
}

static void expect_open_error(const char *base, const char *needle1, const char *needle2) {
    rl_dataset ds;
    rl_error err = {0, ""};
    int rc = rl_dataset_open(base, &ds, &err);
    CHECK_MSG(rc != RL_OK, "%s should fail", base);
    if (needle1) CHECK_MSG(strstr(err.msg, needle1) != NULL, "'%s' not in: %s", needle1, err.msg);
    if (needle2) CHECK_MSG(strstr(err.msg, needle2) != NULL, "'%s' not in: %s", needle2, err.msg);
    CHECK(ds.train == NULL && ds.channel_names == NULL);
    if (rc == RL_OK) rl_dataset_free(&ds);
}

static void set_json(const char *base, const char *json) {
    char path[4096];
    snprintf(path, sizeof path, "%s/dataset.json", base);
    write_text(path, json);
}

static void test_json_errors(void) {
    const char *base = variant("no_json");
    char path[4096];
    snprintf(path, sizeof path, "%s/dataset.json", base);
    unlink(path);
    expect_open_error(base, "dataset.json", "cannot open");

    base = variant("bad_json");
    set_json(base, "{\"channel_names\": {\"0\": \"T1\"},");
    expect_open_error(base, "dataset.json", "malformed JSON");

    const struct {
        const char *name, *json, *needle;
    } cases[] = {
        {"no_channels", "{\"labels\": {\"background\": 0}, \"file_ending\": \".png\"}",
         "channel_names"},
        {"no_labels",
         "{\"channel_names\": {\"0\": \"a\", \"1\": \"b\"}, \"file_ending\": \".png\"}",
         "\"labels\""},
        {"no_ending", "{\"channel_names\": {\"0\": \"a\", \"1\": \"b\"}, \"labels\": "
                      "{\"background\": 0}}",
         "file_ending"},
        {"bad_ending", "{\"channel_names\": {\"0\": \"a\", \"1\": \"b\"}, \"labels\": "
                       "{\"background\": 0}, \"file_ending\": \".mha\"}",
         ".mha"},
        {"gap", "{\"channel_names\": {\"0\": \"a\", \"1\": \"b\"}, \"labels\": "
                "{\"background\": 0, \"x\": 2}, \"file_ending\": \".png\"}",
         "without gaps"},
        {"ignore_low", "{\"channel_names\": {\"0\": \"a\", \"1\": \"b\"}, \"labels\": "
                       "{\"background\": 0, \"x\": 1, \"ignore\": 1}, \"file_ending\": \".png\"}",
         "ignore"},
        {"regions", "{\"channel_names\": {\"0\": \"a\", \"1\": \"b\"}, \"labels\": "
                    "{\"background\": 0, \"whole\": [1, 2]}, \"file_ending\": \".png\"}",
         "not supported"},
        {"fraction", "{\"channel_names\": {\"0\": \"a\", \"1\": \"b\"}, \"labels\": "
                     "{\"background\": 0, \"x\": 0.5}, \"file_ending\": \".png\"}",
         "integer"},
        {"bg_not_zero", "{\"channel_names\": {\"0\": \"a\", \"1\": \"b\"}, \"labels\": "
                        "{\"x\": 0, \"background\": 1}, \"file_ending\": \".png\"}",
         "background"},
        {"channel_key", "{\"channel_names\": {\"0\": \"a\", \"2\": \"b\"}, \"labels\": "
                        "{\"background\": 0}, \"file_ending\": \".png\"}",
         "channel key"},
        {"num_training", "{\"channel_names\": {\"0\": \"a\", \"1\": \"b\"}, \"labels\": "
                         "{\"background\": 0, \"x\": 1, \"y\": 2, \"ignore\": 3}, "
                         "\"file_ending\": \".png\", \"numTraining\": 7}",
         "numTraining"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        base = variant(cases[i].name);
        set_json(base, cases[i].json);
        expect_open_error(base, "dataset.json", cases[i].needle);
    }
}

static void test_layout_errors(void) {
    char path[4096], target[3072];
    /* No training cases at all. */
    const char *base = at("empty");
    make_dirs(base);
    rl_error err = {0, ""};
    snprintf(path, sizeof path, "%s/dataset.json", base);
    CHECK_OK(rl_dataset_json_write(path, 2, CHANNELS, 4, LABEL_NAMES, LABEL_VALUES, ".png", -1,
                                   &err));
    expect_open_error(base, "imagesTr", "no training cases");
    snprintf(path, sizeof path, "%s/imagesTr", base);
    rmdir(path);
    expect_open_error(base, "imagesTr", "missing");

    base = variant("missing_channel");
    snprintf(path, sizeof path, "%s/imagesTr/case_c_0001.png", base);
    unlink(path);
    expect_open_error(base, "case_c", "lacks channel 0001");

    base = variant("extra_channel");
    snprintf(path, sizeof path, "%s/imagesTr/case_c_0002.png", base);
    write_png(path, 8, 6, 0, 9);
    expect_open_error(base, "case_c_0002.png", "2 channels");

    base = variant("bad_name");
    snprintf(path, sizeof path, "%s/imagesTr/scan.png", base);
    write_png(path, 8, 6, 0, 9);
    expect_open_error(base, "scan.png", "CASE_XXXX");

    base = variant("dotdot");
    snprintf(path, sizeof path, "%s/imagesTr/a..b_0000.png", base);
    write_png(path, 8, 6, 0, 9);
    expect_open_error(base, "a..b", "refused");

    base = variant("orphan_label");
    snprintf(path, sizeof path, "%s/labelsTr/case_z.png", base);
    write_png(path, 8, 6, 0, 3);
    expect_open_error(base, "labelsTr/case_z.png", "no images");

    /* A symlink leaving the dataset is refused; one inside is fine. */
    base = variant("link_outside");
    snprintf(path, sizeof path, "%s/imagesTr/case_e_0000.png", base);
    snprintf(target, sizeof target, "%s/outside.png", g_root);
    write_png(target, 8, 6, 0, 9);
    CHECK(symlink(target, path) == 0);
    snprintf(path, sizeof path, "%s/imagesTr/case_e_0001.png", base);
    write_png(path, 8, 6, 0, 9);
    expect_open_error(base, "case_e_0000.png", "outside the dataset");

    /* ... also when the link is a folder above the file. */
    base = variant("link_folder");
    snprintf(target, sizeof target, "%s/elsewhere", g_root);
    rl_error mkerr = {0, ""};
    CHECK_OK(rl_make_dirs(target, &mkerr));
    snprintf(path, sizeof path, "%s/case_t.png", target);
    write_png(path, 5, 5, 0, 3);
    snprintf(path, sizeof path, "%s/labelsTs/case_t.png", base);
    unlink(path);
    snprintf(path, sizeof path, "%s/labelsTs", base);
    CHECK(rmdir(path) == 0 && symlink(target, path) == 0);
    expect_open_error(base, "labelsTs/case_t.png", "outside the dataset");

    base = variant("link_inside");
    snprintf(path, sizeof path, "%s/labelsTr/case_c.png", base);
    CHECK(symlink("case_a.png", path) == 0);
    rl_dataset ds;
    int rc = rl_dataset_open(base, &ds, &err);
    CHECK_MSG(rc == RL_OK, "%s", err.msg);
    if (!rc) {
        CHECK(ds.num_train_labeled == 3);
        rl_dataset_free(&ds);
    }
}

static void test_case_errors(void) {
    char path[4096];
    rl_error err = {0, ""};
    const char *base = variant("shape");
    snprintf(path, sizeof path, "%s/imagesTr/case_b_0001.png", base);
    write_png(path, 7, 6, 0, 9);
    rl_dataset ds;
    CHECK_OK(rl_dataset_open(base, &ds, &err));
    rl_volume images[2], label;
    int rc = rl_dataset_load_case(&ds, &ds.train[1], images, &label, &err);
    CHECK(rc == RL_EFORMAT);
    CHECK_MSG(strstr(err.msg, "shape mismatch") && strstr(err.msg, "case_b_0000.png") &&
                  strstr(err.msg, "case_b_0001.png") && strstr(err.msg, "8x6x1") &&
                  strstr(err.msg, "7x6x1"),
              "%s", err.msg);
    CHECK(images[0].data == NULL && images[1].data == NULL && label.data == NULL);
    /* The label differs in shape. */
    snprintf(path, sizeof path, "%s/labelsTr/case_a.png", base);
    write_png(path, 8, 5, 0, 3);
    rc = rl_dataset_load_case(&ds, &ds.train[0], images, &label, &err);
    CHECK_MSG(rc == RL_EFORMAT && strstr(err.msg, "labelsTr/case_a.png") &&
                  strstr(err.msg, "shape mismatch"),
              "%s", err.msg);
    /* An undeclared label value (labels are 0..2 + ignore 3). */
    write_png(path, 8, 6, 0, 6);
    rc = rl_dataset_load_case(&ds, &ds.train[0], images, &label, &err);
    CHECK_MSG(rc == RL_EFORMAT && strstr(err.msg, "labelsTr/case_a.png") &&
                  strstr(err.msg, "label value 4 is not declared"),
              "%s", err.msg);
    CHECK(label.data == NULL);
    rl_dataset_free(&ds);
}

static void test_select(void) {
    const char *ids[10] = {"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"};
    uint8_t mask[10];
    rl_error err = {0, ""};
    CHECK_OK(rl_select_labeled("2", 10, ids, RL_SELECT_EVEN, 0, mask, &err));
    /* floor((i + 0.5) * 10 / 2) = 2, 7 */
    const uint8_t want2[10] = {0, 0, 1, 0, 0, 0, 0, 1, 0, 0};
    CHECK(memcmp(mask, want2, 10) == 0);
    CHECK_OK(rl_select_labeled("0.25", 10, ids, RL_SELECT_EVEN, 0, mask, &err));
    /* round(2.5) = 3 cases at floor((i + 0.5) * 10 / 3) = 1, 5, 8 */
    const uint8_t want3[10] = {0, 1, 0, 0, 0, 1, 0, 0, 1, 0};
    CHECK(memcmp(mask, want3, 10) == 0);
    CHECK_OK(rl_select_labeled("0.01", 10, ids, RL_SELECT_EVEN, 0, mask, &err));
    const uint8_t want1[10] = {0, 0, 0, 0, 0, 1, 0, 0, 0, 0}; /* at least one */
    CHECK(memcmp(mask, want1, 10) == 0);
    CHECK_OK(rl_select_labeled("10", 10, ids, RL_SELECT_EVEN, 0, mask, &err));
    int all = 1;
    for (int i = 0; i < 10; i++) all &= mask[i] == 1;
    CHECK(all);

    /* Random: k cases, the same for the same seed, not always the same set. */
    uint8_t again[10];
    int differs = 0;
    for (uint64_t seed = 1; seed <= 5; seed++) {
        CHECK_OK(rl_select_labeled("4", 10, ids, RL_SELECT_RANDOM, seed, mask, &err));
        CHECK_OK(rl_select_labeled("4", 10, ids, RL_SELECT_RANDOM, seed, again, &err));
        int count = 0;
        for (int i = 0; i < 10; i++) count += mask[i];
        CHECK(count == 4 && memcmp(mask, again, 10) == 0);
        CHECK_OK(rl_select_labeled("4", 10, ids, RL_SELECT_RANDOM, seed + 100, again, &err));
        differs += memcmp(mask, again, 10) != 0;
    }
    CHECK(differs > 0);

    /* A list file: ids, blank lines, comments, CRLF. */
    char path[4096];
    snprintf(path, sizeof path, "%s/labeled.txt", g_root);
    write_text(path, "# chosen by hand\nc3\r\n\n  c7  \nc3\n");
    CHECK_OK(rl_select_labeled(path, 10, ids, RL_SELECT_EVEN, 0, mask, &err));
    const uint8_t want_file[10] = {0, 0, 0, 1, 0, 0, 0, 1, 0, 0};
    CHECK(memcmp(mask, want_file, 10) == 0);
    write_text(path, "c3\nc42\n");
    CHECK(rl_select_labeled(path, 10, ids, RL_SELECT_EVEN, 0, mask, &err) == RL_EINVAL);
    CHECK_MSG(strstr(err.msg, "c42") && strstr(err.msg, "labeled.txt"), "%s", err.msg);
    CHECK(rl_select_labeled(at("no-such-list.txt"), 10, ids, RL_SELECT_EVEN, 0, mask, &err) ==
          RL_EIO);

    const char *bad[] = {"0", "11", "-1", "1.5", "0.0", "2.5e0"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_MSG(rl_select_labeled(bad[i], 10, ids, RL_SELECT_EVEN, 0, mask, &err) == RL_EINVAL,
                  "spec %s", bad[i]);
}

int main(void) {
    const char *dir = rl_test_tmpdir("dataset");
    if (!dir) return 1;
    snprintf(g_root, sizeof g_root, "%s", dir);
    test_open_good();
    test_json_errors();
    test_layout_errors();
    test_case_errors();
    test_select();
    return rl_test_report("test_dataset");
}
