/* RL_CONV and --conv: which code computes the convolutions (conv_option.h). */
#include "conv_option.h"

#include <stdio.h>
#include <stdlib.h>

#include "reflabel/core.h"
#include "reflabel/layers.h"

int cli_set_conv_backend(const char *what, const char *name) {
    int backend = rl_conv_backend_from_name(name);
    if (backend < 0) {
        fprintf(stderr, "reflabel: %s: unknown convolution backend '%s' (im2col or dnnl)\n",
                what, name);
        return 2;
    }
    rl_error err = {0, ""};
    if (rl_set_conv_backend((rl_conv_backend)backend, &err)) {
        fprintf(stderr, "reflabel: %s: %s\n", what, err.msg);
        return 2;
    }
    return 0;
}

int cli_conv_backend_from_env(void) {
    const char *name = getenv("RL_CONV");
    return name && *name ? cli_set_conv_backend("RL_CONV", name) : 0;
}
