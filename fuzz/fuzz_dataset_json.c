/* fuzz/fuzz_dataset_json.c - libFuzzer target for dataset.json parsing and
 * the folder scan of rl_dataset_open (src/io/dataset.c).
 *
 * A tiny nnU-Net raw dataset is built once per process in the scratch folder:
 *   ds/imagesTr/case_0000.{png,nii.gz}  4 x 4 image
 *   ds/labelsTr/case.{png,nii.gz}       4 x 4 labels 0, 1 and 2
 *   ds/imagesTs/test_0000.png           unlabeled test case
 * and each input becomes ds/dataset.json. When the dataset opens, every
 * training case is loaded too, which checks the labels against the declared
 * classes - the part of a dataset a hostile dataset.json steers most. */
#include "fuzz_common.h"
#include "reflabel/dataset.h"

static void make_dataset(const char *root) {
    static const char *const folders[] = {"imagesTr", "labelsTr", "imagesTs"};
    char path[1024];
    if (mkdir(root, 0700) != 0 && access(root, W_OK) != 0) abort();
    for (int i = 0; i < 3; i++) {
        rl_fuzz_path(path, sizeof path, root, folders[i]);
        if (mkdir(path, 0700) != 0 && access(path, W_OK) != 0) abort();
    }
    rl_volume like;
    rl_error err = {0};
    if (rl_volume_create(&like, 4, 4, 1, &err)) abort();
    int32_t image[16], labels[16];
    for (int i = 0; i < 16; i++) {
        image[i] = 10 * i;
        labels[i] = i % 3;
    }
    static const char *const endings[] = {".png", ".nii.gz"};
    for (int e = 0; e < 2; e++) {
        char name[64];
        snprintf(name, sizeof name, "imagesTr/case_0000%s", endings[e]);
        rl_fuzz_path(path, sizeof path, root, name);
        if (rl_volume_write_labels(path, &like, image, &err)) abort();
        snprintf(name, sizeof name, "labelsTr/case%s", endings[e]);
        rl_fuzz_path(path, sizeof path, root, name);
        if (rl_volume_write_labels(path, &like, labels, &err)) abort();
    }
    rl_fuzz_path(path, sizeof path, root, "imagesTs/test_0000.png");
    if (rl_volume_write_labels(path, &like, image, &err)) abort();
    rl_volume_free(&like);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Static because libFuzzer gives the entry point no context; set once. */
    static int dataset_made = 0;
    char root[1024], path[1024];
    rl_fuzz_path(root, sizeof root, rl_fuzz_workdir("dataset_json"), "ds");
    if (!dataset_made) {
        make_dataset(root);
        dataset_made = 1;
    }
    rl_fuzz_path(path, sizeof path, root, "dataset.json");
    rl_fuzz_write(path, data, size);

    rl_dataset ds;
    rl_error err = {0};
    memset(&ds, 0, sizeof ds);
    if (rl_dataset_open(root, &ds, &err) == RL_OK) {
        for (int i = 0; i < ds.num_train; i++) {
            rl_volume images[RL_DATASET_MAX_CHANNELS], label;
            if (rl_dataset_load_case(&ds, &ds.train[i], images, &label, &err) == RL_OK)
                rl_dataset_free_case(&ds, images, &label);
        }
    }
    rl_dataset_free(&ds);
    return 0;
}
