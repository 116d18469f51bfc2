/* safetensors reading and writing, and U-Net checkpoints on top of them.
 *
 * The reader trusts nothing: it checks the header length against the file
 * size, parses the JSON, and validates every dtype, shape and offset range
 * before it allocates the data, so a corrupt or hostile file costs at most
 * the (bounded) header and yields one error line. */
#include "reflabel/checkpoint.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this file assumes a little-endian host"
#endif

/* Largest integer a JSON number (a double) represents exactly. */
#define JSON_EXACT_MAX 9007199254740992.0

static const char *dtype_name(rl_dtype d) { return d == RL_DTYPE_I64 ? "I64" : "F32"; }

size_t rl_dtype_size(rl_dtype dtype) { return dtype == RL_DTYPE_I64 ? 8 : 4; }

static int dtype_from_name(const char *s, rl_dtype *out) {
    if (!strcmp(s, "F32")) *out = RL_DTYPE_F32;
    else if (!strcmp(s, "I64")) *out = RL_DTYPE_I64;
    else return -1;
    return 0;
}

/* numel * dtype size, or 0 with *overflow set when it does not fit. */
static uint64_t tensor_bytes(const rl_st_tensor *t, int *overflow) {
    uint64_t bytes = rl_dtype_size(t->dtype);
    *overflow = 0;
    for (int i = 0; i < t->ndim; i++) {
        uint64_t d = (uint64_t)t->shape[i];
        if (d != 0 && bytes > UINT64_MAX / d) {
            *overflow = 1;
            return 0;
        }
        bytes *= d;
    }
    return bytes;
}

/* ---- writing ---------------------------------------------------------------- */

static char *build_header(const rl_st_tensor *tensors, int count, const rl_kv *metadata,
                          int metadata_count, const uint64_t *begin, const uint64_t *end) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    int ok = 1;
    if (metadata_count > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        ok &= meta != NULL;
        for (int i = 0; ok && i < metadata_count; i++)
            ok &= cJSON_AddStringToObject(meta, metadata[i].key, metadata[i].value) != NULL;
    }
    for (int i = 0; ok && i < count; i++) {
        cJSON *t = cJSON_AddObjectToObject(root, tensors[i].name);
        cJSON *shape = t ? cJSON_AddArrayToObject(t, "shape") : NULL;
        cJSON *offsets = shape ? cJSON_AddArrayToObject(t, "data_offsets") : NULL;
        ok &= offsets != NULL && cJSON_AddStringToObject(t, "dtype",
                                                         dtype_name(tensors[i].dtype)) != NULL;
        for (int d = 0; ok && d < tensors[i].ndim; d++)
            ok &= cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)tensors[i].shape[d]));
        ok &= ok && cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)begin[i])) &&
              cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)end[i]));
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}

/* Checks what the header cannot express or the reader would refuse. */
static int check_for_write(const char *path, const rl_st_tensor *tensors, int count,
                           const rl_kv *metadata, int metadata_count, rl_error *err) {
    if (count < 0 || metadata_count < 0 || (count > 0 && !tensors) ||
        (metadata_count > 0 && !metadata))
        return rl_error_set(err, RL_EINVAL, "%s: invalid tensor or metadata list", path);
    for (int i = 0; i < metadata_count; i++)
        if (!metadata[i].key || !metadata[i].value)
            return rl_error_set(err, RL_EINVAL, "%s: metadata entry %d is incomplete", path, i);
    for (int i = 0; i < count; i++) {
        const rl_st_tensor *t = &tensors[i];
        if (!t->name || !t->name[0] || !strcmp(t->name, "__metadata__"))
            return rl_error_set(err, RL_EINVAL, "%s: tensor %d has an invalid name", path, i);
        if ((t->dtype != RL_DTYPE_F32 && t->dtype != RL_DTYPE_I64) || t->ndim < 0 ||
            t->ndim > RL_ST_MAX_DIMS)
            return rl_error_set(err, RL_EINVAL, "%s: tensor '%s' has a bad dtype or rank", path,
                                t->name);
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] < 0 || (double)t->shape[d] > JSON_EXACT_MAX)
                return rl_error_set(err, RL_EINVAL, "%s: tensor '%s' has a bad shape", path,
                                    t->name);
        int overflow = 0;
        uint64_t bytes = tensor_bytes(t, &overflow);
        if (overflow || bytes > (uint64_t)JSON_EXACT_MAX || (bytes > 0 && !t->data))
            return rl_error_set(err, RL_EINVAL, "%s: tensor '%s' has no data or is too large",
                                path, t->name);
        for (int j = 0; j < i; j++)
            if (!strcmp(tensors[j].name, t->name))
                return rl_error_set(err, RL_EINVAL, "%s: tensor '%s' appears twice", path,
                                    t->name);
    }
    return RL_OK;
}

