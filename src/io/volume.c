/* Volumes independent of the file format: dispatch by extension, label maps,
 * writing results "like" an input, and slicing along an axis. */
#include "reflabel/image.h"

#include <math.h>
#include <nifti1.h>
#include <stdlib.h>
#include <string.h>

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && strcmp(s + n - m, suffix) == 0;
}

rl_format rl_format_from_path(const char *path) {
    if (ends_with(path, ".png")) return RL_FORMAT_PNG;
    if (ends_with(path, ".nii") || ends_with(path, ".nii.gz")) return RL_FORMAT_NIFTI;
    return RL_FORMAT_NONE;
}

static int unsupported_extension(const char *path, rl_error *err) {
    return rl_error_set(err, RL_EUNSUPPORTED,
                        "%s: unsupported file type (expected .png, .nii or .nii.gz)", path);
}

static int read_any(const char *path, int as_labels, rl_volume *vol, rl_error *err) {
    memset(vol, 0, sizeof *vol);
    switch (rl_format_from_path(path)) {
    case RL_FORMAT_PNG: return rl_png_read(path, as_labels, vol, err);
    case RL_FORMAT_NIFTI: return rl_nifti_read(path, vol, err);
    default: return unsupported_extension(path, err);
    }
}

int rl_volume_read(const char *path, rl_volume *vol, rl_error *err) {
    return read_any(path, 0, vol, err);
}

int rl_volume_read_labels(const char *path, rl_volume *vol, rl_error *err) {
    return read_any(path, 1, vol, err);
}

static int check_shape(int nx, int ny, int nz, rl_error *err) {
    if (nx < 1 || ny < 1 || nz < 1)
        return rl_error_set(err, RL_EINVAL, "volume shape %dx%dx%d must be positive", nx, ny, nz);
    if ((int64_t)nx * ny > RL_VOLUME_MAX_VOXELS / nz)
        return rl_error_set(err, RL_ERANGE, "volume shape %dx%dx%d exceeds the voxel limit", nx,
                            ny, nz);
    return RL_OK;
}

int rl_volume_create(rl_volume *vol, int nx, int ny, int nz, rl_error *err) {
    memset(vol, 0, sizeof *vol);
    int rc = check_shape(nx, ny, nz, err);
    if (rc) return rc;
    vol->data = calloc((size_t)nx * ny * nz, sizeof *vol->data);
    if (!vol->data)
        return rl_error_set(err, RL_ENOMEM, "out of memory for a %dx%dx%d volume", nx, ny, nz);
    vol->nx = nx;
    vol->ny = ny;
    vol->nz = nz;
    vol->spacing[0] = vol->spacing[1] = vol->spacing[2] = 1.0;
    vol->format = RL_FORMAT_NONE;
    return RL_OK;
}

int rl_volume_create_like(rl_volume *vol, const rl_volume *like, rl_error *err) {
    int rc = rl_volume_create(vol, like->nx, like->ny, like->nz, err);
    if (rc) return rc;
    memcpy(vol->spacing, like->spacing, sizeof vol->spacing);
    vol->format = like->format;
    if (like->format == RL_FORMAT_NIFTI && like->header) {
        vol->header = rl_nifti_header_copy(like->header);
        if (!vol->header) {
            rl_volume_free(vol);
            return rl_error_set(err, RL_ENOMEM, "out of memory copying a NIfTI header");
        }
    }
    return RL_OK;
}

void rl_volume_free(rl_volume *vol) {
    if (!vol) return;
    free(vol->data);
    if (vol->format == RL_FORMAT_NIFTI) rl_nifti_header_free(vol->header);
    memset(vol, 0, sizeof *vol);
}

int rl_labels_from_volume(const rl_volume *vol, int32_t *out, rl_error *err) {
    size_t n = rl_volume_numel(vol);
    for (size_t i = 0; i < n; i++) {
        float v = vol->data[i];
        /* 2147483648.0f is the first float above INT32_MAX. */
        if (!(v >= 0.0f) || v >= 2147483648.0f || floorf(v) != v) {
            size_t x = i % (size_t)vol->nx, y = i / (size_t)vol->nx % (size_t)vol->ny,
                   z = i / ((size_t)vol->nx * (size_t)vol->ny);
            return rl_error_set(err, RL_EFORMAT,
                                "label voxel (%zu, %zu, %zu) = %g is not a non-negative integer",
                                x, y, z, (double)v);
        }
        out[i] = (int32_t)v;
    }
    return RL_OK;
}

