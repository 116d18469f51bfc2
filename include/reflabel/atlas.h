/* reflabel/atlas.h - a real 2D segmentation dataset built from a brain atlas:
 * slices of the Colin27 T1 template (ch2.nii.gz) labelled with the AAL
 * atlas (aal.nii.gz) grouped into eight lobes, written in the nnU-Net v2 raw
 * layout. Debian's mricron-data package ships the three source files in
 * /usr/share/mricron/templates/. See docs/DATA.md, "Atlas dataset".
 *
 * Classes (from the leading digit of each region's AAL code, read from the
 * region list, never typed in): 0 background, 1 frontal (2xxx), 2 insula
 * (3xxx), 3 limbic (4xxx), 4 occipital (5xxx), 5 parietal (6xxx), 6 deep grey
 * nuclei (7xxx), 7 temporal (8xxx), 8 cerebellum (9xxx, vermis included).
 */
#ifndef REFLABEL_ATLAS_H
#define REFLABEL_ATLAS_H

#include <stdint.h>

#include "reflabel/core.h"
#include "reflabel/image.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RL_ATLAS_NUM_CLASSES 9
/* Largest region value accepted in the region list and the atlas volume. */
#define RL_ATLAS_MAX_REGION 65535
/* Consecutive qualifying slices per slab; every third slab is test. */
#define RL_ATLAS_SLAB 8

/* The default source files (Debian package mricron-data). */
#define RL_ATLAS_DEFAULT_T1 "/usr/share/mricron/templates/ch2.nii.gz"
#define RL_ATLAS_DEFAULT_AAL "/usr/share/mricron/templates/aal.nii.gz"
#define RL_ATLAS_DEFAULT_TXT "/usr/share/mricron/templates/aal.nii.txt"

/* Class names, index = class value ("background", "frontal", ...). */
extern const char *const rl_atlas_class_names[RL_ATLAS_NUM_CLASSES];

/* Reads an AAL region list: one region per line, "VALUE NAME CODE"
 * (whitespace separated, CR LF or LF, blank lines skipped). Fills
 * lobe_of_value[0..RL_ATLAS_MAX_REGION] with the class of every region value:
 * the code's leading decimal digit d in 2..9 gives class d - 1; values not
 * listed, value 0 and other codes give 0 (background). A duplicate value, a
 * value outside 1..RL_ATLAS_MAX_REGION or a malformed line is an error. */
int rl_atlas_read_lobes(const char *txt_path, uint8_t *lobe_of_value, rl_error *err);

/* Maps an atlas volume (region values) to lobe classes: out[i] for every
 * voxel; values must be whole numbers in 0..RL_ATLAS_MAX_REGION. */
int rl_atlas_map_lobes(const rl_volume *atlas, const uint8_t *lobe_of_value, uint8_t *out,
                       rl_error *err);

/* Coarser version of a 1 mm pair: each output voxel is one block of
 * factor[0] x factor[1] x factor[2] input voxels (each factor 1 or 2; an odd
 * last plane along a halved axis is dropped: output extent n / 2). Image:
 * the block mean. Labels: the most frequent class in the block; a tie goes
 * to the lowest class value (so a 4-4 background/lobe tie stays
 * background). Spacing is multiplied by the factors. {2, 2, 2} is the 2 mm
 * atlas; {2, 2, 1} halves the in-plane resolution of axial slices and keeps
 * every slice. image_out gets a fresh in-memory volume; labels_out must hold
 * its numel. An extent < 2 along a halved axis is refused. */
int rl_atlas_downsample(const rl_volume *image, const uint8_t *labels, const int factor[3],
                        rl_volume *image_out, uint8_t **labels_out, rl_error *err);

/* Roles of the qualifying slices in the split. */
enum { RL_ATLAS_TRAIN = 0, RL_ATLAS_TEST = 1, RL_ATLAS_EXCLUDED = 2 };

/* Split of n qualifying slices, in increasing slice order: slab s holds
 * positions 8s..8s+7; slabs with s % 3 == 2 are test; the position right
 * before and right after each test slab is excluded (it touches a test
 * slice); everything else is training. role[i] receives RL_ATLAS_*. */
void rl_atlas_split(int n, uint8_t *role);

typedef struct rl_atlas_options {
    int axis;       /* 0 sagittal, 1 coronal, 2 axial */
    int downsample; /* 1 (1 mm) or 2 (2 mm) */
    /* with downsample 2: only within the slices (the two axes other than
     * `axis`), keeping every 1 mm slice: about twice the slices of the 2 mm
     * set, at the same in-plane size */
    int in_plane;
    int min_voxels; /* labelled voxels a slice needs to become a case */
    int force;      /* write into a non-empty output folder */
} rl_atlas_options;

typedef struct rl_atlas_summary {
    int nx, ny, nz;     /* volume the slices were cut from (after downsampling) */
    int num_slices;     /* slices along the axis */
    int num_qualifying; /* slices with >= min_voxels labelled voxels */
    int num_train, num_test, num_excluded;
} rl_atlas_summary;

/* Builds the dataset in out_dir: dataset.json, imagesTr/labelsTr (training),
 * imagesTs/labelsTs (test), cases "atlas_<a><NNN>" with <a> = x, y or z
 * (the fixed axis) and NNN the slice index in the (downsampled) volume.
 * Each case is a 2D NIfTI (nz = 1): image float32, labels uint8, spacing the
 * slice's in-plane spacing (x = columns, y = rows) and the slice thickness.
 * A non-empty out_dir is refused unless opt->force; with force, old
 * atlas_*.nii.gz cases in the four case folders are removed first so that
 * the folder holds exactly this run's dataset. summary may be NULL. */
int rl_atlas_build(const char *t1_path, const char *atlas_path, const char *txt_path,
                   const char *out_dir, const rl_atlas_options *opt, rl_atlas_summary *summary,
                   rl_error *err);

#ifdef __cplusplus
}
#endif
#endif
