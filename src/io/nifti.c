/* NIfTI-1 and NIfTI-2 (.nii, .nii.gz) reading and writing with niftilib.
 *
 * niftilib is forgiving in ways a training pipeline should not be: it
 * silently replaces a zero or NaN pixdim by 1 and allocates whatever the
 * header's dimensions ask for. So the raw header is read here and validated
 * first (dimensions, voxel count, spacing, affine, data size on disk), and
 * only then does niftilib load the image. niftilib prints to stderr unless
 * its debug level is 0, which every entry point sets (an idempotent write to
 * niftilib's process-wide option), and its header reader prints even then,
 * which is one more reason to read the header here: the library never
 * prints.
 *
 * Writing lets niftilib build the header of either version from a copy of
 * the source's nifti_image, then writes header, extensions and voxels itself
 * (see write_nifti_file for why): every byte count is checked, and the file
 * appears under its final name only when complete. */
#include "reflabel/image.h"

#include <errno.h>
#include <math.h>
#include <nifti2_io.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The fields of either header version that decide whether a file is safe to
 * load, in one native-endian form. */
typedef struct raw_header {
    int version; /* 1 or 2 */
    int64_t dim[8];
    double pixdim[8];
    int datatype;
    int qform_code, sform_code;
    double quatern[6]; /* b, c, d, qoffset x, y, z */
    double srow[3][4];
    double vox_offset;
} raw_header;

static void quiet_niftilib(void) { nifti_set_debug_level(0); }

static int is_gz_path(const char *path) {
    size_t len = strlen(path);
    return len >= 3 && strcmp(path + len - 3, ".gz") == 0;
}

static int32_t swap32(int32_t v) {
    uint32_t u = (uint32_t)v;
    return (int32_t)((u >> 24) | ((u >> 8) & 0xff00u) | ((u << 8) & 0xff0000u) | (u << 24));
}

/* Reads the header bytes here rather than with nifti_read_header, which
 * prints to stderr on short or odd files whatever the debug level. */
static int read_raw_header(const char *path, raw_header *h, rl_error *err) {
    memset(h, 0, sizeof *h);
    union {
        nifti_1_header n1;
        nifti_2_header n2;
        int32_t sizeof_hdr;
    } buf;
    memset(&buf, 0, sizeof buf);
    znzFile fp = znzopen(path, "rb", is_gz_path(path));
    if (znz_isnull(fp)) return rl_error_set(err, RL_EIO, "%s: cannot open", path);
    size_t got = znzread(&buf, 1, sizeof buf.n2, fp);
    znzclose(fp);
    int version = 0, swapped = 0;
    if (got >= 4) {
        int32_t size = buf.sizeof_hdr;
        swapped = size != 348 && size != 540;
        if (swapped) size = swap32(size);
        version = size == 348 ? 1 : size == 540 ? 2 : 0;
    }
    if (version == 0 || got < (version == 1 ? sizeof buf.n1 : sizeof buf.n2))
        return rl_error_set(err, RL_EFORMAT, "%s: not a NIfTI-1/2 file (no complete header)",
                            path);
    if (swapped) swap_nifti_header(&buf, version);
    if (version == 1 && memcmp(buf.n1.magic, "n+1", 4) != 0)
        version = 0; /* ANALYZE 7.5 or a two-file NIfTI: not a .nii */
    if (version == 2 && memcmp(buf.n2.magic, "n+2", 4) != 0)
        version = 0;
    if (version == 1) {
        const nifti_1_header *n1 = &buf.n1;
        for (int i = 0; i < 8; i++) {
            h->dim[i] = n1->dim[i];
            h->pixdim[i] = n1->pixdim[i];
        }
        h->datatype = n1->datatype;
        h->qform_code = n1->qform_code;
        h->sform_code = n1->sform_code;
        const float q[6] = {n1->quatern_b, n1->quatern_c, n1->quatern_d,
                            n1->qoffset_x, n1->qoffset_y, n1->qoffset_z};
        for (int i = 0; i < 6; i++) h->quatern[i] = q[i];
        for (int j = 0; j < 4; j++) {
            h->srow[0][j] = n1->srow_x[j];
            h->srow[1][j] = n1->srow_y[j];
            h->srow[2][j] = n1->srow_z[j];
        }
        h->vox_offset = n1->vox_offset;
    } else if (version == 2) {
        const nifti_2_header *n2 = &buf.n2;
        for (int i = 0; i < 8; i++) {
            h->dim[i] = n2->dim[i];
            h->pixdim[i] = n2->pixdim[i];
        }
        h->datatype = n2->datatype;
        h->qform_code = n2->qform_code;
        h->sform_code = n2->sform_code;
        const double q[6] = {n2->quatern_b, n2->quatern_c, n2->quatern_d,
                             n2->qoffset_x, n2->qoffset_y, n2->qoffset_z};
        for (int i = 0; i < 6; i++) h->quatern[i] = q[i];
        for (int j = 0; j < 4; j++) {
            h->srow[0][j] = n2->srow_x[j];
            h->srow[1][j] = n2->srow_y[j];
            h->srow[2][j] = n2->srow_z[j];
        }
        h->vox_offset = (double)n2->vox_offset;
    } else {
        return rl_error_set(err, RL_EFORMAT,
                            "%s: not a single-file NIfTI-1/2 (no n+1/n+2 magic)", path);
    }
    h->version = version;
    return RL_OK;
}

