/* NIfTI-1/2 volumes: reading every supported data type with scaling, writing
 * label/float/image outputs "like" a source (header preserved), rejecting
 * corrupt and unsupported files; slicing and label conversion; the real
 * Colin27 and AAL volumes. Inputs are built byte by byte from the header
 * structs of nifti1.h/nifti2.h (plus zlib for .nii.gz), independently of
 * niftilib, so that the reader is tested against the format, not itself. */
#include <dirent.h>
#include <math.h>
#include <nifti/nifti1.h>
#include <nifti/nifti2.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "reflabel/image.h"
#include "testutil.h"

static char g_dir[2048];
static char g_path[4096];

static const char *tmp_file(const char *name) {
    snprintf(g_path, sizeof g_path, "%s/%s", g_dir, name);
    return g_path;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* What a synthetic file holds; everything else in the header is zero. */
typedef struct nifti_spec {
    int version; /* 1 or 2 */
    int64_t dim[8];
    double pixdim[4];
    int datatype, bitpix;
    double slope, inter;
    int qform_code, sform_code;
    double quatern[6];
    double srow[3][4];
    int xyzt_units;
} nifti_spec;

static nifti_spec spec_3d(int version, int nx, int ny, int nz, int datatype, int bitpix) {
    nifti_spec s;
    memset(&s, 0, sizeof s);
    s.version = version;
    s.dim[0] = 3;
    s.dim[1] = nx;
    s.dim[2] = ny;
    s.dim[3] = nz;
    for (int i = 4; i < 8; i++) s.dim[i] = 1;
    s.pixdim[0] = 1;
    s.pixdim[1] = 0.5;
    s.pixdim[2] = 0.75;
    s.pixdim[3] = 2.5;
    s.datatype = datatype;
    s.bitpix = bitpix;
    s.slope = 1;
    s.qform_code = 1;
    s.quatern[3] = -10; /* qoffset x, y, z */
    s.quatern[4] = 20;
    s.quatern[5] = 5;
    s.xyzt_units = NIFTI_UNITS_MM;
    return s;
}

/* Serialises spec + data as a single-file NIfTI (gzip when .gz). */
static void write_nifti(const char *path, const nifti_spec *s, const void *data, size_t bytes) {
    unsigned char header[544];
    memset(header, 0, sizeof header);
    size_t header_size;
    if (s->version == 1) {
        nifti_1_header h;
        memset(&h, 0, sizeof h);
        h.sizeof_hdr = 348;
        for (int i = 0; i < 8; i++) h.dim[i] = (short)s->dim[i];
        for (int i = 0; i < 4; i++) h.pixdim[i] = (float)s->pixdim[i];
        for (int i = 4; i < 8; i++) h.pixdim[i] = 1;
        h.datatype = (short)s->datatype;
        h.bitpix = (short)s->bitpix;
        h.vox_offset = 352;
        h.scl_slope = (float)s->slope;
        h.scl_inter = (float)s->inter;
        h.qform_code = (short)s->qform_code;
        h.sform_code = (short)s->sform_code;
        h.quatern_b = (float)s->quatern[0];
        h.quatern_c = (float)s->quatern[1];
        h.quatern_d = (float)s->quatern[2];
        h.qoffset_x = (float)s->quatern[3];
        h.qoffset_y = (float)s->quatern[4];
        h.qoffset_z = (float)s->quatern[5];
        for (int j = 0; j < 4; j++) {
            h.srow_x[j] = (float)s->srow[0][j];
            h.srow_y[j] = (float)s->srow[1][j];
            h.srow_z[j] = (float)s->srow[2][j];
        }
        h.xyzt_units = (char)s->xyzt_units;
        memcpy(h.magic, "n+1", 4);
        memcpy(header, &h, sizeof h);
        header_size = 352;
    } else {
        nifti_2_header h;
        memset(&h, 0, sizeof h);
        h.sizeof_hdr = 540;
        memcpy(h.magic, "n+2\0\r\n\032\n", 8);
        for (int i = 0; i < 8; i++) h.dim[i] = s->dim[i];
        for (int i = 0; i < 4; i++) h.pixdim[i] = s->pixdim[i];
        for (int i = 4; i < 8; i++) h.pixdim[i] = 1;
        h.datatype = (int16_t)s->datatype;
        h.bitpix = (int16_t)s->bitpix;
        h.vox_offset = 544;
        h.scl_slope = s->slope;
        h.scl_inter = s->inter;
        h.qform_code = s->qform_code;
        h.sform_code = s->sform_code;
        h.quatern_b = s->quatern[0];
        h.quatern_c = s->quatern[1];
        h.quatern_d = s->quatern[2];
        h.qoffset_x = s->quatern[3];
        h.qoffset_y = s->quatern[4];
        h.qoffset_z = s->quatern[5];
        for (int j = 0; j < 4; j++) {
            h.srow_x[j] = s->srow[0][j];
            h.srow_y[j] = s->srow[1][j];
            h.srow_z[j] = s->srow[2][j];
        }
        h.xyzt_units = s->xyzt_units;
        memcpy(header, &h, sizeof h);
        header_size = 544;
    }
    if (ends_with(path, ".gz")) {
        gzFile gz = gzopen(path, "wb");
        gzwrite(gz, header, (unsigned)header_size);
        if (bytes) gzwrite(gz, data, (unsigned)bytes);
        gzclose(gz);
    } else {
        FILE *fp = fopen(path, "wb");
        fwrite(header, 1, header_size, fp);
        if (bytes) fwrite(data, 1, bytes, fp);
        fclose(fp);
    }
}

/* The first 544 bytes of a (possibly gzip'ed) file; returns bytes read. */
static int read_head(const char *path, unsigned char *buf) {
    gzFile gz = gzopen(path, "rb");
    if (!gz) return -1;
    int n = gzread(gz, buf, 544);
    gzclose(gz);
    return n;
}

static int file_is_gzip(const char *path) {
    unsigned char magic[2] = {0, 0};
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    size_t n = fread(magic, 1, 2, fp);
    fclose(fp);
    return n == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
}

/* ---- reading ------------------------------------------------------------ */

typedef struct type_case {
    int datatype, bitpix;
    double slope, inter;
} type_case;

/* Stored value i of the test pattern, as the type holds it. */
static double pattern(int datatype, int i) {
    switch (datatype) {
    case DT_UINT8: return (i * 7) % 256;
    case DT_INT8: return (i * 7) % 256 - 128;
    case DT_INT16: return i * 301 - 9000;
    case DT_UINT16: return i * 1101;
    case DT_INT32: return i * 99991 - 3000000;
    case DT_FLOAT32: return (float)(0.37 * i - 11.5);
    default: return 0.123456789 * i - 7;
    }
}

static void store(void *buf, int datatype, int i, double v) {
    switch (datatype) {
    case DT_UINT8: ((uint8_t *)buf)[i] = (uint8_t)v; break;
    case DT_INT8: ((int8_t *)buf)[i] = (int8_t)v; break;
    case DT_INT16: ((int16_t *)buf)[i] = (int16_t)v; break;
    case DT_UINT16: ((uint16_t *)buf)[i] = (uint16_t)v; break;
    case DT_INT32: ((int32_t *)buf)[i] = (int32_t)v; break;
    case DT_FLOAT32: ((float *)buf)[i] = (float)v; break;
    default: ((double *)buf)[i] = v; break;
    }
}

static void test_read_types(void) {
    const type_case types[] = {
        {DT_UINT8, 8, 1, 0},   {DT_INT8, 8, 0, 0},         {DT_INT16, 16, 2, 1},
        {DT_UINT16, 16, 1, 0}, {DT_INT32, 32, 0.5, -3},    {DT_FLOAT32, 32, 1, 0},
        {DT_FLOAT64, 64, 0.25, 100},
    };
    const int nx = 5, ny = 4, nz = 3, n = nx * ny * nz;
    double buf[60];
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        for (int version = 1; version <= 2; version++) {
            for (int gz = 0; gz <= 1; gz++) {
                const type_case *tc = &types[t];
                nifti_spec s = spec_3d(version, nx, ny, nz, tc->datatype, tc->bitpix);
                s.slope = tc->slope;
                s.inter = tc->inter;
                for (int i = 0; i < n; i++) store(buf, tc->datatype, i, pattern(tc->datatype, i));
                char name[64];
                snprintf(name, sizeof name, "type%d_v%d%s", tc->datatype, version,
                         gz ? ".nii.gz" : ".nii");
                write_nifti(tmp_file(name), &s, buf, (size_t)n * (size_t)tc->bitpix / 8);
                rl_volume v;
                rl_error err = {0, ""};
                int rc = rl_volume_read(g_path, &v, &err);
                CHECK_MSG(rc == RL_OK, "%s: %s", name, err.msg);
                if (rc) continue;
                CHECK(v.nx == nx && v.ny == ny && v.nz == nz && v.format == RL_FORMAT_NIFTI);
                CHECK(v.spacing[0] == 0.5 && v.spacing[1] == 0.75 && v.spacing[2] == 2.5);
                CHECK(rl_volume_nifti_version(&v) == version);
                CHECK(rl_volume_nifti_datatype(&v) == tc->datatype);
                /* slope 0 means unscaled (NIfTI rule). */
                double slope = tc->slope == 0 ? 1 : tc->slope;
                double inter = tc->slope == 0 ? 0 : tc->inter;
                int same = 1;
                for (int i = 0; i < n; i++) {
                    float want = (float)(slope * pattern(tc->datatype, i) + inter);
                    same &= v.data[i] == want;
                }
                CHECK_MSG(same, "%s: voxel values", name);
                rl_volume_free(&v);
            }
        }
    }
}

