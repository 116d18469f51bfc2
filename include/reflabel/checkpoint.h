/* reflabel/checkpoint.h - safetensors files and U-Net checkpoints.
 *
 * The format (https://github.com/huggingface/safetensors):
 *   u64 little-endian N | N bytes of JSON header | raw little-endian data
 * The header maps each tensor name to {"dtype", "shape", "data_offsets":
 * [begin, end]} (offsets relative to the start of the data) and may hold a
 * "__metadata__" object of string -> string. We pad the header with spaces to
 * a multiple of 8 and lay the tensors out without gaps, as the format asks.
 * See docs/CHECKPOINTS.md for the keys reflabel stores.
 */
#ifndef REFLABEL_CHECKPOINT_H
#define REFLABEL_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "reflabel/core.h"
#include "reflabel/unet.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rl_dtype {
    RL_DTYPE_F32 = 0,
    RL_DTYPE_I64
} rl_dtype;

#define RL_ST_MAX_DIMS 8
/* Header limit: refuses to parse anything larger (the format's own limit). */
#define RL_ST_MAX_HEADER (100u << 20)

typedef struct rl_st_tensor {
    const char *name;
    rl_dtype dtype;
    int ndim;
    int64_t shape[RL_ST_MAX_DIMS];
    void *data; /* numel * dtype size bytes */
} rl_st_tensor;

typedef struct rl_kv {
    const char *key;
    const char *value;
} rl_kv;

/* Writes the tensors, in the order given, atomically. */
int rl_safetensors_write(const char *path, const rl_st_tensor *tensors, int count,
                         const rl_kv *metadata, int metadata_count, rl_error *err);

/* A file read back: names, metadata and data are owned by it. */
typedef struct rl_safetensors {
    int count;
    rl_st_tensor *tensors; /* in the order of their data offsets */
    int metadata_count;
    rl_kv *metadata;
    void *storage; /* one allocation behind every tensor's data */
} rl_safetensors;

/* Validates the whole header (size, JSON, dtypes, shapes, offsets) before
 * allocating the data; any problem gives one error line naming the file. */
int rl_safetensors_read(const char *path, rl_safetensors *out, rl_error *err);
void rl_safetensors_free(rl_safetensors *st);
const rl_st_tensor *rl_safetensors_find(const rl_safetensors *st, const char *name);
const char *rl_safetensors_metadata(const rl_safetensors *st, const char *key);
size_t rl_dtype_size(rl_dtype dtype);

/* ---- U-Net checkpoints ---------------------------------------------------- *
 * Metadata keys written by rl_unet_save:
 *   "reflabel.format": "unet-v1"
 *   "reflabel.config": the rl_unet_config as a JSON object
 * plus the caller's extra keys (class names, training settings). */
#define RL_UNET_FORMAT "unet-v1"

int rl_unet_save(const rl_unet *net, const char *path, const rl_kv *extra, int extra_count,
                 rl_error *err);
/* Re-creates the network from the stored config and checks that every tensor
 * is present with its shape and dtype and nothing else is. If metadata is not
 * NULL it receives the whole file (tensors included) for reading extra keys;
 * free it with rl_safetensors_free. */
int rl_unet_load(const char *path, rl_unet **net, rl_safetensors *metadata, rl_error *err);

/* The config as a JSON object string (malloc'ed) and back. */
char *rl_unet_config_to_json(const rl_unet_config *cfg);
int rl_unet_config_from_json(const char *json, rl_unet_config *cfg, rl_error *err);

#ifdef __cplusplus
}
#endif
#endif
