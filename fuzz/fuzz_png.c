/* fuzz/fuzz_png.c - libFuzzer target for the PNG reader (src/io/png.c).
 *
 * Each input is written as a .png file and read twice: as an image
 * (palette -> luminance, RGB -> luminance) and as a label map (palette
 * indices, RGB refused), the two paths of rl_png_read. The readers must
 * return an error for anything malformed; a crash, leak or undefined
 * behaviour is a finding.
 *
 * libpng rejects a chunk whose CRC does not match, so nearly every mutation
 * of a header field (width, height, bit depth, colour type, palette size)
 * would die at the CRC check, never reaching our code. The target therefore
 * recomputes the CRC of every complete chunk before writing the file: the
 * fuzzer explores the chunk contents, and libpng's CRC check (its own
 * business, not ours) is left out. */
#include <zlib.h>

#include "fuzz_common.h"
#include "reflabel/image.h"

/* Rewrites the CRC of each complete chunk after the 8-byte signature:
 * length (4, big-endian) | type (4) | data (length) | CRC over type + data. */
static void fix_chunk_crcs(uint8_t *png, size_t size) {
    size_t at = 8;
    while (at + 12 <= size) {
        uint32_t length = (uint32_t)png[at] << 24 | (uint32_t)png[at + 1] << 16 |
                          (uint32_t)png[at + 2] << 8 | png[at + 3];
        if (length > size - at - 12) break; /* a truncated chunk stays as it is */
        uLong crc = crc32(0L, png + at + 4, (uInt)length + 4);
        uint8_t *out = png + at + 8 + length;
        out[0] = (uint8_t)(crc >> 24);
        out[1] = (uint8_t)(crc >> 16);
        out[2] = (uint8_t)(crc >> 8);
        out[3] = (uint8_t)crc;
        at += (size_t)length + 12;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[1024];
    rl_fuzz_path(path, sizeof path, rl_fuzz_workdir("png"), "input.png");
    uint8_t *png = malloc(size + 1); /* + 1: malloc(0) may return NULL */
    if (!png) return 0;
    if (size) memcpy(png, data, size);
    fix_chunk_crcs(png, size);
    rl_fuzz_write(path, png, size);
    free(png);

    for (int as_labels = 0; as_labels <= 1; as_labels++) {
        rl_volume vol;
        rl_error err = {0};
        memset(&vol, 0, sizeof vol);
        if (rl_png_read(path, as_labels, &vol, &err) == RL_OK) {
            /* Touch every voxel so that a short buffer shows up under ASan. */
            volatile float sum = 0.0f;
            for (size_t i = 0; i < rl_volume_numel(&vol); i++) sum += vol.data[i];
            (void)sum;
        }
        rl_volume_free(&vol);
    }
    return 0;
}
