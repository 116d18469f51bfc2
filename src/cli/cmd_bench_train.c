/* reflabel bench train: times a full U-Net training step (forward, softmax
 * cross-entropy, backward, AdamW update) on random data and prints one JSON
 * line; with --torch also times the identical PyTorch module
 * (bench/bench_train_torch.py) with the same settings and reports the ratio. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_peak.h"
#include "cli.h"
#include "conv_option.h"
#include "reflabel/loss.h"
#include "reflabel/layers.h"
#include "reflabel/optim.h"
#include "reflabel/unet.h"

static const char *help =
    "usage: reflabel bench train [options]\n"
    "  --batch B      images per step (default 8)\n"
    "  --size S       image side, a multiple of 2^depth (default 128)\n"
    "  --width W      channels of the first level, 1..320 (default 16; deeper\n"
    "                 levels double it up to 320)\n"
    "  --depth D      number of poolings, 1..6 (default 4)\n"
    "  --classes K    output classes (default 8)\n"
    "  --norm N       group | batch | none (default group)\n"
    "  --threads T    threads (default 2)\n"
    "  --steps N      timed steps after the warm-up (default 10)\n"
    "  --warmup N     untimed steps first (default 2)\n"
    "  --conv B       convolution backend: im2col | dnnl (default: RL_CONV, else\n"
    "                 dnnl in builds with oneDNN, im2col without)\n"
    "  --torch        also time PyTorch on the same settings\n"
    "  --no-peak      skip the FP32 peak probe\n"
    "Prints one JSON line: the median ms per step and its phases, images/s,\n"
    "peak RSS, and with --torch PyTorch's numbers and the C / torch ratio; the\n"
    "convolutions' GFLOP per step (3 x the forward pass's) and, against the\n"
    "measured FP32 peak (bench match's probe), each side's fraction of it.\n";

typedef struct bench_opts {
    int batch, size, width, depth, classes, threads, steps, warmup, torch, no_peak;
    rl_norm_kind norm;
} bench_opts;

static int parse_opts(int argc, char **argv, bench_opts *o) {
    const char *cmd = "bench train";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            return -1;
        } else if (!strcmp(a, "--no-peak")) {
            o->no_peak = 1;
            continue;
        } else if (!strcmp(a, "--torch")) {
            o->torch = 1;
            continue;
        } else if (!strcmp(a, "--batch")) rc = cli_parse_int(cmd, a, v, 1, 4096, &o->batch);
        else if (!strcmp(a, "--size")) rc = cli_parse_int(cmd, a, v, 2, 8192, &o->size);
        else if (!strcmp(a, "--width")) rc = cli_parse_int(cmd, a, v, 1, 320, &o->width);
        else if (!strcmp(a, "--depth")) rc = cli_parse_int(cmd, a, v, 1, RL_UNET_MAX_DEPTH, &o->depth);
        else if (!strcmp(a, "--classes")) rc = cli_parse_int(cmd, a, v, 1, 1024, &o->classes);
        else if (!strcmp(a, "--threads")) rc = cli_parse_int(cmd, a, v, 1, 1024, &o->threads);
        else if (!strcmp(a, "--steps")) rc = cli_parse_int(cmd, a, v, 1, 100000, &o->steps);
        else if (!strcmp(a, "--warmup")) rc = cli_parse_int(cmd, a, v, 0, 100000, &o->warmup);
        else if (!strcmp(a, "--conv")) {
            if (!v) return cli_usage_error(cmd, "%s needs a value", a);
            if ((rc = cli_set_conv_backend("bench train --conv", v))) return rc;
        } else if (!strcmp(a, "--norm")) {
            int kind = v ? rl_norm_from_name(v) : -1;
            if (kind < 0) return cli_usage_error(cmd, "--norm expects group, batch or none");
            o->norm = (rl_norm_kind)kind;
        } else {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        }
        if (rc) return rc;
        i++;
    }
    if (o->size % (1 << o->depth))
        return cli_usage_error(cmd, "--size %d is not a multiple of 2^depth = %d", o->size,
                               1 << o->depth);
    return 0;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Per-step phase times in ms: forward, loss, backward, optimizer, total. */
enum { PH_FORWARD, PH_LOSS, PH_BACKWARD, PH_OPTIM, PH_TOTAL, PH_COUNT };
static const char *const phase_names[PH_COUNT] = {"forward_ms", "loss_ms", "backward_ms",
                                                  "optimizer_ms", "ms_per_step"};

