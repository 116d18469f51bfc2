/* reflabel/folder.h - plain folders of images or label maps, as nnU-Net's
 * predict and evaluate commands take them:
 *   images:  CASE_0000<ending>, CASE_0001<ending>, ...  (one file per channel)
 *   labels:  CASE<ending>
 * where <ending> is ".png", ".nii.gz" or ".nii". */
#ifndef REFLABEL_FOLDER_H
#define REFLABEL_FOLDER_H

#include "reflabel/core.h"
#include "reflabel/dataset.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rl_folder_entry {
    char id[RL_CASE_ID_MAX];
    char ending[16];
    char **paths; /* channels paths (images), or 1 path (labels) */
} rl_folder_entry;

typedef struct rl_folder {
    rl_folder_entry *entries; /* sorted by id */
    int count;
    int channels;
} rl_folder;

/* Lists the image cases of dir: every CASE_0000<ending> file starts a case,
 * which must have CASE_0001.. up to channels - 1 as well (error otherwise).
 * channels <= 0 takes the number of channels of the first case. */
int rl_folder_list_images(const char *dir, int channels, rl_folder *out, rl_error *err);
/* Lists the label maps (CASE<ending>) of dir; files named like channel
 * images (CASE_0000) are label maps too if that is how they are named. */
int rl_folder_list_labels(const char *dir, rl_folder *out, rl_error *err);
/* The entry with this id, or NULL. */
const rl_folder_entry *rl_folder_find(const rl_folder *f, const char *id);
void rl_folder_free(rl_folder *f);

/* ".png", ".nii.gz", ".nii" when name ends in one of them, else NULL. */
const char *rl_image_ending(const char *name);

#ifdef __cplusplus
}
#endif
#endif
