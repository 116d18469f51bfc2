#include "testutil.h"

#include "reflabel/layers.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

int rl_test_failures = 0;
int rl_test_checks = 0;

int rl_test_report(const char *name) {
    int passed = rl_test_checks - rl_test_failures;
    printf("%s: %d passed, %d failed\n", name, passed, rl_test_failures);
    return rl_test_failures == 0 && rl_test_checks > 0 ? 0 : 1;
}

static int mkdir_p(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
            *p = '/';
        }
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}

int rl_test_conv_backend_from_env(const char *tool) {
    const char *name = getenv("RL_CONV");
    if (!name || !*name) return 0;
    int backend = rl_conv_backend_from_name(name);
    if (backend < 0) {
        fprintf(stderr, "%s: RL_CONV=%s is not im2col or dnnl\n", tool, name);
        return 2;
    }
    if (rl_set_conv_backend((rl_conv_backend)backend, NULL)) {
        fprintf(stderr, "%s: RL_CONV=%s is not in this build\n", tool, name);
        return RL_TEST_SKIP;
    }
    return 0;
}

const char *rl_test_tmpdir(const char *name) {
    static char path[4096];
    const char *root = getenv("RL_TEST_TMP");
    if (!root || !*root) root = "/tmp/reflabel-tests";
    snprintf(path, sizeof path, "%s/%s-%ld", root, name, (long)getpid());
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) return NULL;
    if (mkdir_p(path) != 0) return NULL;
    return path;
}

double rl_rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return sqrt(num) / (den > 1e-30 ? sqrt(den) : 1e-15);
}

void rl_fill_uniform(float *x, size_t n, rl_rng *rng, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * rl_rng_uniform(rng);
}

static size_t dtype_size(const char *dtype) {
    if (!strcmp(dtype, "<f4") || !strcmp(dtype, "<i4")) return 4;
    if (!strcmp(dtype, "<f8") || !strcmp(dtype, "<i8")) return 8;
    if (!strcmp(dtype, "<u1") || !strcmp(dtype, "|u1")) return 1;
    if (!strcmp(dtype, "<u2")) return 2;
    return 0;
}

int rl_npy_write(const char *path, const void *data, const char *dtype, const int *shape,
                 int ndim) {
    size_t esize = dtype_size(dtype);
    if (!esize) return -1;
    char header[512];
    int len = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                       dtype);
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        len += snprintf(header + len, sizeof header - (size_t)len, "%d,%s", shape[i],
                        i + 1 < ndim ? " " : "");
        count *= (size_t)shape[i];
    }
    len += snprintf(header + len, sizeof header - (size_t)len, "), }");
    /* pad so that magic(6) + version(2) + hlen(2) + header is a multiple of 64 */
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    memset(header + len, ' ', (size_t)pad);
    len += pad;
    header[len++] = '\n';
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                             (unsigned char)(len & 0xff), (unsigned char)(len >> 8)};
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(header, 1, (size_t)len, f) == (size_t)len &&
             fwrite(data, esize, count, f) == count;
    ok = (fclose(f) == 0) && ok;
    return ok ? 0 : -1;
}

void *rl_npy_read(const char *path, char *dtype, int *shape, int *ndim) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char pre[10];
    void *data = NULL;
    char header[4096];
    if (fread(pre, 1, 10, f) != 10 || pre[0] != 0x93 || pre[6] != 1) goto fail;
    size_t hlen = (size_t)pre[8] | ((size_t)pre[9] << 8);
    if (hlen >= sizeof header || fread(header, 1, hlen, f) != hlen) goto fail;
    header[hlen] = '\0';
    char *d = strstr(header, "'descr': '");
    char *s = strstr(header, "'shape': (");
    if (!d || !s || strstr(header, "'fortran_order': True")) goto fail;
    d += 10;
    size_t i = 0;
    while (d[i] && d[i] != '\'' && i < 7) { dtype[i] = d[i]; i++; }
    dtype[i] = '\0';
    size_t esize = dtype_size(dtype);
    if (!esize) goto fail;
    s += 10;
    *ndim = 0;
    size_t count = 1;
    while (*s && *s != ')') {
        while (*s == ' ' || *s == ',') s++;
        if (*s == ')') break;
        if (*ndim >= 8) goto fail;
        long v = strtol(s, &s, 10);
        shape[(*ndim)++] = (int)v;
        count *= (size_t)v;
    }
    data = malloc(count * esize + 1);
    if (!data || fread(data, esize, count, f) != count) goto fail;
    fclose(f);
    return data;
fail:
    free(data);
    fclose(f);
    return NULL;
}

double rl_gradcheck(rl_scalar_fn f, void *ctx, float *param, const float *analytic,
                    size_t n, size_t count, double eps, rl_rng *rng) {
    double worst = 0;
    size_t todo = count >= n ? n : count;
    for (size_t t = 0; t < todo; t++) {
        size_t i = count >= n ? t : (size_t)rl_rng_below(rng, (uint32_t)n);
        float saved = param[i];
        param[i] = (float)(saved + eps);
        double fp = f(ctx);
        param[i] = (float)(saved - eps);
        double fm = f(ctx);
        param[i] = saved;
        double numeric = (fp - fm) / (2 * eps);
        double a = analytic[i];
        double scale = fmax(1.0, fmax(fabs(a), fabs(numeric)));
        double e = fabs(a - numeric) / scale;
        if (e > worst) worst = e;
    }
    return worst;
}