typedef struct train_state {
    rl_unet *net;
    rl_optimizer *opt;
    float *x, *dlogits;
    int32_t *labels;
    size_t logit_count;
    int n, k, hw;
} train_state;

static int timed_step(train_state *s, double ms[PH_COUNT], rl_error *err) {
    double t0 = rl_now_seconds();
    int rc = rl_unet_forward(s->net, s->x, 1, err);
    if (rc) return rc;
    double t1 = rl_now_seconds();
    memset(s->dlogits, 0, s->logit_count * sizeof(float));
    rl_softmax_ce_loss(s->dlogits, rl_unet_logits(s->net).data, s->labels, NULL, s->n, s->k,
                       s->hw, -1, 1.0f);
    double t2 = rl_now_seconds();
    rl_unet_zero_grad(s->net);
    if ((rc = rl_unet_backward(s->net, s->dlogits, err))) return rc;
    double t3 = rl_now_seconds();
    rl_optim_step(s->opt, rl_unet_params(s->net), rl_unet_grads(s->net), 1e-3f);
    double t4 = rl_now_seconds();
    ms[PH_FORWARD] = (t1 - t0) * 1e3;
    ms[PH_LOSS] = (t2 - t1) * 1e3;
    ms[PH_BACKWARD] = (t3 - t2) * 1e3;
    ms[PH_OPTIM] = (t4 - t3) * 1e3;
    ms[PH_TOTAL] = (t4 - t0) * 1e3;
    return RL_OK;
}

/* The larger of the AVX-512 and AVX2 peaks of `threads` threads. */
static double peak_of(int threads) {
    const double p512 = cli_peak_gflops(threads, 16), p256 = cli_peak_gflops(threads, 8);
    return p512 > p256 ? p512 : p256;
}

/* gflops and fraction_of_peak (when peak > 0) of a step of `ms`. */
static void add_throughput(cJSON *side, double gflop, double ms, double peak) {
    const double gflops = gflop / (ms * 1e-3);
    cJSON_AddNumberToObject(side, "gflops", gflops);
    if (peak > 0) cJSON_AddNumberToObject(side, "fraction_of_peak", gflops / peak);
}

/* Runs the PyTorch script with the same settings; returns its JSON line. */
static cJSON *run_torch(const bench_opts *o, rl_error *err) {
    char args[1024];
    snprintf(args, sizeof args,
             "--batch %d --size %d --width %d --depth %d --classes %d --norm %s --threads %d "
             "--steps %d --warmup %d",
             o->batch, o->size, o->width, o->depth, o->classes, rl_norm_name(o->norm),
             o->threads, o->steps, o->warmup);
    return cli_run_json_script("bench/bench_train_torch.py", args, err);
}