int rl_safetensors_write(const char *path, const rl_st_tensor *tensors, int count,
                         const rl_kv *metadata, int metadata_count, rl_error *err) {
    int rc = check_for_write(path, tensors, count, metadata, metadata_count, err);
    if (rc) return rc;
    uint64_t *begin = calloc((size_t)count + 1, 2 * sizeof *begin);
    if (!begin) return rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    uint64_t *end = begin + count + 1;
    uint64_t offset = 0;
    for (int i = 0; i < count; i++) {
        int overflow;
        begin[i] = offset;
        offset += tensor_bytes(&tensors[i], &overflow);
        end[i] = offset;
    }
    char *header = build_header(tensors, count, metadata, metadata_count, begin, end);
    if (!header) rc = rl_error_set(err, RL_ENOMEM, "%s: cannot build the header", path);
    rl_atomic_file f;
    if (!rc) rc = rl_atomic_open(&f, path, err);
    if (!rc) {
        size_t len = strlen(header);
        size_t padded = (len + 7) / 8 * 8; /* keeps the data 8-byte aligned */
        unsigned char size_le[8];
        for (int i = 0; i < 8; i++) size_le[i] = (unsigned char)((uint64_t)padded >> (8 * i));
        FILE *fp = f.fp;
        int ok = fwrite(size_le, 1, 8, fp) == 8 && fwrite(header, 1, len, fp) == len;
        for (size_t i = len; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
        for (int i = 0; ok && i < count; i++) {
            size_t bytes = (size_t)(end[i] - begin[i]);
            ok = fwrite(tensors[i].data, 1, bytes, fp) == bytes;
        }
        if (!ok) {
            rl_atomic_abort(&f);
            rc = rl_error_set(err, RL_EIO, "%s: write failed: %s", path, strerror(errno));
        } else {
            rc = rl_atomic_commit(&f, err);
        }
    }
    free(header);
    free(begin);
    return rc;
}

/* ---- reading ---------------------------------------------------------------- */

typedef struct parsed_tensor {
    rl_st_tensor t;
    uint64_t begin, end;
} parsed_tensor;

static int by_begin(const void *a, const void *b) {
    const parsed_tensor *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

/* A JSON number that is an exact non-negative integer; -1 otherwise. */
static int json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return -1;
    double v = item->valuedouble;
    if (!(v >= 0) || v > JSON_EXACT_MAX || v != floor(v)) return -1;
    *out = (uint64_t)v;
    return 0;
}

static int parse_tensor_entry(const char *path, const cJSON *item, parsed_tensor *p,
                              rl_error *err) {
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return rl_error_set(err, RL_EFORMAT, "%s: entry '%s' is not an object", path, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offsets))
        return rl_error_set(err, RL_EFORMAT,
                            "%s: tensor '%s' lacks dtype, shape or data_offsets", path, name);
    if (dtype_from_name(dtype->valuestring, &p->t.dtype))
        return rl_error_set(err, RL_EUNSUPPORTED,
                            "%s: tensor '%s' has dtype %s (only F32 and I64 are supported)",
                            path, name, dtype->valuestring);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > RL_ST_MAX_DIMS)
        return rl_error_set(err, RL_EUNSUPPORTED, "%s: tensor '%s' has %d dimensions (max %d)",
                            path, name, ndim, RL_ST_MAX_DIMS);
    p->t.ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        uint64_t v;
        if (json_uint(cJSON_GetArrayItem(shape, d), &v))
            return rl_error_set(err, RL_EFORMAT, "%s: tensor '%s' has a bad shape", path, name);
        p->t.shape[d] = (int64_t)v;
    }
    if (cJSON_GetArraySize(offsets) != 2 || json_uint(cJSON_GetArrayItem(offsets, 0), &p->begin) ||
        json_uint(cJSON_GetArrayItem(offsets, 1), &p->end) || p->end < p->begin)
        return rl_error_set(err, RL_EFORMAT, "%s: tensor '%s' has bad data_offsets", path, name);
    int overflow;
    uint64_t bytes = tensor_bytes(&p->t, &overflow);
    if (overflow)
        return rl_error_set(err, RL_EFORMAT, "%s: tensor '%s': shape size overflows", path,
                            name);
    if (bytes != p->end - p->begin)
        return rl_error_set(err, RL_EFORMAT,
                            "%s: tensor '%s' holds %llu bytes but its shape needs %llu", path,
                            name, (unsigned long long)(p->end - p->begin),
                            (unsigned long long)bytes);
    p->t.name = name;
    return RL_OK;
}

