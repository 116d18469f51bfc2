/* reflabel bench match: times the matcher on random features and prints one
 * JSON line; with --faiss also times faiss IndexFlatIP (k=1) and a naive
 * numpy version on the same inputs (bench/bench_match_faiss.py) and checks
 * that all of them return the same references. It also measures the
 * machine's FP32 peak with a probe of independent FMAs, so that the line can
 * say which fraction of it the matcher reaches. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_peak.h"
#include "cli.h"
#include "reflabel/match.h"

static const char *help =
    "usage: reflabel bench match [options]\n"
    "  --queries Q        query pixels (default 65536)\n"
    "  --refs R           reference pixels in the bank (default 262144)\n"
    "  --dim D            feature dimension (default 32)\n"
    "  --classes L        labels drawn for the references (default 4)\n"
    "  --threads T        threads (default 2)\n"
    "  --tile QTxRT       query tile x reference tile (default: the matcher's)\n"
    "  --threading MODE   tiles | sgemm (default: the matcher's choice)\n"
    "  --kernel K         generic | avx2 | avx512 | auto (default auto: $RL_MATCH_KERNEL,\n"
    "                     else the widest this CPU runs)\n"
    "  --no-peak          skip the FP32 peak probe\n"
    "  --repeat N         time N runs and report the fastest (default 1)\n"
    "  --seed S           random seed (default 1)\n"
    "  --write-inputs DIR write queries.npy, refs.npy (bank order, normalised),\n"
    "                     ref_labels.npy and the answer (index, label, similarity)\n"
    "  --faiss            also run bench/bench_match_faiss.py on those files\n"
    "Prints one JSON line: seconds, gflops (2 Q R D / seconds), scratch_bytes,\n"
    "peak_gflops (measured: T threads of independent FMAs on the widest vectors)\n"
    "and fraction_of_peak.\n";

/* ---- .npy files (version 1.0, C order) for the Python side ---------------- */

static int write_npy(const char *dir, const char *name, const void *data, const char *dtype,
                     size_t elem, size_t rows, size_t cols, rl_error *err) {
    char path[4096], dict[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int len = cols ? snprintf(dict, sizeof dict,
                              "{'descr': '%s', 'fortran_order': False, 'shape': (%zu, %zu), }",
                              dtype, rows, cols)
                   : snprintf(dict, sizeof dict,
                              "{'descr': '%s', 'fortran_order': False, 'shape': (%zu,), }",
                              dtype, rows);
    /* magic (6) + version (2) + header length (2) + dict + padding + '\n',
     * padded to a multiple of 64 bytes */
    size_t header = 10 + (size_t)len + 1;
    header = (header + 63) / 64 * 64;
    size_t bytes = rows * (cols ? cols : 1) * elem;
    unsigned char *buf = malloc(header + bytes);
    if (!buf) return rl_error_set(err, RL_ENOMEM, "cannot allocate %zu bytes for %s", bytes, path);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)((header - 10) & 0xff);
    buf[9] = (unsigned char)((header - 10) >> 8);
    memset(buf + 10, ' ', header - 10);
    memcpy(buf + 10, dict, (size_t)len);
    buf[header - 1] = '\n';
    memcpy(buf + header, data, bytes);
    int rc = rl_write_file_atomic(path, buf, header + bytes, err);
    free(buf);
    return rc;
}

typedef struct bench_opts {
    int queries, refs, dim, classes, threads, repeat, qt, rt, seed, faiss, no_peak;
    rl_match_threading threading;
    rl_match_kernel kernel;
    const char *inputs_dir;
} bench_opts;

static int parse_tile(const char *s, int *qt, int *rt) {
    char *end = NULL;
    errno = 0;
    long a = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || end == s || (*end != 'x' && *end != 'X') || a < 1 || a > 65536)
        return cli_usage_error("bench match", "--tile expects QTxRT, e.g. 128x1024, got '%s'",
                               s ? s : "");
    const char *r = end + 1;
    long b = strtol(r, &end, 10);
    if (errno || end == r || *end || b < 1 || b > (1 << 20))
        return cli_usage_error("bench match", "--tile expects QTxRT, e.g. 128x1024, got '%s'", s);
    *qt = (int)a;
    *rt = (int)b;
    return 0;
}

