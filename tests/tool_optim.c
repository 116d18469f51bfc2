/* Oracle driver for tests/oracle/test_torch_optim.py: runs an optimizer with
 * a schedule and gradient clipping over seeded gradients and records the
 * trajectory.
 *
 * usage: tool_optim OUTDIR adamw|sgd poly|cosine
 * Parameters: 50 floats in three spans, [0, 20) and [30, 50) decayed,
 * [20, 30) not. Files: init.npy (50), grads.npy (steps, 50), params.npy
 * (steps, 50: after each step), lr.npy and norm.npy (steps, float64). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/optim.h"
#include "testutil.h"

enum { N = 50, STEPS = 20, WARMUP = 4 };

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: tool_optim OUTDIR adamw|sgd poly|cosine\n");
        return 2;
    }
    const char *dir = argv[1];
    int adamw = !strcmp(argv[2], "adamw");
    rl_optim_config cfg = rl_optim_default_config(adamw ? RL_OPTIM_ADAMW : RL_OPTIM_SGD);
    cfg.weight_decay = adamw ? 0.05f : 1e-3f;
    cfg.momentum = 0.9f;
    rl_lr_schedule sched = {!strcmp(argv[3], "poly") ? RL_SCHEDULE_POLY : RL_SCHEDULE_COSINE,
                            adamw ? 1e-2 : 0.1, 1e-4, WARMUP, STEPS, 0.9};
    const double max_norm = 1.0;
    rl_optim_span spans[3] = {{0, 20, 1}, {20, 10, 0}, {30, 20, 1}};
    rl_optimizer *opt = NULL;
    rl_error err = {0, ""};
    if (rl_optim_create(&opt, &cfg, N, spans, 3, &err)) {
        fprintf(stderr, "tool_optim: %s\n", err.msg);
        return 1;
    }
    static float params[N], init[N], grads[STEPS][N], clipped[N], traj[STEPS][N];
    static double lrs[STEPS], norms[STEPS];
    rl_rng rng;
    rl_rng_seed(&rng, 5, 3);
    for (int i = 0; i < N; i++) init[i] = params[i] = rl_rng_normal(&rng);
    for (int t = 0; t < STEPS; t++) {
        /* Growing gradients: early steps stay under max_norm, later ones are clipped. */
        float scale = 0.02f * (float)(1 + t);
        for (int i = 0; i < N; i++) grads[t][i] = scale * rl_rng_normal(&rng);
        memcpy(clipped, grads[t], sizeof clipped);
        norms[t] = rl_clip_grad_norm(clipped, N, max_norm);
        lrs[t] = rl_lr_at(&sched, t);
        rl_optim_step(opt, params, clipped, (float)lrs[t]);
        memcpy(traj[t], params, sizeof params);
    }
    char path[4200];
    int one[1] = {N}, two[2] = {STEPS, N}, steps[1] = {STEPS};
    int rc = 0;
    snprintf(path, sizeof path, "%s/init.npy", dir);
    rc |= rl_npy_write(path, init, "<f4", one, 1);
    snprintf(path, sizeof path, "%s/grads.npy", dir);
    rc |= rl_npy_write(path, grads, "<f4", two, 2);
    snprintf(path, sizeof path, "%s/params.npy", dir);
    rc |= rl_npy_write(path, traj, "<f4", two, 2);
    snprintf(path, sizeof path, "%s/lr.npy", dir);
    rc |= rl_npy_write(path, lrs, "<f8", steps, 1);
    snprintf(path, sizeof path, "%s/norm.npy", dir);
    rc |= rl_npy_write(path, norms, "<f8", steps, 1);
    rl_optim_free(opt);
    if (rc) fprintf(stderr, "tool_optim: cannot write the .npy files in %s\n", dir);
    return rc ? 1 : 0;
}
