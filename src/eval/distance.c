/* Exact Euclidean distance transform with anisotropic spacing.
 *
 * Felzenszwalb & Huttenlocher, "Distance Transforms of Sampled Functions"
 * (2012): the squared EDT is separable, so it is computed as three passes of
 * the 1D transform d(q) = min_p (x_q - x_p)^2 + f(p), one per axis, where x
 * is the physical coordinate (index * spacing). Each 1D transform is the
 * lower envelope of the parabolas rooted at the finite f(p), found in one
 * left-to-right sweep, so the whole transform is O(voxels).
 *
 * Everything is in double: the metrics compare against scipy's
 * distance_transform_edt to 1e-6, and squared distances of a few thousand mm
 * lose nothing at this precision.
 */
#include <math.h>
#include <stdlib.h>

#include "reflabel/metrics.h"

/* Lines along y and z are strided; gathering LINE_BLOCK neighbouring lines
 * at once reads whole cache lines instead of one double from each. */
enum { LINE_BLOCK = 8 };

/* Work buffers of one thread for LINE_BLOCK lines of up to `len` samples. */
typedef struct line_buffers {
    double *in;   /* f: LINE_BLOCK lines before the pass, len apart */
    double *out;  /* d: the same lines after the pass */
    double *cut;  /* z: boundaries between envelope parabolas, len + 1 */
    int *root;    /* v: sample index of each envelope parabola */
} line_buffers;

static int line_buffers_init(line_buffers *b, int len) {
    b->in = malloc(sizeof(double) * LINE_BLOCK * (size_t)len);
    b->out = malloc(sizeof(double) * LINE_BLOCK * (size_t)len);
    b->cut = malloc(sizeof(double) * ((size_t)len + 1));
    b->root = malloc(sizeof(int) * (size_t)len);
    return b->in && b->out && b->cut && b->root;
}

static void line_buffers_free(line_buffers *b) {
    free(b->in);
    free(b->out);
    free(b->cut);
    free(b->root);
}

/* d[q] = min_p (step*(q - p))^2 + f[p] over the finite f[p]; +inf when no
 * f[p] is finite (no feature reachable along this line yet). z and v are
 * the envelope's work arrays. */
static void edt_1d(const double *f, double *d, double *z, int *v, int len, double step) {
    int k = -1; /* index of the rightmost envelope parabola */
    for (int q = 0; q < len; q++) {
        if (!isfinite(f[q])) continue;
        if (k < 0) {
            k = 0;
            v[0] = q;
            z[0] = -INFINITY;
            z[1] = INFINITY;
            continue;
        }
        const double xq = q * step;
        double s;
        for (;;) {
            /* Where parabola q overtakes parabola v[k]; written as a mean of
             * the two roots plus a correction, which avoids the cancellation
             * of the textbook (f_q + x_q^2 - f_p - x_p^2) / 2(x_q - x_p). */
            const double xp = v[k] * step;
            s = 0.5 * ((f[q] - f[v[k]]) / (xq - xp) + xq + xp);
            /* z[0] = -inf ends the loop at k = 0: s is finite. */
            if (s > z[k]) break;
            k--;
        }
        k++;
        v[k] = q;
        z[k] = s;
        z[k + 1] = INFINITY;
    }
    if (k < 0) {
        for (int q = 0; q < len; q++) d[q] = INFINITY;
        return;
    }
    k = 0;
    for (int q = 0; q < len; q++) {
        const double xq = q * step;
        while (z[k + 1] < xq) k++;
        const double dx = xq - v[k] * step;
        d[q] = dx * dx + f[v[k]];
    }
}

/* One pass of edt_1d over every line along an axis of the volume `sq`
 * (squared distances, in place). Lines have `len` samples `stride` apart;
 * `inner` lines start at consecutive voxels (1 for x, nx for y, nx*ny for
 * z) and `outer` such runs follow each other inner*len voxels apart.
 * Returns 0, or RL_ENOMEM if a thread could not get its buffers. */
static int edt_pass(double *sq, int len, size_t stride, size_t inner, size_t outer,
                    double step) {
    const size_t blocks_per_run = (inner + LINE_BLOCK - 1) / LINE_BLOCK;
    const size_t blocks = blocks_per_run * outer;
    int failed = 0;
    /* Threads only pay off on volumes: a small image is done before the team
     * is up. */
    const int parallel = (size_t)len * inner * outer >= (size_t)1 << 16;
#pragma omp parallel if (parallel) reduction(| : failed)
    {
        line_buffers b;
        const int ok = line_buffers_init(&b, len);
        if (!ok) failed = 1;
#pragma omp for schedule(static)
        for (long blk = 0; blk < (long)blocks; blk++) {
            if (!ok) continue;
            const size_t run = (size_t)blk / blocks_per_run;
            const size_t first = ((size_t)blk % blocks_per_run) * LINE_BLOCK;
            const size_t count = inner - first < LINE_BLOCK ? inner - first : LINE_BLOCK;
            double *base = sq + run * inner * (size_t)len + first;
            for (int j = 0; j < len; j++)
                for (size_t l = 0; l < count; l++)
                    b.in[l * (size_t)len + (size_t)j] = base[(size_t)j * stride + l];
            for (size_t l = 0; l < count; l++)
                edt_1d(b.in + l * (size_t)len, b.out + l * (size_t)len, b.cut, b.root, len, step);
            for (int j = 0; j < len; j++)
                for (size_t l = 0; l < count; l++)
                    base[(size_t)j * stride + l] = b.out[l * (size_t)len + (size_t)j];
        }
        line_buffers_free(&b);
    }
    return failed ? RL_ENOMEM : 0;
}

int rl_distance_transform(const uint8_t *feature, int nx, int ny, int nz,
                          const double spacing[3], double *dist, rl_error *err) {
    if (nx <= 0 || ny <= 0 || nz <= 0)
        return rl_error_set(err, RL_EINVAL, "distance transform: invalid size %dx%dx%d", nx,
                            ny, nz);
    for (int a = 0; a < 3; a++)
        if (!(spacing[a] > 0) || !isfinite(spacing[a]))
            return rl_error_set(err, RL_EINVAL,
                                "distance transform: spacing[%d] = %g must be positive and "
                                "finite",
                                a, spacing[a]);
    const size_t plane = (size_t)nx * (size_t)ny;
    const size_t n = plane * (size_t)nz;
    for (size_t i = 0; i < n; i++) dist[i] = feature[i] ? 0.0 : INFINITY;

    int rc = edt_pass(dist, nx, 1, 1, (size_t)ny * (size_t)nz, spacing[0]);
    if (!rc && ny > 1) rc = edt_pass(dist, ny, (size_t)nx, (size_t)nx, (size_t)nz, spacing[1]);
    if (!rc && nz > 1) rc = edt_pass(dist, nz, plane, plane, 1, spacing[2]);
    if (rc) return rl_error_set(err, rc, "distance transform: out of memory for line buffers");

    for (size_t i = 0; i < n; i++) dist[i] = sqrt(dist[i]); /* sqrt(inf) = inf */
    return 0;
}
