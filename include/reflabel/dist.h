/* reflabel/dist.h - several processes on one task, through MPI.
 *
 * At the call site (a command's entry point):
 *
 *   rl_dist_init(&argc, &argv, &err);      // once, before anything else
 *   for (int i = rl_dist_rank(); i < n; i += rl_dist_size()) ...  // this rank's share
 *   rc = rl_dist_agree(rc, &err);          // every rank learns of any rank's failure
 *   rl_dist_finalize();
 *
 * A process started by an MPI launcher (mpirun, mpiexec, Slurm's srun) is
 * one rank of the launch's world; any other process, and every process of a
 * build without MPI (RL_HAVE_MPI undefined), is rank 0 of 1, and then every
 * call below is a no-op that succeeds. MPI is initialised only under a
 * launcher, so a plain run never starts MPI's runtime.
 *
 * Failures must not hang: a rank that fails keeps taking part in the
 * collectives its peers reach (rl_dist_agree in the place of the work it
 * could not do), and every rank then returns the same error, the lowest
 * failing rank's, so that one line explains the stop wherever it is read.
 */
#ifndef REFLABEL_DIST_H
#define REFLABEL_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "reflabel/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether this build can run under MPI. */
int rl_dist_available(void);
/* Joins the launcher's world when there is one (MPI_Init_thread, funneled:
 * only the main thread calls MPI; OpenMP threads never do). Idempotent. */
int rl_dist_init(int *argc, char ***argv, rl_error *err);
/* MPI_Finalize when rl_dist_init started MPI. */
void rl_dist_finalize(void);
int rl_dist_rank(void);
int rl_dist_size(void);
/* Ranks of this launch on this node (1 without MPI): the CLI divides the
 * cores among them. */
int rl_dist_local_size(void);

/* Collective. Each rank passes its own result (0 or an rl_code, with err
 * filled); every rank gets the lowest failing rank's code and message
 * ("rank R: ..." when R is not this rank), or 0 when all succeeded. */
int rl_dist_agree(int rc, rl_error *err);
/* Collective, in place: the element-wise sum over the ranks. The float sum
 * is bit for bit the same on every rank (each element is added up once and
 * copied); the others are exact. */
int rl_dist_sum_f32(float *buf, size_t n, rl_error *err);
int rl_dist_sum_f64(double *buf, size_t n, rl_error *err);
int rl_dist_sum_i64(int64_t *buf, size_t n, rl_error *err);
/* Collective, in place: buf holds bytes[0] bytes of rank 0, then bytes[1]
 * of rank 1, ...; each rank fills in its own part, and all get every part
 * (each part below 2 GiB). */
int rl_dist_gather(void *buf, const size_t *bytes, rl_error *err);
/* Collective: root's bytes into every rank's buf. */
int rl_dist_broadcast(void *buf, size_t bytes, int root, rl_error *err);

/* 64-bit FNV-1a of bytes, continuing from h (RL_DIST_HASH_START to begin):
 * what the ranks compare, through rank 0's broadcast, to learn that they
 * read the same data or hold the same weights without sending them. */
#define RL_DIST_HASH_START UINT64_C(14695981039346656037)
uint64_t rl_dist_hash(uint64_t h, const void *data, size_t bytes);

#ifdef __cplusplus
}
#endif
#endif
