/* Optimizers, schedule and clipping: hand-computed single steps, the
 * per-span weight-decay switch, schedule end points, clipping semantics and
 * argument validation. (Trajectories against torch.optim are in
 * tests/oracle/test_torch_optim.py.) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/optim.h"
#include "testutil.h"

static int close_to(double a, double b, double tol) { return fabs(a - b) <= tol * (1 + fabs(b)); }

static void test_adamw_first_step(void) {
    rl_optim_config c = rl_optim_default_config(RL_OPTIM_ADAMW);
    c.weight_decay = 0.1f;
    rl_optim_span spans[2] = {{0, 2, 1}, {2, 2, 0}};
    rl_optimizer *opt = NULL;
    CHECK_OK(rl_optim_create(&opt, &c, 4, spans, 2, NULL));
    if (!opt) return;
    float p[4] = {1, -2, 3, 0.5f};
    const float g[4] = {0.5f, -0.25f, 0, 2};
    const float lr = 0.01f;
    rl_optim_step(opt, p, g, lr);
    /* Step 1: m_hat = g, v_hat = g^2, so the update is lr * g / (|g| + eps). */
    CHECK(close_to(p[0], 1 * (1 - lr * 0.1) - lr * 1, 1e-6));
    CHECK(close_to(p[1], -2 * (1 - lr * 0.1) + lr * 1, 1e-6));
    CHECK(p[2] == 3.0f); /* no decay in this span and a zero gradient */
    CHECK(close_to(p[3], 0.5 - lr, 1e-6));
    CHECK(rl_optim_steps(opt) == 1);
    CHECK(rl_optim_state_count(opt) == 2);
    const char *name = NULL;
    float *m = rl_optim_state(opt, 0, &name);
    CHECK(m && name && !strcmp(name, "exp_avg") && close_to(m[3], 0.2, 1e-6));
    float *v = rl_optim_state(opt, 1, &name);
    CHECK(v && !strcmp(name, "exp_avg_sq") && close_to(v[3], 0.004, 1e-5));
    CHECK(rl_optim_state(opt, 2, NULL) == NULL);
    rl_optim_free(opt);
}

static void test_sgd_nesterov(void) {
    rl_optim_config c = rl_optim_default_config(RL_OPTIM_SGD);
    c.momentum = 0.9f;
    c.weight_decay = 0.5f;
    rl_optim_span span = {0, 1, 1};
    rl_optimizer *opt = NULL;
    CHECK_OK(rl_optim_create(&opt, &c, 1, &span, 1, NULL));
    if (!opt) return;
    float p = 2.0f;
    const float g = 1.0f, lr = 0.1f;
    /* d = g + wd p = 2; buf = 2; nesterov d = 2 + 0.9 * 2 = 3.8; p = 2 - 0.38. */
    rl_optim_step(opt, &p, &g, lr);
    CHECK(close_to(p, 1.62, 1e-6));
    /* d = 1 + 0.81 = 1.81; buf = 0.9 * 2 + 1.81 = 3.61; d = 1.81 + 3.249 = 5.059. */
    rl_optim_step(opt, &p, &g, lr);
    CHECK(close_to(p, 1.62 - 0.5059, 1e-6));
    const char *name = NULL;
    float *buf = rl_optim_state(opt, 0, &name);
    CHECK(buf && !strcmp(name, "momentum_buffer") && close_to(buf[0], 3.61, 1e-6));
    rl_optim_free(opt);
}

static void test_invalid(void) {
    rl_optimizer *opt = NULL;
    rl_error err = {0, ""};
    rl_optim_config c = rl_optim_default_config(RL_OPTIM_SGD);
    c.momentum = 0;
    c.nesterov = 1;
    CHECK(rl_optim_create(&opt, &c, 4, NULL, 0, &err) == RL_EINVAL && opt == NULL);
    CHECK(strstr(err.msg, "Nesterov") != NULL);
    c = rl_optim_default_config(RL_OPTIM_ADAMW);
    c.beta2 = 1.0f;
    CHECK(rl_optim_create(&opt, &c, 4, NULL, 0, &err) == RL_EINVAL);
    c = rl_optim_default_config(RL_OPTIM_ADAMW);
    rl_optim_span span = {2, 3, 1};
    CHECK(rl_optim_create(&opt, &c, 4, &span, 1, &err) == RL_EINVAL);
    CHECK(strstr(err.msg, "exceeds") != NULL);
}

