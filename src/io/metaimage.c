/* ITK MetaImage reader (.mhd with a separate data file, or LOCAL data).
 * The header is "Key = Value" lines ending with ElementDataFile. Everything
 * that decides how many bytes are read, and from where, is validated before
 * anything large is allocated. */
#define _GNU_SOURCE /* realpath, fseeko */
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "paths.h"
#include "reflabel/formats.h"

typedef struct meta_header {
    int ndims;
    int64_t dims[3];
    double spacing[3];
    int have_spacing;
    int element_type;       /* index into element_types */
    int msb;                /* big-endian data */
    long long header_size;  /* -1: data at the end of the file */
    char data_file[1024];   /* "LOCAL" or a relative file name */
    long long header_bytes; /* length of the header text, through ElementDataFile */
} meta_header;

typedef struct element_type {
    const char *name;
    int bytes;
    int is_signed, is_real;
} element_type;

static const element_type element_types[] = {
    {"MET_UCHAR", 1, 0, 0},      {"MET_CHAR", 1, 1, 0},      {"MET_USHORT", 2, 0, 0},
    {"MET_SHORT", 2, 1, 0},      {"MET_UINT", 4, 0, 0},      {"MET_INT", 4, 1, 0},
    {"MET_ULONG_LONG", 8, 0, 0}, {"MET_LONG_LONG", 8, 1, 0}, {"MET_FLOAT", 4, 1, 1},
    {"MET_DOUBLE", 8, 1, 1}};
#define NUM_ELEMENT_TYPES ((int)(sizeof element_types / sizeof element_types[0]))

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

/* Parses exactly `count` whitespace-separated finite numbers. */
static int parse_numbers(const char *s, int count, double *out) {
    const char *p = s;
    for (int i = 0; i < count; i++) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno == ERANGE || !isfinite(v)) return -1;
        out[i] = v;
        p = end;
    }
    while (isspace((unsigned char)*p)) p++;
    return *p == '\0' ? 0 : -1;
}

static int parse_bool(const char *s, int *out) {
    if (!strcasecmp(s, "True") || !strcmp(s, "1")) *out = 1;
    else if (!strcasecmp(s, "False") || !strcmp(s, "0")) *out = 0;
    else return -1;
    return 0;
}