static int parse_metadata(const char *path, const cJSON *meta, rl_safetensors *out,
                          rl_error *err) {
    if (!cJSON_IsObject(meta))
        return rl_error_set(err, RL_EFORMAT, "%s: __metadata__ is not an object", path);
    if (out->metadata)
        return rl_error_set(err, RL_EFORMAT, "%s: __metadata__ appears twice", path);
    int n = cJSON_GetArraySize(meta);
    out->metadata = calloc((size_t)n + 1, sizeof *out->metadata);
    if (!out->metadata) return rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    const cJSON *kv;
    cJSON_ArrayForEach(kv, meta) {
        if (!cJSON_IsString(kv))
            return rl_error_set(err, RL_EFORMAT, "%s: metadata '%s' is not a string", path,
                                kv->string);
        rl_kv *slot = &out->metadata[out->metadata_count];
        slot->key = strdup(kv->string);
        slot->value = strdup(kv->valuestring);
        out->metadata_count++;
        if (!slot->key || !slot->value)
            return rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    }
    return RL_OK;
}

/* Checks that the sorted tensors tile [0, data_size) exactly. */
static int check_layout(const char *path, const parsed_tensor *p, int count, uint64_t data_size,
                        rl_error *err) {
    uint64_t expect = 0;
    for (int i = 0; i < count; i++) {
        if (p[i].end > data_size)
            return rl_error_set(err, RL_EFORMAT,
                                "%s: tensor '%s' ends at byte %llu, past the %llu data bytes",
                                path, p[i].t.name, (unsigned long long)p[i].end,
                                (unsigned long long)data_size);
        if (p[i].begin < expect)
            return rl_error_set(err, RL_EFORMAT, "%s: tensor '%s' overlaps '%s'", path,
                                p[i].t.name, p[i - 1].t.name);
        if (p[i].begin > expect)
            return rl_error_set(err, RL_EFORMAT, "%s: gap in the data before tensor '%s'",
                                path, p[i].t.name);
        expect = p[i].end;
    }
    if (expect != data_size)
        return rl_error_set(err, RL_EFORMAT, "%s: %llu trailing data bytes belong to no tensor",
                            path, (unsigned long long)(data_size - expect));
    return RL_OK;
}

/* Reads the header length and text; leaves fp positioned at the data. */
static int read_header(const char *path, FILE *fp, uint64_t file_size, char **header,
                       uint64_t *header_len, rl_error *err) {
    unsigned char le[8];
    if (file_size < 8 || fread(le, 1, 8, fp) != 8)
        return rl_error_set(err, RL_EFORMAT, "%s: too short for a safetensors file", path);
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)le[i] << (8 * i);
    if (n > file_size - 8)
        return rl_error_set(err, RL_EFORMAT,
                            "%s: header length %llu exceeds the file size %llu (truncated?)",
                            path, (unsigned long long)n, (unsigned long long)file_size);
    if (n > RL_ST_MAX_HEADER)
        return rl_error_set(err, RL_EFORMAT, "%s: header length %llu exceeds the %u MiB limit",
                            path, (unsigned long long)n, RL_ST_MAX_HEADER >> 20);
    char *text = malloc((size_t)n + 1);
    if (!text) return rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    if (fread(text, 1, (size_t)n, fp) != (size_t)n) {
        free(text);
        return rl_error_set(err, RL_EIO, "%s: read failed", path);
    }
    text[n] = '\0';
    *header = text;
    *header_len = n;
    return RL_OK;
}

