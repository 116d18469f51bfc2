/* Output folders that appear complete or not at all (staged_dir.h). */
#include "staged_dir.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

/* ---- output folders that appear complete or not at all ------------------ *
 * Everything is written into a hidden staging folder next to the target
 * ("<parent>/.<name>.tmp.<pid>") and moved into place only after the whole
 * run succeeded; a failure removes the staging folder. */

static int is_nonempty_dir(const char *path) {
    DIR *d = opendir(path);
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d)) != NULL)
        found = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return found;
}

void remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char child[4096];
            if (snprintf(child, sizeof child, "%s/%s", path, e->d_name) < (int)sizeof child)
                remove_tree(child);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

int stage_open(staged_dir *sd, const char *target, int force, const char *option,
                      rl_error *err) {
    struct stat st;
    snprintf(sd->target, sizeof sd->target, "%s", target);
    size_t n = strlen(sd->target);
    while (n > 1 && sd->target[n - 1] == '/') sd->target[--n] = '\0';
    if (stat(sd->target, &st) == 0 && !S_ISDIR(st.st_mode))
        return rl_error_set(err, RL_EIO, "%s: exists and is not a folder", sd->target);
    if (!force && is_nonempty_dir(sd->target))
        return rl_error_set(err, RL_EIO, "%s: folder is not empty (%s; pass --force to write into it)",
                            sd->target, option);
    const char *slash = strrchr(sd->target, '/');
    char parent[4096];
    const char *name = slash ? slash + 1 : sd->target;
    if (slash) snprintf(parent, sizeof parent, "%.*s", (int)(slash - sd->target), sd->target);
    else snprintf(parent, sizeof parent, ".");
    if (!parent[0]) snprintf(parent, sizeof parent, "/");
    int rc = rl_make_dirs(parent, err);
    if (rc) return rc;
    if (snprintf(sd->stage, sizeof sd->stage, "%s/.%s.tmp.%ld", parent, name, (long)getpid()) >=
        (int)sizeof sd->stage)
        return rl_error_set(err, RL_EINVAL, "%s: path too long", sd->target);
    remove_tree(sd->stage);
    return rl_make_dirs(sd->stage, err);
}

/* Moves the staged files into an existing target, one atomic rename each. */
static int merge_into(const char *from, const char *to, rl_error *err) {
    int rc = rl_make_dirs(to, err);
    DIR *d = rc ? NULL : opendir(from);
    if (!rc && !d) return rl_error_set(err, RL_EIO, "%s: cannot list: %s", from, strerror(errno));
    struct dirent *e;
    while (!rc && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char src[4096], dst[4096];
        struct stat st;
        rc = cli_make_path(src, sizeof src, err, "%s/%s", from, e->d_name);
        if (!rc) rc = cli_make_path(dst, sizeof dst, err, "%s/%s", to, e->d_name);
        if (rc) break;
        if (lstat(src, &st) != 0) rc = rl_error_set(err, RL_EIO, "%s: %s", src, strerror(errno));
        else if (S_ISDIR(st.st_mode)) rc = merge_into(src, dst, err);
        else if (rename(src, dst) != 0)
            rc = rl_error_set(err, RL_EIO, "%s: cannot move into place: %s", dst, strerror(errno));
    }
    if (d) closedir(d);
    return rc;
}

/* Errors of writes into the staging folder name the file as the user will
 * know it: the staging prefix of the message becomes the target folder. */
void stage_name_in_error(const staged_dir *sd, rl_error *err) {
    if (!err) return;
    char *at = strstr(err->msg, sd->stage);
    if (!at) return;
    char msg[2 * RL_ERROR_MSG_MAX + sizeof sd->target];
    snprintf(msg, sizeof msg, "%.*s%s%s", (int)(at - err->msg), err->msg, sd->target,
             at + strlen(sd->stage));
    size_t len = strlen(msg);
    if (len >= sizeof err->msg) len = sizeof err->msg - 1; /* cut, as rl_error_set would */
    memcpy(err->msg, msg, len);
    err->msg[len] = '\0';
}

int stage_publish(staged_dir *sd, rl_error *err) {
    /* an absent or empty target is replaced in one rename */
    rmdir(sd->target);
    if (rename(sd->stage, sd->target) == 0) return RL_OK;
    int rc = merge_into(sd->stage, sd->target, err);
    if (!rc) remove_tree(sd->stage);
    return rc;
}

/* ---- files --------------------------------------------------------------- */

/* Byte-for-byte copy, published atomically. */
int copy_file(const char *src, const char *dst, rl_error *err) {
    FILE *in = fopen(src, "rb");
    if (!in) return rl_error_set(err, RL_EIO, "%s: cannot open: %s", src, strerror(errno));
    rl_atomic_file f;
    int rc = rl_atomic_open(&f, dst, err);
    if (rc) {
        fclose(in);
        return rc;
    }
    char buf[1 << 16];
    size_t n;
    while (!rc && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, (FILE *)f.fp) != n)
            rc = rl_error_set(err, RL_EIO, "%s: write failed: %s", dst, strerror(errno));
    if (!rc && ferror(in)) rc = rl_error_set(err, RL_EIO, "%s: read failed", src);
    fclose(in);
    if (rc) {
        rl_atomic_abort(&f);
        return rc;
    }
    return rl_atomic_commit(&f, err);
}

const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

