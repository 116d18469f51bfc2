/* tool_match: random queries and references through the bank and the matcher,
 * written as .npy for tests/oracle/test_faiss_match.py to check against faiss.
 *
 * usage: tool_match OUTDIR [--queries Q] [--refs R] [--dim D] [--classes L]
 *                   [--top-k K] [--tile QTxRT] [--threading tiles|sgemm]
 *                   [--dot] [--multilabel] [--seed S]
 *
 * References are 4 images of R/4 pixels (bank sampling "all", so the bank
 * holds every one); queries are 2 images of Q/2 pixels. Writes
 *   queries.npy (Q, D) raw         refs.npy (R', D) as stored, in bank order
 *   ref_labels.npy (R',)           label.npy, index.npy, similarity.npy,
 *   margin.npy (Q,)                topk_index.npy, topk_similarity.npy (Q, K)
 * --multilabel: a multi-label bank whose references carry L distinct random
 * bit masks (up to 62 bits); also writes ref_masks.npy (R',) and
 * mask.npy (Q,) as int64, and label ids are the bank's internal mask ids.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/match.h"
#include "testutil.h"

static int save(const char *dir, const char *name, const void *data, const char *dtype,
                int rows, int cols) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int shape[2] = {rows, cols};
    if (rl_npy_write(path, data, dtype, shape, cols ? 2 : 1) != 0) {
        fprintf(stderr, "tool_match: cannot write %s\n", path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: tool_match OUTDIR [options]\n");
        return 2;
    }
    const char *dir = argv[1];
    int Q = 1000, R = 4000, D = 16, L = 5, K = 1, qt = 0, rt = 0, dot = 0, seed = 1;
    int multilabel = 0;
    rl_match_threading threading = RL_THREAD_AUTO;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--dot")) {
            dot = 1;
            continue;
        }
        if (!strcmp(a, "--multilabel")) {
            multilabel = 1;
            continue;
        }
        if (!strcmp(a, "--queries")) Q = atoi(v);
        else if (!strcmp(a, "--refs")) R = atoi(v);
        else if (!strcmp(a, "--dim")) D = atoi(v);
        else if (!strcmp(a, "--classes")) L = atoi(v);
        else if (!strcmp(a, "--top-k")) K = atoi(v);
        else if (!strcmp(a, "--seed")) seed = atoi(v);
        else if (!strcmp(a, "--tile")) {
            if (sscanf(v, "%dx%d", &qt, &rt) != 2) {
                fprintf(stderr, "tool_match: bad --tile '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--threading")) {
            threading = !strcmp(v, "sgemm") ? RL_THREAD_SGEMM : RL_THREAD_TILES;
        } else {
            fprintf(stderr, "tool_match: unknown option '%s'\n", a);
            return 2;
        }
        i++;
    }
    if (Q < 2 || R < 4 || D < 1 || L < 1 || K < 1) {
        fprintf(stderr, "tool_match: sizes must be positive (Q >= 2, R >= 4)\n");
        return 2;
    }
    const int qw = Q / 2, rw = R / 4;
    Q = 2 * qw;
    R = 4 * rw;
    rl_rng rng;
    rl_rng_seed(&rng, (uint64_t)seed, 3);
    float *ref_feat = malloc((size_t)R * D * sizeof(float));
    int32_t *ref_lab = malloc((size_t)R * sizeof(int32_t));
    float *qfeat = malloc((size_t)Q * D * sizeof(float));
    float *qrows = malloc((size_t)(Q > R ? Q : R) * D * sizeof(float));
    int32_t *label = malloc((size_t)Q * sizeof(int32_t)), *index = malloc((size_t)Q * sizeof(int32_t));
    float *sim = malloc((size_t)Q * sizeof(float)), *margin = malloc((size_t)Q * sizeof(float));
    int32_t *tk = malloc((size_t)Q * K * sizeof(int32_t));
    float *tks = malloc((size_t)Q * K * sizeof(float));
    for (size_t i = 0; i < (size_t)R * D; i++) ref_feat[i] = rl_rng_normal(&rng);
    for (int i = 0; i < R; i++) ref_lab[i] = (int32_t)rl_rng_below(&rng, (uint32_t)L);
    for (size_t i = 0; i < (size_t)Q * D; i++) qfeat[i] = rl_rng_normal(&rng);
    /* Multi-label: label l stands for palette[l], distinct random masks of
     * up to 62 bits (0 may occur: it is an ordinary "no structure" mask). */
    uint64_t *palette = malloc((size_t)L * sizeof *palette);
    uint64_t *ref_mask = malloc((size_t)R * sizeof *ref_mask);
    uint64_t *mask = malloc((size_t)Q * sizeof *mask);
    for (int l = 0; l < L; l++) {
        int fresh;
        do {
            palette[l] = ((uint64_t)rl_rng_u32(&rng) << 30 ^ rl_rng_u32(&rng)) & ((1ull << 62) - 1);
            fresh = 1;
            for (int j = 0; j < l; j++) fresh &= palette[j] != palette[l];
        } while (!fresh);
    }
    for (int i = 0; i < R; i++) ref_mask[i] = palette[ref_lab[i]];

    rl_bank_config bc = {.dim = D, .num_labels = L, .multilabel = multilabel, .ignore_label = -1,
                         .similarity = dot ? RL_SIM_DOT : RL_SIM_COSINE,
                         .sampling = RL_SAMPLE_ALL, .max_images = 4, .max_image_pixels = rw,
                         .memory_batches = 1};
    rl_match_config mc = {.mode = RL_MATCH_POOLED, .top_k = K, .query_tile = qt, .ref_tile = rt,
                          .threads = 2, .threading = threading};
    rl_bank *bank = NULL;
    rl_matcher m;
    rl_error err = {0, ""};
    rl_match_out out = {label, multilabel ? mask : NULL, sim, margin, index,
                        K > 1 ? tk : NULL, K > 1 ? tks : NULL};
    if (rl_bank_create(&bank, &bc, &err) || rl_matcher_init(&m, &mc, &bc, &err) ||
        rl_bank_add(bank, ref_feat, multilabel ? NULL : ref_lab, multilabel ? ref_mask : NULL, 4,
                    1, rw, NULL, &err) ||
        rl_match(&m, bank, qfeat, 2, 1, qw, &out, &err)) {
        fprintf(stderr, "tool_match: %s\n", err.msg);
        return 1;
    }
    /* queries (2, D, 1, qw) -> rows (Q, D) */
    for (int n = 0; n < 2; n++)
        for (int p = 0; p < qw; p++)
            for (int d = 0; d < D; d++)
                qrows[((size_t)n * qw + p) * D + d] = qfeat[((size_t)n * D + d) * qw + p];
    int rc = save(dir, "queries.npy", qrows, "<f4", Q, D);
    const int stored = rl_bank_count(bank);
    for (int r = 0; r < stored; r++) {
        rl_bank_entry e = rl_bank_get(bank, r);
        memcpy(qrows + (size_t)r * D, e.vector, (size_t)D * sizeof(float));
        ref_lab[r] = e.label;
        ref_mask[r] = e.mask;
    }
    rc |= save(dir, "refs.npy", qrows, "<f4", stored, D);
    rc |= save(dir, "ref_labels.npy", ref_lab, "<i4", stored, 0);
    rc |= save(dir, "label.npy", label, "<i4", Q, 0);
    rc |= save(dir, "index.npy", index, "<i4", Q, 0);
    rc |= save(dir, "similarity.npy", sim, "<f4", Q, 0);
    rc |= save(dir, "margin.npy", margin, "<f4", Q, 0);
    if (multilabel) {
        rc |= save(dir, "ref_masks.npy", ref_mask, "<i8", stored, 0);
        rc |= save(dir, "mask.npy", mask, "<i8", Q, 0);
    }
    if (K > 1) {
        rc |= save(dir, "topk_index.npy", tk, "<i4", Q, K);
        rc |= save(dir, "topk_similarity.npy", tks, "<f4", Q, K);
    }
    printf("tool_match: Q=%d R=%d D=%d K=%d scratch=%zu bytes\n", Q, stored, D, K, m.scratch_bytes);
    rl_matcher_free(&m);
    rl_bank_free(bank);
    free(ref_feat);
    free(ref_lab);
    free(qfeat);
    free(qrows);
    free(label);
    free(index);
    free(sim);
    free(margin);
    free(tk);
    free(tks);
    free(palette);
    free(ref_mask);
    free(mask);
    return rc;
}
