/* The machine's FP32 peak, measured (bench_peak.h). */
#include "bench_peak.h"

#include <immintrin.h>
#include <omp.h>

#include "reflabel/core.h"
#include "reflabel/match.h"

/* ---- FP32 peak probe ------------------------------------------------------------ *
 * Each thread runs PEAK_CHAINS independent FMA chains on the widest vectors
 * the CPU has. Ten chains cover an FMA latency of 4-5 cycles on two ports,
 * so the loop is throughput-bound: cores x FMA ports x lanes x 2 flops x the
 * clock the cores really run at under this load (AVX-512 licence included),
 * which a spec sheet does not give. acc = acc * m + c with m just under 1
 * stays finite and normal. */
enum { PEAK_CHAINS = 10 };

__attribute__((target("avx512f"))) static float peak_chains_avx512(long iters) {
    __m512 a[PEAK_CHAINS];
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
    for (int i = 0; i < PEAK_CHAINS; i++) a[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
#pragma GCC unroll 10
        for (int i = 0; i < PEAK_CHAINS; i++) a[i] = _mm512_fmadd_ps(a[i], m, c);
    __m512 s = a[0];
    for (int i = 1; i < PEAK_CHAINS; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float peak_chains_avx2(long iters) {
    __m256 a[PEAK_CHAINS];
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
    for (int i = 0; i < PEAK_CHAINS; i++) a[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
#pragma GCC unroll 10
        for (int i = 0; i < PEAK_CHAINS; i++) a[i] = _mm256_fmadd_ps(a[i], m, c);
    float out[8];
    __m256 s = a[0];
    for (int i = 1; i < PEAK_CHAINS; i++) s = _mm256_add_ps(s, a[i]);
    _mm256_storeu_ps(out, s);
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

double cli_peak_gflops(int threads, int lanes) {
    if (lanes == 16 ? !rl_match_kernel_supported(RL_KERNEL_AVX512)
                    : !rl_match_kernel_supported(RL_KERNEL_AVX2))
        return 0.0;
    const long iters = 20L * 1000 * 1000;
    double best = 0.0;
    volatile float sink = 0.0f;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = rl_now_seconds();
#pragma omp parallel num_threads(threads)
        {
            float r = lanes == 16 ? peak_chains_avx512(iters) : peak_chains_avx2(iters);
#pragma omp atomic
            sink += r;
        }
        double t = rl_now_seconds() - t0;
        double gf = (double)threads * (double)iters * PEAK_CHAINS * lanes * 2.0 / t * 1e-9;
        if (gf > best) best = gf;
    }
    (void)sink;
    return best;
}
