/* PCG32 (O'Neill, pcg-random.org): small state, good statistics, and the
 * same stream on every platform, which is what reproducible runs need. */
#include "reflabel/core.h"

#include <math.h>

void rl_rng_seed(rl_rng *rng, uint64_t seed, uint64_t stream) {
    rng->state = 0;
    rng->inc = (stream << 1u) | 1u;
    (void)rl_rng_u32(rng);
    rng->state += seed;
    (void)rl_rng_u32(rng);
}

uint32_t rl_rng_u32(rl_rng *rng) {
    uint64_t old = rng->state;
    rng->state = old * 6364136223846793005ULL + rng->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31));
}

uint32_t rl_rng_below(rl_rng *rng, uint32_t n) {
    /* Rejection of the low values that would bias the modulo. */
    uint32_t threshold = (uint32_t)(-n) % n;
    for (;;) {
        uint32_t r = rl_rng_u32(rng);
        if (r >= threshold) return r % n;
    }
}

float rl_rng_uniform(rl_rng *rng) {
    return (float)(rl_rng_u32(rng) >> 8) * (1.0f / 16777216.0f);
}

float rl_rng_normal(rl_rng *rng) {
    /* u1 in (0,1] so that log() is finite. */
    double u1 = ((double)rl_rng_u32(rng) + 1.0) / 4294967296.0;
    double u2 = (double)rl_rng_u32(rng) / 4294967296.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void rl_rng_shuffle(rl_rng *rng, int *values, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rl_rng_below(rng, (uint32_t)i + 1);
        int t = values[i];
        values[i] = values[j];
        values[j] = t;
    }
}
