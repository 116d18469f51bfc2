/* safetensors: a round trip keeps names, dtypes, shapes, data and metadata;
 * every kind of corrupt file is refused with an error (never a crash); a
 * U-Net checkpoint reloads into an identical network. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/checkpoint.h"
#include "testutil.h"

static char dir[4096];

static void path_in(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", dir, name);
}

static void test_round_trip(void) {
    char path[4200];
    path_in(path, sizeof path, "rt.safetensors");
    float a[6] = {1.5f, -2, 3, 4, 5, 6.25f};
    int64_t b[3] = {7, -8, (int64_t)1 << 40};
    float c[1] = {42};
    rl_st_tensor t[3] = {
        {"a", RL_DTYPE_F32, 2, {2, 3}, a},
        {"b.count", RL_DTYPE_I64, 1, {3}, b},
        {"scalar", RL_DTYPE_F32, 0, {0}, c},
    };
    rl_kv meta[2] = {{"k1", "v1"}, {"json", "{\"x\": [1, 2]}"}};
    rl_error err = {0, ""};
    CHECK_OK(rl_safetensors_write(path, t, 3, meta, 2, &err));
    rl_safetensors st;
    int rc = rl_safetensors_read(path, &st, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc) return;
    CHECK(st.count == 3);
    const rl_st_tensor *ra = rl_safetensors_find(&st, "a");
    const rl_st_tensor *rb = rl_safetensors_find(&st, "b.count");
    const rl_st_tensor *rc2 = rl_safetensors_find(&st, "scalar");
    CHECK(ra && ra->dtype == RL_DTYPE_F32 && ra->ndim == 2 && ra->shape[0] == 2 &&
          ra->shape[1] == 3 && !memcmp(ra->data, a, sizeof a));
    CHECK(rb && rb->dtype == RL_DTYPE_I64 && rb->ndim == 1 && !memcmp(rb->data, b, sizeof b));
    CHECK(rb && ((uintptr_t)rb->data % 8) == 0); /* aligned although it follows 6 floats */
    CHECK(rc2 && rc2->ndim == 0 && ((float *)rc2->data)[0] == 42);
    CHECK(rl_safetensors_find(&st, "missing") == NULL);
    const char *v1 = rl_safetensors_metadata(&st, "k1");
    const char *js = rl_safetensors_metadata(&st, "json");
    CHECK(v1 && !strcmp(v1, "v1"));
    CHECK(js && !strcmp(js, "{\"x\": [1, 2]}"));
    rl_safetensors_free(&st);

    /* The header is padded to 8 bytes, the data follows without gaps. */
    char *raw = NULL;
    size_t size = 0;
    CHECK_OK(rl_read_file(path, 1 << 20, &raw, &size, NULL));
    if (raw) {
        uint64_t n = 0;
        for (int i = 0; i < 8; i++) n |= (uint64_t)(unsigned char)raw[i] << (8 * i);
        CHECK(n % 8 == 0);
        CHECK(size == 8 + n + sizeof a + sizeof b + sizeof c);
        free(raw);
    }

    /* The writer refuses what it could not write back faithfully. */
    rl_st_tensor dup[2] = {{"a", RL_DTYPE_F32, 1, {2}, a}, {"a", RL_DTYPE_F32, 1, {2}, a}};
    CHECK(rl_safetensors_write(path, dup, 2, NULL, 0, &err) == RL_EINVAL);
    CHECK(strstr(err.msg, "twice") != NULL);
    rl_st_tensor nodata = {"x", RL_DTYPE_F32, 1, {4}, NULL};
    CHECK(rl_safetensors_write(path, &nodata, 1, NULL, 0, &err) == RL_EINVAL);
    rl_st_tensor reserved = {"__metadata__", RL_DTYPE_F32, 1, {2}, a};
    CHECK(rl_safetensors_write(path, &reserved, 1, NULL, 0, &err) == RL_EINVAL);
    rl_kv half = {"k", NULL};
    CHECK(rl_safetensors_write(path, t, 1, &half, 1, &err) == RL_EINVAL);
    /* ... and a refused write leaves the earlier file intact. */
    CHECK_OK(rl_safetensors_read(path, &st, &err));
    CHECK(st.count == 3);
    rl_safetensors_free(&st);
}

