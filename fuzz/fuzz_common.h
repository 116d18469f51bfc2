/* fuzz/fuzz_common.h - helpers shared by the libFuzzer targets of fuzz/.
 *
 * Most reflabel readers take a path, so a target writes each input to a
 * scratch file in a folder of its own process and hands the reader that
 * path. The folder is made once per process (libFuzzer runs every input of a
 * process through the same LLVMFuzzerTestOneInput, and forked or parallel
 * jobs are separate processes, so the pid keeps them apart).
 *
 * Everything here is header-only (static inline functions) so that fuzz/fuzz_*.c
 * stays "one file per target" and the replay driver can be built from
 * fuzz_<target>.c + replay.c with any C11 compiler.
 */
#ifndef REFLABEL_FUZZ_COMMON_H
#define REFLABEL_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reflabel/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The process's scratch folder, "$TMPDIR/reflabel-fuzz-<target>-<pid>"
 * ($TMPDIR defaults to /tmp; scripts/fuzz.sh points it at a folder it removes
 * afterwards), made on first use. A harness may keep this one piece of static
 * state: libFuzzer's entry point has no context argument to carry it in.
 * Aborts when the folder cannot be made, since then no input can be tested. */
static inline const char *rl_fuzz_workdir(const char *target) {
    static char dir[512];
    if (!dir[0]) {
        const char *tmp = getenv("TMPDIR");
        if (!tmp || !tmp[0]) tmp = "/tmp";
        if ((size_t)snprintf(dir, sizeof dir, "%s/reflabel-fuzz-%s-%ld", tmp, target,
                             (long)getpid()) >= sizeof dir)
            abort();
        if (mkdir(dir, 0700) != 0 && access(dir, W_OK) != 0) {
            perror(dir);
            abort();
        }
    }
    return dir;
}

/* dir/name into out (aborts when it does not fit: a harness bug). */
static inline void rl_fuzz_path(char *out, size_t out_size, const char *dir, const char *name) {
    if ((size_t)snprintf(out, out_size, "%s/%s", dir, name) >= out_size) abort();
}

/* Writes size bytes to path, replacing it. Deliberately not the atomic
 * helpers of core.h: this is a throw-away scratch file rewritten thousands of
 * times a second, and their fsync would dominate the fuzzer's speed. */
static inline void rl_fuzz_write(const char *path, const uint8_t *data, size_t size) {
    FILE *fp = fopen(path, "wb");
    if (!fp || (size && fwrite(data, 1, size, fp) != size) || fclose(fp) != 0) {
        perror(path);
        abort();
    }
}

#endif
