/* Threads, BLAS, clocks and memory readings: the few places that talk to the
 * platform. */
#include "reflabel/core.h"
#include "reflabel/dist.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

void rl_set_threads(int n) {
    /* The default shares the node's cores among the ranks of an MPI launch
     * that run on it; one process each would otherwise oversubscribe them. */
    if (n <= 0) n = omp_get_num_procs() / rl_dist_local_size();
    if (n <= 0) n = 1;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int rl_get_threads(void) { return omp_get_max_threads(); }

void rl_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
              const float *a, int lda, const float *b, int ldb, float beta,
              float *c, int ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb,
                beta, c, ldc);
}

size_t rl_peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (size_t)ru.ru_maxrss * 1024u; /* Linux reports KiB */
}

double rl_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
