/* fuzz/fuzz_jsrt.c - libFuzzer target for the JSRT raw reader
 * (src/io/jsrt.c).
 *
 * A JSRT file is exactly 2048 x 2048 x 2 bytes, far beyond useful fuzzer
 * input sizes, so the first input byte picks what is written:
 *   even (or empty input): the input itself, verbatim - exercises the size
 *     checks (every such file but one of exactly 8 MiB must be refused);
 *   odd: the remaining bytes repeated to fill exactly 8 MiB (zeros when there
 *     are none) - exercises the pixel decoding and the 12-bit range check.
 * The tiled file is rebuilt in one buffer allocated on first use. */
#include "fuzz_common.h"
#include "reflabel/formats.h"

#define JSRT_BYTES ((size_t)RL_JSRT_EDGE * RL_JSRT_EDGE * 2)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Static because libFuzzer gives the entry point no context: one 8 MiB
     * buffer for the process instead of an allocation per input. */
    static uint8_t *tiled = NULL;
    char path[1024];
    rl_fuzz_path(path, sizeof path, rl_fuzz_workdir("jsrt"), "input.img");
    if (size > 0 && (data[0] & 1)) {
        if (!tiled && !(tiled = malloc(JSRT_BYTES))) abort();
        const uint8_t *pattern = data + 1;
        const size_t n = size - 1;
        if (n == 0) memset(tiled, 0, JSRT_BYTES);
        else
            for (size_t i = 0; i < JSRT_BYTES; i += n)
                memcpy(tiled + i, pattern, JSRT_BYTES - i < n ? JSRT_BYTES - i : n);
        rl_fuzz_write(path, tiled, JSRT_BYTES);
    } else {
        rl_fuzz_write(path, data, size);
    }
    rl_volume vol;
    rl_error err = {0};
    memset(&vol, 0, sizeof vol);
    if (rl_jsrt_read(path, &vol, &err) == RL_OK) {
        /* A file that was accepted must decode to values in 0..4095. */
        for (size_t i = 0; i < rl_volume_numel(&vol); i++)
            if (!(vol.data[i] >= 0.0f && vol.data[i] <= 4095.0f)) abort();
    }
    rl_volume_free(&vol);
    return 0;
}
