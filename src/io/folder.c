/* Listing plain folders of images and label maps by their nnU-Net names. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "reflabel/folder.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "paths.h"

const char *rl_image_ending(const char *name) {
    static const char *const endings[] = {".nii.gz", ".nii", ".png"};
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof endings / sizeof *endings; i++) {
        size_t e = strlen(endings[i]);
        if (len > e && strcmp(name + len - e, endings[i]) == 0) return endings[i];
    }
    return NULL;
}

void rl_folder_free(rl_folder *f) {
    for (int i = 0; i < f->count; i++) {
        for (int c = 0; f->entries[i].paths && c < f->channels; c++)
            free(f->entries[i].paths[c]);
        free(f->entries[i].paths);
    }
    free(f->entries);
    memset(f, 0, sizeof *f);
}

static int compare_entries(const void *a, const void *b) {
    return strcmp(((const rl_folder_entry *)a)->id, ((const rl_folder_entry *)b)->id);
}

const rl_folder_entry *rl_folder_find(const rl_folder *f, const char *id) {
    rl_folder_entry key;
    snprintf(key.id, sizeof key.id, "%s", id);
    return bsearch(&key, f->entries, (size_t)f->count, sizeof key, compare_entries);
}

static int is_regular_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Collects (id, ending) of the files that look like cases; for images the id
 * drops the "_0000" channel suffix and only channel-0 files start a case. */
static int collect(const char *dir, int images, rl_folder *out, rl_error *err) {
    DIR *d = opendir(dir);
    if (!d) return rl_error_set(err, RL_EIO, "%s: cannot open folder", dir);
    int cap = 0, rc = RL_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && !rc) {
        const char *name = de->d_name;
        const char *ending = rl_image_ending(name);
        if (name[0] == '.' || !ending) continue;
        size_t stem = strlen(name) - strlen(ending);
        if (images) {
            if (stem < 6 || strncmp(name + stem - 5, "_0000", 5) != 0) continue;
            stem -= 5;
        }
        if (stem == 0 || stem >= RL_CASE_ID_MAX) continue;
        if (out->count == cap) {
            cap = cap ? 2 * cap : 64;
            rl_folder_entry *p = realloc(out->entries, (size_t)cap * sizeof *p);
            if (!p) {
                rc = rl_error_set(err, RL_ENOMEM, "out of memory");
                break;
            }
            out->entries = p;
        }
        rl_folder_entry *e = &out->entries[out->count];
        memset(e, 0, sizeof *e);
        memcpy(e->id, name, stem);
        e->id[stem] = '\0';
        snprintf(e->ending, sizeof e->ending, "%s", ending);
        out->count++;
    }
    closedir(d);
    if (!rc) qsort(out->entries, (size_t)out->count, sizeof *out->entries, compare_entries);
    for (int i = 1; !rc && i < out->count; i++)
        if (strcmp(out->entries[i].id, out->entries[i - 1].id) == 0)
            rc = rl_error_set(err, RL_EFORMAT, "%s: case %s exists with two file endings", dir,
                              out->entries[i].id);
    return rc;
}

static int fill_paths(const char *dir, int images, rl_folder *out, rl_error *err) {
    char real_dir[PATH_MAX];
    if (!realpath(dir, real_dir))
        return rl_error_set(err, RL_EIO, "%s: cannot resolve folder: %s", dir, strerror(errno));
    for (int i = 0; i < out->count; i++) {
        rl_folder_entry *e = &out->entries[i];
        e->paths = calloc((size_t)out->channels, sizeof *e->paths);
        if (!e->paths) return rl_error_set(err, RL_ENOMEM, "out of memory");
        for (int c = 0; c < out->channels; c++) {
            char name[RL_CASE_ID_MAX + 32];
            if (images) snprintf(name, sizeof name, "%s_%04d%s", e->id, c, e->ending);
            else snprintf(name, sizeof name, "%s%s", e->id, e->ending);
            e->paths[c] = rl_io_join_path(dir, name);
            if (!e->paths[c]) return rl_error_set(err, RL_ENOMEM, "out of memory");
            if (!is_regular_file(e->paths[c]))
                return rl_error_set(err, RL_EIO, "%s: missing (case %s has %d channels)",
                                    e->paths[c], e->id, out->channels);
            /* a symbolic link must not lead outside the listed folder (paths.h) */
            char resolved[PATH_MAX];
            int rc = rl_io_resolve_inside(e->paths[c], real_dir, "its folder", resolved, err);
            if (rc) return rc;
        }
    }
    return RL_OK;
}

static int list_folder(const char *dir, int images, int channels, rl_folder *out,
                       rl_error *err) {
    memset(out, 0, sizeof *out);
    int rc = collect(dir, images, out, err);
    if (!rc && out->count == 0)
        rc = rl_error_set(err, RL_EINVAL, "%s: no %s found (expected names like %s)", dir,
                          images ? "images" : "label maps",
                          images ? "CASE_0000.nii.gz" : "CASE.nii.gz");
    if (!rc && images && channels <= 0) {
        /* Count the channels of the first case. */
        channels = 1;
        for (;;) {
            char name[RL_CASE_ID_MAX + 48], *path;
            snprintf(name, sizeof name, "%s_%04d%s", out->entries[0].id, channels,
                     out->entries[0].ending);
            path = rl_io_join_path(dir, name);
            int exists = path && is_regular_file(path);
            free(path);
            if (!exists) break;
            channels++;
        }
    }
    out->channels = images ? channels : 1;
    if (!rc) rc = fill_paths(dir, images, out, err);
    if (rc) rl_folder_free(out);
    return rc;
}

int rl_folder_list_images(const char *dir, int channels, rl_folder *out, rl_error *err) {
    return list_folder(dir, 1, channels, out, err);
}

int rl_folder_list_labels(const char *dir, rl_folder *out, rl_error *err) {
    return list_folder(dir, 0, 1, out, err);
}