/* ---- writing like a source ----------------------------------------------- */

/* Checks that out's header keeps src's geometry, with the given type. */
static void check_header_like(const char *out, const nifti_spec *src, int datatype,
                              int want_gz) {
    unsigned char head[544];
    CHECK_MSG(read_head(out, head) >= 348, "%s: header", out);
    CHECK_MSG(file_is_gzip(out) == want_gz, "%s: gzip %d expected", out, want_gz);
    int32_t sizeof_hdr;
    memcpy(&sizeof_hdr, head, 4);
    if (src->version == 2) {
        nifti_2_header h;
        memcpy(&h, head, sizeof h);
        CHECK_MSG(sizeof_hdr == 540 && memcmp(h.magic, "n+2", 4) == 0, "%s: NIfTI-2", out);
        CHECK(h.datatype == datatype && h.scl_slope == 1 && h.scl_inter == 0);
        CHECK(h.qform_code == src->qform_code && h.sform_code == src->sform_code);
        CHECK(h.xyzt_units == src->xyzt_units);
        int same = h.dim[1] == src->dim[1] && h.dim[2] == src->dim[2] && h.dim[3] == src->dim[3];
        for (int i = 1; i < 4; i++) same &= h.pixdim[i] == src->pixdim[i];
        for (int j = 0; j < 4; j++)
            same &= h.srow_x[j] == src->srow[0][j] && h.srow_y[j] == src->srow[1][j] &&
                    h.srow_z[j] == src->srow[2][j];
        same &= fabs(h.qoffset_x - src->quatern[3]) < 1e-9 &&
                fabs(h.quatern_b - src->quatern[0]) < 1e-6;
        CHECK_MSG(same, "%s: geometry preserved", out);
    } else {
        nifti_1_header h;
        memcpy(&h, head, sizeof h);
        CHECK_MSG(sizeof_hdr == 348 && memcmp(h.magic, "n+1", 4) == 0, "%s: NIfTI-1", out);
        CHECK(h.datatype == datatype && h.scl_slope == 1 && h.scl_inter == 0);
        CHECK(h.qform_code == src->qform_code && h.sform_code == src->sform_code);
        CHECK(h.xyzt_units == src->xyzt_units);
        int same = h.dim[1] == src->dim[1] && h.dim[2] == src->dim[2] && h.dim[3] == src->dim[3];
        for (int i = 1; i < 4; i++) same &= h.pixdim[i] == (float)src->pixdim[i];
        for (int j = 0; j < 4; j++)
            same &= h.srow_x[j] == (float)src->srow[0][j] &&
                    h.srow_y[j] == (float)src->srow[1][j] && h.srow_z[j] == (float)src->srow[2][j];
        same &= fabsf(h.qoffset_x - (float)src->quatern[3]) < 1e-5f &&
                fabsf(h.quatern_b - (float)src->quatern[0]) < 1e-6f;
        CHECK_MSG(same, "%s: geometry preserved", out);
    }
}