static void test_schedule(void) {
    rl_lr_schedule s = {RL_SCHEDULE_POLY, 1.0, 0.01, 10, 110, 0.9};
    CHECK(rl_lr_at(&s, 0) == 0.0);
    CHECK(close_to(rl_lr_at(&s, 5), 0.5, 1e-12));
    CHECK(close_to(rl_lr_at(&s, 10), 1.0, 1e-12));
    CHECK(close_to(rl_lr_at(&s, 60), 0.01 + 0.99 * pow(0.5, 0.9), 1e-12));
    CHECK(close_to(rl_lr_at(&s, 110), 0.01, 1e-12));
    CHECK(close_to(rl_lr_at(&s, 500), 0.01, 1e-12)); /* clamped past the end */
    int decreasing = 1;
    for (int t = 11; t <= 110; t++) decreasing &= rl_lr_at(&s, t) < rl_lr_at(&s, t - 1);
    CHECK(decreasing);
    s.kind = RL_SCHEDULE_COSINE;
    CHECK(close_to(rl_lr_at(&s, 60), 0.505, 1e-12));
    CHECK(close_to(rl_lr_at(&s, 110), 0.01, 1e-12));
    s.kind = RL_SCHEDULE_CONSTANT;
    CHECK(rl_lr_at(&s, 100) == 1.0);
    s.warmup_steps = 0;
    s.kind = RL_SCHEDULE_POLY;
    CHECK(rl_lr_at(&s, 0) == 1.0);
}

static void test_clip(void) {
    float g[4] = {3, 4, 0, 0};
    double norm = rl_clip_grad_norm(g, 4, 10.0);
    CHECK(close_to(norm, 5.0, 1e-12));
    CHECK(g[0] == 3 && g[1] == 4); /* under the limit: untouched */
    norm = rl_clip_grad_norm(g, 4, 1.0);
    CHECK(close_to(norm, 5.0, 1e-12));
    CHECK(close_to(sqrt((double)g[0] * g[0] + (double)g[1] * g[1]), 1.0, 1e-5));
    CHECK(close_to(g[0] / g[1], 0.75, 1e-6)); /* direction kept */
}

static void test_unet_spans(void) {
    rl_unet_config cfg = rl_unet_default_config();
    cfg.depth = 1;
    cfg.base_width = 4;
    rl_unet *net = NULL;
    CHECK_OK(rl_unet_create(&net, &cfg, 1, NULL));
    if (!net) return;
    rl_optim_span *spans = NULL;
    int count = 0;
    CHECK_OK(rl_optim_spans_from_unet(net, &spans, &count, NULL));
    int tensors = 0;
    const rl_unet_tensor *table = rl_unet_tensors(net, &tensors);
    size_t covered = 0;
    int decayed = 0, k = 0;
    for (int i = 0; i < tensors; i++) {
        if (table[i].kind != RL_UNET_PARAM) continue;
        int is_weight = table[i].ndim == 4;
        CHECK_MSG(spans[k].weight_decay == is_weight, "%s", table[i].name);
        decayed += spans[k].weight_decay;
        covered += spans[k].count;
        k++;
    }
    CHECK(k == count && covered == rl_unet_param_count(net));
    CHECK(decayed > 0 && decayed < count);
    free(spans);
    rl_unet_free(net);
}

int main(void) {
    test_adamw_first_step();
    test_sgd_nesterov();
    test_invalid();
    test_schedule();
    test_clip();
    test_unet_spans();
    return rl_test_report("test_optim");
}
