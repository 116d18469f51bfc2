/* The matcher: for every query pixel, the reference of highest similarity.
 *
 * Exact brute force, organised so that the Q x R similarity matrix never
 * exists: a block of query_tile queries is multiplied by ref_tile references
 * at a time (rl_sgemm into a tile that stays in cache), and each tile is
 * reduced at once into running bests. The bank stores references in runs of
 * equal (image, label), so a tile row is reduced run by run with a plain
 * vectorised max, updating one running best per "state": per label (pooled
 * matching) or per (reference image, label) (per-image voting). Labels, the
 * margin and the votes all follow from those few states per query.
 *
 * Ties: references are visited in increasing bank index and a running best
 * only moves on a strictly greater similarity, so the lowest index wins; the
 * states are combined with the same rule.
 *
 * That is the generic kernel. The fused kernels (match_kernels.c, AVX2 and
 * AVX-512, picked at run time) walk the same tiles and pieces but never form
 * the similarity tile: a panel of 32 queries meets the references of a piece
 * in registers and only the running bests are stored, lane-major
 * (state_best[state * padded_tile + query]) so that one vector compare checks
 * 16 queries at once. */
#include "bank_impl.h"
#include "match_kernels.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Chosen by measurement on the 2-core development machine (docs/PERFORMANCE.md):
 * a 128 x 1024 float tile is 512 KiB, about one core's L2. */
enum { DEFAULT_QUERY_TILE = 128, DEFAULT_REF_TILE = 1024, SGEMM_QUERY_TILE = 1024 };
/* The fused kernels hold no similarity tile, and gain from more queries per
 * block: each reference tile then comes from L3 once for 32 panels instead
 * of 4. Measured on the Xeon development machine (model 207; 1 thread, AVX-512,
 * Q = 4096, R = 262144): D = 64: 126 GFLOP/s at 128 x 1024, 150 at
 * 512 x 1152; D = 16 and 128: 84 and 123 at 128 x 1024, 131 and 159 at
 * 1024 x 1152.
 * 1152 = 96 groups of 12 (AVX-512) or 192 of 6 (AVX2), so a tile that is one
 * piece has no partial group. Where per-image voting has many states, smaller
 * query tiles keep the state arrays (query_tile x states x 8 bytes) under
 * FUSED_STATE_BYTES, in L2. */
enum { FUSED_QUERY_TILE = 1024, FUSED_REF_TILE = 1152, FUSED_STATE_BYTES = 1 << 20 };

/* Layout of one thread's share of the scratch, in bytes from its start.
 * Fused kernels: queries and states are padded to whole panels of RL_PANEL
 * queries, and there is no similarity tile. */
typedef struct share_layout {
    size_t queries;     /* query_tile x D floats: the block's (normalised) queries */
    size_t sims;        /* query_tile x ref_tile floats: one similarity tile (generic) */
    size_t state_best;  /* query_tile x states floats */
    size_t state_index; /* query_tile x states int32 */
    size_t kth;         /* query_tile floats: k-th best so far (fused, top_k > 1) */
    size_t topk_sim;    /* query_tile x top_k floats (top_k > 1) */
    size_t topk_index;  /* query_tile x top_k int32 */
    size_t topk_label;  /* query_tile x top_k int32 */
    size_t pieces;      /* 4 x max_runs int: one ref tile cut into runs */
    size_t label_best;  /* labels floats */
    size_t label_index; /* labels int32 */
    size_t votes;       /* labels doubles */
    size_t total;
} share_layout;

static size_t align_up(size_t n) { return (n + 63) & ~(size_t)63; }

/* Queries the fused path holds for a tile of qt: whole panels. */
static size_t padded_tile(int qt) {
    return ((size_t)qt + RL_PANEL - 1) / RL_PANEL * RL_PANEL;
}

static int max_runs_of(const rl_bank_config *b) {
    int64_t runs = (int64_t)b->max_images * b->num_labels;
    int cap = rl_bank_slot_capacity(b);
    return runs > cap ? cap : (int)runs;
}

static int states_of(const rl_match_config *c, const rl_bank_config *b) {
    int64_t s = b->num_labels;
    if (c->mode == RL_MATCH_PER_IMAGE) s *= (int64_t)b->memory_batches * b->max_images;
    return s > INT_MAX / 2 ? -1 : (int)s;
}

