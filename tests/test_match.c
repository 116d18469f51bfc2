/* The bank and the matcher against a naive triple loop written here from the
 * definitions in docs/MATCHING.md: labels equal, similarities within 1e-5,
 * over multi-class and multi-label banks, cosine and dot, top-1 and top-k,
 * pooled and per-image voting, and tile sizes that do not divide Q or R.
 * Also: every fused kernel the CPU runs against the generic one, the sampling
 * modes, determinism, FIFO eviction, the margin, ties, and a scratch size that
 * does not grow with the number of references. The whole file runs with the
 * default kernel (the widest fused one) and again under
 * RL_MATCH_KERNEL=generic (test_match_generic in tests/CMakeLists.txt). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/match.h"
#include "testutil.h"

#define IGNORE 255

/* ---- the naive reference ---------------------------------------------------- */

typedef struct naive_result {
    int label;
    float sim, margin;
    int index;
    int *topk; /* k entries */
    float *topk_sim;
    double *votes; /* per label, -INFINITY = no vote */
} naive_result;

/* Similarity of query (D floats at stride hw) to bank entry, in double. */
static double naive_sim(const rl_bank *bank, const float *q, size_t stride, int ref) {
    const int dim = rl_bank_get_config(bank)->dim;
    double dot = 0.0, qq = 0.0;
    rl_bank_entry e = rl_bank_get(bank, ref);
    for (int d = 0; d < dim; d++) {
        dot += (double)q[d * stride] * e.vector[d];
        qq += (double)q[d * stride] * q[d * stride];
    }
    if (rl_bank_get_config(bank)->similarity == RL_SIM_COSINE) return qq > 0 ? dot / sqrt(qq) : 0.0;
    return dot;
}

static void naive_match(const rl_bank *bank, const float *q, size_t stride, int mode, int k,
                        naive_result *res) {
    const int R = rl_bank_count(bank), labels = rl_bank_get_config(bank)->num_labels;
    const int images = rl_bank_images(bank);
    double *sims = malloc((size_t)R * sizeof *sims);
    double *label_best = malloc((size_t)labels * sizeof(double));
    int *label_index = malloc((size_t)labels * sizeof(int));
    double *image_best = malloc((size_t)images * sizeof(double));
    int *image_index = malloc((size_t)images * sizeof(int));
    for (int l = 0; l < labels; l++) {
        label_best[l] = -INFINITY;
        label_index[l] = -1;
        res->votes[l] = -INFINITY;
    }
    for (int i = 0; i < images; i++) image_index[i] = -1;
    for (int r = 0; r < R; r++) {
        rl_bank_entry e = rl_bank_get(bank, r);
        double s = naive_sim(bank, q, stride, r);
        sims[r] = s;
        /* strict > while r ascends: the lowest index wins ties */
        if (label_index[e.label] < 0 || s > label_best[e.label]) {
            label_best[e.label] = s;
            label_index[e.label] = r;
        }
        if (image_index[e.image] < 0 || s > image_best[e.image]) {
            image_best[e.image] = s;
            image_index[e.image] = r;
        }
    }
    int winner = -1;
    if (mode == RL_MATCH_PER_IMAGE) {
        for (int i = 0; i < images; i++) {
            if (image_index[i] < 0) continue;
            int l = rl_bank_get(bank, image_index[i]).label;
            res->votes[l] = (res->votes[l] == -INFINITY ? 0.0 : res->votes[l]) + image_best[i];
        }
    }
    /* top-k by repeated selection of the best not yet taken */
    char *taken = calloc((size_t)R, 1);
    for (int j = 0; j < k; j++) {
        int b = -1;
        for (int r = 0; r < R; r++)
            if (!taken[r] && (b < 0 || sims[r] > sims[b])) b = r;
        res->topk[j] = b;
        res->topk_sim[j] = b >= 0 ? (float)sims[b] : -INFINITY;
        if (b < 0) continue;
        taken[b] = 1;
        if (k > 1) {
            int l = rl_bank_get(bank, b).label;
            res->votes[l] = (res->votes[l] == -INFINITY ? 0.0 : res->votes[l]) + sims[b];
        }
    }
    if (mode == RL_MATCH_PER_IMAGE || k > 1) {
        for (int l = 0; l < labels; l++)
            if (res->votes[l] > -INFINITY && (winner < 0 || res->votes[l] > res->votes[winner]))
                winner = l;
    } else {
        for (int l = 0; l < labels; l++)
            if (label_index[l] >= 0 &&
                (winner < 0 || label_best[l] > label_best[winner] ||
                 (label_best[l] == label_best[winner] && label_index[l] < label_index[winner])))
                winner = l;
    }
    double other = -INFINITY;
    int others = 0;
    for (int l = 0; l < labels; l++)
        if (l != winner && label_index[l] >= 0) {
            others = 1;
            if (label_best[l] > other) other = label_best[l];
        }
    res->label = winner;
    res->sim = (float)label_best[winner];
    res->index = label_index[winner];
    res->margin = others ? (float)(label_best[winner] - other) : INFINITY;
    free(taken);
    free(sims);
    free(label_best);
    free(label_index);
    free(image_best);
    free(image_index);
}

/* ---- random batches ------------------------------------------------------------ */

static const uint64_t MASKS[] = {0x0, 0x1, 0x3, 0x4, 0x6, 0x8};
#define NMASKS 6

static void random_batch(rl_rng *rng, int n, int dim, int hw, int labels, int multilabel,
                         float *feat, int32_t *lab, uint64_t *mask) {
    for (size_t i = 0; i < (size_t)n * dim * hw; i++) feat[i] = rl_rng_normal(rng);
    for (size_t i = 0; i < (size_t)n * hw; i++) {
        int ignored = rl_rng_below(rng, 10) == 0;
        if (multilabel)
            mask[i] = ignored ? UINT64_MAX : MASKS[rl_rng_below(rng, NMASKS)];
        else
            lab[i] = ignored ? IGNORE : (int32_t)rl_rng_below(rng, (uint32_t)labels);
    }
}

typedef struct case_params {
    const char *name;
    int multilabel, similarity, mode, top_k, qt, rt, threading, sampling;
    int batches, memory;
} case_params;