/* Writes an 8-byte length (declared) + header + data_bytes zero bytes. */
static void write_raw(const char *path, uint64_t declared, const char *header,
                      size_t data_bytes) {
    size_t hl = strlen(header);
    size_t total = 8 + hl + data_bytes;
    unsigned char *buf = calloc(total, 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(declared >> (8 * i));
    memcpy(buf + 8, header, hl);
    CHECK_OK(rl_write_file_atomic(path, buf, total, NULL));
    free(buf);
}

static void expect_refused(const char *label, uint64_t declared, const char *header,
                           size_t data_bytes, const char *needle) {
    char path[4200];
    path_in(path, sizeof path, "bad.safetensors");
    if (declared == UINT64_MAX) declared = strlen(header);
    write_raw(path, declared, header, data_bytes);
    rl_safetensors st;
    rl_error err = {0, ""};
    int rc = rl_safetensors_read(path, &st, &err);
    CHECK_MSG(rc != 0, "%s: accepted", label);
    CHECK_MSG(strstr(err.msg, path) != NULL, "%s: message lacks the file: %s", label, err.msg);
    CHECK_MSG(!needle || strstr(err.msg, needle), "%s: message '%s' lacks '%s'", label, err.msg,
              needle);
    CHECK(st.count == 0 && st.tensors == NULL && st.storage == NULL);
}

static void test_corrupt(void) {
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    const size_t A = UINT64_MAX; /* "declared length = actual header length" */
    /* Sanity: the well-formed file is accepted. */
    {
        char path[4200];
        path_in(path, sizeof path, "good.safetensors");
        write_raw(path, strlen(ok), ok, 8);
        rl_safetensors st;
        rl_error err = {0, ""};
        CHECK_MSG(rl_safetensors_read(path, &st, &err) == 0, "%s", err.msg);
        rl_safetensors_free(&st);
    }
    expect_refused("truncated data", A, ok, 4, "past");
    expect_refused("header length > file", 1000, ok, 8, "exceeds the file size");
    expect_refused("huge header length", (uint64_t)1 << 62, ok, 8, "exceeds");
    expect_refused("bad JSON", A, "{\"a\":{\"dtype\":\"F32\",", 8, "JSON");
    expect_refused("not an object", A, "[1,2,3]", 0, "JSON");
    expect_refused("offsets out of range", A,
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 8, NULL);
    expect_refused("overlap", A,
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                   12, "overlaps");
    expect_refused("gap", A,
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "gap");
    expect_refused("trailing bytes", A, ok, 12, "trailing");
    expect_refused("wrong size", A,
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
                   "needs 12");
    expect_refused("shape overflow", A,
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                   "\"data_offsets\":[0,8]}}",
                   8, "overflow");
    expect_refused("negative dim", A,
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
                   "shape");
    expect_refused("fractional offset", A,
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.5]}}", 8,
                   "data_offsets");
    expect_refused("unknown dtype", A,
                   "{\"a\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,8]}}", 8,
                   "BF16");
    expect_refused("missing field", A, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, NULL);
    expect_refused("metadata not strings", A,
                   "{\"__metadata__\":{\"k\":3},"
                   "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                   8, "metadata");
    expect_refused("duplicate name", A,
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                   8, "twice");
    expect_refused("empty header", 0, "", 0, "JSON");
    {
        char path[4200];
        path_in(path, sizeof path, "tiny.safetensors");
        CHECK_OK(rl_write_file_atomic(path, "abc", 3, NULL));
        rl_safetensors st;
        rl_error err = {0, ""};
        CHECK(rl_safetensors_read(path, &st, &err) == RL_EFORMAT);
        path_in(path, sizeof path, "does-not-exist.safetensors");
        CHECK(rl_safetensors_read(path, &st, &err) == RL_EIO);
    }
}

