/* The atlas dataset: lobe grouping, the min-voxels rule, the slab split with
 * its neighbour exclusion, 2 mm downsampling, and a real run on mricron-data
 * when it is installed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reflabel/atlas.h"
#include "reflabel/dataset.h"
#include "reflabel/image.h"
#include "testutil.h"

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void write_text(const char *path, const char *text) {
    rl_error err = {0, ""};
    CHECK_OK(rl_write_file_atomic(path, text, strlen(text), &err));
}

static void test_lobes(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/regions.txt", dir);
    /* CR LF and a trailing blank line, as in the real aal.nii.txt. */
    write_text(path, "1 Precentral_L 2001\r\n2 Vermis_10 9170\r\n3 Insula_L 3001\r\n"
                     "7 Heschl_L 8101\r\n9 Odd_Region 1234\r\n10 Caudate_R 7002\r\n"
                     "11 Cingulum_Ant_L 4001\r\n12 Calcarine_L 5001\r\n13 Angular_R 6222\r\n"
                     "14 Short 7\r\n\r\n");
    uint8_t *lobes = malloc((size_t)RL_ATLAS_MAX_REGION + 1);
    rl_error err = {0, ""};
    CHECK_OK(rl_atlas_read_lobes(path, lobes, &err));
    CHECK(lobes[0] == 0);
    CHECK(lobes[1] == 1);  /* 2xxx frontal */
    CHECK(lobes[2] == 8);  /* 9xxx cerebellum (vermis) */
    CHECK(lobes[3] == 2);  /* 3xxx insula */
    CHECK(lobes[7] == 7);  /* 8xxx temporal */
    CHECK(lobes[9] == 0);  /* 1xxx: not a lobe */
    CHECK(lobes[10] == 6); /* 7xxx deep grey nuclei */
    CHECK(lobes[11] == 3); /* 4xxx limbic */
    CHECK(lobes[12] == 4); /* 5xxx occipital */
    CHECK(lobes[13] == 5); /* 6xxx parietal */
    CHECK(lobes[14] == 6); /* only the leading digit counts, whatever the length */
    CHECK(lobes[4] == 0);  /* not listed */
    CHECK(!strcmp(rl_atlas_class_names[8], "cerebellum"));

    /* Mapping refuses values that are not region numbers. */
    rl_volume v;
    CHECK_OK(rl_volume_create(&v, 2, 1, 1, &err));
    uint8_t out[2];
    v.data[0] = 2;
    v.data[1] = 13;
    CHECK_OK(rl_atlas_map_lobes(&v, lobes, out, &err));
    CHECK(out[0] == 8 && out[1] == 5);
    v.data[1] = 1.5f;
    CHECK(rl_atlas_map_lobes(&v, lobes, out, &err) == RL_EFORMAT && strstr(err.msg, "(1, 0, 0)"));
    v.data[1] = -1;
    CHECK(rl_atlas_map_lobes(&v, lobes, out, &err) == RL_EFORMAT);
    rl_volume_free(&v);

    write_text(path, "1 A 2001\n1 B 3001\n");
    CHECK(rl_atlas_read_lobes(path, lobes, &err) == RL_EFORMAT && strstr(err.msg, "repeats"));
    write_text(path, "1 A\n");
    CHECK(rl_atlas_read_lobes(path, lobes, &err) == RL_EFORMAT && strstr(err.msg, "line 1"));
    write_text(path, "0 Zero 2001\n");
    CHECK(rl_atlas_read_lobes(path, lobes, &err) == RL_EFORMAT);
    write_text(path, "x Name 2001\n");
    CHECK(rl_atlas_read_lobes(path, lobes, &err) == RL_EFORMAT);
    write_text(path, "\n\n");
    CHECK(rl_atlas_read_lobes(path, lobes, &err) == RL_EFORMAT && strstr(err.msg, "no regions"));
    snprintf(path, sizeof path, "%s/absent.txt", dir);
    CHECK(rl_atlas_read_lobes(path, lobes, &err) == RL_EIO);

    free(lobes);
}

