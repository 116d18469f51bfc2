/* Core: the RNG is reproducible and uniform enough, the arena measures and
 * aligns, errors carry their message. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void test_rng(void) {
    rl_rng a, b;
    rl_rng_seed(&a, 42, 7);
    rl_rng_seed(&b, 42, 7);
    int same = 1;
    for (int i = 0; i < 1000; i++) same &= rl_rng_u32(&a) == rl_rng_u32(&b);
    CHECK(same);
    rl_rng_seed(&b, 43, 7);
    CHECK(rl_rng_u32(&a) != rl_rng_u32(&b));
    double sum = 0, sq = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) {
        float z = rl_rng_normal(&a);
        sum += z;
        sq += (double)z * z;
    }
    CHECK_MSG(fabs(sum / n) < 0.01, "normal mean %g", sum / n);
    CHECK_MSG(fabs(sq / n - 1) < 0.02, "normal var %g", sq / n);
    int hist[10] = {0};
    for (int i = 0; i < n; i++) hist[rl_rng_below(&a, 10)]++;
    for (int i = 0; i < 10; i++) CHECK(abs(hist[i] - n / 10) < n / 100);
    int perm[50], seen[50] = {0};
    for (int i = 0; i < 50; i++) perm[i] = i;
    rl_rng_shuffle(&a, perm, 50);
    for (int i = 0; i < 50; i++) seen[perm[i]]++;
    for (int i = 0; i < 50; i++) CHECK(seen[i] == 1);
}

static void test_arena(void) {
    rl_arena m;
    rl_arena_measure(&m);
    CHECK(rl_arena_alloc(&m, 10) == NULL);
    (void)rl_arena_floats(&m, 100);
    size_t need = m.used;
    CHECK(need == 64 + 448);
    rl_arena a;
    CHECK_OK(rl_arena_init(&a, need, NULL));
    char *p = rl_arena_alloc(&a, 10);
    float *q = rl_arena_floats(&a, 100);
    CHECK(p && q && ((uintptr_t)q % RL_ARENA_ALIGN) == 0);
    CHECK(q[99] == 0.0f);
    CHECK(rl_arena_alloc(&a, 1) == NULL); /* full */
    rl_arena_free(&a);
}

static void test_error(void) {
    rl_error e = {0, ""};
    CHECK(rl_error_set(&e, RL_EIO, "cannot open %s", "x.png") == RL_EIO);
    rl_error_prefix(&e, "case %d", 3);
    CHECK(strcmp(e.msg, "case 3: cannot open x.png") == 0);
    CHECK(e.code == RL_EIO);
    CHECK(rl_error_set(NULL, RL_EINVAL, "ignored") == RL_EINVAL);
}

static void test_sgemm(void) {
    float a[6] = {1, 2, 3, 4, 5, 6}; /* 2x3 */
    float b[6] = {1, 0, 0, 1, 1, 1}; /* 3x2 */
    float c[4];
    rl_sgemm(0, 0, 2, 2, 3, 1.0f, a, 3, b, 2, 0.0f, c, 2);
    CHECK(c[0] == 4 && c[1] == 5 && c[2] == 10 && c[3] == 11);
}

int main(void) {
    test_rng();
    test_arena();
    test_error();
    test_sgemm();
    return rl_test_report("test_core");
}