static int parse_opts(int argc, char **argv, bench_opts *o) {
    const char *cmd = "bench match";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            return -1;
        } else if (!strcmp(a, "--faiss")) {
            o->faiss = 1;
            continue;
        } else if (!strcmp(a, "--no-peak")) {
            o->no_peak = 1;
            continue;
        } else if (!strcmp(a, "--kernel")) {
            int k = rl_match_kernel_parse(v);
            if (k < 0) return cli_usage_error(cmd, "--kernel expects generic, avx2, avx512 or auto");
            o->kernel = (rl_match_kernel)k;
        } else if (!strcmp(a, "--queries")) rc = cli_parse_int(cmd, a, v, 1, 1 << 30, &o->queries);
        else if (!strcmp(a, "--refs")) rc = cli_parse_int(cmd, a, v, 1, 1 << 30, &o->refs);
        else if (!strcmp(a, "--dim")) rc = cli_parse_int(cmd, a, v, 1, 4096, &o->dim);
        else if (!strcmp(a, "--classes")) rc = cli_parse_int(cmd, a, v, 1, 1024, &o->classes);
        else if (!strcmp(a, "--threads")) rc = cli_parse_int(cmd, a, v, 1, 1024, &o->threads);
        else if (!strcmp(a, "--repeat")) rc = cli_parse_int(cmd, a, v, 1, 1000, &o->repeat);
        else if (!strcmp(a, "--seed")) rc = cli_parse_int(cmd, a, v, 0, 0x7fffffff, &o->seed);
        else if (!strcmp(a, "--tile")) rc = parse_tile(v, &o->qt, &o->rt);
        else if (!strcmp(a, "--write-inputs")) {
            if (!v) return cli_usage_error(cmd, "--write-inputs needs a folder");
            o->inputs_dir = v;
        } else if (!strcmp(a, "--threading")) {
            if (v && !strcmp(v, "tiles")) o->threading = RL_THREAD_TILES;
            else if (v && !strcmp(v, "sgemm")) o->threading = RL_THREAD_SGEMM;
            else return cli_usage_error(cmd, "--threading expects tiles or sgemm");
        } else {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        }
        if (rc) return rc;
        i++;
    }
    return 0;
}

/* Writes the inputs in the layout the Python side reads: queries (Q, D) as
 * given, refs (R, D) in bank order as stored, labels and our answer. */
static int write_inputs(const char *dir, const bench_opts *o, const float *queries_nchw,
                        const rl_bank *bank, const int32_t *index, const int32_t *label,
                        const float *sim, rl_error *err) {
    const size_t Q = (size_t)o->queries, D = (size_t)o->dim, R = (size_t)rl_bank_count(bank);
    int rc = rl_make_dirs(dir, err);
    float *rows = malloc((Q > R ? Q : R) * D * sizeof(float));
    int32_t *ref_labels = malloc(R * sizeof(int32_t));
    if (!rows || !ref_labels) {
        free(rows);
        free(ref_labels);
        return rl_error_set(err, RL_ENOMEM, "cannot allocate the bench inputs");
    }
    for (size_t q = 0; q < Q && !rc; q++)
        for (size_t d = 0; d < D; d++) rows[q * D + d] = queries_nchw[d * Q + q];
    if (!rc) rc = write_npy(dir, "queries.npy", rows, "<f4", 4, Q, D, err);
    for (size_t r = 0; r < R && !rc; r++) {
        rl_bank_entry e = rl_bank_get(bank, (int)r);
        memcpy(rows + r * D, e.vector, D * sizeof(float));
        ref_labels[r] = e.label;
    }
    if (!rc) rc = write_npy(dir, "refs.npy", rows, "<f4", 4, R, D, err);
    if (!rc) rc = write_npy(dir, "ref_labels.npy", ref_labels, "<i4", 4, R, 0, err);
    if (!rc) rc = write_npy(dir, "index.npy", index, "<i4", 4, Q, 0, err);
    if (!rc) rc = write_npy(dir, "label.npy", label, "<i4", 4, Q, 0, err);
    if (!rc) rc = write_npy(dir, "similarity.npy", sim, "<f4", 4, Q, 0, err);
    free(rows);
    free(ref_labels);
    return rc;
}