/* ---- writing ------------------------------------------------------------ */

static int png_target_ok(const char *path, const rl_volume *like, rl_error *err) {
    if (like->nz != 1)
        return rl_error_set(err, RL_EINVAL, "%s: a PNG holds one slice, the volume has %d",
                            path, like->nz);
    return RL_OK;
}

/* Writes like-shaped uint16 values as 8-bit PNG when max <= 255, else 16-bit. */
static int write_png_u16(const char *path, const rl_volume *like, uint16_t *values,
                         uint16_t max, rl_error *err) {
    return rl_png_write_u16(path, values, like->nx, like->ny, max <= 255 ? 8 : 16, err);
}

int rl_volume_write_labels(const char *path, const rl_volume *like, const int32_t *labels,
                           rl_error *err) {
    rl_format format = rl_format_from_path(path);
    if (format == RL_FORMAT_NONE) return unsupported_extension(path, err);
    size_t n = rl_volume_numel(like);
    int32_t max = 0;
    for (size_t i = 0; i < n; i++) {
        if (labels[i] < 0)
            return rl_error_set(err, RL_EINVAL, "%s: negative label %d", path, (int)labels[i]);
        if (labels[i] > max) max = labels[i];
    }
    if (format == RL_FORMAT_PNG) {
        int rc = png_target_ok(path, like, err);
        if (rc) return rc;
        if (max > 65535)
            return rl_error_set(err, RL_ERANGE, "%s: label %d does not fit a 16-bit PNG", path,
                                (int)max);
        uint16_t *values = malloc(sizeof *values * n);
        if (!values) return rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
        for (size_t i = 0; i < n; i++) values[i] = (uint16_t)labels[i];
        rc = write_png_u16(path, like, values, (uint16_t)max, err);
        free(values);
        return rc;
    }
    if (max > 32767) return rl_nifti_write(path, like, labels, DT_INT32, NIFTI_INTENT_LABEL, err);
    size_t size = max <= 255 ? 1 : 2;
    void *buf = malloc(size * n);
    if (!buf) return rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        if (size == 1) ((uint8_t *)buf)[i] = (uint8_t)labels[i];
        else ((int16_t *)buf)[i] = (int16_t)labels[i];
    }
    int rc = rl_nifti_write(path, like, buf, size == 1 ? DT_UINT8 : DT_INT16, NIFTI_INTENT_LABEL,
                            err);
    free(buf);
    return rc;
}

int rl_volume_write_bitsets(const char *path, const rl_volume *like, const int32_t *bits,
                            int structures, rl_error *err) {
    rl_format format = rl_format_from_path(path);
    if (format == RL_FORMAT_NONE) return unsupported_extension(path, err);
    if (structures < 1 || structures > 16)
        return rl_error_set(err, RL_ERANGE, "%s: %d structures (a bit-set label holds 1..16)",
                            path, structures);
    int rc = format == RL_FORMAT_PNG ? png_target_ok(path, like, err) : RL_OK;
    if (rc) return rc;
    size_t n = rl_volume_numel(like);
    int wide = structures > 8;
    void *buf = malloc(n * (wide ? sizeof(uint16_t) : sizeof(uint8_t)));
    if (!buf) return rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        if (bits[i] < 0 || bits[i] >> structures) {
            free(buf);
            return rl_error_set(err, RL_EINVAL, "%s: %d is not a bit set of %d structures", path,
                                (int)bits[i], structures);
        }
        if (wide) ((uint16_t *)buf)[i] = (uint16_t)bits[i];
        else ((uint8_t *)buf)[i] = (uint8_t)bits[i];
    }
    if (format == RL_FORMAT_NIFTI) {
        rc = rl_nifti_write(path, like, buf, wide ? DT_UINT16 : DT_UINT8, NIFTI_INTENT_LABEL, err);
    } else {
        /* PNG takes 16-bit values whatever its bit depth. */
        uint16_t *values = wide ? buf : malloc(n * sizeof *values);
        if (!values) rc = rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
        for (size_t i = 0; !rc && !wide && i < n; i++) values[i] = ((uint8_t *)buf)[i];
        if (!rc) rc = rl_png_write_u16(path, values, like->nx, like->ny, wide ? 16 : 8, err);
        if (!wide) free(values);
    }
    free(buf);
    return rc;
}

