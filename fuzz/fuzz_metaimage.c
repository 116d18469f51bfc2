/* fuzz/fuzz_metaimage.c - libFuzzer target for the ITK MetaImage reader
 * (src/io/metaimage.c).
 *
 * Each input is written as input.mhd: a header, optionally followed by LOCAL
 * data. The scratch folder also holds the files an ElementDataFile line may
 * name, made once per process:
 *   data.raw     64 bytes (16 float32 values 0..15; as bytes, 8 x 8 uchar)
 *   sub/data.raw the same, one folder down (allowed)
 *   outside.raw  a symbolic link to /etc/hostname (must be refused: it
 *                resolves outside the header's folder)
 * so that the fuzzer can reach the external-data and path-checking code as
 * well as the LOCAL case. */
#include "fuzz_common.h"
#include "reflabel/formats.h"

static void make_data_files(const char *dir) {
    float values[16];
    for (int i = 0; i < 16; i++) values[i] = (float)i;
    char path[1024];
    rl_fuzz_path(path, sizeof path, dir, "data.raw");
    rl_fuzz_write(path, (const uint8_t *)values, sizeof values);
    rl_fuzz_path(path, sizeof path, dir, "sub");
    if (mkdir(path, 0700) != 0 && access(path, W_OK) != 0) abort();
    rl_fuzz_path(path, sizeof path, dir, "sub/data.raw");
    rl_fuzz_write(path, (const uint8_t *)values, sizeof values);
    rl_fuzz_path(path, sizeof path, dir, "outside.raw");
    (void)unlink(path);
    if (symlink("/etc/hostname", path) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Static because libFuzzer gives the entry point no context; set once. */
    static int data_files_made = 0;
    const char *dir = rl_fuzz_workdir("metaimage");
    if (!data_files_made) {
        make_data_files(dir);
        data_files_made = 1;
    }
    char path[1024];
    rl_fuzz_path(path, sizeof path, dir, "input.mhd");
    rl_fuzz_write(path, data, size);

    rl_volume vol;
    rl_error err = {0};
    memset(&vol, 0, sizeof vol);
    if (rl_metaimage_read(path, &vol, &err) == RL_OK) {
        volatile float sum = 0.0f;
        for (size_t i = 0; i < rl_volume_numel(&vol); i++) sum += vol.data[i];
        (void)sum;
    }
    rl_volume_free(&vol);
    return 0;
}