static share_layout layout_share(const rl_match_config *c, const rl_bank_config *b) {
    share_layout L;
    const int fused = c->kernel != RL_KERNEL_GENERIC;
    size_t qt = fused ? padded_tile(c->query_tile) : (size_t)c->query_tile;
    size_t rt = (size_t)c->ref_tile, k = (size_t)c->top_k;
    size_t states = (size_t)states_of(c, b), labels = (size_t)b->num_labels;
    size_t at = 0;
#define PLACE(field, bytes) (L.field = at, at += align_up(bytes))
    PLACE(queries, qt * (size_t)b->dim * sizeof(float));
    PLACE(sims, fused ? 0 : qt * rt * sizeof(float));
    PLACE(state_best, qt * states * sizeof(float));
    PLACE(state_index, qt * states * sizeof(int32_t));
    size_t kk = k > 1 ? k : 0;
    PLACE(kth, fused ? qt * (kk ? 1 : 0) * sizeof(float) : 0);
    PLACE(topk_sim, qt * kk * sizeof(float));
    PLACE(topk_index, qt * kk * sizeof(int32_t));
    PLACE(topk_label, qt * kk * sizeof(int32_t));
    PLACE(pieces, 4 * (size_t)max_runs_of(b) * sizeof(int));
    PLACE(label_best, labels * sizeof(float));
    PLACE(label_index, labels * sizeof(int32_t));
    PLACE(votes, labels * sizeof(double));
#undef PLACE
    L.total = at;
    return L;
}

/* ---- kernel choice ---------------------------------------------------------- */

static const char *const KERNEL_NAMES[] = {"auto", "generic", "avx2", "avx512"};

const char *rl_match_kernel_name(rl_match_kernel k) {
    return (int)k >= 0 && (int)k < 4 ? KERNEL_NAMES[k] : NULL;
}

int rl_match_kernel_parse(const char *name) {
    for (int k = 0; name && k < 4; k++)
        if (!strcmp(name, KERNEL_NAMES[k])) return k;
    return -1;
}

int rl_match_kernel_supported(rl_match_kernel k) {
    __builtin_cpu_init();
    switch (k) {
    case RL_KERNEL_AUTO:
    case RL_KERNEL_GENERIC: return 1;
    /* libgcc's checks include the OS's support for the registers (XCR0). */
    case RL_KERNEL_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case RL_KERNEL_AVX512: return __builtin_cpu_supports("avx512f");
    }
    return 0;
}

/* AUTO becomes $RL_MATCH_KERNEL, else the widest kernel the CPU runs; an
 * unknown name in the variable gives -1 (rl_matcher_init reports it). */
static int resolve_kernel(int requested) {
    if (requested == RL_KERNEL_AUTO) {
        const char *env = getenv("RL_MATCH_KERNEL");
        if (env && *env) requested = rl_match_kernel_parse(env);
    }
    if (requested == RL_KERNEL_AUTO) {
        /* AVX-512 first: on the Xeon development machine (model 207) it is
         * 2.0x the AVX2 kernel at D = 32, 64 and 128 (docs/PERFORMANCE.md,
         * "Fused kernels"): twice the lanes per FMA, at the same clock. */
        if (rl_match_kernel_supported(RL_KERNEL_AVX512)) return RL_KERNEL_AVX512;
        if (rl_match_kernel_supported(RL_KERNEL_AVX2)) return RL_KERNEL_AVX2;
        return RL_KERNEL_GENERIC;
    }
    return requested;
}

/* The config with its defaults filled in. */
static rl_match_config resolved(const rl_match_config *cfg, const rl_bank_config *b) {
    rl_match_config c = *cfg;
    c.kernel = (rl_match_kernel)resolve_kernel((int)c.kernel);
    if (c.top_k < 1) c.top_k = 1;
    if (c.threads <= 0) c.threads = rl_get_threads();
    if (c.threading == RL_THREAD_AUTO) c.threading = RL_THREAD_TILES;
    if (c.kernel != RL_KERNEL_GENERIC) {
        if (c.query_tile <= 0) {
            const int64_t states = states_of(&c, b) > 0 ? states_of(&c, b) : 1;
            c.query_tile = FUSED_QUERY_TILE;
            while (c.query_tile > 128 && (int64_t)c.query_tile * states * 8 > FUSED_STATE_BYTES)
                c.query_tile /= 2;
        }
        if (c.ref_tile <= 0) c.ref_tile = FUSED_REF_TILE;
    }
    if (c.query_tile <= 0)
        c.query_tile = c.threading == RL_THREAD_SGEMM ? SGEMM_QUERY_TILE : DEFAULT_QUERY_TILE;
    if (c.ref_tile <= 0) c.ref_tile = DEFAULT_REF_TILE;
    return c;
}

