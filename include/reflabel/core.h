/* reflabel/core.h - errors, seeded RNG, arena memory, tensors, threads, BLAS.
 *
 * Conventions used across the whole library:
 *  - A function that can fail returns 0 on success or an rl_code, and fills
 *    the caller's rl_error (which may be NULL) with one human-readable line.
 *    The library never prints, never calls exit() and never aborts on input.
 *  - Tensors are float32, NCHW, contiguous.
 *  - No global mutable state, except the process-wide thread count that
 *    OpenMP and OpenBLAS keep themselves (rl_set_threads), the
 *    convolution backend (layers.h: rl_set_conv_backend) and the MPI world
 *    this process joined (reflabel/dist.h).
 */
#ifndef REFLABEL_CORE_H
#define REFLABEL_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ------------------------------------------------------------ */

typedef enum rl_code {
    RL_OK = 0,
    RL_EINVAL,       /* bad argument or option */
    RL_EIO,          /* file missing, unreadable or unwritable */
    RL_EFORMAT,      /* file readable but malformed */
    RL_ENOMEM,       /* allocation failed */
    RL_ERANGE,       /* value or size outside the supported limits */
    RL_ENONFINITE,   /* NaN or infinity where a finite number is required */
    RL_EUNSUPPORTED, /* valid input that this version does not handle */
    RL_EINTERRUPTED  /* stopped by a signal */
} rl_code;

#define RL_ERROR_MSG_MAX 512

typedef struct rl_error {
    int code;
    char msg[RL_ERROR_MSG_MAX];
} rl_error;

/* Records code and a printf-style message in err (if not NULL); returns code
 * so that a failing path reads `return rl_error_set(err, RL_EIO, "...")`. */
int rl_error_set(rl_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes the message already in err with "prefix: " (keeps the code). */
int rl_error_prefix(rl_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *rl_code_name(int code);

/* ---- seeded random numbers (PCG32) ------------------------------------- */

typedef struct rl_rng {
    uint64_t state;
    uint64_t inc;
} rl_rng;

/* Same (seed, stream) -> same sequence on every platform. */
void rl_rng_seed(rl_rng *rng, uint64_t seed, uint64_t stream);
uint32_t rl_rng_u32(rl_rng *rng);
/* Uniform integer in [0, n), unbiased; n > 0. */
uint32_t rl_rng_below(rl_rng *rng, uint32_t n);
/* Uniform float in [0, 1). */
float rl_rng_uniform(rl_rng *rng);
/* Standard normal (Box-Muller, no cached second value: state is just the rng). */
float rl_rng_normal(rl_rng *rng);
/* Fisher-Yates shuffle of an int array. */
void rl_rng_shuffle(rl_rng *rng, int *values, int n);

/* ---- arena ------------------------------------------------------------- *
 * One allocation serves a whole graph. Usage is two passes over the same
 * planning code: first with a measuring arena (rl_arena_measure: hands out
 * NULL but counts bytes), then with a real one of exactly that size. */

#define RL_ARENA_ALIGN 64

typedef struct rl_arena {
    unsigned char *base; /* NULL for a measuring arena */
    size_t size;
    size_t used;
} rl_arena;

void rl_arena_measure(rl_arena *arena);
int rl_arena_init(rl_arena *arena, size_t bytes, rl_error *err);
/* 64-byte aligned, zero-filled. Returns NULL in a measuring arena, or when
 * the arena is full (used still advances, so the overflow is visible). */
void *rl_arena_alloc(rl_arena *arena, size_t bytes);
float *rl_arena_floats(rl_arena *arena, size_t count);
void rl_arena_free(rl_arena *arena);

/* ---- tensors ----------------------------------------------------------- */

typedef struct rl_tensor {
    float *data;
    int n, c, h, w;
} rl_tensor;

static inline size_t rl_tensor_numel(const rl_tensor *t) {
    return (size_t)t->n * (size_t)t->c * (size_t)t->h * (size_t)t->w;
}
rl_tensor rl_tensor_from_arena(rl_arena *arena, int n, int c, int h, int w);

/* ---- threads and BLAS --------------------------------------------------- */

/* Sets the thread count of both OpenMP and OpenBLAS; n <= 0 means all cores,
 * shared among the ranks of an MPI launch on this node (reflabel/dist.h). */
void rl_set_threads(int n);
int rl_get_threads(void);

/* C = alpha * op(A) * op(B) + beta * C, row-major, op(X) = X or X^T. */
void rl_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
              const float *a, int lda, const float *b, int ldb, float beta,
              float *c, int ldc);

/* Peak resident set size of this process in bytes (0 if unknown). */
size_t rl_peak_rss_bytes(void);
/* Monotonic clock in seconds. */
double rl_now_seconds(void);


/* ---- files that appear complete or not at all -------------------------- *
 * Every file reflabel writes goes to a temporary name in the destination
 * folder ("<dir>/.<name>.tmp.<pid>"), is flushed and fsync'ed, then renamed
 * over the final name. A killed writer leaves at most a hidden temporary. */
typedef struct rl_atomic_file {
    void *fp; /* FILE*, open for binary writing */
    char tmp_path[4096];
    char final_path[4096];
} rl_atomic_file;

int rl_atomic_open(rl_atomic_file *f, const char *path, rl_error *err);
/* Flushes, fsyncs, closes and renames; on any failure removes the temporary
 * and leaves a previous file at path untouched. */
int rl_atomic_commit(rl_atomic_file *f, rl_error *err);
void rl_atomic_abort(rl_atomic_file *f);
int rl_write_file_atomic(const char *path, const void *data, size_t size, rl_error *err);
/* For writers that must open the file themselves (niftilib): the temporary
 * name for path (keeping its extension, so ".nii.gz" stays gzip), and the
 * fsync + rename that publishes it. */
int rl_temp_path_for(const char *path, char *tmp, size_t tmp_size, rl_error *err);
int rl_publish_file(const char *tmp, const char *path, rl_error *err);
/* Opens path for binary reading, a regular file only: a folder, a FIFO or
 * a device is refused before anything is read. *size is the file's size;
 * the caller closes *fp. */
int rl_open_regular_file(const char *path, FILE **fp, uint64_t *size, rl_error *err);
/* Reads a whole file into a malloc'ed buffer (NUL-terminated for text);
 * refuses files larger than max_bytes. */
int rl_read_file(const char *path, size_t max_bytes, char **data, size_t *size,
                 rl_error *err);
/* mkdir -p */
int rl_make_dirs(const char *path, rl_error *err);

#ifdef __cplusplus
}
#endif
#endif
