/* Output folders that appear complete or not at all: everything is written
 * into a hidden staging folder next to the target ("<parent>/.<name>.tmp.<pid>")
 * and moved into place only after the whole run succeeded; a failure
 * removes the staging folder. Used by `reflabel pseudolabel`. */
#ifndef RL_CLI_STAGED_DIR_H
#define RL_CLI_STAGED_DIR_H

#include "reflabel/core.h"

typedef struct staged_dir {
    char target[4096];
    char stage[4096];
} staged_dir;

/* Refuses a target that is a file, or a non-empty folder unless force
 * (option names the flag in the message), and makes the staging folder. */
int stage_open(staged_dir *sd, const char *target, int force, const char *option, rl_error *err);
/* Moves the staged files into the target: one rename for an absent or
 * empty target, else one atomic rename per file. */
int stage_publish(staged_dir *sd, rl_error *err);
/* Errors of writes into the staging folder name the file as the user will
 * know it: the staging prefix of the message becomes the target folder. */
void stage_name_in_error(const staged_dir *sd, rl_error *err);
/* Removes a file or a folder with everything in it. */
void remove_tree(const char *path);

/* Byte-for-byte copy, published atomically. */
int copy_file(const char *src, const char *dst, rl_error *err);
/* The file name after the last '/'. */
const char *base_name(const char *path);

#endif
