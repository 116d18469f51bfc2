/* Paths of the files src/io reads from a folder (paths.h): joining, and the
 * rule that a file resolves inside its folder. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "paths.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *rl_io_join_path(const char *dir, const char *name) {
    size_t len = strlen(dir) + strlen(name) + 2;
    char *path = malloc(len);
    if (path) snprintf(path, len, "%s/%s", dir, name);
    return path;
}

int rl_io_resolved_inside(const char *resolved, const char *real_dir) {
    size_t n = strlen(real_dir);
    return strncmp(resolved, real_dir, n) == 0 &&
           (resolved[n] == '/' || (n == 1 && real_dir[0] == '/'));
}

int rl_io_resolve_inside(const char *path, const char *real_dir, const char *folder,
                         char *resolved, rl_error *err) {
    if (!realpath(path, resolved))
        return rl_error_set(err, RL_EIO, "%s: cannot resolve (broken link?): %s", path,
                            strerror(errno));
    if (!rl_io_resolved_inside(resolved, real_dir))
        return rl_error_set(err, RL_EINVAL, "%s: resolves outside %s, to %s (symbolic link); refused",
                            path, folder, resolved);
    return RL_OK;
}
