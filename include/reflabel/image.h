/* reflabel/image.h - 2D and 3D image volumes: PNG and NIfTI-1/2 reading and
 * writing, slicing along an axis, and label maps.
 *
 * Voxels are float32 with x fastest: data[(z * ny + y) * nx + x]. A PNG is a
 * volume with nz = 1 and spacing (1, 1, 1) mm. Every volume keeps a copy of
 * the header it was read from (NIfTI: orientation, spacing, units, version,
 * without data) so that results can be written back "like" it: a label map
 * written like a CT volume opens on top of that CT volume in any viewer.
 *
 * Limits (see docs/DATA.md): at most RL_VOLUME_MAX_VOXELS voxels, at most 3
 * spatial dimensions (NIfTI dim[4..7] must be 1).
 */
#ifndef REFLABEL_IMAGE_H
#define REFLABEL_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "reflabel/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 2^31 - 1 voxels: 8 GiB as float32, more than any 2D-U-Net workflow needs.
 * It is INT32_MAX so that every single dimension also fits the int fields of
 * rl_volume (a NIfTI dim[1] of exactly 2^31 once wrapped to a negative nx and
 * slipped past the file-size check: found by fuzzing), and every index
 * computation stays within int64 with room left. */
#define RL_VOLUME_MAX_VOXELS ((int64_t)INT32_MAX)
/* deflate (PNG, gzip) cannot expand data more than about 1032:1: a header
 * claiming more decoded bytes than this times the file size is refused
 * before anything large is allocated. */
#define RL_DEFLATE_MAX_RATIO 1032.0
/* Largest edge of a PNG accepted (libpng's own default limit is 1,000,000). */
#define RL_PNG_MAX_EDGE 65535

typedef enum rl_format {
    RL_FORMAT_NONE = 0, /* built in memory; written as NIfTI-1 when asked */
    RL_FORMAT_PNG,
    RL_FORMAT_NIFTI /* NIfTI-1 or NIfTI-2, plain or gzip */
} rl_format;

typedef struct rl_volume {
    float *data; /* nx * ny * nz values, x fastest */
    int nx, ny, nz;
    double spacing[3]; /* mm along x, y, z */
    rl_format format;
    /* Opaque copy of the source header (NIfTI: a nifti_image without data),
     * owned by the volume; NULL for PNG and in-memory volumes. */
    void *header;
} rl_volume;

static inline size_t rl_volume_numel(const rl_volume *vol) {
    return (size_t)vol->nx * (size_t)vol->ny * (size_t)vol->nz;
}

/* A zero-filled in-memory volume (format NONE, spacing 1 mm). */
int rl_volume_create(rl_volume *vol, int nx, int ny, int nz, rl_error *err);
/* A zero-filled volume with like's shape, spacing, format and a copy of its
 * header: the way to build an output that is written "like" an input. */
int rl_volume_create_like(rl_volume *vol, const rl_volume *like, rl_error *err);
/* Frees data and header; leaves an all-zero struct (safe to call twice). */
void rl_volume_free(rl_volume *vol);

/* ---- reading ----------------------------------------------------------- *
 * The reader is chosen by extension: ".png", ".nii", ".nii.gz" (lower case).
 *
 * rl_volume_read reads an IMAGE: PNG RGB/RGBA becomes luminance
 * 0.299 R + 0.587 G + 0.114 B (alpha dropped), a palette PNG becomes the
 * luminance of its colours. rl_volume_read_labels reads a LABEL MAP: a
 * palette PNG gives its palette indices (the usual way label PNGs are
 * stored) and RGB/RGBA is refused, since colours carry no class numbers.
 * Both: 8/16-bit gray as is, 1/2/4-bit gray as 0..2^d-1, gray+alpha drops
 * alpha. NIfTI data of any integer or real type becomes float with
 * scl_slope/scl_inter applied (a slope of 0 means "no scaling").
 * On failure vol is left all-zero. */
int rl_volume_read(const char *path, rl_volume *vol, rl_error *err);
int rl_volume_read_labels(const char *path, rl_volume *vol, rl_error *err);

/* Converts a label volume to int32: every voxel must be a whole number in
 * [0, INT32_MAX], else the error names the first bad voxel (x, y, z). */
int rl_labels_from_volume(const rl_volume *vol, int32_t *out, rl_error *err);

/* ---- writing ----------------------------------------------------------- *
 * The output format comes from path's extension; shape, spacing and header
 * from like (which may be of another format: a NIfTI output like a PNG or
 * in-memory volume gets a fresh NIfTI-1 header with like's spacing). A PNG
 * output needs nz = 1. Files appear atomically (temporary name + rename).
 *
 * Labels (values >= 0): PNG 8-bit gray when max <= 255, else 16-bit (max
 * 65535); NIfTI uint8 when max <= 255, int16 when <= 32767, else int32,
 * with like's header (version 1 or 2, qform/sform, pixdim, units, extensions)
 * and scl_slope/scl_inter reset to 1/0. */