/* Applies one "key = value" line to h. */
static int apply_key(const char *path, int line_no, const char *key, const char *value,
                     meta_header *h, rl_error *err) {
#define BAD(...) rl_error_set(err, RL_EFORMAT, __VA_ARGS__)
    if (!strcmp(key, "ObjectType")) {
        if (strcmp(value, "Image") != 0)
            return BAD("%s: line %d: ObjectType %s is not Image", path, line_no, value);
    } else if (!strcmp(key, "NDims")) {
        double v;
        if (parse_numbers(value, 1, &v) || v != floor(v) || v < 1 || v > 3)
            return BAD("%s: line %d: NDims must be 1, 2 or 3 (got '%s')", path, line_no, value);
        h->ndims = (int)v;
    } else if (!strcmp(key, "DimSize") || !strcmp(key, "ElementSpacing") ||
               !strcmp(key, "ElementSize") || !strcmp(key, "Offset") || !strcmp(key, "Position") ||
               !strcmp(key, "Origin") || !strcmp(key, "TransformMatrix") ||
               !strcmp(key, "Rotation") || !strcmp(key, "Orientation")) {
        if (h->ndims == 0) return BAD("%s: line %d: %s comes before NDims", path, line_no, key);
        int matrix = !strcmp(key, "TransformMatrix") || !strcmp(key, "Rotation") ||
                     !strcmp(key, "Orientation");
        int count = matrix ? h->ndims * h->ndims : h->ndims;
        double v[9];
        if (parse_numbers(value, count, v))
            return BAD("%s: line %d: %s needs %d finite numbers", path, line_no, key, count);
        if (!strcmp(key, "DimSize")) {
            for (int i = 0; i < h->ndims; i++) {
                if (v[i] != floor(v[i]) || v[i] < 1 || v[i] > (double)INT_MAX)
                    return BAD("%s: line %d: DimSize %g is not a positive size", path, line_no,
                               v[i]);
                h->dims[i] = (int64_t)v[i];
            }
        } else if (!strcmp(key, "ElementSpacing") ||
                   (!strcmp(key, "ElementSize") && !h->have_spacing)) {
            for (int i = 0; i < h->ndims; i++) {
                if (!(v[i] > 0))
                    return BAD("%s: line %d: %s %g must be positive", path, line_no, key, v[i]);
                h->spacing[i] = v[i];
            }
            h->have_spacing = !strcmp(key, "ElementSpacing");
        }
        /* Offset and the direction matrix only have to be valid: a volume
         * keeps voxel spacing, not a position or orientation. */
    } else if (!strcmp(key, "ElementType")) {
        h->element_type = -1;
        for (int i = 0; i < NUM_ELEMENT_TYPES; i++)
            if (!strcmp(value, element_types[i].name)) h->element_type = i;
        if (h->element_type < 0)
            return rl_error_set(err, RL_EUNSUPPORTED,
                                "%s: line %d: ElementType %s is not supported", path, line_no,
                                value);
    } else if (!strcmp(key, "ElementNumberOfChannels")) {
        if (strcmp(value, "1") != 0)
            return rl_error_set(err, RL_EUNSUPPORTED,
                                "%s: line %d: only one channel per voxel is supported", path,
                                line_no);
    } else if (!strcmp(key, "BinaryData")) {
        int b;
        if (parse_bool(value, &b) || !b)
            return rl_error_set(err, RL_EUNSUPPORTED,
                                "%s: line %d: only BinaryData = True is "
                                "supported",
                                path, line_no);
    } else if (!strcmp(key, "CompressedData")) {
        int b;
        if (parse_bool(value, &b))
            return BAD("%s: line %d: CompressedData is not True/False", path, line_no);
        if (b)
            return rl_error_set(err, RL_EUNSUPPORTED,
                                "%s: line %d: compressed data is not "
                                "supported (re-save it uncompressed)",
                                path, line_no);
    } else if (!strcmp(key, "BinaryDataByteOrderMSB") || !strcmp(key, "ElementByteOrderMSB")) {
        if (parse_bool(value, &h->msb))
            return BAD("%s: line %d: %s is not True/False", path, line_no, key);
    } else if (!strcmp(key, "HeaderSize")) {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (end == value || *end || errno || v < -1)
            return BAD("%s: line %d: HeaderSize must be -1 or a byte count", path, line_no);
        h->header_size = v;
    } else if (!strcmp(key, "ElementDataFile")) {
        if (strlen(value) == 0 || strlen(value) >= sizeof h->data_file)
            return BAD("%s: line %d: ElementDataFile is empty or too long", path, line_no);
        if (!strcmp(value, "LIST") || strchr(value, '%') || strchr(value, ' '))
            return rl_error_set(err, RL_EUNSUPPORTED,
                                "%s: line %d: only LOCAL or a single data file is supported", path,
                                line_no);
        strcpy(h->data_file, value);
    }
    /* Other keys (Comment, AnatomicalOrientation, CenterOfRotation, ...)
     * do not change how the voxels are read. */
    return RL_OK;
#undef BAD
}