static const char *axis_name(int i) { return i == 1 ? "x" : i == 2 ? "y" : "z"; }

/* Dimensions, voxel count, spacing and affine; fills the volume's shape. */
static int validate_header(const char *path, const raw_header *h, rl_volume *vol,
                           rl_error *err) {
    int64_t ndim = h->dim[0];
    if (ndim < 1 || ndim > 7)
        return rl_error_set(err, RL_EFORMAT, "%s: dim[0] = %lld is not in 1..7", path,
                            (long long)ndim);
    for (int i = 4; i <= ndim; i++)
        if (h->dim[i] != 1)
            return rl_error_set(err, RL_EUNSUPPORTED,
                                "%s: dim[%d] = %lld: only 2D/3D images are supported "
                                "(split 4D series into 3D volumes)",
                                path, i, (long long)h->dim[i]);
    int64_t n[4] = {0, 1, 1, 1};
    int64_t voxels = 1;
    for (int i = 1; i <= 3 && i <= ndim; i++) {
        if (h->dim[i] < 1)
            return rl_error_set(err, RL_EFORMAT, "%s: dim[%d] = %lld must be at least 1", path,
                                i, (long long)h->dim[i]);
        if (h->dim[i] > RL_VOLUME_MAX_VOXELS / voxels)
            return rl_error_set(err, RL_ERANGE,
                                "%s: dimensions %lld x %lld x %lld exceed the limit of %lld "
                                "voxels",
                                path, (long long)h->dim[1], (long long)(ndim >= 2 ? h->dim[2] : 1),
                                (long long)(ndim >= 3 ? h->dim[3] : 1),
                                (long long)RL_VOLUME_MAX_VOXELS);
        n[i] = h->dim[i];
        voxels *= n[i];
    }
    for (int i = 1; i <= 3; i++) {
        double d = h->pixdim[i];
        /* Dimensions beyond dim[0] are length 1; their spacing is unused and
         * often left 0 by writers, so it only matters for real axes. */
        if (i > ndim) {
            vol->spacing[i - 1] = isfinite(d) && d > 0 ? d : 1.0;
            continue;
        }
        if (!isfinite(d) || d <= 0)
            return rl_error_set(err, RL_EFORMAT,
                                "%s: voxel spacing pixdim[%d] (%s) = %g must be finite and "
                                "positive",
                                path, i, axis_name(i), d);
        vol->spacing[i - 1] = d;
    }
    if (h->qform_code > 0)
        for (int i = 0; i < 6; i++)
            if (!isfinite(h->quatern[i]))
                return rl_error_set(err, RL_ENONFINITE, "%s: qform (quaternion) contains NaN/inf",
                                    path);
    if (h->sform_code > 0)
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++)
                if (!isfinite(h->srow[r][c]))
                    return rl_error_set(err, RL_ENONFINITE, "%s: sform row %d contains NaN/inf",
                                        path, r);
    vol->nx = (int)n[1];
    vol->ny = (int)n[2];
    vol->nz = (int)n[3];
    return RL_OK;
}

/* A truncated file is caught before niftilib allocates for it: an
 * uncompressed file must hold every byte the header claims, a gzip file at
 * least 1/RL_DEFLATE_MAX_RATIO of them (deflate cannot expand more). */