static void run_case(const case_params *p) {
    const int dim = 12, h = 9, w = 11, hw = h * w, n_ref = 3, n_q = 2, labels = 6;
    rl_rng rng;
    rl_rng_seed(&rng, 1234, (uint64_t)p->top_k * 7 + (uint64_t)p->qt);
    rl_bank_config bc = {.dim = dim, .num_labels = labels, .multilabel = p->multilabel,
                         .ignore_label = IGNORE, .ignore_mask = UINT64_MAX,
                         .similarity = (rl_similarity)p->similarity,
                         .sampling = (rl_bank_sampling)p->sampling, .per_class_cap = 20,
                         .sample_count = 150, .class_floor = 5, .max_images = n_ref,
                         .max_image_pixels = hw, .memory_batches = p->memory};
    rl_bank *bank = NULL;
    rl_error err = {0, ""};
    CHECK_OK(rl_bank_create(&bank, &bc, &err));
    float *feat = malloc((size_t)n_ref * dim * hw * sizeof(float));
    int32_t *lab = malloc((size_t)n_ref * hw * sizeof(int32_t));
    uint64_t *mask = malloc((size_t)n_ref * hw * sizeof(uint64_t));
    for (int b = 0; b < p->batches; b++) {
        random_batch(&rng, n_ref, dim, hw, labels, p->multilabel, feat, lab, mask);
        CHECK_OK(rl_bank_add(bank, feat, p->multilabel ? NULL : lab,
                             p->multilabel ? mask : NULL, n_ref, h, w, &rng, &err));
    }
    rl_match_config mc = {.mode = (rl_match_mode)p->mode, .top_k = p->top_k, .query_tile = p->qt,
                          .ref_tile = p->rt, .threads = 2,
                          .threading = (rl_match_threading)p->threading};
    rl_matcher m;
    CHECK_OK(rl_matcher_init(&m, &mc, &bc, &err));
    const size_t Q = (size_t)n_q * hw;
    const int k = p->top_k;
    float *qf = malloc((size_t)n_q * dim * hw * sizeof(float));
    for (size_t i = 0; i < (size_t)n_q * dim * hw; i++) qf[i] = rl_rng_normal(&rng);
    int32_t *olab = malloc(Q * sizeof(int32_t)), *oidx = malloc(Q * sizeof(int32_t));
    uint64_t *omask = malloc(Q * sizeof(uint64_t));
    float *osim = malloc(Q * sizeof(float)), *omar = malloc(Q * sizeof(float));
    int32_t *otk = malloc(Q * k * sizeof(int32_t));
    float *otks = malloc(Q * k * sizeof(float));
    rl_match_out out = {olab, p->multilabel ? omask : NULL, osim, omar, oidx,
                        k > 1 ? otk : NULL, k > 1 ? otks : NULL};
    int rc = rl_match(&m, bank, qf, n_q, h, w, &out, &err);
    CHECK_MSG(rc == 0, "%s: %s", p->name, err.msg);

    naive_result nr;
    nr.topk = malloc((size_t)k * sizeof(int));
    nr.topk_sim = malloc((size_t)k * sizeof(float));
    nr.votes = malloc((size_t)labels * sizeof(double));
    int bad = 0, near_ties = 0;
    for (size_t q = 0; q < Q && rc == 0; q++) {
        const float *qp = qf + (q / hw) * dim * hw + q % hw;
        naive_match(bank, qp, (size_t)hw, p->mode, k, &nr);
        int ok = olab[q] == nr.label && oidx[q] == nr.index;
        if (!ok) {
            /* Only acceptable where the naive scores of the two answers tie
             * within rounding: a vote total or a similarity. */
            double a = (p->mode == RL_MATCH_PER_IMAGE || k > 1) ? nr.votes[olab[q]]
                                                               : naive_sim(bank, qp, hw, oidx[q]);
            double b = (p->mode == RL_MATCH_PER_IMAGE || k > 1) ? nr.votes[nr.label] : nr.sim;
            if (fabs(a - b) < 1e-6 && olab[q] >= 0) near_ties++;
            else bad++;
            continue;
        }
        ok &= fabsf(osim[q] - nr.sim) < 1e-5f;
        ok &= isinf(nr.margin) ? (isinf(omar[q]) && omar[q] > 0) : fabsf(omar[q] - nr.margin) < 1e-5f;
        if (p->multilabel) ok &= omask[q] == rl_bank_label_mask(bank, nr.label);
        for (int j = 0; j < k && k > 1; j++) {
            ok &= fabsf(otks[q * k + j] - nr.topk_sim[j]) < 1e-5f;
            /* indices may swap only between equal similarities */
            if (otk[q * k + j] != nr.topk[j])
                ok &= fabs(naive_sim(bank, qp, hw, otk[q * k + j]) - nr.topk_sim[j]) < 1e-6;
        }
        if (!ok) bad++;
    }
    CHECK_MSG(bad == 0, "%s: %d of %zu queries differ from the naive reference", p->name, bad, Q);
    CHECK_MSG(near_ties <= 1, "%s: %d near ties is suspiciously many", p->name, near_ties);
    free(nr.topk);
    free(nr.topk_sim);
    free(nr.votes);
    free(feat);
    free(lab);
    free(mask);
    free(qf);
    free(olab);
    free(oidx);
    free(omask);
    free(osim);
    free(omar);
    free(otk);
    free(otks);
    rl_matcher_free(&m);
    rl_bank_free(bank);
}