/* Reads header lines from fp until ElementDataFile. */
static int parse_header(const char *path, FILE *fp, meta_header *h, rl_error *err) {
    memset(h, 0, sizeof *h);
    h->element_type = -1;
    h->spacing[0] = h->spacing[1] = h->spacing[2] = 1.0;
    char line[4096];
    char seen_keys[32][64];
    int num_seen = 0, line_no = 0;
    long long consumed = 0;
    while (!h->data_file[0]) {
        size_t len = 0;
        int c = EOF;
        while (len < sizeof line - 1 && (c = fgetc(fp)) != EOF && c != '\n') {
            if (c == '\0')
                return rl_error_set(err, RL_EFORMAT, "%s: line %d holds binary data", path,
                                    line_no + 1);
            line[len++] = (char)c;
        }
        line[len] = '\0';
        line_no++;
        if (c == EOF && len == 0)
            return rl_error_set(err, RL_EFORMAT, "%s: header ends without ElementDataFile", path);
        if (len == sizeof line - 1)
            return rl_error_set(err, RL_EFORMAT, "%s: line %d is too long", path, line_no);
        consumed += (long long)len + (c == '\n'); /* LOCAL data starts after the newline */
        if (consumed > RL_METAIMAGE_HEADER_MAX_BYTES)
            return rl_error_set(err, RL_EFORMAT, "%s: no ElementDataFile in the first %d bytes",
                                path, RL_METAIMAGE_HEADER_MAX_BYTES);
        char *eq = strchr(line, '=');
        if (!eq) {
            if (*trim(line) == '\0') continue;
            return rl_error_set(err, RL_EFORMAT, "%s: line %d is not \"Key = Value\"", path,
                                line_no);
        }
        *eq = '\0';
        char *key = trim(line), *value = trim(eq + 1);
        if (strlen(key) >= sizeof seen_keys[0] || *key == '\0')
            return rl_error_set(err, RL_EFORMAT, "%s: line %d has a bad key", path, line_no);
        for (int i = 0; i < num_seen; i++)
            if (!strcmp(seen_keys[i], key))
                return rl_error_set(err, RL_EFORMAT, "%s: line %d repeats key %s", path, line_no,
                                    key);
        if (num_seen < 32) strcpy(seen_keys[num_seen++], key);
        int rc = apply_key(path, line_no, key, value, h, err);
        if (rc) return rc;
    }
    h->header_bytes = consumed;
    if (h->ndims == 0) return rl_error_set(err, RL_EFORMAT, "%s: NDims is missing", path);
    if (h->dims[0] == 0) return rl_error_set(err, RL_EFORMAT, "%s: DimSize is missing", path);
    if (h->element_type < 0)
        return rl_error_set(err, RL_EFORMAT, "%s: ElementType is missing", path);
    return RL_OK;
}

/* The data file's path: a name relative to the header's folder that stays
 * inside it, lexically and after resolving symbolic links. */
static int resolve_data_path(const char *path, const char *name, char *out, size_t out_size,
                             rl_error *err) {
    if (name[0] == '/' || name[0] == '\\')
        return rl_error_set(err, RL_EFORMAT, "%s: ElementDataFile %s is an absolute path", path,
                            name);
    /* Any ".." component could leave the folder. */
    for (const char *p = name; *p;) {
        size_t n = strcspn(p, "/\\");
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return rl_error_set(err, RL_EFORMAT,
                                "%s: ElementDataFile %s leaves the header's folder", path, name);
        p += n;
        if (*p) p++;
    }
    const char *slash = strrchr(path, '/');
    /* "x.mhd" lives in ".", "/x.mhd" in "/". */
    int dir_len = slash ? (slash == path ? 1 : (int)(slash - path)) : 1;
    const char *dir = slash ? path : ".";
    if (snprintf(out, out_size, "%.*s/%s", dir_len, dir, name) >= (int)out_size)
        return rl_error_set(err, RL_ERANGE, "%s: data file path too long", path);
    char dir_copy[PATH_MAX];
    snprintf(dir_copy, sizeof dir_copy, "%.*s", dir_len, dir);
    char real_dir[PATH_MAX], real_file[PATH_MAX];
    if (!realpath(dir_copy, real_dir) || !realpath(out, real_file))
        return rl_error_set(err, RL_EIO, "%s: cannot open data file %s: %s", path, out,
                            strerror(errno));
    if (!rl_io_resolved_inside(real_file, real_dir))
        return rl_error_set(err, RL_EFORMAT,
                            "%s: ElementDataFile %s resolves outside the header's folder", path,
                            name);
    return RL_OK;
}

static uint64_t load_element(const unsigned char *p, int bytes, int msb) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)p[msb ? bytes - 1 - i : i] << (8 * i);
    return v;
}