static int check_data_size(const char *path, const raw_header *h, int64_t voxels,
                           rl_error *err) {
    int nbyper = 0, swapsize = 0;
    nifti_datatype_sizes(h->datatype, &nbyper, &swapsize);
    struct stat st;
    if (stat(path, &st) != 0) return rl_error_set(err, RL_EIO, "%s: cannot stat", path);
    if (is_gz_path(path)) {
        double claimed = (double)voxels * nbyper;
        if (claimed > RL_DEFLATE_MAX_RATIO * (double)st.st_size)
            return rl_error_set(err, RL_EFORMAT,
                                "%s: header claims %.0f bytes of data, more than a %lld-byte "
                                "gzip file can hold (truncated?)",
                                path, claimed, (long long)st.st_size);
        return RL_OK;
    }
    double offset = h->vox_offset < (h->version == 2 ? 544 : 352) ? (h->version == 2 ? 544 : 352)
                                                                   : h->vox_offset;
    double need = floor(offset) + (double)voxels * nbyper;
    if ((double)st.st_size < need)
        return rl_error_set(err, RL_EFORMAT, "%s: truncated: %lld bytes, the header needs %.0f",
                            path, (long long)st.st_size, need);
    return RL_OK;
}

static int is_supported_datatype(int datatype) {
    switch (datatype) {
    case DT_UINT8: case DT_INT8: case DT_INT16: case DT_UINT16: case DT_INT32:
    case DT_UINT32: case DT_INT64: case DT_UINT64: case DT_FLOAT32: case DT_FLOAT64:
        return 1;
    default:
        return 0;
    }
}

/* Everything that can be checked before loading; fills vol's shape and
 * spacing. */
static int check_before_loading(const char *path, raw_header *h, rl_volume *vol,
                                rl_error *err) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return rl_error_set(err, RL_EIO, "%s: no such file", path);
    int rc = read_raw_header(path, h, err);
    if (!rc) rc = validate_header(path, h, vol, err);
    if (!rc && !is_supported_datatype(h->datatype))
        rc = rl_error_set(err, RL_EUNSUPPORTED, "%s: data type %s (%d) is not supported", path,
                          nifti_datatype_string(h->datatype), h->datatype);
    if (!rc) rc = check_data_size(path, h, (int64_t)rl_volume_numel(vol), err);
    return rc;
}

/* dst = slope * src + inter for n stored values of a supported type. */
static void convert_to_float(const void *src, int datatype, size_t n, double slope,
                             double inter, float *dst) {
#define CONVERT(type)                                                                  \
    do {                                                                               \
        const type *s = src;                                                           \
        for (size_t i = 0; i < n; i++) dst[i] = (float)(slope * (double)s[i] + inter); \
    } while (0)
    switch (datatype) {
    case DT_UINT8: CONVERT(uint8_t); break;
    case DT_INT8: CONVERT(int8_t); break;
    case DT_INT16: CONVERT(int16_t); break;
    case DT_UINT16: CONVERT(uint16_t); break;
    case DT_INT32: CONVERT(int32_t); break;
    case DT_UINT32: CONVERT(uint32_t); break;
    case DT_INT64: CONVERT(int64_t); break;
    case DT_UINT64: CONVERT(uint64_t); break;
    case DT_FLOAT32: CONVERT(float); break;
    default: CONVERT(double); break;
    }
#undef CONVERT
}

/* vol->data = the loaded voxels of nim as float, scaled; all finite. */
static int convert_loaded(const char *path, const nifti_image *nim, rl_volume *vol,
                          rl_error *err) {
    size_t voxels = rl_volume_numel(vol);
    double slope = nim->scl_slope, inter = nim->scl_inter;
    /* NIfTI: slope 0 means "unscaled"; nibabel writes NaN for the same. */
    if (!isfinite(slope) || slope == 0) {
        slope = 1;
        inter = 0;
    } else if (!isfinite(inter)) {
        inter = 0;
    }
    vol->data = malloc(sizeof *vol->data * voxels);
    if (!vol->data)
        return rl_error_set(err, RL_ENOMEM, "%s: out of memory for %zu voxels", path, voxels);
    convert_to_float(nim->data, nim->datatype, voxels, slope, inter, vol->data);
    /* niftilib has already replaced stored NaN/inf by 0; what remains are
     * float64 values (or scalings) beyond float32's range. */
    for (size_t i = 0; i < voxels; i++) {
        if (!isfinite(vol->data[i])) {
            size_t x = i % (size_t)vol->nx, y = i / (size_t)vol->nx % (size_t)vol->ny,
                   z = i / ((size_t)vol->nx * (size_t)vol->ny);
            return rl_error_set(err, RL_ENONFINITE, "%s: voxel (%zu, %zu, %zu) is not finite",
                                path, x, y, z);
        }
    }
    return RL_OK;
}