static void test_unet_checkpoint(void) {
    char path[4200];
    path_in(path, sizeof path, "unet.safetensors");
    rl_unet_config cfg = rl_unet_default_config();
    cfg.in_channels = 2;
    cfg.num_classes = 3;
    cfg.depth = 2;
    cfg.base_width = 4;
    cfg.norm = RL_NORM_BATCH;
    rl_unet *net = NULL;
    rl_error err = {0, ""};
    CHECK_OK(rl_unet_create(&net, &cfg, 7, &err));
    if (!net) return;
    /* Make the buffers and counters non-trivial so the round trip means something. */
    int count = 0;
    const rl_unet_tensor *table = rl_unet_tensors(net, &count);
    for (int i = 0; i < count; i++) {
        if (table[i].kind == RL_UNET_BUFFER) ((float *)rl_unet_tensor_data(net, &table[i]))[0] = 0.5f + i;
        if (table[i].kind == RL_UNET_COUNTER) ((int64_t *)rl_unet_tensor_data(net, &table[i]))[0] = i;
    }
    rl_kv extra[1] = {{"reflabel.classes", "[\"bg\",\"liver\",\"tumor\"]"}};
    CHECK_OK(rl_unet_save(net, path, extra, 1, &err));
    rl_unet *back = NULL;
    rl_safetensors meta;
    int rc = rl_unet_load(path, &back, &meta, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc) {
        rl_unet_free(net);
        return;
    }
    const rl_unet_config *bc = rl_unet_get_config(back);
    CHECK(bc->in_channels == 2 && bc->num_classes == 3 && bc->depth == 2 &&
          bc->base_width == 4 && bc->norm == RL_NORM_BATCH && bc->leaky_slope == cfg.leaky_slope);
    CHECK(rl_unet_param_count(back) == rl_unet_param_count(net));
    CHECK(!memcmp(rl_unet_params(back), rl_unet_params(net),
                  rl_unet_param_count(net) * sizeof(float)));
    for (int i = 0; i < count; i++) {
        const rl_unet_tensor *t = rl_unet_find_tensor(back, table[i].name);
        size_t bytes = table[i].numel * (table[i].kind == RL_UNET_COUNTER ? 8 : 4);
        CHECK_MSG(t && !memcmp(rl_unet_tensor_data(back, t), rl_unet_tensor_data(net, &table[i]),
                               bytes),
                  "%s", table[i].name);
    }
    const char *classes = rl_safetensors_metadata(&meta, "reflabel.classes");
    CHECK(classes && !strcmp(classes, extra[0].value));
    rl_safetensors_free(&meta);
    rl_unet_free(back);

    /* A file whose tensors do not fit the stored architecture is refused. */
    rl_safetensors st;
    CHECK_OK(rl_safetensors_read(path, &st, &err));
    rl_kv bad_meta[2] = {{"reflabel.format", RL_UNET_FORMAT},
                         {"reflabel.config",
                          "{\"in_channels\":2,\"num_classes\":3,\"depth\":2,\"base_width\":8,"
                          "\"max_width\":320,\"norm\":\"batch\",\"groups\":8,"
                          "\"leaky_slope\":0.01,\"bn_momentum\":0.1,\"norm_eps\":1e-5}"}};
    char path2[4200];
    path_in(path2, sizeof path2, "mismatch.safetensors");
    CHECK_OK(rl_safetensors_write(path2, st.tensors, st.count, bad_meta, 2, &err));
    rc = rl_unet_load(path2, &back, NULL, &err);
    CHECK_MSG(rc == RL_EFORMAT && strstr(err.msg, "wrong dtype or shape"), "%s", err.msg);
    CHECK(back == NULL);
    /* Dropping one tensor is noticed by name. */
    CHECK_OK(rl_safetensors_write(path2, st.tensors, st.count - 1, st.metadata,
                                  st.metadata_count, &err));
    rc = rl_unet_load(path2, &back, NULL, &err);
    CHECK_MSG(rc == RL_EFORMAT && strstr(err.msg, "missing tensor"), "%s", err.msg);
    /* Not a reflabel file at all. */
    CHECK_OK(rl_safetensors_write(path2, st.tensors, st.count, NULL, 0, &err));
    rc = rl_unet_load(path2, &back, NULL, &err);
    CHECK_MSG(rc == RL_EFORMAT && strstr(err.msg, "not a reflabel"), "%s", err.msg);
    rl_safetensors_free(&st);
    rl_unet_free(net);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", rl_test_tmpdir("checkpoint"));
    test_round_trip();
    test_corrupt();
    test_unet_checkpoint();
    return rl_test_report("test_checkpoint");
}