static int count_temporaries(void) {
    DIR *d = opendir(g_dir);
    int count = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) count += strstr(e->d_name, ".tmp") != NULL;
    if (d) closedir(d);
    return count;
}

static void test_write_like(void) {
    const int nx = 6, ny = 5, nz = 4, n = nx * ny * nz;
    for (int version = 1; version <= 2; version++) {
        nifti_spec s = spec_3d(version, nx, ny, nz, DT_INT16, 16);
        s.slope = 3;
        s.inter = -2;
        /* An oblique sform and a rotated qform: both must survive. */
        s.sform_code = 2;
        const double srow[3][4] = {{0.4, 0.1, 0.0, -30}, {-0.1, 0.7, 0.2, 12}, {0, -0.3, 2.4, 7}};
        memcpy(s.srow, srow, sizeof srow);
        s.quatern[0] = 0.1;
        s.quatern[1] = -0.2;
        s.quatern[2] = 0.3;
        s.xyzt_units = NIFTI_UNITS_MM | NIFTI_UNITS_SEC;
        int16_t raw[120];
        for (int i = 0; i < n; i++) raw[i] = (int16_t)(i - 50);
        const char *src_name = version == 1 ? "src1.nii" : "src2.nii.gz";
        write_nifti(tmp_file(src_name), &s, raw, sizeof raw);
        rl_volume src;
        rl_error err = {0, ""};
        CHECK_OK(rl_volume_read(g_path, &src, &err));
        if (!src.data) continue;

        const int32_t maxima[3] = {200, 1000, 40000};
        const int types[3] = {DT_UINT8, DT_INT16, DT_INT32};
        for (int k = 0; k < 3; k++) {
            int32_t labels[120];
            for (int i = 0; i < n; i++) labels[i] = (i * 37) % (maxima[k] + 1);
            labels[n - 1] = maxima[k];
            for (int gz = 0; gz <= 1; gz++) {
                char name[64];
                snprintf(name, sizeof name, "labels_v%d_%d%s", version, k, gz ? ".nii.gz" : ".nii");
                CHECK_OK(rl_volume_write_labels(tmp_file(name), &src, labels, &err));
                check_header_like(g_path, &s, types[k], gz);
                rl_volume back;
                CHECK_OK(rl_volume_read_labels(g_path, &back, &err));
                int32_t got[120];
                CHECK_OK(rl_labels_from_volume(&back, got, &err));
                CHECK_MSG(memcmp(got, labels, sizeof(int32_t) * n) == 0, "%s: labels", name);
                CHECK(rl_volume_nifti_version(&back) == version);
                rl_volume_free(&back);
            }
        }
        float values[120];
        for (int i = 0; i < n; i++) values[i] = 0.01f * (float)i - 0.3f;
        CHECK_OK(rl_volume_write_float(tmp_file(version == 1 ? "f1.nii" : "f2.nii.gz"), &src,
                                       values, &err));
        check_header_like(g_path, &s, DT_FLOAT32, version == 2);
        rl_volume back;
        CHECK_OK(rl_volume_read(g_path, &back, &err));
        CHECK(back.data && memcmp(back.data, values, sizeof(float) * n) == 0);
        rl_volume_free(&back);

        /* The image itself: 3 * raw - 2 still fits int16, so it is written in
         * the source's type, unscaled. */
        CHECK_OK(rl_volume_write_image(tmp_file("image.nii"), &src, &err));
        check_header_like(g_path, &s, DT_INT16, 0);
        CHECK_OK(rl_volume_read(g_path, &back, &err));
        CHECK(back.data && memcmp(back.data, src.data, sizeof(float) * n) == 0);
        rl_volume_free(&back);
        src.data[7] = 0.5f; /* no longer an integer: float32 */
        CHECK_OK(rl_volume_write_image(tmp_file("image_f.nii"), &src, &err));
        check_header_like(g_path, &s, DT_FLOAT32, 0);
        rl_volume_free(&src);
    }
    CHECK_MSG(count_temporaries() == 0, "temporary files left behind");

    /* An in-memory volume gets a fresh NIfTI-1 header with its spacing. */
    rl_volume mem;
    rl_error err = {0, ""};
    CHECK_OK(rl_volume_create(&mem, 3, 2, 2, &err));
    mem.spacing[0] = 0.5;
    mem.spacing[1] = 0.25;
    mem.spacing[2] = 4;
    int32_t labels[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    CHECK_OK(rl_volume_write_labels(tmp_file("fresh.nii.gz"), &mem, labels, &err));
    rl_volume back;
    CHECK_OK(rl_volume_read(g_path, &back, &err));
    CHECK(back.nx == 3 && back.ny == 2 && back.nz == 2 && rl_volume_nifti_version(&back) == 1);
    CHECK(back.spacing[0] == 0.5 && back.spacing[1] == 0.25 && back.spacing[2] == 4);
    CHECK(back.data && back.data[11] == 11.0f);
    /* create_like copies the header: writing like the copy keeps it. */
    rl_volume copy;
    CHECK_OK(rl_volume_create_like(&copy, &back, &err));
    CHECK(copy.header != NULL && copy.header != back.header && copy.data[11] == 0.0f);
    CHECK_OK(rl_volume_write_labels(tmp_file("copy.nii"), &copy, labels, &err));
    rl_volume_free(&copy);
    rl_volume_free(&back);
    CHECK_OK(rl_volume_read(g_path, &back, &err));
    CHECK(back.spacing[2] == 4 && back.data && back.data[5] == 5.0f);
    rl_volume_free(&back);

    /* A failed write reports the path and leaves no temporary behind. */
    char path[4096];
    snprintf(path, sizeof path, "%s/missing-dir/x.nii", g_dir);
    CHECK(rl_volume_write_labels(path, &mem, labels, &err) == RL_EIO);
    CHECK_MSG(strstr(err.msg, "missing-dir/x.nii") != NULL, "%s", err.msg);
    rl_volume_free(&mem);
}

/* ---- rejected inputs ------------------------------------------------------ */

static void expect_error(const char *path, int code, const char *needle) {
    rl_volume v;
    rl_error err = {0, ""};
    int rc = rl_volume_read(path, &v, &err);
    CHECK_MSG(rc != RL_OK && (code == 0 || rc == code), "%s: rc %d (%s)", path, rc, err.msg);
    CHECK_MSG(strstr(err.msg, path) != NULL, "error should name the file: %s", err.msg);
    if (needle) CHECK_MSG(strstr(err.msg, needle) != NULL, "'%s' not in: %s", needle, err.msg);
    CHECK(v.data == NULL && v.header == NULL);
}

static void test_rejects(void) {
    const int nx = 4, ny = 4, nz = 4;
    float data[64] = {0};
    nifti_spec good = spec_3d(1, nx, ny, nz, DT_FLOAT32, 32);

    /* Truncated data, plain and gzip. */
    write_nifti(tmp_file("short.nii"), &good, data, sizeof data - 4);
    expect_error(g_path, RL_EFORMAT, "truncated");
    write_nifti(tmp_file("short.nii.gz"), &good, data, sizeof data - 4);
    expect_error(g_path, RL_EFORMAT, NULL);
    write_nifti(tmp_file("whole.nii.gz"), &good, data, sizeof data);
    char *bytes = NULL;
    size_t size = 0;
    rl_error err = {0, ""};
    CHECK_OK(rl_read_file(g_path, 1 << 20, &bytes, &size, &err));
    FILE *fp = fopen(tmp_file("cut.nii.gz"), "wb");
    fwrite(bytes, 1, size / 2, fp);
    fclose(fp);
    expect_error(g_path, 0, NULL);
    free(bytes);
    /* Header cut short, garbage, empty. */
    fp = fopen(tmp_file("header_only.nii"), "wb");
    fwrite("\x5c\x01\x00\x00n+1", 1, 7, fp);
    fclose(fp);
    expect_error(g_path, RL_EFORMAT, NULL);
    unsigned char junk[1000];
    rl_rng rng;
    rl_rng_seed(&rng, 3, 0);
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)rl_rng_below(&rng, 256);
    fp = fopen(tmp_file("junk.nii"), "wb");
    fwrite(junk, 1, sizeof junk, fp);
    fclose(fp);
    expect_error(g_path, RL_EFORMAT, NULL);
    fclose(fopen(tmp_file("empty.nii.gz"), "wb"));
    expect_error(g_path, RL_EFORMAT, NULL);
    expect_error(tmp_file("missing.nii"), RL_EIO, "no such file");
    expect_error(tmp_file("volume.hdr"), RL_EUNSUPPORTED, "unsupported file type");

    /* Spacing: zero, negative, NaN. */
    nifti_spec s = good;
    s.pixdim[1] = 0;
    write_nifti(tmp_file("zero_pixdim.nii"), &s, data, sizeof data);
    expect_error(g_path, RL_EFORMAT, "pixdim[1]");
    s = good;
    s.pixdim[2] = -1;
    write_nifti(tmp_file("neg_pixdim.nii"), &s, data, sizeof data);
    expect_error(g_path, RL_EFORMAT, "pixdim[2]");
    s = good;
    s.version = 2;
    s.pixdim[3] = NAN;
    write_nifti(tmp_file("nan_pixdim.nii"), &s, data, sizeof data);
    expect_error(g_path, RL_EFORMAT, "pixdim[3]");

    /* Dimensions: too many voxels (no overflow), 4D, zero, bad dim[0]. */
    s = good;
    s.dim[1] = s.dim[2] = s.dim[3] = 30000;
    write_nifti(tmp_file("huge1.nii"), &s, data, sizeof data);
    expect_error(g_path, RL_ERANGE, "exceed");
    s.version = 2;
    s.dim[1] = s.dim[2] = s.dim[3] = (int64_t)1 << 40; /* product overflows int64 */
    write_nifti(tmp_file("huge2.nii"), &s, data, sizeof data);
    expect_error(g_path, RL_ERANGE, "exceed");
    /* One axis of exactly 2^31 (found by fuzzing): it does not fit the int
     * fields of rl_volume, and once wrapped to a negative width it slipped
     * past the file-size check into niftilib's 8 GiB calloc. */
    s = good;
    s.version = 2;
    s.dim[0] = 1;
    s.dim[1] = (int64_t)1 << 31;
    write_nifti(tmp_file("axis_2pow31.nii"), &s, data, sizeof data);
    expect_error(g_path, RL_ERANGE, "exceed");
    s.dim[1] = INT32_MAX; /* the largest accepted count, refused here as truncated */
    write_nifti(tmp_file("axis_int_max.nii"), &s, data, sizeof data);
    expect_error(g_path, RL_EFORMAT, "truncated");
    s = good;
    s.dim[0] = 4;
    s.dim[4] = 3;
    write_nifti(tmp_file("four_d.nii"), &s, data, sizeof data);
    expect_error(g_path, RL_EUNSUPPORTED, "only 2D/3D");
    s = good;
    s.dim[2] = 0;
    write_nifti(tmp_file("zero_dim.nii"), &s, data, sizeof data);
    expect_error(g_path, 0, NULL);
    s = good;
    s.dim[0] = 9;
    write_nifti(tmp_file("dim0.nii"), &s, data, sizeof data);
    expect_error(g_path, 0, NULL);

    /* Affine with NaN; unsupported data type. */
    s = good;
    s.sform_code = 1;
    s.srow[0][0] = 1;
    s.srow[1][1] = NAN;
    s.srow[2][2] = 1;
    write_nifti(tmp_file("nan_sform.nii"), &s, data, sizeof data);
    expect_error(g_path, RL_ENONFINITE, "sform");
    s = good;
    s.quatern[4] = NAN;
    write_nifti(tmp_file("nan_qform.nii.gz"), &s, data, sizeof data);
    expect_error(g_path, RL_ENONFINITE, "qform");
    s = spec_3d(1, nx, ny, nz, DT_RGB24, 24);
    unsigned char rgb[64 * 3] = {0};
    write_nifti(tmp_file("rgb.nii"), &s, rgb, sizeof rgb);
    expect_error(g_path, RL_EUNSUPPORTED, "not supported");

    /* A finite float64 that float32 cannot hold. */
    double big[64] = {0};
    big[5] = 1e300;
    s = spec_3d(2, nx, ny, nz, DT_FLOAT64, 64);
    write_nifti(tmp_file("big.nii"), &s, big, sizeof big);
    expect_error(g_path, RL_ENONFINITE, "voxel (1, 1, 0)");
}

