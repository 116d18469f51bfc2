/* Paths of the files src/io reads from a folder (private to src/io). The rule
 * that dataset folders, plain folders and MetaImage data files share: a file
 * must resolve inside its folder, so that no symbolic link (to the file or to
 * a folder above it) makes reflabel read, or later overwrite, files
 * elsewhere. */
#ifndef RL_IO_PATHS_H
#define RL_IO_PATHS_H

#include "reflabel/core.h"

/* "dir/name" in a new malloc'ed string; NULL when out of memory. */
char *rl_io_join_path(const char *dir, const char *name);

/* Whether resolved lies inside real_dir, both resolved by realpath: below
 * it, not the folder itself; everything lies inside "/". */
int rl_io_resolved_inside(const char *resolved, const char *real_dir);

/* Resolves path into resolved (PATH_MAX bytes) and checks that it lies
 * inside real_dir; the error calls that folder `folder` ("its folder"). */
int rl_io_resolve_inside(const char *path, const char *real_dir, const char *folder,
                         char *resolved, rl_error *err);

#endif