size_t rl_match_scratch_bytes(const rl_match_config *cfg, const rl_bank_config *bank_cfg) {
    rl_match_config c = resolved(cfg, bank_cfg);
    if (states_of(&c, bank_cfg) < 0) return SIZE_MAX;
    return (size_t)c.threads * layout_share(&c, bank_cfg).total;
}

int rl_matcher_init(rl_matcher *m, const rl_match_config *cfg, const rl_bank_config *bank_cfg,
                    rl_error *err) {
    memset(m, 0, sizeof *m);
    rl_match_config c = resolved(cfg, bank_cfg);
    if (c.mode != RL_MATCH_POOLED && c.mode != RL_MATCH_PER_IMAGE)
        return rl_error_set(err, RL_EINVAL, "matcher: unknown mode %d", (int)c.mode);
    if (c.threading != RL_THREAD_TILES && c.threading != RL_THREAD_SGEMM)
        return rl_error_set(err, RL_EINVAL, "matcher: unknown threading %d", (int)c.threading);
    if (!rl_match_kernel_name(c.kernel) || c.kernel == RL_KERNEL_AUTO)
        return rl_error_set(err, RL_EINVAL,
                            "matcher: unknown kernel (RL_MATCH_KERNEL='%s'; expected generic, "
                            "avx2, avx512 or auto)",
                            getenv("RL_MATCH_KERNEL") ? getenv("RL_MATCH_KERNEL") : "");
    if (!rl_match_kernel_supported(c.kernel))
        return rl_error_set(err, RL_EINVAL, "matcher: this CPU cannot run the %s kernel",
                            rl_match_kernel_name(c.kernel));
    if (c.top_k > 1 && c.mode != RL_MATCH_POOLED)
        return rl_error_set(err, RL_EINVAL, "matcher: top_k > 1 applies to pooled matching only");
    if (c.top_k > 1024 || c.query_tile > (1 << 16) || c.ref_tile > (1 << 20))
        return rl_error_set(err, RL_ERANGE,
                            "matcher: top_k %d, query_tile %d or ref_tile %d is too large",
                            c.top_k, c.query_tile, c.ref_tile);
    if (bank_cfg->dim < 1 || bank_cfg->num_labels < 1 || bank_cfg->max_images < 1 ||
        bank_cfg->memory_batches < 1 || rl_bank_slot_capacity(bank_cfg) < 1)
        return rl_error_set(err, RL_EINVAL, "matcher: invalid bank config");
    if (states_of(&c, bank_cfg) < 0)
        return rl_error_set(err, RL_ERANGE, "matcher: too many reference images x labels");
    m->cfg = c;
    m->dim = bank_cfg->dim;
    m->num_labels = bank_cfg->num_labels;
    m->states = states_of(&c, bank_cfg);
    m->thread_bytes = layout_share(&c, bank_cfg).total;
    m->scratch_threads = c.threads;
    m->scratch_bytes = m->thread_bytes * (size_t)c.threads;
    m->scratch = aligned_alloc(64, m->scratch_bytes);
    if (!m->scratch)
        return rl_error_set(err, RL_ENOMEM, "matcher: cannot allocate %zu bytes of scratch",
                            m->scratch_bytes);
    return RL_OK;
}

void rl_matcher_free(rl_matcher *m) {
    free(m->scratch);
    memset(m, 0, sizeof *m);
}

/* ---- the tile reduction ---------------------------------------------------- */

/* One tile's references cut into runs of a single state. */
typedef struct tile_pieces {
    int count;
    int *begin, *end; /* columns of the tile */
    int *state;       /* running best the piece updates */
    int32_t *label;   /* label of its references */
} tile_pieces;

