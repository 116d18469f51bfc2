/* Training-health warnings (reflabel/health.h) on synthetic step infos:
 * when each check warns, how often, and when it stays quiet. */
#include <math.h>
#include <string.h>

#include "reflabel/health.h"
#include "testutil.h"

static char *names[] = {"background", "lesion"};

static rl_health *make(rl_method method, int64_t steps, double margin_accuracy) {
    rl_train_config cfg = rl_train_default_config(steps, 4);
    cfg.semi.method = method;
    cfg.semi.margin_accuracy = margin_accuracy;
    rl_health *h = NULL;
    CHECK_OK(rl_health_create(&h, &cfg, 2, names, "run/log.csv", NULL));
    return h;
}

/* A step of the unlabeled loss with healthy pseudo-labels. */
static rl_train_step_info step(int64_t s, const double *pl_share, const double *labeled_share) {
    rl_train_step_info info;
    memset(&info, 0, sizeof info);
    info.step = s;
    info.lambda = 1;
    info.pl_kept = 1;
    info.pl_drift = 0.05;
    info.pl_accuracy = NAN;
    info.pl_share = pl_share;
    info.labeled_share = labeled_share;
    return info;
}

static const double labeled[] = {0.8, 0.2};

static void test_quiet_when_healthy(void) {
    const double shares[] = {0.82, 0.18};
    rl_health *h = make(RL_METHOD_REFPL, 1000, 0.9);
    int warnings = 0;
    for (int s = 1; s <= 1000; s++) {
        rl_train_step_info info = step(s, shares, labeled);
        warnings += rl_health_step(h, &info);
    }
    CHECK(warnings == 0);
    rl_health_free(h);
    /* supervised steps (lambda 0) never warn, whatever their fields say */
    h = make(RL_METHOD_SUPERVISED, 200, 0);
    const double lost[] = {1.0, 0.0};
    for (int s = 1; s <= 200; s++) {
        rl_train_step_info info = step(s, lost, labeled);
        info.lambda = 0;
        info.pl_drift = 0.9;
        info.pl_kept = 0;
        warnings += rl_health_step(h, &info);
    }
    CHECK(warnings == 0);
    rl_health_free(h);
}

static void test_drift(void) {
    const double shares[] = {0.8, 0.2};
    rl_health *h = make(RL_METHOD_PREDPL, 100, 0);
    int warned_at[100], n = 0;
    for (int s = 1; s <= 30; s++) {
        rl_train_step_info info = step(s, shares, labeled);
        info.pl_drift = 0.3; /* above RL_HEALTH_DRIFT */
        if (rl_health_step(h, &info) > 0) {
            warned_at[n++] = s;
            CHECK(strstr(rl_health_warning(h, 0), "total variation") != NULL);
            CHECK(strstr(rl_health_warning(h, 0), "see run/log.csv") != NULL);
        }
    }
    /* at most once per tenth of the run */
    CHECK(n == 3 && warned_at[0] == 1 && warned_at[1] == 11 && warned_at[2] == 21);
    rl_health_free(h);
}

static void test_lost_class(void) {
    const double losing[] = {0.95, 0.05}; /* lesion: 5% against 20% labeled */
    rl_health *h = make(RL_METHOD_REFPL, 1000, 0);
    int warnings = 0, at = -1;
    for (int s = 1; s <= 3 * RL_HEALTH_SHARE_STEPS; s++) {
        rl_train_step_info info = step(s, losing, labeled);
        int n = rl_health_step(h, &info);
        if (n > 0 && at < 0) {
            at = s;
            CHECK(n == 1);
            const char *w = rl_health_warning(h, 0);
            CHECK_MSG(strstr(w, "steps 1-100: 'lesion' is 5.0% of the pseudo-labels against "
                                "20.0% of the labeled pixels") == w,
                      "%s", w);
        }
        warnings += n;
    }
    CHECK(at == RL_HEALTH_SHARE_STEPS);
    CHECK(warnings == 1); /* once per class */
    rl_health_free(h);
    /* a class under the floor of the labeled pixels is not watched */
    const double rare_labeled[] = {0.995, 0.005}, rare_lost[] = {1.0, 0.0};
    h = make(RL_METHOD_REFPL, 1000, 0);
    warnings = 0;
    for (int s = 1; s <= RL_HEALTH_SHARE_STEPS; s++) {
        rl_train_step_info info = step(s, rare_lost, rare_labeled);
        warnings += rl_health_step(h, &info);
    }
    CHECK(warnings == 0);
    rl_health_free(h);
}

static void test_kept(void) {
    const double shares[] = {0.8, 0.2};
    for (int method = 0; method < 2; method++) {
        rl_health *h = make(method ? RL_METHOD_PREDPL : RL_METHOD_REFPL, 1000, 0);
        int warnings = 0, at = -1;
        for (int s = 1; s <= 200; s++) {
            rl_train_step_info info = step(s, shares, labeled);
            info.pl_kept = 0.01;
            int n = rl_health_step(h, &info);
            if (n > 0) {
                at = s;
                CHECK(strstr(rl_health_warning(h, 0), "only 1.0% of the unlabeled pixels reached "
                                                      "--min-margin 0 in the first 50 steps") != NULL);
            }
            warnings += n;
        }
        /* refpl only, once, at the end of the window */
        CHECK(method ? warnings == 0 : warnings == 1 && at == RL_HEALTH_KEPT_STEPS);
        rl_health_free(h);
    }
    /* skipped steps do not count; a calibrated threshold is named as such */
    rl_health *h = make(RL_METHOD_REFPL, 1000, 0.9);
    int at = -1;
    for (int s = 1; s <= 100; s++) {
        rl_train_step_info info = step(s, shares, labeled);
        info.pl_kept = 0.02;
        info.skipped = s % 2 == 0;
        info.skipped_total = s / 2;
        int n = rl_health_step(h, &info);
        for (int i = 0; i < n; i++)
            if (strstr(rl_health_warning(h, i), "--margin-accuracy 0.9")) at = s;
    }
    CHECK(at == 2 * RL_HEALTH_KEPT_STEPS - 1);
    rl_health_free(h);
}

static void test_skips(void) {
    const double shares[] = {0.8, 0.2};
    rl_health *h = make(RL_METHOD_SUPERVISED, 100, 0);
    int warnings = 0;
    for (int s = 1; s <= 15; s++) {
        rl_train_step_info info = step(s, shares, labeled);
        info.lambda = 0;
        info.skipped = 1;
        info.skipped_total = s;
        info.skip_reason = "step N: loss is not finite";
        int n = rl_health_step(h, &info);
        if (n) CHECK(strstr(rl_health_warning(h, 0), "batch skipped (--skip-nonfinite)") != NULL);
        if (s == RL_HEALTH_SKIP_REPORTS)
            CHECK(strstr(rl_health_warning(h, 0), "further skips only in the log") != NULL);
        warnings += n;
    }
    CHECK(warnings == RL_HEALTH_SKIP_REPORTS);
    CHECK(rl_health_skipped(h) == 15);
    rl_health_free(h);
}

int main(void) {
    test_quiet_when_healthy();
    test_drift();
    test_lost_class();
    test_kept();
    test_skips();
    return rl_test_report("test_health");
}