/* ---- slicing and labels -------------------------------------------------- */

static void test_slicing(void) {
    rl_volume v;
    rl_error err = {0, ""};
    const int nx = 3, ny = 4, nz = 5;
    CHECK_OK(rl_volume_create(&v, nx, ny, nz, &err));
    v.spacing[0] = 0.5;
    v.spacing[1] = 0.75;
    v.spacing[2] = 3;
    for (int i = 0; i < nx * ny * nz; i++) v.data[i] = (float)i;
    CHECK(rl_volume_num_slices(&v, 0) == nx && rl_volume_num_slices(&v, 1) == ny &&
          rl_volume_num_slices(&v, 2) == nz);
    float slice[20];
    int32_t labels[60] = {0};
    rl_volume rebuilt[3];
    for (int axis = 0; axis < 3; axis++) {
        CHECK_OK(rl_volume_create(&rebuilt[axis], nx, ny, nz, &err));
        int count = rl_volume_num_slices(&v, axis);
        for (int index = 0; index < count; index++) {
            int h = 0, w = 0;
            double sp[2] = {0, 0};
            CHECK_OK(rl_volume_get_slice(&v, axis, index, slice, &h, &w, sp, &err));
            int ok = 1;
            for (int r = 0; r < h; r++)
                for (int c = 0; c < w; c++) {
                    /* Documented layout: axis 0 -> (z, y), 1 -> (z, x), 2 -> (y, x). */
                    int x = axis == 0 ? index : c;
                    int y = axis == 0 ? c : axis == 1 ? index : r;
                    int z = axis == 2 ? index : r;
                    ok &= slice[r * w + c] == (float)((z * ny + y) * nx + x);
                }
            CHECK_MSG(ok, "axis %d slice %d layout", axis, index);
            if (axis == 0) CHECK(h == nz && w == ny && sp[0] == 3 && sp[1] == 0.75);
            if (axis == 1) CHECK(h == nz && w == nx && sp[0] == 3 && sp[1] == 0.5);
            if (axis == 2) CHECK(h == ny && w == nx && sp[0] == 0.75 && sp[1] == 0.5);
            CHECK_OK(rl_volume_set_slice(&rebuilt[axis], axis, index, slice, &err));
            if (axis == 1) {
                int32_t islice[20];
                for (int i = 0; i < h * w; i++) islice[i] = (int32_t)slice[i];
                CHECK_OK(rl_labels_set_slice(labels, nx, ny, nz, axis, index, islice, &err));
            }
        }
        CHECK_MSG(memcmp(rebuilt[axis].data, v.data, sizeof(float) * 60) == 0,
                  "axis %d reassembles the volume", axis);
        rl_volume_free(&rebuilt[axis]);
    }
    int same = 1;
    for (int i = 0; i < 60; i++) same &= labels[i] == i;
    CHECK_MSG(same, "int32 label slices reassemble");
    CHECK(rl_volume_get_slice(&v, 2, nz, slice, NULL, NULL, NULL, &err) == RL_EINVAL);
    CHECK(rl_volume_get_slice(&v, 3, 0, slice, NULL, NULL, NULL, &err) == RL_EINVAL);
    CHECK(rl_volume_set_slice(&v, 0, -1, slice, &err) == RL_EINVAL);

    /* Labels: whole numbers >= 0 only; the error names the voxel. */
    int32_t out[60];
    CHECK_OK(rl_labels_from_volume(&v, out, &err));
    CHECK(out[59] == 59);
    v.data[(2 * ny + 1) * nx + 2] = 2.5f;
    CHECK(rl_labels_from_volume(&v, out, &err) == RL_EFORMAT);
    CHECK_MSG(strstr(err.msg, "(2, 1, 2)") && strstr(err.msg, "2.5"), "%s", err.msg);
    v.data[(2 * ny + 1) * nx + 2] = 0;
    v.data[4] = -1;
    CHECK(rl_labels_from_volume(&v, out, &err) == RL_EFORMAT);
    CHECK_MSG(strstr(err.msg, "(1, 1, 0)") != NULL, "%s", err.msg);
    rl_volume_free(&v);
    rl_volume_free(&v); /* safe twice */
}

