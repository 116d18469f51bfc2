/* fuzz/fuzz_labeled_list.c - libFuzzer target for the --labeled option
 * (rl_select_labeled in src/io/dataset.c): the one option that names a file
 * of its own, a list of case ids, besides being a count or a fraction.
 *
 * The first byte chooses what the rest is: even, the contents of the id
 * file (spec = its path); odd, the spec string itself (at most 63 bytes, so
 * that counts, fractions, exponents, signs and junk reach the number
 * parser). Its next bit picks even or random selection. The candidates are
 * 40 case ids in nnU-Net style, sorted like a dataset's. Whatever is
 * accepted must select between 1 and 40 candidates, only 0/1 flags. */
#include "fuzz_common.h"
#include "reflabel/dataset.h"

#define CANDIDATES 40

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static char names[CANDIDATES][16];
    const char *ids[CANDIDATES];
    for (int i = 0; i < CANDIDATES; i++) {
        snprintf(names[i], sizeof names[i], "case_%03d", i);
        ids[i] = names[i];
    }
    const rl_select_mode mode = (data[0] >> 1) & 1 ? RL_SELECT_RANDOM : RL_SELECT_EVEN;
    char spec[1024];
    if (data[0] & 1) {
        size_t n = size - 1 < 63 ? size - 1 : 63;
        memcpy(spec, data + 1, n);
        spec[n] = '\0';
    } else {
        rl_fuzz_path(spec, sizeof spec, rl_fuzz_workdir("labeled_list"), "labeled.txt");
        rl_fuzz_write(spec, data + 1, size - 1);
    }
    uint8_t mask[CANDIDATES];
    rl_error err = {0, ""};
    if (rl_select_labeled(spec, CANDIDATES, ids, mode, 7, mask, &err) == RL_OK) {
        int selected = 0;
        for (int i = 0; i < CANDIDATES; i++) {
            if (mask[i] > 1) abort();
            selected += mask[i];
        }
        if (selected < 1) abort();
    } else if (!err.msg[0]) {
        abort(); /* an error must say what it is */
    }
    return 0;
}