static void test_against_naive(void) {
    /* name, multilabel, similarity, mode, top_k, qt, rt, threading, sampling, batches, memory */
    const case_params cases[] = {
        {"mc cos pooled top1", 0, RL_SIM_COSINE, RL_MATCH_POOLED, 1, 0, 0, 0, RL_SAMPLE_ALL, 1, 1},
        {"mc cos pooled top1 odd tiles", 0, RL_SIM_COSINE, RL_MATCH_POOLED, 1, 7, 13, 1, RL_SAMPLE_ALL, 2, 2},
        {"mc dot pooled top1 sgemm", 0, RL_SIM_DOT, RL_MATCH_POOLED, 1, 10, 64, 2, RL_SAMPLE_ALL, 3, 2},
        {"mc cos pooled top5", 0, RL_SIM_COSINE, RL_MATCH_POOLED, 5, 9, 17, 1, RL_SAMPLE_PER_CLASS, 3, 3},
        {"mc dot pooled top3 sgemm", 0, RL_SIM_DOT, RL_MATCH_POOLED, 3, 33, 100, 2, RL_SAMPLE_ALL, 1, 1},
        {"mc cos per-image", 0, RL_SIM_COSINE, RL_MATCH_PER_IMAGE, 1, 5, 31, 1, RL_SAMPLE_ALL, 2, 2},
        {"mc dot per-image sgemm", 0, RL_SIM_DOT, RL_MATCH_PER_IMAGE, 1, 64, 8, 2, RL_SAMPLE_PROPORTIONAL, 4, 3},
        {"ml cos pooled top1", 1, RL_SIM_COSINE, RL_MATCH_POOLED, 1, 11, 29, 1, RL_SAMPLE_ALL, 2, 2},
        {"ml dot pooled top4", 1, RL_SIM_DOT, RL_MATCH_POOLED, 4, 6, 1000, 1, RL_SAMPLE_PER_CLASS, 2, 2},
        {"ml cos per-image", 1, RL_SIM_COSINE, RL_MATCH_PER_IMAGE, 1, 19, 23, 2, RL_SAMPLE_ALL, 3, 2},
        {"ml one tile for all", 1, RL_SIM_COSINE, RL_MATCH_POOLED, 1, 500, 5000, 1, RL_SAMPLE_ALL, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
}

/* ---- fused kernels against the generic one ------------------------------------ *
 * Every kernel this CPU runs against RL_KERNEL_GENERIC (tiled SGEMM) on the
 * same bank and queries. The sums are formed in another order, so a best
 * index may differ only where the two references' similarities (in double)
 * are within TIE_TOL: a float tie. Similarities and margins agree within
 * 1e-5 (both relative to the similarity once it exceeds 1). With integer-valued features and dot similarity every sum is exact in
 * any order, and the bank is full of exact ties: there every output must be
 * identical, which checks that the fused path breaks ties the generic way. */

#define TIE_TOL 1e-5

typedef struct kernel_case {
    const char *name;
    int dim, multilabel, similarity, mode, top_k, qt, rt, threading, sampling, cap;
    int batches, memory, h, w, integers;
} kernel_case;

typedef struct match_result {
    int32_t *label, *index, *topk;
    uint64_t *mask;
    float *sim, *margin, *topk_sim;
} match_result;

static void match_with(const kernel_case *p, rl_match_kernel kernel, const rl_bank_config *bc,
                       const rl_bank *bank, const float *qf, int n, match_result *r) {
    const size_t Q = (size_t)n * p->h * p->w;
    const int k = p->top_k;
    r->label = malloc(Q * sizeof(int32_t));
    r->index = malloc(Q * sizeof(int32_t));
    r->topk = malloc(Q * k * sizeof(int32_t));
    r->mask = malloc(Q * sizeof(uint64_t));
    r->sim = malloc(Q * sizeof(float));
    r->margin = malloc(Q * sizeof(float));
    r->topk_sim = malloc(Q * k * sizeof(float));
    rl_match_config mc = {.mode = (rl_match_mode)p->mode, .top_k = k, .query_tile = p->qt,
                          .ref_tile = p->rt, .threads = 2,
                          .threading = (rl_match_threading)p->threading, .kernel = kernel};
    rl_matcher m;
    rl_error err = {0, ""};
    CHECK_OK(rl_matcher_init(&m, &mc, bc, &err));
    CHECK(m.cfg.kernel == kernel);
    rl_match_out out = {r->label, p->multilabel ? r->mask : NULL, r->sim, r->margin, r->index,
                        k > 1 ? r->topk : NULL, k > 1 ? r->topk_sim : NULL};
    int rc = rl_match(&m, bank, qf, n, p->h, p->w, &out, &err);
    CHECK_MSG(rc == 0, "%s (%s): %s", p->name, rl_match_kernel_name(kernel), err.msg);
    rl_matcher_free(&m);
}

static void free_result(match_result *r) {
    free(r->label);
    free(r->index);
    free(r->topk);
    free(r->mask);
    free(r->sim);
    free(r->margin);
    free(r->topk_sim);
}

/* Within tol, scaled by the similarities' size: a dot product of 128 normal
 * components is ~40, where a float's last bit is 4e-6. */
static int close_or_both_inf(float a, float b, float scale) {
    if (isinf(a) || isinf(b)) return a == b;
    return fabsf(a - b) <= 1e-5f * scale;
}

static void run_kernel_case(const kernel_case *p) {
    const int dim = p->dim, h = p->h, w = p->w, hw = h * w, n_ref = 3, n_q = 2, labels = 6;
    rl_rng rng;
    rl_rng_seed(&rng, 99, (uint64_t)dim * 31 + (uint64_t)p->top_k);
    rl_bank_config bc = {.dim = dim, .num_labels = labels, .multilabel = p->multilabel,
                         .ignore_label = IGNORE, .ignore_mask = UINT64_MAX,
                         .similarity = (rl_similarity)p->similarity,
                         .sampling = (rl_bank_sampling)p->sampling, .per_class_cap = p->cap,
                         .sample_count = 150, .class_floor = 5, .max_images = n_ref,
                         .max_image_pixels = hw, .memory_batches = p->memory};
    rl_bank *bank = NULL;
    rl_error err = {0, ""};
    CHECK_OK(rl_bank_create(&bank, &bc, &err));
    float *feat = malloc((size_t)n_ref * dim * hw * sizeof(float));
    int32_t *lab = malloc((size_t)n_ref * hw * sizeof(int32_t));
    uint64_t *mask = malloc((size_t)n_ref * hw * sizeof(uint64_t));
    for (int b = 0; b < p->batches; b++) {
        random_batch(&rng, n_ref, dim, hw, labels, p->multilabel, feat, lab, mask);
        if (p->integers)
            for (size_t i = 0; i < (size_t)n_ref * dim * hw; i++)
                feat[i] = (float)((int)rl_rng_below(&rng, 5) - 2);
        CHECK_OK(rl_bank_add(bank, feat, p->multilabel ? NULL : lab,
                             p->multilabel ? mask : NULL, n_ref, h, w, &rng, &err));
    }
    const size_t Q = (size_t)n_q * hw;
    float *qf = malloc((size_t)n_q * dim * hw * sizeof(float));
    for (size_t i = 0; i < (size_t)n_q * dim * hw; i++)
        qf[i] = p->integers ? (float)((int)rl_rng_below(&rng, 5) - 2) : rl_rng_normal(&rng);
    match_result g;
    match_with(p, RL_KERNEL_GENERIC, &bc, bank, qf, n_q, &g);
    const int k = p->top_k;
    for (int kern = RL_KERNEL_AVX2; kern <= RL_KERNEL_AVX512; kern++) {
        if (!rl_match_kernel_supported((rl_match_kernel)kern)) {
            printf("test_match: %s: kernel %s not supported here, skipped\n", p->name,
                   rl_match_kernel_name((rl_match_kernel)kern));
            continue;
        }
        match_result f;
        match_with(p, (rl_match_kernel)kern, &bc, bank, qf, n_q, &f);
        int bad = 0, ties = 0;
        for (size_t q = 0; q < Q; q++) {
            const float *qp = qf + (q / hw) * dim * hw + q % hw;
            int same = f.index[q] == g.index[q] && f.label[q] == g.label[q];
            for (int j = 0; j < k && k > 1; j++) same &= f.topk[q * k + j] == g.topk[q * k + j];
            if (p->integers) {
                /* exact sums: bit-identical outputs, ties and all */
                same &= f.sim[q] == g.sim[q] &&
                        (f.margin[q] == g.margin[q] || (isnan(f.margin[q]) && isnan(g.margin[q])));
                for (int j = 0; j < k && k > 1; j++) same &= f.topk_sim[q * k + j] == g.topk_sim[q * k + j];
                if (p->multilabel) same &= f.mask[q] == g.mask[q];
                bad += !same;
                continue;
            }
            const float scale = fmaxf(1.0f, fabsf(g.sim[q]));
            if (!same) {
                /* A float tie: the references the two paths chose are as
                 * similar as rounding can make them (checked in double). */
                int tie = f.label[q] >= 0 &&
                          fabs(naive_sim(bank, qp, hw, f.index[q]) -
                               naive_sim(bank, qp, hw, g.index[q])) <= TIE_TOL * scale;
                for (int j = 0; j < k && k > 1; j++)
                    if (f.topk[q * k + j] != g.topk[q * k + j])
                        tie &= fabs(naive_sim(bank, qp, hw, f.topk[q * k + j]) -
                                    naive_sim(bank, qp, hw, g.topk[q * k + j])) <= TIE_TOL * scale;
                if (tie) ties++;
                else bad++;
                continue;
            }
            int ok = close_or_both_inf(f.sim[q], g.sim[q], scale) &&
                     close_or_both_inf(f.margin[q], g.margin[q], scale);
            for (int j = 0; j < k && k > 1; j++)
                ok &= close_or_both_inf(f.topk_sim[q * k + j], g.topk_sim[q * k + j], scale);
            if (p->multilabel) ok &= f.mask[q] == g.mask[q];
            if (!ok)
                fprintf(stderr, "  q %zu: sim %.9g/%.9g margin %.9g/%.9g\n", q, f.sim[q], g.sim[q],
                        f.margin[q], g.margin[q]);
            bad += !ok;
        }
        CHECK_MSG(bad == 0, "%s (%s vs generic): %d of %zu queries differ", p->name,
                  rl_match_kernel_name((rl_match_kernel)kern), bad, Q);
        CHECK_MSG(ties <= 2, "%s (%s): %d float ties is suspiciously many", p->name,
                  rl_match_kernel_name((rl_match_kernel)kern), ties);
        free_result(&f);
    }
    free_result(&g);
    free(feat);
    free(lab);
    free(mask);
    free(qf);
    rl_bank_free(bank);
}

static void test_kernels_against_generic(void) {
    /* name, dim, multilabel, similarity, mode, top_k, qt, rt, threading, sampling, cap,
     * batches, memory, h, w, integers */
    const kernel_case cases[] = {
        {"D16 mc cos top1", 16, 0, RL_SIM_COSINE, RL_MATCH_POOLED, 1, 0, 0, 1, RL_SAMPLE_ALL, 0, 2, 2, 9, 11, 0},
        {"D32 mc dot top1 odd tiles", 32, 0, RL_SIM_DOT, RL_MATCH_POOLED, 1, 37, 29, 1, RL_SAMPLE_ALL, 0, 3, 2, 7, 13, 0},
        {"D64 mc cos top5", 64, 0, RL_SIM_COSINE, RL_MATCH_POOLED, 5, 45, 100, 1, RL_SAMPLE_ALL, 0, 2, 2, 9, 11, 0},
        {"D128 mc dot top3 sgemm", 128, 0, RL_SIM_DOT, RL_MATCH_POOLED, 3, 70, 50, 2, RL_SAMPLE_ALL, 0, 2, 2, 8, 9, 0},
        {"D128 mc cos top1", 128, 0, RL_SIM_COSINE, RL_MATCH_POOLED, 1, 33, 1000, 1, RL_SAMPLE_ALL, 0, 1, 1, 5, 7, 0},
        {"D48 mc cos per-image", 48, 0, RL_SIM_COSINE, RL_MATCH_PER_IMAGE, 1, 20, 64, 1, RL_SAMPLE_ALL, 0, 3, 2, 9, 11, 0},
        {"D16 ml cos top1", 16, 1, RL_SIM_COSINE, RL_MATCH_POOLED, 1, 31, 33, 1, RL_SAMPLE_ALL, 0, 2, 2, 9, 11, 0},
        {"D64 ml dot top4", 64, 1, RL_SIM_DOT, RL_MATCH_POOLED, 4, 0, 0, 1, RL_SAMPLE_ALL, 0, 2, 2, 9, 11, 0},
        {"D32 ml cos per-image sgemm", 32, 1, RL_SIM_COSINE, RL_MATCH_PER_IMAGE, 1, 64, 40, 2, RL_SAMPLE_ALL, 0, 3, 2, 7, 9, 0},
        /* slots of at most 6 references: shorter than one group of either kernel */
        {"D32 tiny slots top2", 32, 0, RL_SIM_COSINE, RL_MATCH_POOLED, 2, 0, 0, 1, RL_SAMPLE_PER_CLASS, 1, 3, 3, 5, 5, 0},
        {"D17 odd dim", 17, 0, RL_SIM_COSINE, RL_MATCH_POOLED, 1, 9, 13, 1, RL_SAMPLE_ALL, 0, 2, 2, 9, 11, 0},
        /* exact ties everywhere */
        {"D16 integer ties top1", 16, 0, RL_SIM_DOT, RL_MATCH_POOLED, 1, 0, 25, 1, RL_SAMPLE_ALL, 0, 2, 2, 9, 11, 1},
        {"D32 integer ties top6", 32, 0, RL_SIM_DOT, RL_MATCH_POOLED, 6, 40, 0, 1, RL_SAMPLE_ALL, 0, 2, 2, 9, 11, 1},
        {"D64 integer ties per-image", 64, 0, RL_SIM_DOT, RL_MATCH_PER_IMAGE, 1, 0, 30, 2, RL_SAMPLE_ALL, 0, 3, 2, 9, 11, 1},
        {"D128 integer ties ml top3", 128, 1, RL_SIM_DOT, RL_MATCH_POOLED, 3, 50, 70, 1, RL_SAMPLE_ALL, 0, 2, 2, 7, 9, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_kernel_case(&cases[i]);

    /* Kernel choice: names, the environment variable, an unsupported kernel. */
    CHECK(rl_match_kernel_parse("avx512") == RL_KERNEL_AVX512);
    CHECK(rl_match_kernel_parse("generic") == RL_KERNEL_GENERIC);
    CHECK(rl_match_kernel_parse("sse") == -1 && rl_match_kernel_parse(NULL) == -1);
    rl_bank_config bc = {.dim = 8, .num_labels = 2, .ignore_label = -1, .sampling = RL_SAMPLE_ALL,
                         .max_images = 1, .max_image_pixels = 4, .memory_batches = 1};
    rl_match_config mc = {.top_k = 1, .threads = 1};
    rl_matcher m;
    rl_error err = {0, ""};
    const char *saved = getenv("RL_MATCH_KERNEL");
    char saved_copy[64] = "";
    if (saved) snprintf(saved_copy, sizeof saved_copy, "%s", saved);
    setenv("RL_MATCH_KERNEL", "generic", 1);
    CHECK_OK(rl_matcher_init(&m, &mc, &bc, &err));
    CHECK(m.cfg.kernel == RL_KERNEL_GENERIC);
    rl_matcher_free(&m);
    setenv("RL_MATCH_KERNEL", "bogus", 1);
    CHECK(rl_matcher_init(&m, &mc, &bc, &err) == RL_EINVAL && strstr(err.msg, "bogus"));
    mc.kernel = RL_KERNEL_GENERIC; /* an explicit kernel wins over the variable */
    CHECK_OK(rl_matcher_init(&m, &mc, &bc, &err));
    rl_matcher_free(&m);
    if (saved) setenv("RL_MATCH_KERNEL", saved_copy, 1);
    else unsetenv("RL_MATCH_KERNEL");
    mc.kernel = (rl_match_kernel)7;
    CHECK(rl_matcher_init(&m, &mc, &bc, &err) == RL_EINVAL);
    for (int kern = RL_KERNEL_AVX2; kern <= RL_KERNEL_AVX512; kern++) {
        mc.kernel = (rl_match_kernel)kern;
        int rc = rl_matcher_init(&m, &mc, &bc, &err);
        CHECK(rc == (rl_match_kernel_supported((rl_match_kernel)kern) ? 0 : RL_EINVAL));
        if (rc == 0) rl_matcher_free(&m);
    }
}

/* ---- ties, zero vectors, margin ------------------------------------------------ */

static void test_ties_and_margin(void) {
    /* Integer-valued dot products are exact in float, so these ties are exact. */
    const int dim = 2;
    rl_bank_config bc = {.dim = dim, .num_labels = 3, .ignore_label = -1,
                         .similarity = RL_SIM_DOT, .sampling = RL_SAMPLE_ALL, .max_images = 1,
                         .max_image_pixels = 4, .memory_batches = 2};
    rl_bank *bank = NULL;
    CHECK_OK(rl_bank_create(&bank, &bc, NULL));
    /* one image of 4 pixels, channels-first: pixel vectors (1,0) (1,0) (0,2) (1,0) */
    float f[8] = {1, 1, 0, 1, 0, 0, 2, 0};
    int32_t l[4] = {2, 1, 0, 1};
    CHECK_OK(rl_bank_add(bank, f, l, NULL, 1, 1, 4, NULL, NULL));
    /* stored by label: (0,2)/0, (1,0)/1, (1,0)/1, (1,0)/2 */
    CHECK(rl_bank_count(bank) == 4);
    CHECK(rl_bank_get(bank, 0).label == 0 && rl_bank_get(bank, 0).pixel == 2);
    CHECK(rl_bank_get(bank, 1).label == 1 && rl_bank_get(bank, 1).pixel == 1);
    CHECK(rl_bank_get(bank, 3).label == 2);
    rl_match_config mc = {.top_k = 1, .threads = 1, .ref_tile = 2}; /* a tie across tiles */
    rl_matcher m;
    CHECK_OK(rl_matcher_init(&m, &mc, &bc, NULL));
    /* query (3, 1): sims 2, 3, 3, 3 -> label 1 at index 1 (lowest tied index);
     * margin = 3 - best other label (label 2 also has 3) = 0 */
    float q[2] = {3, 1};
    int32_t lab, idx;
    float sim, mar;
    rl_match_out out = {.label = &lab, .similarity = &sim, .margin = &mar, .index = &idx};
    CHECK_OK(rl_match(&m, bank, q, 1, 1, 1, &out, NULL));
    CHECK(lab == 1 && idx == 1 && sim == 3.0f && mar == 0.0f);
    /* query (0, 1): sims 2, 0, 0, 0 -> label 0, margin 2 */
    float q2[2] = {0, 1};
    CHECK_OK(rl_match(&m, bank, q2, 1, 1, 1, &out, NULL));
    CHECK(lab == 0 && idx == 0 && sim == 2.0f && mar == 2.0f);
    /* top-3 vote for (3,1): refs 1, 2, 3 (sims 3,3,3): label 1 gets 6, label 2 gets 3 */
    rl_match_config mk = {.top_k = 3, .threads = 1};
    rl_matcher mkm;
    CHECK_OK(rl_matcher_init(&mkm, &mk, &bc, NULL));
    int32_t tki[3];
    float tks[3];
    rl_match_out outk = {.label = &lab, .similarity = &sim, .index = &idx, .topk_index = tki,
                         .topk_similarity = tks};
    CHECK_OK(rl_match(&mkm, bank, q, 1, 1, 1, &outk, NULL));
    CHECK(lab == 1 && tki[0] == 1 && tki[1] == 2 && tki[2] == 3 && tks[2] == 3.0f);
    rl_matcher_free(&mkm);
    /* k larger than the bank: the missing entries are index -1, similarity -inf */
    mk.top_k = 6;
    CHECK_OK(rl_matcher_init(&mkm, &mk, &bc, NULL));
    int32_t tki6[6];
    float tks6[6];
    outk.topk_index = tki6;
    outk.topk_similarity = tks6;
    CHECK_OK(rl_match(&mkm, bank, q, 1, 1, 1, &outk, NULL));
    CHECK(tki6[0] == 1 && tki6[3] == 0 && tks6[3] == 2.0f && tki6[4] == -1 && tki6[5] == -1 &&
          isinf(tks6[5]) && tks6[5] < 0);
    /* votes: label 1 gets 6, label 2 gets 3, label 0 gets 2 */
    CHECK(lab == 1 && sim == 3.0f);
    rl_matcher_free(&mkm);

    /* A bank of a single label: the margin is +infinity. */
    int32_t one[4] = {1, 1, 1, 1};
    rl_bank_clear(bank);
    CHECK_OK(rl_bank_add(bank, f, one, NULL, 1, 1, 4, NULL, NULL));
    CHECK_OK(rl_match(&m, bank, q, 1, 1, 1, &out, NULL));
    CHECK(lab == 1 && isinf(mar) && mar > 0);
    rl_matcher_free(&m);
    rl_bank_free(bank);

    /* Cosine: a zero reference has similarity 0 to everything; a zero query
     * ties every reference at 0 and so takes the lowest index. */
    bc.similarity = RL_SIM_COSINE;
    CHECK_OK(rl_bank_create(&bank, &bc, NULL));
    float fz[8] = {0, -1, 0, 0, 0, 0, 0, 0}; /* (0,0) (-1,0) (0,0) (0,0) */
    int32_t lz[4] = {1, 0, 2, 2};
    CHECK_OK(rl_bank_add(bank, fz, lz, NULL, 1, 1, 4, NULL, NULL));
    CHECK_OK(rl_matcher_init(&m, &mc, &bc, NULL));
    float qz[2] = {0, 0};
    CHECK_OK(rl_match(&m, bank, qz, 1, 1, 1, &out, NULL));
    CHECK(lab == 0 && idx == 0 && sim == 0.0f && mar == 0.0f);
    float qx[2] = {5, 0}; /* cos: -1 to (-1,0), 0 to the zero vectors -> label 1 (index 1) */
    CHECK_OK(rl_match(&m, bank, qx, 1, 1, 1, &out, NULL));
    CHECK(lab == 1 && idx == 1 && sim == 0.0f && mar == 0.0f);
    rl_matcher_free(&m);
    rl_bank_free(bank);
}

/* ---- sampling ------------------------------------------------------------------- */

static void label_histogram(const rl_bank *bank, int *hist, int labels) {
    memset(hist, 0, (size_t)labels * sizeof(int));
    for (int i = 0; i < rl_bank_count(bank); i++) hist[rl_bank_get(bank, i).label]++;
}

static void test_sampling(void) {
    const int dim = 3, n = 2, h = 10, w = 10, hw = 100, labels = 4;
    float feat[2 * 3 * 100];
    int32_t lab[200];
    rl_rng rng;
    rl_rng_seed(&rng, 5, 0);
    for (int i = 0; i < n * dim * hw; i++) feat[i] = rl_rng_normal(&rng);
    /* counts: label 0: 120, 1: 50, 2: 20, 3: 6, ignored: 4 */
    for (int i = 0; i < 200; i++)
        lab[i] = i < 120 ? 0 : i < 170 ? 1 : i < 190 ? 2 : i < 196 ? 3 : IGNORE;
    rl_rng_shuffle(&rng, lab, 200);
    rl_bank_config bc = {.dim = dim, .num_labels = labels, .ignore_label = IGNORE,
                         .similarity = RL_SIM_DOT, .sampling = RL_SAMPLE_PER_CLASS,
                         .per_class_cap = 30, .max_images = n, .max_image_pixels = hw,
                         .memory_batches = 1};
    rl_bank *bank = NULL, *again = NULL;
    int hist[4];
    CHECK_OK(rl_bank_create(&bank, &bc, NULL));
    CHECK(rl_bank_slot_capacity(&bc) == 120);
    rl_rng r1, r2;
    rl_rng_seed(&r1, 77, 1);
    CHECK_OK(rl_bank_add(bank, feat, lab, NULL, n, h, w, &r1, NULL));
    label_histogram(bank, hist, labels);
    CHECK(hist[0] == 30 && hist[1] == 30 && hist[2] == 20 && hist[3] == 6);
    /* every entry is a real pixel of its label, stored once, features copied */
    int dup = 0, wrong = 0;
    for (int i = 0; i < rl_bank_count(bank); i++) {
        rl_bank_entry e = rl_bank_get(bank, i);
        int px = e.image * hw + e.pixel;
        wrong += lab[px] != e.label || e.vector[1] != feat[(e.image * dim + 1) * hw + e.pixel];
        for (int j = 0; j < i; j++) {
            rl_bank_entry o = rl_bank_get(bank, j);
            dup += o.image == e.image && o.pixel == e.pixel;
        }
    }
    CHECK(dup == 0 && wrong == 0);
    /* same seed -> same bank; another seed -> another draw */
    CHECK_OK(rl_bank_create(&again, &bc, NULL));
    rl_rng_seed(&r2, 77, 1);
    CHECK_OK(rl_bank_add(again, feat, lab, NULL, n, h, w, &r2, NULL));
    int same = rl_bank_count(bank) == rl_bank_count(again);
    for (int i = 0; same && i < rl_bank_count(bank); i++)
        same = rl_bank_get(bank, i).pixel == rl_bank_get(again, i).pixel &&
               rl_bank_get(bank, i).image == rl_bank_get(again, i).image;
    CHECK(same);
    rl_rng_seed(&r2, 78, 1);
    CHECK_OK(rl_bank_add(again, feat, lab, NULL, n, h, w, &r2, NULL));
    int differs = 0;
    for (int i = 0; i < rl_bank_count(bank); i++)
        differs += rl_bank_get(bank, i).pixel != rl_bank_get(again, i).pixel;
    CHECK(differs > 0);
    rl_bank_free(again);

    /* Uniform without replacement: over many draws every label-0 pixel is
     * kept about 30/120 of the time. */
    int *kept = calloc(200, sizeof(int));
    const int trials = 400;
    for (int t = 0; t < trials; t++) {
        CHECK_OK(rl_bank_add(bank, feat, lab, NULL, n, h, w, &r1, NULL));
        for (int i = 0; i < rl_bank_count(bank); i++) {
            rl_bank_entry e = rl_bank_get(bank, i);
            kept[e.image * hw + e.pixel]++;
        }
    }
    int far = 0;
    for (int i = 0; i < 200; i++)
        if (lab[i] == 0) far += fabs(kept[i] / (double)trials - 0.25) > 0.09; /* ~4 sigma */
    CHECK_MSG(far == 0, "%d label-0 pixels far from the 1/4 inclusion rate", far);
    free(kept);
    rl_bank_free(bank);

    /* Proportional: 100 of 196 labeled pixels -> shares 61.2, 25.5, 10.2, 3.06
     * -> largest remainders 61, 26, 10, 3 (sum 100), then the floor 5 lifts label 3. */
    bc.sampling = RL_SAMPLE_PROPORTIONAL;
    bc.sample_count = 100;
    bc.class_floor = 5;
    CHECK_OK(rl_bank_create(&bank, &bc, NULL));
    CHECK(rl_bank_slot_capacity(&bc) == 120);
    CHECK_OK(rl_bank_add(bank, feat, lab, NULL, n, h, w, &r1, NULL));
    label_histogram(bank, hist, labels);
    CHECK_MSG(hist[0] == 61 && hist[1] == 26 && hist[2] == 10 && hist[3] == 5,
              "proportional got %d %d %d %d", hist[0], hist[1], hist[2], hist[3]);
    rl_bank_free(bank);
    /* a floor above a label's count keeps all of it, no more */
    bc.class_floor = 8;
    CHECK_OK(rl_bank_create(&bank, &bc, NULL));
    CHECK_OK(rl_bank_add(bank, feat, lab, NULL, n, h, w, &r1, NULL));
    label_histogram(bank, hist, labels);
    CHECK(hist[3] == 6 && hist[2] == 10);
    rl_bank_free(bank);
    /* asking for more than the batch holds takes every labeled pixel */
    bc.sample_count = 500;
    CHECK_OK(rl_bank_create(&bank, &bc, NULL));
    CHECK_OK(rl_bank_add(bank, feat, lab, NULL, n, h, w, &r1, NULL));
    CHECK(rl_bank_count(bank) == 196);
    rl_bank_free(bank);

    /* All: every labeled pixel, grouped by image then label then pixel. */
    bc.sampling = RL_SAMPLE_ALL;
    CHECK_OK(rl_bank_create(&bank, &bc, NULL));
    CHECK_OK(rl_bank_add(bank, feat, lab, NULL, n, h, w, NULL, NULL));
    CHECK(rl_bank_count(bank) == 196);
    int ordered = 1;
    for (int i = 1; i < 196; i++) {
        rl_bank_entry a = rl_bank_get(bank, i - 1), b = rl_bank_get(bank, i);
        long ka = ((long)a.image * labels + a.label) * hw + a.pixel;
        long kb = ((long)b.image * labels + b.label) * hw + b.pixel;
        ordered &= ka < kb;
    }
    CHECK(ordered);
    rl_bank_free(bank);
}

static void test_fifo(void) {
    rl_bank_config bc = {.dim = 2, .num_labels = 8, .ignore_label = -1,
                         .similarity = RL_SIM_DOT, .sampling = RL_SAMPLE_ALL, .max_images = 2,
                         .max_image_pixels = 4, .memory_batches = 3};
    rl_bank *bank = NULL;
    CHECK_OK(rl_bank_create(&bank, &bc, NULL));
    float f[2 * 2 * 4];
    int32_t l[8];
    for (int b = 0; b < 5; b++) {
        int images = 1 + b % 2;
        for (int i = 0; i < 16; i++) f[i] = (float)(b * 100 + i);
        for (int i = 0; i < 8; i++) l[i] = b;
        CHECK_OK(rl_bank_add(bank, f, l, NULL, images, 2, 2, NULL, NULL));
        int expect_batches = b + 1 < 3 ? b + 1 : 3;
        int count = rl_bank_count(bank);
        /* oldest kept batch first */
        int first = b + 1 - expect_batches, ok = 1, expect_count = 0, expect_images = 0;
        for (int k = first; k <= b; k++) {
            expect_count += 4 * (1 + k % 2);
            expect_images += 1 + k % 2;
        }
        CHECK(count == expect_count && rl_bank_images(bank) == expect_images);
        int idx = 0, image_base = 0;
        for (int k = first; k <= b; k++) {
            for (int i = 0; i < 4 * (1 + k % 2); i++, idx++) {
                rl_bank_entry e = rl_bank_get(bank, idx);
                ok &= e.batch == k && e.label == k && e.image == image_base + i / 4 &&
                      e.vector[0] == (float)(k * 100 + (i / 4) * 8 + i % 4);
            }
            image_base += 1 + k % 2;
        }
        CHECK_MSG(ok, "FIFO content wrong after batch %d", b);
    }
    rl_bank_free(bank);
}

/* ---- export and import ------------------------------------------------------ */

/* rl_bank_import's source over an exported state (shapes checked as the
 * trainer's state file checks them). */
static const void *state_array(void *ctx, const char *name, rl_array_type type, int ndim,
                               int64_t *shape, rl_error *err) {
    const rl_bank_state *s = ctx;
    for (int i = 0; i < s->count; i++) {
        const rl_array *a = &s->arrays[i];
        if (strcmp(a->name, name)) continue;
        int same = a->type == type && a->ndim == ndim;
        for (int d = 0; same && d < ndim; d++) same = shape[d] < 0 || a->shape[d] == shape[d];
        if (!same) {
            rl_error_set(err, RL_EFORMAT, "%s: wrong type or shape", name);
            return NULL;
        }
        for (int d = 0; d < ndim; d++) shape[d] = a->shape[d];
        return a->data;
    }
    rl_error_set(err, RL_EFORMAT, "%s is missing", name);
    return NULL;
}

/* A bank wrapped around its ring, exported and imported into a fresh one,
 * holds the same references in the same order; a damaged index is refused
 * by the check pass and changes nothing. */
static void test_export_import(void) {
    for (int multilabel = 0; multilabel < 2; multilabel++) {
        rl_bank_config bc = {.dim = 2, .num_labels = 8, .ignore_label = -1,
                             .multilabel = multilabel, .similarity = RL_SIM_DOT,
                             .sampling = RL_SAMPLE_ALL, .max_images = 2, .max_image_pixels = 4,
                             .memory_batches = 2};
        rl_bank *bank = NULL, *copy = NULL;
        CHECK_OK(rl_bank_create(&bank, &bc, NULL));
        CHECK_OK(rl_bank_create(&copy, &bc, NULL));
        float f[2 * 2 * 4];
        int32_t l[8];
        uint64_t m[8];
        for (int b = 0; b < 3; b++) {
            for (int i = 0; i < 16; i++) f[i] = (float)(b * 100 + i);
            for (int i = 0; i < 8; i++) {
                l[i] = (b + i) % 3;
                m[i] = (uint64_t)1 << ((b + i) % 3);
            }
            CHECK_OK(rl_bank_add(bank, f, multilabel ? NULL : l, multilabel ? m : NULL, 2, 2, 2,
                                 NULL, NULL));
        }
        rl_bank_state st;
        CHECK_OK(rl_bank_export(bank, &st, NULL));
        CHECK(st.count == (multilabel ? 6 : 5));
        /* a label id out of range in bank.refs: refused, the copy untouched */
        int64_t *refs = st.arrays[3].data, saved = refs[0];
        refs[0] = 99;
        rl_error err = {0, ""};
        CHECK(rl_bank_import(copy, state_array, &st, "test", 0, &err) == RL_EFORMAT);
        CHECK_MSG(strstr(err.msg, "bank.refs") != NULL, "message: %s", err.msg);
        CHECK(rl_bank_count(copy) == 0);
        refs[0] = saved;
        CHECK_OK(rl_bank_import(copy, state_array, &st, "test", 0, NULL));
        CHECK(rl_bank_count(copy) == 0);
        CHECK_OK(rl_bank_import(copy, state_array, &st, "test", 1, NULL));
        int ok = rl_bank_count(copy) == rl_bank_count(bank) &&
                 rl_bank_images(copy) == rl_bank_images(bank) &&
                 rl_bank_label_count(copy) == rl_bank_label_count(bank);
        for (int i = 0; ok && i < rl_bank_count(bank); i++) {
            rl_bank_entry a = rl_bank_get(bank, i), b = rl_bank_get(copy, i);
            ok = a.label == b.label && a.mask == b.mask && a.image == b.image &&
                 a.pixel == b.pixel && a.batch == b.batch && a.vector[0] == b.vector[0] &&
                 a.vector[1] == b.vector[1];
        }
        CHECK_MSG(ok, "imported bank differs (multilabel %d)", multilabel);
        rl_bank_state_free(&st);
        rl_bank_free(copy);
        rl_bank_free(bank);
    }
}

/* ---- scratch bound and errors ------------------------------------------------ */

static void test_scratch_and_errors(void) {
    rl_bank_config small = {.dim = 32, .num_labels = 5, .ignore_label = -1,
                            .similarity = RL_SIM_COSINE, .sampling = RL_SAMPLE_ALL,
                            .max_images = 4, .max_image_pixels = 1000, .memory_batches = 2};
    rl_bank_config large = small;
    large.max_image_pixels = 1000000;
    large.memory_batches = 64;
    rl_match_config mc = {.top_k = 1, .threads = 2, .query_tile = 128, .ref_tile = 1024};
    CHECK(rl_match_scratch_bytes(&mc, &small) == rl_match_scratch_bytes(&mc, &large));
    size_t tile = 2 * (128 * 1024 + 128 * 32) * sizeof(float);
    CHECK(rl_match_scratch_bytes(&mc, &small) < tile + 64 * 1024);
    rl_matcher m;
    CHECK_OK(rl_matcher_init(&m, &mc, &small, NULL));
    CHECK(m.scratch_bytes == rl_match_scratch_bytes(&mc, &small));

    rl_bank *bank = NULL;
    rl_error err = {0, ""};
    CHECK_OK(rl_bank_create(&bank, &small, NULL));
    float q[32] = {1};
    int32_t lab;
    rl_match_out out = {.label = &lab};
    CHECK(rl_match(&m, bank, q, 1, 1, 1, &out, &err) == RL_EINVAL);
    CHECK(strstr(err.msg, "empty") != NULL);
    int32_t bad = 5;
    CHECK(rl_bank_add(bank, q, &bad, NULL, 1, 1, 1, NULL, &err) == RL_ERANGE);
    CHECK(rl_bank_count(bank) == 0);
    q[3] = NAN;
    int32_t good = 1;
    CHECK(rl_bank_add(bank, q, &good, NULL, 1, 1, 1, NULL, &err) == RL_ENONFINITE);
    q[3] = 0;
    CHECK_OK(rl_bank_add(bank, q, &good, NULL, 1, 1, 1, NULL, &err));
    q[3] = INFINITY;
    CHECK(rl_match(&m, bank, q, 1, 1, 1, &out, &err) == RL_ENONFINITE);
    rl_bank_config other = small;
    other.dim = 16;
    rl_bank *wrong = NULL;
    CHECK_OK(rl_bank_create(&wrong, &other, NULL));
    CHECK(rl_match(&m, wrong, q, 1, 1, 1, &out, &err) == RL_EINVAL);
    rl_bank_free(wrong);
    rl_bank_free(bank);
    rl_matcher_free(&m);

    /* multi-label: more distinct masks than num_labels is refused, bank unchanged */
    rl_bank_config ml = small;
    ml.multilabel = 1;
    ml.num_labels = 2;
    ml.dim = 1;
    CHECK_OK(rl_bank_create(&bank, &ml, NULL));
    float f3[3] = {1, 2, 3};
    uint64_t masks[3] = {1, 2, 4};
    CHECK(rl_bank_add(bank, f3, NULL, masks, 1, 1, 3, NULL, &err) == RL_ERANGE);
    CHECK(rl_bank_label_count(bank) == 0 && rl_bank_count(bank) == 0);
    masks[2] = 1;
    CHECK_OK(rl_bank_add(bank, f3, NULL, masks, 1, 1, 3, NULL, &err));
    CHECK(rl_bank_label_count(bank) == 2 && rl_bank_label_mask(bank, 0) == 1 && rl_bank_label_mask(bank, 1) == 2);
    CHECK(rl_bank_add(bank, f3, &good, NULL, 1, 1, 1, NULL, &err) == RL_EINVAL);
    rl_bank_free(bank);

    rl_bank_config bad_cfg = small;
    bad_cfg.memory_batches = 0;
    CHECK(rl_bank_create(&bank, &bad_cfg, &err) == RL_EINVAL);
    rl_match_config bad_mc = {.mode = RL_MATCH_PER_IMAGE, .top_k = 3};
    CHECK(rl_matcher_init(&m, &bad_mc, &small, &err) == RL_EINVAL);
}

int main(void) {
    test_against_naive();
    test_kernels_against_generic();
    test_ties_and_margin();
    test_sampling();
    test_fifo();
    test_export_import();
    test_scratch_and_errors();
    return rl_test_report("test_match");
}