/* ---- the real data shipped with mricron-data ----------------------------- */

static void test_real_volumes(void) {
    const char *names[2] = {"/usr/share/mricron/templates/ch2.nii.gz",
                            "/usr/share/mricron/templates/aal.nii.gz"};
    for (int k = 0; k < 2; k++) {
        rl_volume v;
        rl_error err = {0, ""};
        int rc = rl_volume_read(names[k], &v, &err);
        CHECK_MSG(rc == RL_OK, "%s", err.msg);
        if (rc) continue;
        CHECK(v.nx == 181 && v.ny == 217 && v.nz == 181);
        CHECK(v.spacing[0] == 1 && v.spacing[1] == 1 && v.spacing[2] == 1);
        CHECK(rl_volume_nifti_version(&v) == 1 && rl_volume_nifti_datatype(&v) == DT_UINT8);
        if (k == 1) {
            /* AAL: 116 regions + background, every voxel a valid label. */
            int32_t *labels = malloc(sizeof *labels * rl_volume_numel(&v));
            CHECK_OK(rl_labels_from_volume(&v, labels, &err));
            int32_t max = 0;
            for (size_t i = 0; i < rl_volume_numel(&v); i++)
                if (labels[i] > max) max = labels[i];
            CHECK_MSG(max == 116, "AAL max label %d", (int)max);
            free(labels);
        }
        rl_volume_free(&v);
    }
}

