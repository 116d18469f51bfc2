/* fuzz/fuzz_safetensors.c - libFuzzer target for the safetensors reader
 * (src/nn/checkpoint.c): header length, JSON header, dtypes, shapes, data
 * offsets and metadata. A file that is read is also queried the way
 * rl_unet_load queries it (metadata keys, tensor look-up) and every tensor's
 * data is touched so that a wrong size shows up under ASan. */
#include "fuzz_common.h"
#include "reflabel/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[1024];
    rl_fuzz_path(path, sizeof path, rl_fuzz_workdir("safetensors"), "input.safetensors");
    rl_fuzz_write(path, data, size);

    rl_safetensors st;
    rl_error err = {0};
    memset(&st, 0, sizeof st);
    if (rl_safetensors_read(path, &st, &err) == RL_OK) {
        volatile uint8_t sink = 0;
        for (int i = 0; i < st.count; i++) {
            const rl_st_tensor *t = &st.tensors[i];
            size_t bytes = rl_dtype_size(t->dtype);
            for (int d = 0; d < t->ndim; d++) bytes *= (size_t)t->shape[d];
            const uint8_t *p = t->data;
            for (size_t b = 0; b < bytes; b++) sink ^= p[b];
            if (rl_safetensors_find(&st, t->name) == NULL) abort(); /* must find itself */
        }
        (void)rl_safetensors_metadata(&st, "reflabel.format");
        const char *config = rl_safetensors_metadata(&st, "reflabel.config");
        if (config) {
            rl_unet_config cfg;
            (void)rl_unet_config_from_json(config, &cfg, &err);
        }
        (void)sink;
    }
    rl_safetensors_free(&st);
    return 0;
}
