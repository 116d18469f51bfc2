/* The FP32 peak of this machine, measured for `bench match` and `bench
 * train` to report each kernel's fraction of it (docs/PERFORMANCE.md). */
#ifndef RL_CLI_BENCH_PEAK_H
#define RL_CLI_BENCH_PEAK_H

/* GFLOP/s of `threads` threads running independent FMA chains on lanes = 16
 * (AVX-512) or 8 (AVX2) floats; the best of 3 runs of 2 x 10^8 FMAs per
 * thread (about 0.04 s at 2.7 GHz). 0 where the CPU lacks those vectors. */
double cli_peak_gflops(int threads, int lanes);

#endif