static void test_split(void) {
    uint8_t role[64];
    /* 30 slices: slabs 0-7, 8-15 train, 16-23 test, 24-29 train; 15 and 24
     * touch the test slab. */
    rl_atlas_split(30, role);
    for (int i = 0; i < 30; i++) {
        int want = i >= 16 && i <= 23   ? RL_ATLAS_TEST
                   : i == 15 || i == 24 ? RL_ATLAS_EXCLUDED
                                        : RL_ATLAS_TRAIN;
        CHECK_MSG(role[i] == want, "slice %d: role %d, want %d", i, role[i], want);
    }
    /* 50: second test slab 40-47 (partial slabs count too), 39 and 48 out. */
    rl_atlas_split(50, role);
    int test = 0, excluded = 0;
    for (int i = 0; i < 50; i++) {
        test += role[i] == RL_ATLAS_TEST;
        excluded += role[i] == RL_ATLAS_EXCLUDED;
    }
    CHECK(test == 16 && excluded == 4);
    CHECK(role[39] == RL_ATLAS_EXCLUDED && role[48] == RL_ATLAS_EXCLUDED);
    CHECK(role[40] == RL_ATLAS_TEST && role[47] == RL_ATLAS_TEST && role[49] == RL_ATLAS_TRAIN);
    /* A test slab at the very end has no right neighbour. */
    rl_atlas_split(20, role);
    CHECK(role[15] == RL_ATLAS_EXCLUDED && role[16] == RL_ATLAS_TEST && role[19] == RL_ATLAS_TEST);
    /* Fewer than 17 slices: no test slab at all. */
    rl_atlas_split(16, role);
    for (int i = 0; i < 16; i++) CHECK(role[i] == RL_ATLAS_TRAIN);
}

static void test_downsample(void) {
    rl_error err = {0, ""};
    rl_volume img;
    /* 5x4x2: the odd last x plane is dropped -> 2x2x1. */
    CHECK_OK(rl_volume_create(&img, 5, 4, 2, &err));
    img.spacing[0] = 1.0;
    img.spacing[1] = 1.5;
    img.spacing[2] = 2.0;
    uint8_t lab[40] = {0};
    for (int i = 0; i < 40; i++) img.data[i] = (float)i;
    /* Block (0,0): 4 voxels class 3, 4 background -> tie -> background.
     * Block (1,0): 3 x class 5, 3 x class 2, 2 x 0 -> tie 2/5 -> 2.
     * Block (0,1): 5 x class 4 -> 4. Block (1,1): all 7 -> 7. */
    int bx[4] = {0, 1, 0, 1}, by[4] = {0, 0, 1, 1};
    const uint8_t fill[4][8] = {{3, 3, 3, 3, 0, 0, 0, 0},
                                {5, 2, 5, 2, 5, 2, 0, 0},
                                {4, 0, 4, 4, 1, 4, 4, 1},
                                {7, 7, 7, 7, 7, 7, 7, 7}};
    for (int b = 0; b < 4; b++) {
        int k = 0;
        for (int dz = 0; dz < 2; dz++)
            for (int dy = 0; dy < 2; dy++)
                for (int dx = 0; dx < 2; dx++)
                    lab[(dz * 4 + 2 * by[b] + dy) * 5 + 2 * bx[b] + dx] = fill[b][k++];
    }
    lab[4] = 6; /* in the dropped plane x = 4: must not matter */
    rl_volume small;
    uint8_t *small_lab = NULL;
    CHECK_OK(rl_atlas_downsample(&img, lab, (int[]){2, 2, 2}, &small, &small_lab, &err));
    CHECK(small.nx == 2 && small.ny == 2 && small.nz == 1);
    CHECK(small.spacing[0] == 2.0 && small.spacing[1] == 3.0 && small.spacing[2] == 4.0);
    CHECK(small_lab && small_lab[0] == 0 && small_lab[1] == 2 && small_lab[2] == 4 &&
          small_lab[3] == 7);
    /* Mean of voxels (x, y, z) in {0,1}^3 with value z*20 + y*5 + x. */
    CHECK(small.data[0] == (0 + 1 + 5 + 6 + 20 + 21 + 25 + 26) / 8.0f);
    CHECK(small.data[3] == (12 + 13 + 17 + 18 + 32 + 33 + 37 + 38) / 8.0f);
    rl_volume_free(&small);
    free(small_lab);
    /* In plane only ({2, 2, 1}): both z planes stay, blocks of 4 voxels.
     * Plane z = 0 of block (0,0) is 4 x class 3 -> 3 (the 8-voxel tie is
     * gone); plane z = 0 of block (1,0) is 5, 2, 5, 2 -> tie -> 2; plane
     * z = 1 of block (0,0) is background. */
    CHECK_OK(rl_atlas_downsample(&img, lab, (int[]){2, 2, 1}, &small, &small_lab, &err));
    CHECK(small.nx == 2 && small.ny == 2 && small.nz == 2);
    CHECK(small.spacing[0] == 2.0 && small.spacing[1] == 3.0 && small.spacing[2] == 2.0);
    CHECK(small_lab && small_lab[0] == 3 && small_lab[1] == 2 && small_lab[4] == 0 &&
          small_lab[3] == 7 && small_lab[7] == 7);
    CHECK(small.data[0] == (0 + 1 + 5 + 6) / 4.0f);
    CHECK(small.data[4] == (20 + 21 + 25 + 26) / 4.0f);
    rl_volume_free(&small);
    free(small_lab);
    small_lab = NULL;
    rl_volume flat;
    CHECK_OK(rl_volume_create(&flat, 4, 4, 1, &err));
    CHECK(rl_atlas_downsample(&flat, lab, (int[]){2, 2, 2}, &small, &small_lab, &err) ==
          RL_EINVAL);
    CHECK(small_lab == NULL);
    /* a single slice can still be halved in plane */
    CHECK_OK(rl_atlas_downsample(&flat, lab, (int[]){2, 2, 1}, &small, &small_lab, &err));
    CHECK(small.nx == 2 && small.ny == 2 && small.nz == 1);
    rl_volume_free(&small);
    free(small_lab);
    small_lab = NULL;
    CHECK(rl_atlas_downsample(&flat, lab, (int[]){3, 1, 1}, &small, &small_lab, &err) ==
          RL_EINVAL);
    rl_volume_free(&flat);
    rl_volume_free(&img);
}