typedef struct block_ctx {
    const rl_matcher *m;
    const rl_bank *bank;
    const float *features; /* (n, D, h, w) */
    size_t hw;
    const rl_match_out *out;
} block_ctx;

/* Folds similarity rows sims[r * ld + col] for r in [r0, r1) into the running
 * bests. index_base is the bank index of tile column 0.
 * Compiled for AVX2 and for the baseline ISA; the loader picks one. */
__attribute__((target_clones("avx2", "default"))) static void
reduce_rows(const float *sims, int ld, int r0, int r1, const tile_pieces *pieces,
            int32_t index_base, int states, float *state_best, int32_t *state_index, int top_k,
            float *topk_sim, int32_t *topk_index, int32_t *topk_label) {
    for (int r = r0; r < r1; r++) {
        const float *row = sims + (size_t)r * (size_t)ld;
        float *best = state_best + (size_t)r * (size_t)states;
        int32_t *best_index = state_index + (size_t)r * (size_t)states;
        for (int p = 0; p < pieces->count; p++) {
            const int a = pieces->begin[p], b = pieces->end[p], st = pieces->state[p];
            float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
            for (int j = a; j < b; j++) mx = row[j] > mx ? row[j] : mx;
            if (mx > best[st]) {
                int j = a;
                while (row[j] != mx) j++; /* first column holding the maximum */
                best[st] = mx;
                best_index[st] = index_base + j;
            }
            if (top_k > 1) {
                float *ks = topk_sim + (size_t)r * (size_t)top_k;
                int32_t *ki = topk_index + (size_t)r * (size_t)top_k;
                int32_t *kl = topk_label + (size_t)r * (size_t)top_k;
                if (mx <= ks[top_k - 1]) continue;
                for (int j = a; j < b; j++)
                    rl_topk_insert(ks, ki, kl, top_k, row[j], index_base + j, pieces->label[p]);
            }
        }
    }
}

/* Better (similarity, index) pair: higher similarity, then lower index. */
static int beats(float s, int32_t i, float best_s, int32_t best_i) {
    return s > best_s || (s == best_s && i < best_i);
}

/* Adds a vote of weight w for label l; votes start at -INFINITY = "none". */
static void add_vote(double *votes, int l, double w) {
    votes[l] = (votes[l] == -INFINITY ? 0.0 : votes[l]) + w;
}

/* Turns one query's running bests into its outputs. Its state s is at
 * best[s * ss] and best_index[s * ss] (ss = 1: the generic path's rows; the
 * fused path's lane-major layout: the padded query tile). */