/* Copies each tensor into its own 8-byte aligned slot of one allocation, so
 * that F32 and I64 data can be read in place whatever the file's offsets. */
static int load_data(const char *path, FILE *fp, parsed_tensor *p, int count,
                     rl_safetensors *out, rl_error *err) {
    size_t total = 0;
    for (int i = 0; i < count; i++) total += (size_t)((p[i].end - p[i].begin + 7) / 8 * 8);
    out->storage = malloc(total ? total : 1);
    if (!out->storage)
        return rl_error_set(err, RL_ENOMEM, "%s: cannot allocate %zu MiB of tensor data", path,
                            total >> 20);
    unsigned char *dst = out->storage;
    for (int i = 0; i < count; i++) {
        size_t bytes = (size_t)(p[i].end - p[i].begin);
        if (fread(dst, 1, bytes, fp) != bytes)
            return rl_error_set(err, RL_EIO, "%s: read failed in tensor '%s'", path,
                                p[i].t.name);
        p[i].t.data = dst;
        dst += (bytes + 7) / 8 * 8;
    }
    return RL_OK;
}

int rl_safetensors_read(const char *path, rl_safetensors *out, rl_error *err) {
    memset(out, 0, sizeof *out);
    FILE *fp;
    uint64_t file_size;
    int rc = rl_open_regular_file(path, &fp, &file_size, err);
    if (rc) return rc;
    char *header = NULL;
    uint64_t header_len = 0;
    cJSON *root = NULL;
    parsed_tensor *parsed = NULL;
    rc = read_header(path, fp, file_size, &header, &header_len, err);
    if (!rc) {
        root = cJSON_ParseWithLength(header, (size_t)header_len);
        if (!cJSON_IsObject(root))
            rc = rl_error_set(err, RL_EFORMAT, "%s: header is not a valid JSON object", path);
    }
    int count = 0;
    if (!rc) {
        parsed = calloc((size_t)cJSON_GetArraySize(root) + 1, sizeof *parsed);
        if (!parsed) rc = rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    }
    const cJSON *item;
    if (!rc) cJSON_ArrayForEach(item, root) {
        if (!strcmp(item->string, "__metadata__")) rc = parse_metadata(path, item, out, err);
        else rc = parse_tensor_entry(path, item, &parsed[count++], err);
        if (rc) break;
    }
    if (!rc) {
        qsort(parsed, (size_t)count, sizeof *parsed, by_begin);
        rc = check_layout(path, parsed, count, file_size - 8 - header_len, err);
    }
    if (!rc) rc = load_data(path, fp, parsed, count, out, err);
    if (!rc) {
        out->tensors = calloc((size_t)count + 1, sizeof *out->tensors);
        if (!out->tensors) rc = rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    }
    for (int i = 0; !rc && i < count; i++) {
        out->tensors[i] = parsed[i].t;
        out->tensors[i].name = strdup(parsed[i].t.name);
        out->count = i + 1;
        if (!out->tensors[i].name) rc = rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    }
    /* Names of the same tensor repeated would shadow each other. */
    for (int i = 0; !rc && i < count; i++)
        for (int j = i + 1; !rc && j < count; j++)
            if (!strcmp(out->tensors[i].name, out->tensors[j].name))
                rc = rl_error_set(err, RL_EFORMAT, "%s: tensor '%s' appears twice", path,
                                  out->tensors[i].name);
    cJSON_Delete(root);
    free(header);
    free(parsed);
    fclose(fp);
    if (rc) rl_safetensors_free(out);
    return rc;
}