/* A 6x5x40 T1 + atlas where slice z holds (z % 7 == 3 ? 2 : 12) labelled
 * voxels for z in 2..37 and none elsewhere; min-voxels 10 then keeps
 * z = 2..37 minus {3, 10, 17, 24, 31}: 31 slices. */
static void make_synthetic(const char *dir, char *t1, char *aal, char *txt) {
    rl_error err = {0, ""};
    snprintf(t1, 4096, "%s/t1.nii.gz", dir);
    snprintf(aal, 4096, "%s/aal.nii.gz", dir);
    snprintf(txt, 4096, "%s/aal.txt", dir);
    write_text(txt, "1 Frontal 2001\n2 Vermis 9100\n3 Other 1001\n");
    rl_volume vol;
    CHECK_OK(rl_volume_create(&vol, 6, 5, 40, &err));
    vol.spacing[0] = 0.5;
    vol.spacing[1] = 0.75;
    vol.spacing[2] = 1.25;
    int32_t *regions = calloc(6 * 5 * 40, sizeof *regions);
    for (int z = 0; z < 40; z++)
        for (int y = 0; y < 5; y++)
            for (int x = 0; x < 6; x++) {
                size_t i = ((size_t)z * 5 + y) * 6 + x;
                vol.data[i] = (float)(z * 100 + y * 10 + x);
                int k = y * 6 + x, want = z % 7 == 3 ? 2 : 12;
                /* region 3 (code 1001) is background: it must not count. */
                if (z >= 2 && z <= 37) regions[i] = k < want ? 1 + (k % 2) : (k < 20 ? 3 : 0);
            }
    CHECK_OK(rl_volume_write_float(t1, &vol, vol.data, &err));
    CHECK_OK(rl_volume_write_labels(aal, &vol, regions, &err));
    free(regions);
    rl_volume_free(&vol);
}

static int id_in(const rl_case *cases, int n, const char *id) {
    for (int i = 0; i < n; i++)
        if (!strcmp(cases[i].id, id)) return 1;
    return 0;
}

