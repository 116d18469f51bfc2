/* fuzz/fuzz_gif.c - libFuzzer target for the GIF decoder (src/io/gif.c),
 * fed from memory through rl_gif_decode, its fuzzing entry point. A decoded
 * image is also turned into the binary mask that the SCR converter uses,
 * which reads every index against the palette. */
#include "fuzz_common.h"
#include "reflabel/formats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rl_gif_image img;
    rl_error err = {0};
    memset(&img, 0, sizeof img);
    if (rl_gif_decode(data, size, &img, &err) == RL_OK) {
        uint8_t *mask = malloc((size_t)img.width * (size_t)img.height + 1);
        if (mask) {
            rl_gif_foreground(&img, mask);
            free(mask);
        }
    }
    rl_gif_free(&img);
    return 0;
}