int rl_volume_write_float(const char *path, const rl_volume *like, const float *values,
                          rl_error *err) {
    rl_format format = rl_format_from_path(path);
    if (format == RL_FORMAT_NONE) return unsupported_extension(path, err);
    size_t n = rl_volume_numel(like);
    for (size_t i = 0; i < n; i++)
        if (isnan(values[i]))
            return rl_error_set(err, RL_ENONFINITE, "%s: value %zu is NaN", path, i);
    if (format == RL_FORMAT_NIFTI)
        return rl_nifti_write(path, like, values, DT_FLOAT32, NIFTI_INTENT_NONE, err);
    int rc = png_target_ok(path, like, err);
    if (rc) return rc;
    uint16_t *q = malloc(sizeof *q * n);
    if (!q) return rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        float v = values[i] < 0.0f ? 0.0f : values[i] > 1.0f ? 1.0f : values[i];
        q[i] = (uint16_t)lrintf(v * 65535.0f);
    }
    rc = rl_png_write_u16(path, q, like->nx, like->ny, 16, err);
    free(q);
    return rc;
}

/* Can every value be stored exactly in the NIfTI integer type dt? */
static int fits_integer_type(const float *v, size_t n, int dt) {
    double lo, hi;
    switch (dt) {
    case DT_UINT8: lo = 0; hi = 255; break;
    case DT_INT8: lo = -128; hi = 127; break;
    case DT_INT16: lo = -32768; hi = 32767; break;
    case DT_UINT16: lo = 0; hi = 65535; break;
    case DT_INT32: lo = -2147483648.0; hi = 2147483647.0; break;
    default: return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (!(v[i] >= lo && v[i] <= hi) || floorf(v[i]) != v[i]) return 0;
    return 1;
}

static int write_nifti_image(const char *path, const rl_volume *vol, rl_error *err) {
    size_t n = rl_volume_numel(vol);
    int dt = rl_volume_nifti_datatype(vol);
    if (!fits_integer_type(vol->data, n, dt))
        return rl_nifti_write(path, vol, vol->data, DT_FLOAT32, NIFTI_INTENT_NONE, err);
    int nbyper = dt == DT_UINT8 || dt == DT_INT8 ? 1 : dt == DT_INT32 ? 4 : 2;
    void *buf = malloc((size_t)nbyper * n);
    if (!buf) return rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        switch (dt) {
        case DT_UINT8: ((uint8_t *)buf)[i] = (uint8_t)vol->data[i]; break;
        case DT_INT8: ((int8_t *)buf)[i] = (int8_t)vol->data[i]; break;
        case DT_INT16: ((int16_t *)buf)[i] = (int16_t)vol->data[i]; break;
        case DT_UINT16: ((uint16_t *)buf)[i] = (uint16_t)vol->data[i]; break;
        default: ((int32_t *)buf)[i] = (int32_t)vol->data[i]; break;
        }
    }
    int rc = rl_nifti_write(path, vol, buf, dt, NIFTI_INTENT_NONE, err);
    free(buf);
    return rc;
}

int rl_volume_write_image(const char *path, const rl_volume *vol, rl_error *err) {
    rl_format format = rl_format_from_path(path);
    if (format == RL_FORMAT_NONE) return unsupported_extension(path, err);
    size_t n = rl_volume_numel(vol);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(vol->data[i]))
            return rl_error_set(err, RL_ENONFINITE, "%s: value %zu is not finite", path, i);
    if (format == RL_FORMAT_NIFTI) return write_nifti_image(path, vol, err);
    int rc = png_target_ok(path, vol, err);
    if (rc) return rc;
    if (!fits_integer_type(vol->data, n, DT_UINT16))
        return rl_error_set(err, RL_ERANGE,
                            "%s: PNG stores integers 0..65535 only; write this image as NIfTI",
                            path);
    uint16_t *q = malloc(sizeof *q * n);
    if (!q) return rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    uint16_t max = 0;
    for (size_t i = 0; i < n; i++) {
        q[i] = (uint16_t)vol->data[i];
        if (q[i] > max) max = q[i];
    }
    rc = write_png_u16(path, vol, q, max, err);
    free(q);
    return rc;
}