static void test_build_synthetic(const char *dir) {
    char t1[4096], aal[4096], txt[4096], out[4096], path[4096 + 64];
    make_synthetic(dir, t1, aal, txt);
    snprintf(out, sizeof out, "%s/out", dir);
    rl_error err = {0, ""};
    rl_atlas_options opt = {.axis = 2, .downsample = 1, .min_voxels = 10, .force = 0};
    rl_atlas_summary sum;
    CHECK_OK(rl_atlas_build(t1, aal, txt, out, &opt, &sum, &err));
    CHECK(sum.num_slices == 40 && sum.num_qualifying == 31);
    /* 31 qualifying: positions 16-23 test, 15 and 24 out. */
    CHECK(sum.num_test == 8 && sum.num_excluded == 2 && sum.num_train == 21);
    int qualifying[40], nq = 0;
    for (int z = 2; z <= 37; z++)
        if (z % 7 != 3) qualifying[nq++] = z;
    CHECK(nq == 31);
    rl_dataset ds;
    CHECK_OK(rl_dataset_open(out, &ds, &err));
    CHECK(ds.num_train == 21 && ds.num_test == 8 && ds.num_classes == 9);
    CHECK(ds.num_train_labeled == 21 && ds.num_training_declared == 21);
    CHECK(!strcmp(ds.class_names[6], "deep grey nuclei"));
    for (int i = 0; i < nq; i++) {
        char id[32];
        snprintf(id, sizeof id, "atlas_z%03d", qualifying[i]);
        int in_train = id_in(ds.train, ds.num_train, id), in_test = id_in(ds.test, ds.num_test, id);
        int want_test = i >= 16 && i <= 23, want_out = i == 15 || i == 24;
        CHECK_MSG(in_test == want_test && in_train == (!want_test && !want_out), "%s", id);
    }
    CHECK(!id_in(ds.train, ds.num_train, "atlas_z003")); /* below min-voxels */
    /* One case, voxel by voxel: z = 22 (test), a 2D 6x5 slice. */
    const rl_case *c = NULL;
    for (int i = 0; i < ds.num_test; i++)
        if (!strcmp(ds.test[i].id, "atlas_z022")) c = &ds.test[i];
    CHECK(c != NULL);
    if (c) {
        rl_volume img, lab;
        CHECK_OK(rl_dataset_load_case(&ds, c, &img, &lab, &err));
        CHECK(img.nx == 6 && img.ny == 5 && img.nz == 1);
        CHECK(img.spacing[0] == 0.5 && img.spacing[1] == 0.75 && img.spacing[2] == 1.25);
        int ok = 1;
        for (int y = 0; y < 5; y++)
            for (int x = 0; x < 6; x++) {
                int k = y * 6 + x;
                ok &= img.data[k] == (float)(2200 + y * 10 + x);
                ok &= lab.data[k] == (float)(k < 12 ? (k % 2 ? 8 : 1) : 0);
            }
        CHECK(ok);
        rl_dataset_free_case(&ds, &img, &lab);
    }
    rl_dataset_free(&ds);

    /* A non-empty folder is refused; --force rebuilds and drops stale cases. */
    CHECK(rl_atlas_build(t1, aal, txt, out, &opt, &sum, &err) == RL_EINVAL &&
          strstr(err.msg, "--force"));
    opt.force = 1;
    opt.axis = 0;
    opt.min_voxels = 1;
    CHECK_OK(rl_atlas_build(t1, aal, txt, out, &opt, &sum, &err));
    snprintf(path, sizeof path, "%s/imagesTr/atlas_z002_0000.nii.gz", out);
    CHECK(!file_exists(path));
    /* axis 0: slices x = 0..5, each with labelled voxels in rows y = 0, 1. */
    CHECK(sum.num_slices == 6 && sum.num_qualifying == 6 && sum.num_train == 6);
    CHECK_OK(rl_dataset_open(out, &ds, &err));
    CHECK(ds.num_train == 6 && ds.num_test == 0);
    if (ds.num_train > 0) {
        rl_volume img, lab;
        CHECK_OK(rl_dataset_load_case(&ds, &ds.train[0], &img, &lab, &err));
        /* Sagittal slice: (h, w) = (nz, ny), so the 2D file is ny x nz. */
        CHECK(img.nx == 5 && img.ny == 40 && img.spacing[0] == 0.75 && img.spacing[1] == 1.25 &&
              img.spacing[2] == 0.5);
        rl_dataset_free_case(&ds, &img, &lab);
    }
    rl_dataset_free(&ds);

    /* Bad inputs. */
    opt.axis = 3;
    CHECK(rl_atlas_build(t1, aal, txt, out, &opt, &sum, &err) == RL_EINVAL);
    opt.axis = 2;
    opt.min_voxels = 1000;
    CHECK(rl_atlas_build(t1, aal, txt, out, &opt, &sum, &err) == RL_EINVAL &&
          strstr(err.msg, "no slice"));
    opt.min_voxels = 1;
    snprintf(path, sizeof path, "%s/missing.nii.gz", dir);
    CHECK(rl_atlas_build(path, aal, txt, out, &opt, &sum, &err) == RL_EIO);
}