int rl_nifti_read(const char *path, rl_volume *vol, rl_error *err) {
    memset(vol, 0, sizeof *vol);
    quiet_niftilib();
    raw_header h;
    nifti_image *nim = NULL;
    int rc = check_before_loading(path, &h, vol, err);
    if (!rc) {
        nim = nifti_image_read(path, 1);
        if (!nim || !nim->data || nim->nvox != (int64_t)rl_volume_numel(vol) ||
            nim->datatype != h.datatype)
            rc = rl_error_set(err, RL_EFORMAT,
                              "%s: cannot read the image data (corrupt or truncated file)", path);
    }
    if (!rc) rc = convert_loaded(path, nim, vol, err);
    if (rc) {
        if (nim) nifti_image_free(nim);
        free(vol->data);
        memset(vol, 0, sizeof *vol);
        return rc;
    }
    /* The header is kept without data: it is what "like" writes copy.
     * niftilib reports a single-file NIfTI-2 as nifti_type NIFTI1_1; the
     * version read from the raw header is the one to preserve. */
    nifti_image_unload(nim);
    nim->nifti_type = h.version == 2 ? NIFTI_FTYPE_NIFTI2_1 : NIFTI_FTYPE_NIFTI1_1;
    vol->header = nim;
    vol->format = RL_FORMAT_NIFTI;
    return RL_OK;
}

void *rl_nifti_header_copy(const void *header) {
    if (!header) return NULL;
    quiet_niftilib();
    nifti_image *copy = nifti_copy_nim_info(header);
    if (copy) copy->data = NULL;
    return copy;
}

void rl_nifti_header_free(void *header) {
    if (header) nifti_image_free(header);
}

int rl_volume_nifti_version(const rl_volume *vol) {
    const nifti_image *nim = vol->header;
    if (!nim || vol->format != RL_FORMAT_NIFTI) return 0;
    return nim->nifti_type == NIFTI_FTYPE_NIFTI2_1 || nim->nifti_type == NIFTI_FTYPE_NIFTI2_2 ? 2
                                                                                               : 1;
}

int rl_volume_nifti_datatype(const rl_volume *vol) {
    const nifti_image *nim = vol->header;
    return nim && vol->format == RL_FORMAT_NIFTI ? nim->datatype : 0;
}

/* A fresh NIfTI-1 header for a volume that has none: the given spacing on a
 * diagonal qform (scanner coordinates in mm), no sform. */
static nifti_image *fresh_header(const rl_volume *like) {
    const int64_t dims[8] = {3, like->nx, like->ny, like->nz, 1, 1, 1, 1};
    nifti_image *nim = nifti_make_new_nim(dims, DT_UINT8, 0);
    if (!nim) return NULL;
    nim->dx = nim->pixdim[1] = like->spacing[0];
    nim->dy = nim->pixdim[2] = like->spacing[1];
    nim->dz = nim->pixdim[3] = like->spacing[2];
    nim->qform_code = NIFTI_XFORM_SCANNER_ANAT;
    nim->quatern_b = nim->quatern_c = nim->quatern_d = 0;
    nim->qoffset_x = nim->qoffset_y = nim->qoffset_z = 0;
    nim->qfac = 1;
    nim->qto_xyz = nifti_quatern_to_dmat44(0, 0, 0, 0, 0, 0, nim->dx, nim->dy, nim->dz, 1);
    nim->qto_ijk = nifti_dmat44_inverse(nim->qto_xyz);
    nim->sform_code = 0;
    nim->xyz_units = NIFTI_UNITS_MM;
    nim->nifti_type = NIFTI_FTYPE_NIFTI1_1;
    return nim;
}

/* Writes header, extensions and data of nim to path (gzip when path ends in
 * .gz), checking every write. niftilib converts the header (either version);
 * the file itself is written here because nifti_image_write reports no
 * errors and, in this libnifti2 (3.0.1), truncates single-file NIfTI-2
 * output when asked to leave the file open for the data. */