int cmd_bench_train(int argc, char **argv) {
    bench_opts o = {.batch = 8, .size = 128, .width = 16, .depth = 4, .classes = 8,
                    .threads = 2, .steps = 10, .warmup = 2, .norm = RL_NORM_GROUP};
    int prc = parse_opts(argc, argv, &o);
    if (prc) return prc < 0 ? 0 : prc;
    rl_error err = {0, ""};
    rl_set_threads(o.threads);

    rl_unet_config cfg = rl_unet_default_config();
    cfg.num_classes = o.classes;
    cfg.depth = o.depth;
    cfg.base_width = o.width;
    cfg.norm = o.norm;
    train_state s = {0};
    s.n = o.batch;
    s.k = o.classes;
    s.hw = o.size * o.size;
    s.logit_count = (size_t)s.n * s.k * s.hw;
    rl_optim_span *spans = NULL;
    int span_count = 0;
    double *samples = malloc((size_t)PH_COUNT * o.steps * sizeof *samples);
    cJSON *json = NULL, *torch = NULL;
    int rc = rl_unet_create(&s.net, &cfg, 0, &err);
    if (!rc) rc = rl_unet_plan(s.net, s.n, o.size, o.size, 1, &err);
    if (!rc) rc = rl_optim_spans_from_unet(s.net, &spans, &span_count, &err);
    rl_optim_config oc = rl_optim_default_config(RL_OPTIM_ADAMW);
    if (!rc)
        rc = rl_optim_create(&s.opt, &oc, rl_unet_param_count(s.net), spans, span_count, &err);
    if (!rc) {
        s.x = malloc((size_t)s.n * s.hw * sizeof(float));
        s.labels = malloc((size_t)s.n * s.hw * sizeof(int32_t));
        s.dlogits = malloc(s.logit_count * sizeof(float));
        if (!s.x || !s.labels || !s.dlogits || !samples)
            rc = rl_error_set(&err, RL_ENOMEM, "bench train: cannot allocate the inputs");
    }
    if (rc) goto done;
    rl_rng rng;
    rl_rng_seed(&rng, 1, 0);
    for (size_t i = 0; i < (size_t)s.n * s.hw; i++) {
        s.x[i] = rl_rng_normal(&rng);
        s.labels[i] = (int32_t)rl_rng_below(&rng, (uint32_t)s.k);
    }
    double ms[PH_COUNT];
    for (int i = 0; i < o.warmup && !rc; i++) rc = timed_step(&s, ms, &err);
    for (int i = 0; i < o.steps && !rc; i++) {
        rc = timed_step(&s, ms, &err);
        for (int p = 0; p < PH_COUNT; p++) samples[p * o.steps + i] = ms[p];
    }
    if (rc) goto done;
    size_t rss = rl_peak_rss_bytes(); /* before the torch child runs */
    if (o.torch && !(torch = run_torch(&o, &err))) {
        rc = err.code ? err.code : RL_EIO;
        goto done;
    }

    json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "bench", "train");
    cJSON_AddNumberToObject(json, "batch", o.batch);
    cJSON_AddNumberToObject(json, "size", o.size);
    cJSON_AddNumberToObject(json, "width", o.width);
    cJSON_AddNumberToObject(json, "depth", o.depth);
    cJSON_AddNumberToObject(json, "classes", o.classes);
    cJSON_AddStringToObject(json, "norm", rl_norm_name(o.norm));
    cJSON_AddNumberToObject(json, "threads", o.threads);
    cJSON_AddStringToObject(json, "conv", rl_conv_backend_name(rl_get_conv_backend()));
    /* Recorded because it changes multi-threaded timings several-fold on a
     * busy machine (docs/PERFORMANCE.md). */
    const char *wait_policy = getenv("OMP_WAIT_POLICY");
    cJSON_AddStringToObject(json, "omp_wait_policy", wait_policy ? wait_policy : "default");
    cJSON_AddNumberToObject(json, "steps", o.steps);
    cJSON_AddNumberToObject(json, "params", (double)rl_unet_param_count(s.net));
    cJSON *c = cJSON_AddObjectToObject(json, "c");
    double step_ms = 0;
    for (int p = 0; p < PH_COUNT; p++) {
        double m = median(samples + (size_t)p * o.steps, o.steps);
        if (p == PH_TOTAL) step_ms = m;
        cJSON_AddNumberToObject(c, phase_names[p], m);
    }
    /* The convolutions' arithmetic of a step: forward, data gradient and
     * weight gradient, each as many flops as the forward pass (the first
     * layer's data gradient, counted here, is not computed: 0.1% of the
     * step's flops at width 16 with one input channel). Both sides do the
     * same work. */
    const double gflop = 3.0 * rl_unet_conv_flops(s.net) * 1e-9;
    const double peak = o.no_peak ? 0.0 : peak_of(o.threads);
    cJSON_AddNumberToObject(json, "conv_gflop_per_step", gflop);
    if (peak > 0) cJSON_AddNumberToObject(json, "peak_gflops", peak);
    add_throughput(c, gflop, step_ms, peak);
    cJSON_AddNumberToObject(c, "images_per_s", o.batch * 1e3 / step_ms);
    cJSON_AddNumberToObject(c, "arena_mib", (double)rl_unet_arena_bytes(s.net) / (1 << 20));
    cJSON_AddNumberToObject(c, "peak_rss_mib", (double)rss / (1 << 20));
    if (torch) {
        const cJSON *tms = cJSON_GetObjectItemCaseSensitive(torch, "ms_per_step");
        cJSON_AddItemToObject(json, "torch", torch);
        if (cJSON_IsNumber(tms) && tms->valuedouble > 0) {
            add_throughput(torch, gflop, tms->valuedouble, peak);
            cJSON_AddNumberToObject(json, "ratio_c_over_torch", step_ms / tms->valuedouble);
        }
        torch = NULL;
    }
    char *text = cJSON_PrintUnformatted(json);
    if (text) puts(text);
    free(text);

done:
    cJSON_Delete(json);
    cJSON_Delete(torch);
    free(samples);
    free(spans);
    free(s.x);
    free(s.labels);
    free(s.dlogits);
    rl_optim_free(s.opt);
    rl_unet_free(s.net);
    return rc ? cli_fail(&err) : 0;
}