static void finish_query(const block_ctx *ctx, const unsigned char *share, unsigned char *own,
                         const share_layout *L, int row, size_t q, const float *best,
                         const int32_t *best_index, size_t ss) {
    const rl_matcher *m = ctx->m;
    const int labels = m->num_labels, states = m->states, k = m->cfg.top_k;
    float *label_best = (float *)(own + L->label_best);
    int32_t *label_index = (int32_t *)(own + L->label_index);
    double *votes = (double *)(own + L->votes);
    for (int l = 0; l < labels; l++) {
        label_best[l] = -INFINITY;
        label_index[l] = INT32_MAX; /* no reference of this label */
        votes[l] = -INFINITY;
    }
    /* Best reference of every label over the whole bank; for per-image
     * matching (states = image * labels + label) also each image's vote. */
    for (int s0 = 0; s0 < states; s0 += labels) {
        int image_label = -1;
        for (int l = 0; l < labels; l++) {
            const float s = best[(size_t)(s0 + l) * ss];
            const int32_t i = best_index[(size_t)(s0 + l) * ss];
            if (i == INT32_MAX) continue;
            if (beats(s, i, label_best[l], label_index[l])) {
                label_best[l] = s;
                label_index[l] = i;
            }
            if (image_label < 0 || beats(s, i, best[(size_t)(s0 + image_label) * ss],
                                         best_index[(size_t)(s0 + image_label) * ss]))
                image_label = l;
        }
        if (m->cfg.mode == RL_MATCH_PER_IMAGE && image_label >= 0)
            add_vote(votes, image_label, best[(size_t)(s0 + image_label) * ss]);
    }
    if (k > 1) {
        const float *ks = (const float *)(share + L->topk_sim) + (size_t)row * k;
        const int32_t *kl = (const int32_t *)(share + L->topk_label) + (size_t)row * k;
        for (int i = 0; i < k; i++)
            if (ks[i] > -INFINITY) add_vote(votes, kl[i], ks[i]);
    }
    int winner = -1;
    if (m->cfg.mode == RL_MATCH_PER_IMAGE || k > 1) {
        /* The largest vote total wins; equal totals go to the lower label. */
        for (int l = 0; l < labels; l++)
            if (votes[l] > -INFINITY && (winner < 0 || votes[l] > votes[winner])) winner = l;
    } else {
        for (int l = 0; l < labels; l++)
            if (label_index[l] != INT32_MAX &&
                (winner < 0 ||
                 beats(label_best[l], label_index[l], label_best[winner], label_index[winner])))
                winner = l;
    }
    float other = -INFINITY;
    int others = 0;
    for (int l = 0; l < labels; l++)
        if (l != winner && label_index[l] != INT32_MAX) {
            others = 1;
            if (label_best[l] > other) other = label_best[l];
        }
    const rl_match_out *out = ctx->out;
    if (out->label) out->label[q] = winner;
    if (out->mask) out->mask[q] = ctx->bank->masks[winner];
    if (out->similarity) out->similarity[q] = label_best[winner];
    if (out->margin) out->margin[q] = others ? label_best[winner] - other : INFINITY;
    if (out->index) out->index[q] = label_index[winner];
    if (k > 1) {
        const float *ks = (const float *)(share + L->topk_sim) + (size_t)row * k;
        const int32_t *ki = (const int32_t *)(share + L->topk_index) + (size_t)row * k;
        for (int i = 0; i < k; i++) {
            if (out->topk_index) out->topk_index[q * (size_t)k + i] = ks[i] > -INFINITY ? ki[i] : -1;
            if (out->topk_similarity) out->topk_similarity[q * (size_t)k + i] = ks[i];
        }
    }
}

/* Cuts the bank columns [t0, t1) of one slot into pieces of a single state. */
static void cut_tile(const block_ctx *ctx, int slot, int t0, int t1, int *run_cursor,
                     tile_pieces *pc) {
    const rl_bank *bank = ctx->bank;
    const int labels = ctx->m->num_labels;
    const int runs = bank->slot_runs[slot], count = bank->slot_count[slot];
    const size_t r0 = (size_t)slot * (size_t)bank->max_runs;
    pc->count = 0;
    int r = *run_cursor;
    while (r < runs) {
        int start = bank->run_start[r0 + r];
        int end = r + 1 < runs ? bank->run_start[r0 + r + 1] : count;
        if (start >= t1) break;
        int label = bank->run_label[r0 + r];
        pc->begin[pc->count] = (start > t0 ? start : t0) - t0;
        pc->end[pc->count] = (end < t1 ? end : t1) - t0;
        pc->label[pc->count] = label;
        pc->state[pc->count] =
            ctx->m->cfg.mode == RL_MATCH_POOLED
                ? label
                : (slot * bank->cfg.max_images + bank->run_image[r0 + r]) * labels + label;
        pc->count++;
        if (end > t1) break; /* the run continues in the next tile */
        r++;
    }
    *run_cursor = r;
}

/* Matches the queries [p0, p0 + nq) of image `image`. With row_threads > 1
 * the tile reductions are spread over that many OpenMP threads (the sgemm is
 * then expected to be threaded by OpenBLAS itself). */