static void remove_inputs(const char *dir) {
    static const char *names[] = {"queries.npy", "refs.npy", "ref_labels.npy",
                                  "index.npy",   "label.npy", "similarity.npy"};
    char path[4096];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* Runs the faiss/numpy script on dir; returns its JSON line parsed, or NULL. */
static cJSON *run_faiss(const char *dir, int threads, rl_error *err) {
    char args[4200];
    snprintf(args, sizeof args, "'%s' --threads %d", dir, threads);
    return cli_run_json_script("bench/bench_match_faiss.py", args, err);
}

int cmd_bench_match(int argc, char **argv) {
    bench_opts o = {.queries = 65536, .refs = 262144, .dim = 32, .classes = 4, .threads = 2,
                    .repeat = 1, .seed = 1};
    int prc = parse_opts(argc, argv, &o);
    if (prc) return prc < 0 ? 0 : prc;
    rl_error err = {0, ""};
    rl_set_threads(o.threads);

    /* Random features: references (1, D, 1, R) with random labels, queries (1, D, 1, Q). */
    const size_t Q = (size_t)o.queries, R = (size_t)o.refs, D = (size_t)o.dim;
    float *ref_feat = malloc(R * D * sizeof(float));
    float *queries = malloc(Q * D * sizeof(float));
    int32_t *ref_labels = malloc(R * sizeof(int32_t));
    int32_t *index = malloc(Q * sizeof(int32_t)), *label = malloc(Q * sizeof(int32_t));
    float *sim = malloc(Q * sizeof(float)), *margin = malloc(Q * sizeof(float));
    rl_bank *bank = NULL;
    rl_matcher matcher = {0};
    cJSON *json = NULL, *faiss = NULL;
    char tmpdir[] = "/tmp/reflabel-bench-match-XXXXXX";
    const char *dir = o.inputs_dir;
    int rc = 0;
    if (!ref_feat || !queries || !ref_labels || !index || !label || !sim || !margin) {
        rc = rl_error_set(&err, RL_ENOMEM, "bench match: cannot allocate the inputs");
        goto done;
    }
    rl_rng rng;
    rl_rng_seed(&rng, (uint64_t)o.seed, 0);
    for (size_t i = 0; i < R * D; i++) ref_feat[i] = rl_rng_normal(&rng);
    for (size_t i = 0; i < Q * D; i++) queries[i] = rl_rng_normal(&rng);
    for (size_t i = 0; i < R; i++) ref_labels[i] = (int32_t)rl_rng_below(&rng, (uint32_t)o.classes);

    rl_bank_config bc = {.dim = o.dim, .num_labels = o.classes, .ignore_label = -1,
                         .similarity = RL_SIM_COSINE, .sampling = RL_SAMPLE_ALL,
                         .max_images = 1, .max_image_pixels = o.refs, .memory_batches = 1};
    rl_match_config mc = {.mode = RL_MATCH_POOLED, .top_k = 1, .query_tile = o.qt,
                          .ref_tile = o.rt, .threads = o.threads, .threading = o.threading,
                          .kernel = o.kernel};
    if ((rc = rl_bank_create(&bank, &bc, &err))) goto done;
    if ((rc = rl_matcher_init(&matcher, &mc, &bc, &err))) goto done;
    double t0 = rl_now_seconds();
    if ((rc = rl_bank_add(bank, ref_feat, ref_labels, NULL, 1, 1, o.refs, &rng, &err))) goto done;
    double bank_seconds = rl_now_seconds() - t0;
    rl_match_out out = {.label = label, .similarity = sim, .margin = margin, .index = index};
    double best = 0.0;
    for (int r = 0; r < o.repeat; r++) {
        t0 = rl_now_seconds();
        if ((rc = rl_match(&matcher, bank, queries, 1, 1, o.queries, &out, &err))) goto done;
        double t = rl_now_seconds() - t0;
        if (r == 0 || t < best) best = t;
    }

    if (o.faiss && !dir) {
        if (!mkdtemp(tmpdir)) {
            rc = rl_error_set(&err, RL_EIO, "bench match: cannot create %s: %s", tmpdir,
                              strerror(errno));
            goto done;
        }
        dir = tmpdir;
    }
    if (dir) rc = write_inputs(dir, &o, queries, bank, index, label, sim, &err);
    if (!rc && o.faiss && !(faiss = run_faiss(dir, o.threads, &err))) rc = err.code;
    if (dir == tmpdir) remove_inputs(tmpdir);
    if (rc) goto done;

    json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "bench", "match");
    cJSON_AddNumberToObject(json, "queries", o.queries);
    cJSON_AddNumberToObject(json, "refs", o.refs);
    cJSON_AddNumberToObject(json, "dim", o.dim);
    cJSON_AddNumberToObject(json, "classes", o.classes);
    cJSON_AddNumberToObject(json, "threads", o.threads);
    cJSON_AddNumberToObject(json, "query_tile", matcher.cfg.query_tile);
    cJSON_AddNumberToObject(json, "ref_tile", matcher.cfg.ref_tile);
    cJSON_AddStringToObject(json, "threading",
                            matcher.cfg.threading == RL_THREAD_SGEMM ? "sgemm" : "tiles");
    cJSON_AddStringToObject(json, "kernel", rl_match_kernel_name(matcher.cfg.kernel));
    cJSON_AddNumberToObject(json, "seconds", best);
    const double gflops = 2.0 * (double)Q * (double)R * (double)D / best * 1e-9;
    cJSON_AddNumberToObject(json, "gflops", gflops);
    if (!o.no_peak) {
        /* After the match and faiss, so that neither runs on cores the probe
         * has just heated (or cooled) to another clock. */
        const double p512 = cli_peak_gflops(o.threads, 16);
        const double p256 = cli_peak_gflops(o.threads, 8);
        const double peak = p512 > p256 ? p512 : p256;
        cJSON_AddNumberToObject(json, "peak_gflops_avx512", p512);
        cJSON_AddNumberToObject(json, "peak_gflops_avx2", p256);
        if (peak > 0) cJSON_AddNumberToObject(json, "fraction_of_peak", gflops / peak);
    }
    cJSON_AddNumberToObject(json, "scratch_bytes", (double)matcher.scratch_bytes);
    cJSON_AddNumberToObject(json, "bank_fill_seconds", bank_seconds);
    cJSON_AddNumberToObject(json, "peak_rss_bytes", (double)rl_peak_rss_bytes());
    if (faiss) {
        const cJSON *fs = cJSON_GetObjectItemCaseSensitive(faiss, "faiss_seconds");
        if (cJSON_IsNumber(fs)) cJSON_AddNumberToObject(json, "faiss_over_ours", fs->valuedouble / best);
        cJSON_AddItemToObject(json, "faiss", faiss);
        faiss = NULL;
    }
    char *text = cJSON_PrintUnformatted(json);
    if (text) puts(text);
    free(text);

done:
    cJSON_Delete(json);
    cJSON_Delete(faiss);
    rl_matcher_free(&matcher);
    rl_bank_free(bank);
    free(ref_feat);
    free(queries);
    free(ref_labels);
    free(index);
    free(label);
    free(sim);
    free(margin);
    return rc ? cli_fail(&err) : 0;
}