static int write_nifti_file(const char *path, nifti_image *nim, const void *data,
                            rl_error *err) {
    int version = nim->nifti_type == NIFTI_FTYPE_NIFTI2_1 ? 2 : 1;
    size_t header_size = version == 2 ? sizeof(nifti_2_header) : sizeof(nifti_1_header);
    int64_t ext_bytes = 0;
    for (int i = 0; i < nim->num_ext; i++) {
        /* niftilib validated these on reading; a bad one here is a bug. */
        if (nim->ext_list[i].esize < 16 || nim->ext_list[i].esize % 16 != 0)
            return rl_error_set(err, RL_EINVAL, "invalid header extension size %d",
                                nim->ext_list[i].esize);
        ext_bytes += nim->ext_list[i].esize;
    }
    /* Header, the 4-byte extension flag, extensions; data 16-byte aligned. */
    int64_t offset = ((int64_t)header_size + 4 + ext_bytes + 15) / 16 * 16;
    nim->iname_offset = offset;
    nifti_1_header n1;
    nifti_2_header n2;
    const void *header = NULL;
    if (version == 2) {
        if (nifti_convert_nim2n2hdr(nim, &n2) != 0)
            return rl_error_set(err, RL_EINVAL, "cannot build a NIfTI-2 header");
        memcpy(n2.magic, "n+2\0\r\n\032\n", 8);
        header = &n2;
    } else {
        if (nifti_convert_nim2n1hdr(nim, &n1) != 0)
            return rl_error_set(err, RL_EINVAL, "cannot build a NIfTI-1 header");
        memcpy(n1.magic, "n+1\0", 4);
        header = &n1;
    }
    errno = 0;
    znzFile fp = znzopen(path, "wb", is_gz_path(path));
    if (znz_isnull(fp))
        return rl_error_set(err, RL_EIO, "cannot write: %s", strerror(errno ? errno : EIO));
    int ok = znzwrite(header, 1, header_size, fp) == header_size;
    const unsigned char extender[4] = {nim->num_ext > 0 ? 1 : 0, 0, 0, 0};
    ok = ok && znzwrite(extender, 1, 4, fp) == 4;
    for (int i = 0; ok && i < nim->num_ext; i++) {
        const nifti1_extension *ext = &nim->ext_list[i];
        const int32_t head[2] = {ext->esize, ext->ecode};
        size_t body = (size_t)ext->esize - 8;
        ok = znzwrite(head, 1, sizeof head, fp) == sizeof head &&
             znzwrite(ext->edata, 1, body, fp) == body;
    }
    static const unsigned char zeros[16] = {0};
    size_t pad = (size_t)(offset - ((int64_t)header_size + 4 + ext_bytes));
    ok = ok && (pad == 0 || znzwrite(zeros, 1, pad, fp) == pad);
    size_t bytes = (size_t)nim->nvox * (size_t)nim->nbyper;
    ok = ok && znzwrite(data, 1, bytes, fp) == bytes;
    int write_errno = ok ? 0 : errno;
    errno = 0;
    int close_rc = znzclose(fp); /* gzip: flushes the last block, so it can fail too */
    if (!ok || close_rc != 0) {
        int e = write_errno ? write_errno : errno;
        return rl_error_set(err, RL_EIO, "write failed: %s", strerror(e ? e : EIO));
    }
    return RL_OK;
}

int rl_nifti_write(const char *path, const rl_volume *like, const void *data, int datatype,
                   int intent, rl_error *err) {
    quiet_niftilib();
    nifti_image *nim = like->format == RL_FORMAT_NIFTI && like->header
                           ? rl_nifti_header_copy(like->header)
                           : fresh_header(like);
    if (!nim) return rl_error_set(err, RL_ENOMEM, "%s: cannot build a NIfTI header", path);
    if (nim->nx != like->nx || nim->ny != like->ny || nim->nz != like->nz ||
        nim->nvox != (int64_t)rl_volume_numel(like)) {
        nifti_image_free(nim);
        return rl_error_set(err, RL_EINVAL,
                            "%s: the template header (%lldx%lldx%lld) does not match the "
                            "volume (%dx%dx%d)",
                            path, (long long)nim->nx, (long long)nim->ny, (long long)nim->nz,
                            like->nx, like->ny, like->nz);
    }
    char tmp[4096];
    int rc = rl_temp_path_for(path, tmp, sizeof tmp, err);
    if (rc) {
        nifti_image_free(nim);
        return rc;
    }
    nim->datatype = datatype;
    nifti_datatype_sizes(datatype, &nim->nbyper, &nim->swapsize);
    nim->scl_slope = 1;
    nim->scl_inter = 0;
    nim->cal_min = nim->cal_max = 0;
    nim->intent_code = intent;
    nim->intent_p1 = nim->intent_p2 = nim->intent_p3 = 0;
    memset(nim->intent_name, 0, sizeof nim->intent_name);
    /* Single-file layout of the source's version; our data is native-endian. */
    nim->nifti_type = rl_volume_nifti_version(like) == 2 ? NIFTI_FTYPE_NIFTI2_1
                                                         : NIFTI_FTYPE_NIFTI1_1;
    nim->byteorder = nifti_short_order();
    rc = write_nifti_file(tmp, nim, data, err);
    nifti_image_free(nim);
    if (rc) {
        unlink(tmp);
        return rl_error_prefix(err, "%s", path);
    }
    return rl_publish_file(tmp, path, err);
}