static void match_block(const block_ctx *ctx, unsigned char *share, const share_layout *L,
                        int image, int p0, int nq, int row_threads) {
    const rl_matcher *m = ctx->m;
    const rl_bank *bank = ctx->bank;
    const int dim = m->dim, states = m->states, k = m->cfg.top_k, rt = m->cfg.ref_tile;
    const size_t hw = ctx->hw;
    float *queries = (float *)(share + L->queries);
    float *sims = (float *)(share + L->sims);
    float *state_best = (float *)(share + L->state_best);
    int32_t *state_index = (int32_t *)(share + L->state_index);
    float *topk_sim = (float *)(share + L->topk_sim);
    int32_t *topk_index = (int32_t *)(share + L->topk_index);
    int32_t *topk_label = (int32_t *)(share + L->topk_label);
    int *piece_mem = (int *)(share + L->pieces);
    const int max_runs = bank->max_runs;
    tile_pieces pc = {0, piece_mem, piece_mem + max_runs, piece_mem + 2 * max_runs,
                      (int32_t *)(piece_mem + 3 * max_runs)};

    /* Queries as rows (nq, D), L2-normalised for cosine (zero stays zero). */
    const float *src = ctx->features + (size_t)image * (size_t)dim * hw + (size_t)p0;
    for (int d = 0; d < dim; d++)
        for (int i = 0; i < nq; i++) queries[(size_t)i * dim + d] = src[(size_t)d * hw + i];
    if (bank->cfg.similarity == RL_SIM_COSINE) {
        for (int i = 0; i < nq; i++) rl_normalize_query(queries + (size_t)i * dim, dim, 1);
    }
    for (size_t i = 0; i < (size_t)nq * states; i++) {
        state_best[i] = -INFINITY;
        state_index[i] = INT32_MAX;
    }
    if (k > 1)
        for (size_t i = 0; i < (size_t)nq * k; i++) {
            topk_sim[i] = -INFINITY;
            topk_index[i] = -1;
            topk_label[i] = -1;
        }

    int32_t slot_base = 0; /* bank index of the slot's first reference */
    for (int logical = 0; logical < bank->filled; logical++) {
        const int slot = (bank->oldest + logical) % bank->cfg.memory_batches;
        const int count = bank->slot_count[slot];
        const float *refs = bank->vectors + (size_t)slot * bank->slot_capacity * (size_t)dim;
        int run_cursor = 0;
        for (int t0 = 0; t0 < count; t0 += rt) {
            const int t1 = count - t0 > rt ? t0 + rt : count;
            /* sims (nq, t1 - t0) = queries (nq, D) . refs[t0:t1] (t1 - t0, D)^T */
            rl_sgemm(0, 1, nq, t1 - t0, dim, 1.0f, queries, dim, refs + (size_t)t0 * dim, dim,
                     0.0f, sims, rt);
            cut_tile(ctx, slot, t0, t1, &run_cursor, &pc);
            if (row_threads > 1) {
#pragma omp parallel for num_threads(row_threads) schedule(static)
                for (int r = 0; r < nq; r++)
                    reduce_rows(sims, rt, r, r + 1, &pc, slot_base + t0, states, state_best,
                                state_index, k, topk_sim, topk_index, topk_label);
            } else {
                reduce_rows(sims, rt, 0, nq, &pc, slot_base + t0, states, state_best,
                            state_index, k, topk_sim, topk_index, topk_label);
            }
        }
        slot_base += count;
    }

    const size_t q0 = (size_t)image * hw + (size_t)p0;
    if (row_threads > 1) {
#pragma omp parallel for num_threads(row_threads) schedule(static)
        for (int r = 0; r < nq; r++)
            finish_query(ctx, share, m->scratch + (size_t)omp_get_thread_num() * m->thread_bytes, L, r,
                         q0 + (size_t)r, state_best + (size_t)r * states,
                         state_index + (size_t)r * states, 1);
    } else {
        for (int r = 0; r < nq; r++)
            finish_query(ctx, share, share, L, r, q0 + (size_t)r, state_best + (size_t)r * states,
                         state_index + (size_t)r * states, 1);
    }
}

/* match_block for the fused kernels: the same tiles and pieces, and the same
 * outputs, without the similarity tile. With row_threads > 1 the panels of
 * each reference tile are spread over that many OpenMP threads. */
