/* reflabel/convert.h - the paper's source datasets (JSRT + SCR chest
 * radiographs, RETOUCH retinal OCT) converted into nnU-Net v2 raw datasets
 * of NIfTI (.nii.gz) files. Layouts and label formats: docs/DATA.md. */
#ifndef REFLABEL_CONVERT_H
#define REFLABEL_CONVERT_H

#include "reflabel/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The five SCR structures, in class order 1..5; also the names of the SCR
 * mask folders ("left lung", ...). */
#define RL_JSRT_NUM_STRUCTURES 5
extern const char *const rl_jsrt_structures[RL_JSRT_NUM_STRUCTURES];

typedef struct rl_convert_summary {
    int num_labeled;   /* cases written with a label file */
    int num_unlabeled; /* cases written without one */
} rl_convert_summary;

/* JSRT + SCR. images_dir holds the JSRT *.IMG files (All247images/);
 * masks_dir holds one folder per structure, named as in
 * rl_jsrt_structures, each with <CASE>.gif masks (SCR's
 * scratch/masks/ or one fold's masks/). Case CASE = the .IMG file name
 * without extension (JPCLN001). A case with all five masks is labelled; one
 * with none is written as an unlabelled training case; one with only some
 * of them is an error.
 *
 * size 1024: the image is averaged over 2x2 pixel blocks to the masks' grid
 * (0.35 mm pixels); size 2048: the masks are upsampled by nearest neighbour
 * (each mask pixel becomes 2x2) to the image's 0.175 mm grid. Masks must be
 * 1024 x 1024 or 2048 x 2048.
 *
 * Labels are MULTI-LABEL: structures overlap (the clavicles lie over the
 * lungs), so each label pixel is a bit set, bit c-1 set when structure c
 * (1 left lung, 2 right lung, 3 heart, 4 left clavicle, 5 right clavicle)
 * covers it: values 0..31, uint8 NIfTI. dataset.json lists the five
 * structures with their class numbers and carries
 * "reflabel_multilabel": true. Everything goes to imagesTr/labelsTr. */
int rl_convert_jsrt(const char *images_dir, const char *masks_dir, const char *out_dir, int size,
                    int force, rl_convert_summary *summary, rl_error *err);

/* RETOUCH. in_dir is the TrainingSet-Release folder (or any folder of the
 * same shape): <in_dir>/{Cirrus,Spectralis,Topcon}/<CASE>/oct.mhd with an
 * optional reference.mhd (0 background, 1 IRF, 2 SRF, 3 PED). Vendor
 * folders that are absent are skipped (at least one case is required).
 * Case id: <vendor>_<case> in lower case (cirrus_train001). Images are
 * written as float32 3D NIfTI with the MetaImage spacing, references as
 * uint8; every reference value must be 0..3 and its grid must match the
 * image. Cases without reference.mhd become unlabelled training cases. */
int rl_convert_retouch(const char *in_dir, const char *out_dir, int force,
                       rl_convert_summary *summary, rl_error *err);

#ifdef __cplusplus
}
#endif
#endif