int rl_volume_write_labels(const char *path, const rl_volume *like, const int32_t *labels,
                           rl_error *err);
/* Multi-label bit sets of `structures` structures (1..16; bit c-1 =
 * structure c), stored in a type fixed by the structure count rather than by
 * the values, so that every file of a dataset agrees: NIfTI uint8 / PNG
 * 8-bit for up to 8 structures, else NIfTI uint16 / PNG 16-bit. A value with
 * a bit beyond the structures is an error. */
int rl_volume_write_bitsets(const char *path, const rl_volume *like, const int32_t *bits,
                            int structures, rl_error *err);
/* Real values such as confidence maps: NIfTI float32 with like's header;
 * PNG 16-bit gray holding round(65535 * clamp(v, 0, 1)). NaN is refused. */
int rl_volume_write_float(const char *path, const rl_volume *like, const float *values,
                          rl_error *err);
/* Image intensities in like's own data type when it is a NIfTI (float32 for
 * real types and for values that the integer type cannot hold exactly);
 * PNG: 8-bit when all values are integers in [0, 255], 16-bit when integers in
 * [0, 65535], else refused (PNG cannot store other values faithfully). */
int rl_volume_write_image(const char *path, const rl_volume *vol, rl_error *err);

/* ---- slicing ------------------------------------------------------------ *
 * axis 0 = sagittal (fixed x): slice is (h, w) = (nz, ny), out[z * ny + y]
 * axis 1 = coronal  (fixed y): slice is (h, w) = (nz, nx), out[z * nx + x]
 * axis 2 = axial    (fixed z): slice is (h, w) = (ny, nx), out[y * nx + x]
 * Rows and columns follow increasing voxel indices (no flips, no
 * reorientation to a canonical anatomical frame: which way is "up" on screen
 * depends on the file's affine). A PNG is one axial slice.
 * spacing_hw receives the mm spacing of the slice's rows and columns. */
int rl_volume_num_slices(const rl_volume *vol, int axis);
void rl_slice_shape(int nx, int ny, int nz, int axis, int *h, int *w);
int rl_volume_get_slice(const rl_volume *vol, int axis, int index, float *out, int *h, int *w,
                        double spacing_hw[2], rl_error *err);
/* The inverse: copies a (h, w) slice back into vol's data. */
int rl_volume_set_slice(rl_volume *vol, int axis, int index, const float *slice,
                        rl_error *err);
/* The same for an int32 label map of shape (nx, ny, nz), x fastest: read a
 * slice out of it, and copy one back. */
int rl_labels_get_slice(const int32_t *labels, int nx, int ny, int nz, int axis, int index,
                        int32_t *slice, rl_error *err);
int rl_labels_set_slice(int32_t *labels, int nx, int ny, int nz, int axis, int index,
                        const int32_t *slice, rl_error *err);

/* ---- per-format entry points (used by the dispatchers above) ----------- */

/* The file's extension as a format; RL_FORMAT_NONE when unsupported. */
rl_format rl_format_from_path(const char *path);

int rl_png_read(const char *path, int as_labels, rl_volume *vol, rl_error *err);
/* Writes an nx x ny image (row-major, x fastest) as 8- or 16-bit gray;
 * values must fit the bit depth. */
int rl_png_write_u16(const char *path, const uint16_t *values, int nx, int ny, int bit_depth,
                     rl_error *err);
/* Writes an nx x ny 8-bit RGB image (row-major, 3 bytes per pixel). */
int rl_png_write_rgb8(const char *path, const uint8_t *rgb, int nx, int ny, rl_error *err);

int rl_nifti_read(const char *path, rl_volume *vol, rl_error *err);
/* Writes data of NIfTI type `datatype` (DT_UINT8, DT_INT16, DT_INT32,
 * DT_FLOAT32, ...) with like's header, or a fresh NIfTI-1 header when like
 * has none; intent is a NIFTI_INTENT_* code. */
int rl_nifti_write(const char *path, const rl_volume *like, const void *data, int datatype,
                   int intent, rl_error *err);
/* Copy and free of the opaque NIfTI header (NULL-safe). */
void *rl_nifti_header_copy(const void *header);
void rl_nifti_header_free(void *header);
/* The NIfTI version (1 or 2) of a retained header; 0 when there is none. */
int rl_volume_nifti_version(const rl_volume *vol);
/* The source data type (NIfTI DT_* code) of a retained header; 0 if none. */
int rl_volume_nifti_datatype(const rl_volume *vol);

#ifdef __cplusplus
}
#endif
#endif