static void match_block_fused(const block_ctx *ctx, unsigned char *share, const share_layout *L,
                              int image, int p0, int nq, int row_threads) {
    const rl_matcher *m = ctx->m;
    const rl_bank *bank = ctx->bank;
    const int dim = m->dim, states = m->states, k = m->cfg.top_k, rt = m->cfg.ref_tile;
    const size_t hw = ctx->hw, qtp = padded_tile(m->cfg.query_tile);
    const int panels = (nq + RL_PANEL - 1) / RL_PANEL;
    void (*kernel)(const rl_fused_piece *) =
        m->cfg.kernel == RL_KERNEL_AVX512 ? rl_fused_piece_avx512 : rl_fused_piece_avx2;
    float *queries = (float *)(share + L->queries); /* panels of D x RL_PANEL */
    float *state_best = (float *)(share + L->state_best);     /* [state * qtp + query] */
    int32_t *state_index = (int32_t *)(share + L->state_index);
    float *kth = (float *)(share + L->kth);
    float *topk_sim = (float *)(share + L->topk_sim);
    int32_t *topk_index = (int32_t *)(share + L->topk_index);
    int32_t *topk_label = (int32_t *)(share + L->topk_label);
    int *piece_mem = (int *)(share + L->pieces);
    const int max_runs = bank->max_runs;
    tile_pieces pc = {0, piece_mem, piece_mem + max_runs, piece_mem + 2 * max_runs,
                      (int32_t *)(piece_mem + 3 * max_runs)};

    /* Queries into panels (zero padding after the last one), then the same
     * normalisation as match_block, in the same order, so the normalised
     * queries are bit-identical to the generic path's. */
    const float *src = ctx->features + (size_t)image * (size_t)dim * hw + (size_t)p0;
    for (int pn = 0; pn < panels; pn++) {
        float *dst = queries + (size_t)pn * (size_t)dim * RL_PANEL;
        const int i0 = pn * RL_PANEL, n = nq - i0 < RL_PANEL ? nq - i0 : RL_PANEL;
        for (int d = 0; d < dim; d++) {
            const float *row = src + (size_t)d * hw + (size_t)i0;
            float *out = dst + (size_t)d * RL_PANEL;
            for (int i = 0; i < n; i++) out[i] = row[i];
            for (int i = n; i < RL_PANEL; i++) out[i] = 0.0f;
        }
        if (bank->cfg.similarity == RL_SIM_COSINE) {
            for (int i = 0; i < n; i++) rl_normalize_query(dst + i, dim, RL_PANEL);
        }
    }
    const size_t lanes_total = (size_t)panels * RL_PANEL;
    for (int st = 0; st < states; st++)
        for (size_t i = 0; i < lanes_total; i++) {
            state_best[(size_t)st * qtp + i] = -INFINITY;
            state_index[(size_t)st * qtp + i] = INT32_MAX;
        }
    if (k > 1) {
        for (size_t i = 0; i < lanes_total; i++) kth[i] = -INFINITY;
        for (size_t i = 0; i < (size_t)nq * k; i++) {
            topk_sim[i] = -INFINITY;
            topk_index[i] = -1;
            topk_label[i] = -1;
        }
    }

    int32_t slot_base = 0;
    for (int logical = 0; logical < bank->filled; logical++) {
        const int slot = (bank->oldest + logical) % bank->cfg.memory_batches;
        const int count = bank->slot_count[slot];
        const float *refs = bank->vectors + (size_t)slot * bank->slot_capacity * (size_t)dim;
        int run_cursor = 0;
        for (int t0 = 0; t0 < count; t0 += rt) {
            const int t1 = count - t0 > rt ? t0 + rt : count;
            cut_tile(ctx, slot, t0, t1, &run_cursor, &pc);
            /* Panel-outer inside the tile: the tile's references (rt x D
             * floats, 256 KiB at D = 64) stay in L2 while every panel of
             * the block passes over them; one panel (8 KiB) stays in L1. */
#pragma omp parallel for num_threads(row_threads) schedule(static) if (row_threads > 1)
            for (int pn = 0; pn < panels; pn++) {
                const int n = nq - pn * RL_PANEL;
                rl_fused_piece fp = {
                    .panel = queries + (size_t)pn * (size_t)dim * RL_PANEL,
                    .refs = refs,
                    .dim = dim,
                    .index_base = slot_base,
                    .lanes = n >= RL_PANEL ? 0xffffffffu : (1u << n) - 1u,
                    .top_k = k,
                    .kth = kth + (size_t)pn * RL_PANEL,
                    .topk_sim = topk_sim + (size_t)pn * RL_PANEL * k,
                    .topk_index = topk_index + (size_t)pn * RL_PANEL * k,
                    .topk_label = topk_label + (size_t)pn * RL_PANEL * k,
                };
                for (int p = 0; p < pc.count; p++) {
                    fp.a = t0 + pc.begin[p];
                    fp.b = t0 + pc.end[p];
                    if (fp.a >= fp.b) continue;
                    fp.best = state_best + (size_t)pc.state[p] * qtp + (size_t)pn * RL_PANEL;
                    fp.best_index =
                        state_index + (size_t)pc.state[p] * qtp + (size_t)pn * RL_PANEL;
                    fp.label = pc.label[p];
                    kernel(&fp);
                }
            }
        }
        slot_base += count;
    }

    const size_t q0 = (size_t)image * hw + (size_t)p0;
#pragma omp parallel for num_threads(row_threads) schedule(static) if (row_threads > 1)
    for (int r = 0; r < nq; r++) {
        unsigned char *own =
            row_threads > 1 ? m->scratch + (size_t)omp_get_thread_num() * m->thread_bytes : share;
        finish_query(ctx, share, own, L, r, q0 + (size_t)r, state_best + r, state_index + r, qtp);
    }
}

