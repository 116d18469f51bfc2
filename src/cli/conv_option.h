/* The convolution backend of the commands (layers.h: rl_set_conv_backend):
 * the environment variable RL_CONV, read once by main() for every command,
 * and `bench train --conv`, which overrides it. */
#ifndef RL_CLI_CONV_OPTION_H
#define RL_CLI_CONV_OPTION_H

/* name: "im2col" or "dnnl"; `what` names the source in the message.
 * 0, or an exit status after a one-line message on stderr. */
int cli_set_conv_backend(const char *what, const char *name);

/* RL_CONV=im2col|dnnl; unset or empty keeps the default (im2col). */
int cli_conv_backend_from_env(void);

#endif