/* Converts n raw elements to float; refuses non-finite and out-of-range reals. */
static int convert_elements(const char *path, const unsigned char *raw, size_t n,
                            const element_type *t, int msb, float *out, rl_error *err) {
    for (size_t i = 0; i < n; i++) {
        uint64_t bits = load_element(raw + i * (size_t)t->bytes, t->bytes, msb);
        double v;
        if (t->is_real) {
            if (t->bytes == 4) {
                uint32_t b32 = (uint32_t)bits;
                float f;
                memcpy(&f, &b32, 4);
                v = f;
            } else {
                memcpy(&v, &bits, 8);
            }
            if (!isfinite(v) || fabs(v) > FLT_MAX)
                return rl_error_set(err, RL_ENONFINITE,
                                    "%s: voxel %zu is %g, not a finite float32 value", path, i, v);
        } else if (t->is_signed) {
            int shift = 64 - 8 * t->bytes; /* sign-extend */
            v = (double)((int64_t)(bits << shift) >> shift);
        } else {
            v = (double)bits;
        }
        out[i] = (float)v;
    }
    return RL_OK;
}

int rl_metaimage_read(const char *path, rl_volume *vol, rl_error *err) {
    memset(vol, 0, sizeof *vol);
    FILE *fp = fopen(path, "rb");
    if (!fp) return rl_error_set(err, RL_EIO, "%s: cannot open: %s", path, strerror(errno));
    meta_header h;
    int rc = parse_header(path, fp, &h, err);
    fclose(fp);
    if (rc) return rc;

    int64_t voxels = 1;
    for (int i = 0; i < h.ndims; i++) {
        if (h.dims[i] > RL_VOLUME_MAX_VOXELS / voxels)
            return rl_error_set(err, RL_ERANGE, "%s: more than 2^31 - 1 voxels", path);
        voxels *= h.dims[i];
    }
    const element_type *t = &element_types[h.element_type];
    const long long data_bytes = (long long)voxels * t->bytes;

    char data_path[PATH_MAX + 1100];
    long long offset;
    int local = !strcmp(h.data_file, "LOCAL");
    if (local) snprintf(data_path, sizeof data_path, "%s", path);
    else {
        rc = resolve_data_path(path, h.data_file, data_path, sizeof data_path, err);
        if (rc) return rc;
    }
    struct stat st;
    if (stat(data_path, &st) != 0 || !S_ISREG(st.st_mode))
        return rl_error_set(err, RL_EIO, "%s: data file %s is missing or not a file", path,
                            data_path);
    const long long file_size = (long long)st.st_size, start = local ? h.header_bytes : 0;
    if (h.header_size == -1) {
        if (file_size - start < data_bytes)
            return rl_error_set(err, RL_EFORMAT,
                                "%s: %s holds %lld bytes, fewer than the %lld "
                                "of the data",
                                path, data_path, file_size - start, data_bytes);
        offset = file_size - data_bytes;
    } else {
        offset = start + h.header_size;
        if (file_size != offset + data_bytes)
            return rl_error_set(err, RL_EFORMAT,
                                "%s: %s holds %lld bytes, but the header says %lld (%lld header "
                                "+ %lld voxels x %d bytes)",
                                path, data_path, file_size, offset + data_bytes, offset,
                                (long long)voxels, t->bytes);
    }

    unsigned char *raw = malloc((size_t)data_bytes);
    if (!raw) return rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    FILE *df = fopen(data_path, "rb");
    int ok = df && fseeko(df, (off_t)offset, SEEK_SET) == 0 &&
             fread(raw, 1, (size_t)data_bytes, df) == (size_t)data_bytes;
    if (df) fclose(df);
    if (!ok) {
        free(raw);
        return rl_error_set(err, RL_EIO, "%s: cannot read %lld bytes from %s", path, data_bytes,
                            data_path);
    }
    rc = rl_volume_create(vol, (int)h.dims[0], h.ndims > 1 ? (int)h.dims[1] : 1,
                          h.ndims > 2 ? (int)h.dims[2] : 1, err);
    if (!rc) rc = convert_elements(path, raw, (size_t)voxels, t, h.msb, vol->data, err);
    free(raw);
    if (rc) {
        rl_volume_free(vol);
        return rc;
    }
    for (int i = 0; i < h.ndims; i++) vol->spacing[i] = h.spacing[i];
    return RL_OK;
}