/* The real atlas, 2 mm axial: counts and the no-touching guarantee. */
static void test_real_atlas(const char *dir) {
    if (!file_exists(RL_ATLAS_DEFAULT_AAL) || !file_exists(RL_ATLAS_DEFAULT_T1) ||
        !file_exists(RL_ATLAS_DEFAULT_TXT)) {
        fprintf(stderr, "test_atlas: mricron-data not installed, real-data check skipped\n");
        return;
    }
    char out[4096];
    snprintf(out, sizeof out, "%s/real", dir);
    rl_error err = {0, ""};
    rl_atlas_options opt = {.axis = 2, .downsample = 2, .min_voxels = 200, .force = 0};
    rl_atlas_summary sum;
    double t0 = rl_now_seconds();
    CHECK_OK(rl_atlas_build(RL_ATLAS_DEFAULT_T1, RL_ATLAS_DEFAULT_AAL, RL_ATLAS_DEFAULT_TXT, out,
                            &opt, &sum, &err));
    fprintf(stderr,
            "real atlas 2 mm axial: %dx%dx%d, %d qualifying, %d train, %d test, %d out "
            "(%.1f s)\n",
            sum.nx, sum.ny, sum.nz, sum.num_qualifying, sum.num_train, sum.num_test,
            sum.num_excluded, rl_now_seconds() - t0);
    CHECK(sum.nx == 90 && sum.ny == 108 && sum.nz == 90);
    CHECK(sum.num_train + sum.num_test + sum.num_excluded == sum.num_qualifying);
    CHECK(sum.num_qualifying > 40 && sum.num_test >= 8);
    rl_dataset ds;
    CHECK_OK(rl_dataset_open(out, &ds, &err));
    CHECK(ds.num_train == sum.num_train && ds.num_test == sum.num_test);
    for (int i = 0; i < ds.num_test; i++) {
        int z = atoi(ds.test[i].id + strlen("atlas_z"));
        char id[32];
        for (int d = -1; d <= 1; d += 2) {
            snprintf(id, sizeof id, "atlas_z%03d", z + d);
            CHECK_MSG(!id_in(ds.train, ds.num_train, id), "training %s touches test %s", id,
                      ds.test[i].id);
        }
    }
    /* Every class is present in the training labels of a whole-brain set. */
    int seen[RL_ATLAS_NUM_CLASSES] = {0};
    for (int i = 0; i < ds.num_train; i += 3) {
        rl_volume img, lab;
        if (rl_dataset_load_case(&ds, &ds.train[i], &img, &lab, &err)) {
            CHECK_MSG(0, "%s", err.msg);
            break;
        }
        for (size_t k = 0; k < rl_volume_numel(&lab); k++) seen[(int)lab.data[k]] = 1;
        rl_dataset_free_case(&ds, &img, &lab);
    }
    for (int c = 0; c < RL_ATLAS_NUM_CLASSES; c++) CHECK_MSG(seen[c], "class %d never seen", c);
    rl_dataset_free(&ds);
}

int main(void) {
    const char *dir = rl_test_tmpdir("atlas");
    test_lobes(dir);
    test_split();
    test_downsample();
    test_build_synthetic(dir);
    test_real_atlas(dir);
    return rl_test_report("test_atlas");
}
