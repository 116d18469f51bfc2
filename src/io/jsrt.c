/* JSRT chest radiographs: 2048 x 2048 headerless 12-bit big-endian words. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "reflabel/formats.h"

int rl_jsrt_read(const char *path, rl_volume *vol, rl_error *err) {
    const size_t pixels = (size_t)RL_JSRT_EDGE * RL_JSRT_EDGE, expected = pixels * 2;
    struct stat st;
    if (stat(path, &st) != 0)
        return rl_error_set(err, RL_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return rl_error_set(err, RL_EIO, "%s: not a regular file", path);
    if ((unsigned long long)st.st_size != (unsigned long long)expected)
        return rl_error_set(err, RL_EFORMAT,
                            "%s: %lld bytes, but a JSRT image is exactly %zu (2048 x 2048 "
                            "big-endian 16-bit words, no header)",
                            path, (long long)st.st_size, expected);
    char *bytes = NULL;
    size_t size = 0;
    int rc = rl_read_file(path, expected, &bytes, &size, err);
    if (rc) return rc;
    if (size != expected) { /* the file changed under us */
        free(bytes);
        return rl_error_set(err, RL_EIO, "%s: read %zu of %zu bytes", path, size, expected);
    }
    rc = rl_volume_create(vol, RL_JSRT_EDGE, RL_JSRT_EDGE, 1, err);
    if (rc) {
        free(bytes);
        return rc;
    }
    const unsigned char *b = (const unsigned char *)bytes;
    for (size_t i = 0; i < pixels; i++) {
        unsigned value = (unsigned)b[2 * i] << 8 | b[2 * i + 1];
        if (value > 4095) {
            rl_volume_free(vol);
            free(bytes);
            return rl_error_set(err, RL_EFORMAT,
                                "%s: pixel (%zu, %zu) is %u, above the 12-bit range of JSRT "
                                "(is this a little-endian or non-JSRT file?)",
                                path, i % RL_JSRT_EDGE, i / RL_JSRT_EDGE, value);
        }
        vol->data[i] = (float)value;
    }
    free(bytes);
    vol->spacing[0] = vol->spacing[1] = RL_JSRT_SPACING_MM;
    vol->spacing[2] = 1.0;
    return RL_OK;
}