int rl_match(rl_matcher *m, const rl_bank *bank, const float *features, int n, int h, int w,
             const rl_match_out *out, rl_error *err) {
    if (!m->scratch) return rl_error_set(err, RL_EINVAL, "match: matcher is not initialised");
    if (!features || !out) return rl_error_set(err, RL_EINVAL, "match: features or out is NULL");
    if (n < 1 || h < 1 || w < 1 || (int64_t)n * h * w > INT32_MAX)
        return rl_error_set(err, RL_ERANGE, "match: bad query size %d x %d x %d", n, h, w);
    if (bank->cfg.dim != m->dim || bank->cfg.num_labels != m->num_labels ||
        states_of(&m->cfg, &bank->cfg) != m->states ||
        layout_share(&m->cfg, &bank->cfg).total > m->thread_bytes)
        return rl_error_set(err, RL_EINVAL,
                            "match: the bank's config differs from the one the matcher was "
                            "initialised for (dim %d vs %d)",
                            bank->cfg.dim, m->dim);
    if (out->mask && !bank->cfg.multilabel)
        return rl_error_set(err, RL_EINVAL, "match: mask output needs a multi-label bank");
    if (rl_bank_count(bank) == 0) return rl_error_set(err, RL_EINVAL, "match: the bank is empty");
    const size_t hw = (size_t)h * (size_t)w;
    const size_t numel = (size_t)n * (size_t)m->dim * hw;
    for (size_t i = 0; i < numel; i++)
        if (!isfinite(features[i]))
            return rl_error_set(err, RL_ENONFINITE, "match: query feature %zu is not finite", i);

    const share_layout L = layout_share(&m->cfg, &bank->cfg);
    block_ctx ctx = {m, bank, features, hw, out};
    const int qt = m->cfg.query_tile, threads = m->scratch_threads;
    const int per_image = (int)((hw + (size_t)qt - 1) / (size_t)qt);
    const int blocks = n * per_image;
    const int saved_blas_threads = openblas_get_num_threads();
    const int fused = m->cfg.kernel != RL_KERNEL_GENERIC;
    if (m->cfg.threading == RL_THREAD_TILES) {
        /* Each thread owns whole query blocks and runs its own sgemm, so the
         * tile it reduces is the one its core just wrote (hot in L2). */
        openblas_set_num_threads(1);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
        for (int b = 0; b < blocks; b++) {
            unsigned char *share = m->scratch + (size_t)omp_get_thread_num() * m->thread_bytes;
            int image = b / per_image, p0 = (b % per_image) * qt;
            int nq = (size_t)p0 + (size_t)qt <= hw ? qt : (int)(hw - (size_t)p0);
            if (fused) match_block_fused(&ctx, share, &L, image, p0, nq, 1);
            else match_block(&ctx, share, &L, image, p0, nq, 1);
        }
    } else {
        openblas_set_num_threads(threads);
        for (int b = 0; b < blocks; b++) {
            int image = b / per_image, p0 = (b % per_image) * qt;
            int nq = (size_t)p0 + (size_t)qt <= hw ? qt : (int)(hw - (size_t)p0);
            if (fused) match_block_fused(&ctx, m->scratch, &L, image, p0, nq, threads);
            else match_block(&ctx, m->scratch, &L, image, p0, nq, threads);
        }
    }
    openblas_set_num_threads(saved_blas_threads);
    return RL_OK;
}
