/* reflabel/dataset.h - datasets in the nnU-Net v2 "raw" layout, and the
 * choice of which training cases keep their labels.
 *
 *   DatasetXXX_Name/
 *     dataset.json         channel_names, labels, file_ending [, numTraining]
 *     imagesTr/CASE_0000.nii.gz, CASE_0001.nii.gz, ...  one file per channel
 *     labelsTr/CASE.nii.gz  (absent for an unlabeled case)
 *     imagesTs/ [labelsTs/] optional, same naming
 *
 * Label values are 0..K-1 (0 = background), plus an optional "ignore" label
 * whose value must be K (the highest): voxels that carry no supervision.
 * Region-based labels (lists of values) are not supported.
 *
 * Multi-label datasets ("reflabel_multilabel": true in dataset.json, see
 * docs/DATA.md) store a bit set per voxel instead: bit c-1 is set when
 * structure c (class c of "labels") covers the voxel, 0 is background.
 */
#ifndef REFLABEL_DATASET_H
#define REFLABEL_DATASET_H

#include <stdint.h>

#include "reflabel/core.h"
#include "reflabel/image.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RL_CASE_ID_MAX 256
#define RL_DATASET_MAX_CHANNELS 64
#define RL_DATASET_MAX_LABELS 1024
/* dataset.json larger than this is refused (real ones are a few kB). */
#define RL_DATASET_JSON_MAX_BYTES (1u << 20)
/* Most structures of a multi-label dataset: its bit sets fit 16-bit files. */
#define RL_MULTILABEL_MAX_STRUCTURES 16

typedef struct rl_case {
    char id[RL_CASE_ID_MAX];
    char **image_paths; /* num_channels paths */
    char *label_path;   /* NULL when the case has no label */
} rl_case;

typedef struct rl_dataset {
    char *root;
    int num_channels;
    char **channel_names; /* channel_names[c] for c = 0..num_channels-1 */
    int num_classes;      /* K: label values 0..K-1 */
    char **class_names;   /* class_names[v] for v = 0..K-1 */
    int ignore_label;     /* K when an "ignore" label is declared, else -1 */
    char file_ending[16]; /* ".png", ".nii.gz" or ".nii" */
    int num_training_declared; /* numTraining, or -1 when absent */
    rl_case *train;            /* imagesTr cases, sorted by id */
    int num_train;
    int num_train_labeled;
    rl_case *test; /* imagesTs cases (labels from labelsTs), sorted by id */
    int num_test;
    /* "reflabel_multilabel": true: label values are bit sets of the
     * num_classes - 1 structures (bit c-1 = class c); no "ignore" label. */
    int multilabel;
} rl_dataset;

/* Reads dataset.json and scans the folders. Every error names the file. */
int rl_dataset_open(const char *dir, rl_dataset *ds, rl_error *err);
void rl_dataset_free(rl_dataset *ds);

/* Reads one case: images[c] for every channel (an array of ds->num_channels
 * volumes) and, when label is not NULL, its label map (an all-zero volume
 * with data NULL for an unlabeled case). Checks that all shapes agree and
 * that every label value is declared (multi-label: a whole number whose set
 * bits all belong to declared structures). On failure nothing is left
 * allocated. */
int rl_dataset_load_case(const rl_dataset *ds, const rl_case *c, rl_volume *images,
                         rl_volume *label, rl_error *err);
/* Frees what rl_dataset_load_case returned. */
void rl_dataset_free_case(const rl_dataset *ds, rl_volume *images, rl_volume *label);

/* ---- which cases keep their labels --------------------------------------- */

typedef enum rl_select_mode {
    RL_SELECT_EVEN = 0, /* evenly spaced over the sorted candidates */
    RL_SELECT_RANDOM    /* seeded random subset */
} rl_select_mode;

/* spec: a count ("5"), a fraction ("0.05" = round(f * n), at least 1), or
 * the path of a text file with one case id per line (blank lines and lines
 * starting with '#' are skipped; an unknown id is an error). Sets
 * mask_out[i] = 1 for each selected candidate, 0 otherwise. Evenly spaced
 * picks indices floor((i + 0.5) * n / k), i = 0..k-1; random picks the first
 * k of a seeded shuffle. Deterministic for a given (spec, ids, mode, seed). */
int rl_select_labeled(const char *spec, int n_candidates, const char *const *candidate_ids,
                      rl_select_mode mode, uint64_t seed, uint8_t *mask_out, rl_error *err);

/* ---- writing ------------------------------------------------------------ */

/* Writes an nnU-Net v2 dataset.json atomically. labels: num_labels
 * (name, value) pairs; num_training < 0 leaves numTraining out. */
int rl_dataset_json_write(const char *path, int num_channels, const char *const *channel_names,
                          int num_labels, const char *const *label_names,
                          const int *label_values, const char *file_ending, int num_training,
                          rl_error *err);
/* The same for a multi-label dataset: label_names[c] is class c (0 =
 * background, then the structures, whose bit is c - 1), and the file holds
 * "reflabel_multilabel": true. */
int rl_dataset_json_write_multilabel(const char *path, int num_channels,
                                     const char *const *channel_names, int num_labels,
                                     const char *const *label_names, const char *file_ending,
                                     int num_training, rl_error *err);

#ifdef __cplusplus
}
#endif
#endif
