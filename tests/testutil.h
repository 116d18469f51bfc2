/* Tiny test harness shared by the C tests: checks that count failures, .npy
 * files for exchanging tensors with the Python oracles, a scratch folder. */
#ifndef RL_TESTUTIL_H
#define RL_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "reflabel/core.h"

extern int rl_test_failures;
extern int rl_test_checks;

#define CHECK(cond)                                                                \
    do {                                                                           \
        rl_test_checks++;                                                          \
        if (!(cond)) {                                                             \
            rl_test_failures++;                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                       \
    do {                                                                           \
        rl_test_checks++;                                                          \
        if (!(cond)) {                                                             \
            rl_test_failures++;                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                          \
            fputc('\n', stderr);                                                   \
        }                                                                          \
    } while (0)

#define CHECK_OK(expr)                                                             \
    do {                                                                           \
        rl_error check_ok_err_ = {0, ""};                                          \
        (void)check_ok_err_;                                                       \
        int check_ok_rc_ = (expr);                                                 \
        rl_test_checks++;                                                          \
        if (check_ok_rc_ != 0) {                                                   \
            rl_test_failures++;                                                    \
            fprintf(stderr, "%s:%d: %s returned %d\n", __FILE__, __LINE__, #expr,  \
                    check_ok_rc_);                                                 \
        }                                                                          \
    } while (0)

/* Prints "N passed, M failed" and returns the process exit status. */
int rl_test_report(const char *name);

/* The convolution backend named by $RL_CONV (im2col | dnnl; unset: the
 * default), for the oracle tools, which the oracle scripts run once per
 * backend. 0 when set; RL_TEST_SKIP when this build lacks it (the scripts
 * skip that backend); 2 for an unknown name. */
#define RL_TEST_SKIP 77
int rl_test_conv_backend_from_env(const char *tool);

/* A fresh folder under $RL_TEST_TMP (or /tmp) for this test; returns its path
 * (static storage, valid until the next call). */
const char *rl_test_tmpdir(const char *name);

/* Relative error ||a - b||_2 / max(||b||_2, tiny): the norm used by every
 * oracle comparison. */
double rl_rel_l2(const float *a, const float *b, size_t n);

/* Fill with uniform values in [lo, hi). */
void rl_fill_uniform(float *x, size_t n, rl_rng *rng, float lo, float hi);

/* .npy version 1.0, little-endian, C order. dtype: "<f4", "<i4", "<u1", "<f8". */
int rl_npy_write(const char *path, const void *data, const char *dtype, const int *shape,
                 int ndim);
/* Reads an .npy file; returns malloc'ed data and fills shape/ndim (ndim <= 8)
 * and the dtype string (at least 8 chars). NULL on error. */
void *rl_npy_read(const char *path, char *dtype, int *shape, int *ndim);

/* Central finite-difference gradient check of a scalar function f(params)
 * against an analytic gradient. Perturbs `count` coordinates chosen from the
 * rng (or all when count >= n). Returns the max over checked coordinates of
 * |analytic - numeric| / max(1, |analytic|, |numeric|) computed in double. */
typedef double (*rl_scalar_fn)(void *ctx);
double rl_gradcheck(rl_scalar_fn f, void *ctx, float *param, const float *analytic,
                    size_t n, size_t count, double eps, rl_rng *rng);

#endif