void rl_safetensors_free(rl_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->count; i++) free((char *)st->tensors[i].name);
    for (int i = 0; i < st->metadata_count; i++) {
        free((char *)st->metadata[i].key);
        free((char *)st->metadata[i].value);
    }
    free(st->tensors);
    free(st->metadata);
    free(st->storage);
    memset(st, 0, sizeof *st);
}

const rl_st_tensor *rl_safetensors_find(const rl_safetensors *st, const char *name) {
    for (int i = 0; i < st->count; i++)
        if (!strcmp(st->tensors[i].name, name)) return &st->tensors[i];
    return NULL;
}

const char *rl_safetensors_metadata(const rl_safetensors *st, const char *key) {
    for (int i = 0; i < st->metadata_count; i++)
        if (st->metadata[i].key && !strcmp(st->metadata[i].key, key))
            return st->metadata[i].value;
    return NULL;
}

/* ---- U-Net checkpoints -------------------------------------------------------- */

char *rl_unet_config_to_json(const rl_unet_config *cfg) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int ok = cJSON_AddNumberToObject(o, "in_channels", cfg->in_channels) &&
             cJSON_AddNumberToObject(o, "num_classes", cfg->num_classes) &&
             cJSON_AddNumberToObject(o, "depth", cfg->depth) &&
             cJSON_AddNumberToObject(o, "base_width", cfg->base_width) &&
             cJSON_AddNumberToObject(o, "max_width", cfg->max_width) &&
             cJSON_AddStringToObject(o, "norm", rl_norm_name(cfg->norm)) &&
             cJSON_AddNumberToObject(o, "groups", cfg->groups) &&
             cJSON_AddNumberToObject(o, "leaky_slope", cfg->leaky_slope) &&
             cJSON_AddNumberToObject(o, "bn_momentum", cfg->bn_momentum) &&
             cJSON_AddNumberToObject(o, "norm_eps", cfg->norm_eps);
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

static int json_int_field(const cJSON *o, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        fabs(v->valuedouble) > 1e9)
        return -1;
    *out = (int)v->valuedouble;
    return 0;
}

static int json_float_field(const cJSON *o, const char *key, float *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return -1;
    *out = (float)v->valuedouble;
    return 0;
}

int rl_unet_config_from_json(const char *json, rl_unet_config *cfg, rl_error *err) {
    cJSON *o = cJSON_Parse(json);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return rl_error_set(err, RL_EFORMAT, "U-Net config is not a JSON object");
    }
    *cfg = rl_unet_default_config();
    const char *bad = NULL;
    if (json_int_field(o, "in_channels", &cfg->in_channels)) bad = "in_channels";
    else if (json_int_field(o, "num_classes", &cfg->num_classes)) bad = "num_classes";
    else if (json_int_field(o, "depth", &cfg->depth)) bad = "depth";
    else if (json_int_field(o, "base_width", &cfg->base_width)) bad = "base_width";
    else if (json_int_field(o, "max_width", &cfg->max_width)) bad = "max_width";
    else if (json_int_field(o, "groups", &cfg->groups)) bad = "groups";
    else if (json_float_field(o, "leaky_slope", &cfg->leaky_slope)) bad = "leaky_slope";
    else if (json_float_field(o, "bn_momentum", &cfg->bn_momentum)) bad = "bn_momentum";
    else if (json_float_field(o, "norm_eps", &cfg->norm_eps)) bad = "norm_eps";
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(o, "norm");
    int kind = cJSON_IsString(norm) ? rl_norm_from_name(norm->valuestring) : -1;
    if (!bad && kind < 0) bad = "norm";
    cJSON_Delete(o);
    if (bad) return rl_error_set(err, RL_EFORMAT, "U-Net config: missing or bad '%s'", bad);
    cfg->norm = (rl_norm_kind)kind;
    return rl_unet_config_check(cfg, err);
}