/* A small .nii.gz whose header claims 2048 x 1024 x 1023 float32 voxels
 * (just under the voxel limit, 8 GiB; the fuzzer's 2048 x 1024 x 1024 in
 * fuzz/regressions/nifti is now refused by the limit itself). It must be
 * refused from the file size, before niftilib allocates. */
static const unsigned char oom_header_gz[] = {
  0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x8b, 0x61,
  0x64, 0x20, 0x0a, 0x30, 0x33, 0x30, 0x70, 0x30, 0xb0, 0xfc, 0x67, 0x66,
  0x64, 0x80, 0x40, 0x54, 0x20, 0xc0, 0xa0, 0x00, 0xa6, 0x1b, 0xec, 0xf1,
  0xe3, 0x0d, 0xce, 0x10, 0x7a, 0xb0, 0x00, 0x26, 0x3c, 0x72, 0xd8, 0xdc,
  0x49, 0xac, 0x18, 0x03, 0x43, 0x9e, 0xb6, 0x21, 0x51, 0x2e, 0x00, 0x00,
  0xf3, 0x11, 0x45, 0x9f, 0x80, 0x01, 0x00, 0x00
};

static void test_gzip_header_larger_than_file(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/oom.nii.gz", g_dir);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(oom_header_gz, 1, sizeof oom_header_gz, f) == sizeof oom_header_gz);
    if (f) fclose(f);
    rl_volume vol;
    rl_error err = {0, ""};
    CHECK(rl_volume_read(path, &vol, &err) == RL_EFORMAT);
    CHECK_MSG(strstr(err.msg, "more than") && strstr(err.msg, "oom.nii.gz"), "%s", err.msg);
    CHECK(vol.data == NULL);
}

int main(void) {
    const char *dir = rl_test_tmpdir("nifti");
    if (!dir) return 1;
    snprintf(g_dir, sizeof g_dir, "%s", dir);
    test_read_types();
    test_write_like();
    test_rejects();
    test_slicing();
    test_real_volumes();
    test_gzip_header_larger_than_file();
    return rl_test_report("test_nifti");
}
