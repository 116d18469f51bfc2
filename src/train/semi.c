/* The table of training methods (id -> name -> rl_semi_method), and what
 * the pseudo-label methods share. A new method adds one row. */
#include "semi.h"

#include <string.h>

static const rl_semi_method supervised = {.id = RL_METHOD_SUPERVISED, .name = "supervised"};

static const rl_semi_method *const methods[] = {
    [RL_METHOD_SUPERVISED] = &supervised,
    [RL_METHOD_REFPL] = &rl_semi_refpl,
    [RL_METHOD_PREDPL] = &rl_semi_predpl,
    [RL_METHOD_MEANTEACHER] = &rl_semi_meanteacher,
    [RL_METHOD_FIXMATCH] = &rl_semi_fixmatch,
    [RL_METHOD_UNIMATCH] = &rl_semi_unimatch,
};
enum { METHOD_COUNT = (int)(sizeof methods / sizeof methods[0]) };

const rl_semi_method *rl_semi_method_of(rl_method id) {
    return (int)id >= 0 && (int)id < METHOD_COUNT ? methods[id] : NULL;
}

const char *rl_method_name(rl_method method) {
    const rl_semi_method *m = rl_semi_method_of(method);
    return m ? m->name : "unknown";
}

int rl_method_from_name(const char *name) {
    for (int m = 0; m < METHOD_COUNT; m++)
        if (name && strcmp(name, methods[m]->name) == 0) return m;
    return -1;
}

void rl_semi_keep_confident(rl_trainer *tr, float threshold) {
    size_t count = (size_t)tr->nu * tr->h * tr->w;
    for (size_t i = 0; i < count; i++) {
        if (!tr->valid[i]) tr->matched[i] = RL_IGNORE;
        tr->pseudo[i] = tr->valid[i] && tr->confidence[i] >= threshold ? tr->matched[i] : RL_IGNORE;
    }
}

void rl_semi_predict_targets(rl_trainer *tr, float threshold) {
    size_t count = (size_t)tr->nu * tr->h * tr->w;
    memcpy(tr->matched, tr->pred, count * sizeof *tr->matched);
    memcpy(tr->confidence, tr->pred_confidence, count * sizeof *tr->confidence);
    rl_semi_keep_confident(tr, threshold);
}