int rl_unet_save(const rl_unet *net, const char *path, const rl_kv *extra, int extra_count,
                 rl_error *err) {
    /* The table and data accessors take a mutable net; saving only reads. */
    rl_unet *mnet = (rl_unet *)net;
    int count = 0;
    const rl_unet_tensor *table = rl_unet_tensors(net, &count);
    if (extra_count < 0 || (extra_count > 0 && !extra))
        return rl_error_set(err, RL_EINVAL, "%s: invalid metadata list", path);
    rl_st_tensor *tensors = calloc((size_t)count + 1, sizeof *tensors);
    rl_kv *meta = calloc((size_t)extra_count + 2, sizeof *meta);
    char *config = rl_unet_config_to_json(rl_unet_get_config(net));
    int rc = RL_OK;
    if (!tensors || !meta || !config) {
        rc = rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    } else {
        for (int i = 0; i < count; i++) {
            tensors[i].name = table[i].name;
            tensors[i].dtype = table[i].kind == RL_UNET_COUNTER ? RL_DTYPE_I64 : RL_DTYPE_F32;
            tensors[i].ndim = table[i].ndim;
            for (int d = 0; d < table[i].ndim; d++) tensors[i].shape[d] = table[i].shape[d];
            tensors[i].data = rl_unet_tensor_data(mnet, &table[i]);
        }
        meta[0] = (rl_kv){"reflabel.format", RL_UNET_FORMAT};
        meta[1] = (rl_kv){"reflabel.config", config};
        for (int i = 0; i < extra_count; i++) meta[2 + i] = extra[i];
        rc = rl_safetensors_write(path, tensors, count, meta, extra_count + 2, err);
    }
    free(config);
    free(meta);
    free(tensors);
    return rc;
}

static int copy_checked_tensors(const char *path, rl_unet *net, const rl_safetensors *st,
                                rl_error *err) {
    int count = 0;
    const rl_unet_tensor *table = rl_unet_tensors(net, &count);
    if (st->count != count) {
        for (int i = 0; i < st->count; i++)
            if (!rl_unet_find_tensor(net, st->tensors[i].name))
                return rl_error_set(err, RL_EFORMAT,
                                    "%s: unexpected tensor '%s' for this architecture", path,
                                    st->tensors[i].name);
    }
    for (int i = 0; i < count; i++) {
        const rl_unet_tensor *t = &table[i];
        const rl_st_tensor *s = rl_safetensors_find(st, t->name);
        if (!s) return rl_error_set(err, RL_EFORMAT, "%s: missing tensor '%s'", path, t->name);
        rl_dtype want = t->kind == RL_UNET_COUNTER ? RL_DTYPE_I64 : RL_DTYPE_F32;
        int same = s->dtype == want && s->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = s->shape[d] == t->shape[d];
        if (!same)
            return rl_error_set(err, RL_EFORMAT,
                                "%s: tensor '%s' has the wrong dtype or shape for this "
                                "architecture",
                                path, t->name);
        memcpy(rl_unet_tensor_data(net, t), s->data, t->numel * rl_dtype_size(want));
    }
    return RL_OK;
}

int rl_unet_load(const char *path, rl_unet **net, rl_safetensors *metadata, rl_error *err) {
    *net = NULL;
    rl_safetensors st;
    int rc = rl_safetensors_read(path, &st, err);
    if (rc) return rc;
    const char *format = rl_safetensors_metadata(&st, "reflabel.format");
    const char *config_json = rl_safetensors_metadata(&st, "reflabel.config");
    rl_unet_config cfg;
    if (!format || strcmp(format, RL_UNET_FORMAT))
        rc = rl_error_set(err, RL_EFORMAT, "%s: not a reflabel U-Net checkpoint (format '%s')",
                          path, format ? format : "missing");
    else if (!config_json)
        rc = rl_error_set(err, RL_EFORMAT, "%s: reflabel.config metadata is missing", path);
    else if ((rc = rl_unet_config_from_json(config_json, &cfg, err)) != RL_OK)
        rl_error_prefix(err, "%s", path);
    rl_unet *loaded = NULL;
    if (!rc) rc = rl_unet_create(&loaded, &cfg, 0, err);
    if (!rc) rc = copy_checked_tensors(path, loaded, &st, err);
    if (rc) {
        rl_unet_free(loaded);
        rl_safetensors_free(&st);
        return rc;
    }
    *net = loaded;
    if (metadata) *metadata = st;
    else rl_safetensors_free(&st);
    return RL_OK;
}