/* ---- slicing ------------------------------------------------------------ */

int rl_volume_num_slices(const rl_volume *vol, int axis) {
    switch (axis) {
    case 0: return vol->nx;
    case 1: return vol->ny;
    case 2: return vol->nz;
    default: return 0;
    }
}

void rl_slice_shape(int nx, int ny, int nz, int axis, int *h, int *w) {
    switch (axis) {
    case 0: *h = nz; *w = ny; break;
    case 1: *h = nz; *w = nx; break;
    default: *h = ny; *w = nx; break;
    }
}

/* Voxel index of slice element (row r, column c) of slice `index`. */
static size_t slice_voxel(int nx, int ny, int axis, int index, int r, int c) {
    size_t x, y, z;
    switch (axis) {
    case 0: x = (size_t)index; y = (size_t)c; z = (size_t)r; break;
    case 1: x = (size_t)c; y = (size_t)index; z = (size_t)r; break;
    default: x = (size_t)c; y = (size_t)r; z = (size_t)index; break;
    }
    return (z * (size_t)ny + y) * (size_t)nx + x;
}

static int check_slice(int nx, int ny, int nz, int axis, int index, rl_error *err) {
    if (axis < 0 || axis > 2)
        return rl_error_set(err, RL_EINVAL, "slice axis %d is not 0, 1 or 2", axis);
    int count = axis == 0 ? nx : axis == 1 ? ny : nz;
    if (index < 0 || index >= count)
        return rl_error_set(err, RL_EINVAL, "slice %d is outside 0..%d on axis %d", index,
                            count - 1, axis);
    return RL_OK;
}

int rl_volume_get_slice(const rl_volume *vol, int axis, int index, float *out, int *h, int *w,
                        double spacing_hw[2], rl_error *err) {
    int rc = check_slice(vol->nx, vol->ny, vol->nz, axis, index, err);
    if (rc) return rc;
    int rows, cols;
    rl_slice_shape(vol->nx, vol->ny, vol->nz, axis, &rows, &cols);
    if (axis == 2) {
        /* Axial slices are contiguous in memory. */
        memcpy(out, vol->data + (size_t)index * rows * cols, sizeof *out * (size_t)rows * cols);
    } else {
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                out[(size_t)r * cols + c] =
                    vol->data[slice_voxel(vol->nx, vol->ny, axis, index, r, c)];
    }
    if (h) *h = rows;
    if (w) *w = cols;
    if (spacing_hw) {
        /* Rows run along z (axes 0, 1) or y (axis 2); columns along y or x. */
        spacing_hw[0] = axis == 2 ? vol->spacing[1] : vol->spacing[2];
        spacing_hw[1] = axis == 0 ? vol->spacing[1] : vol->spacing[0];
    }
    return RL_OK;
}

int rl_volume_set_slice(rl_volume *vol, int axis, int index, const float *slice,
                        rl_error *err) {
    int rc = check_slice(vol->nx, vol->ny, vol->nz, axis, index, err);
    if (rc) return rc;
    int rows, cols;
    rl_slice_shape(vol->nx, vol->ny, vol->nz, axis, &rows, &cols);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            vol->data[slice_voxel(vol->nx, vol->ny, axis, index, r, c)] =
                slice[(size_t)r * cols + c];
    return RL_OK;
}

int rl_labels_get_slice(const int32_t *labels, int nx, int ny, int nz, int axis, int index,
                        int32_t *slice, rl_error *err) {
    int rc = check_slice(nx, ny, nz, axis, index, err);
    if (rc) return rc;
    int rows, cols;
    rl_slice_shape(nx, ny, nz, axis, &rows, &cols);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            slice[(size_t)r * cols + c] = labels[slice_voxel(nx, ny, axis, index, r, c)];
    return RL_OK;
}

int rl_labels_set_slice(int32_t *labels, int nx, int ny, int nz, int axis, int index,
                        const int32_t *slice, rl_error *err) {
    int rc = check_slice(nx, ny, nz, axis, index, err);
    if (rc) return rc;
    int rows, cols;
    rl_slice_shape(nx, ny, nz, axis, &rows, &cols);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            labels[slice_voxel(nx, ny, axis, index, r, c)] = slice[(size_t)r * cols + c];
    return RL_OK;
}
