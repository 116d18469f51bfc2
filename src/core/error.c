/* Error records: one line of text, filled where the problem is known best. */
#include "reflabel/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int rl_error_set(rl_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int rl_error_prefix(rl_error *err, const char *fmt, ...) {
    if (!err) return RL_OK;
    char prefix[RL_ERROR_MSG_MAX];
    char old[RL_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = '\0';
    /* Both halves fit in the buffer only if short enough; truncation of a
     * very long message is acceptable, so build it piecewise. */
    size_t len = strlen(prefix);
    if (len > sizeof err->msg - 3) len = sizeof err->msg - 3;
    memcpy(err->msg, prefix, len);
    err->msg[len++] = ':';
    err->msg[len++] = ' ';
    size_t rest = strlen(old);
    if (rest > sizeof err->msg - 1 - len) rest = sizeof err->msg - 1 - len;
    memcpy(err->msg + len, old, rest);
    err->msg[len + rest] = '\0';
    return err->code;
}

const char *rl_code_name(int code) {
    switch (code) {
    case RL_OK: return "ok";
    case RL_EINVAL: return "invalid argument";
    case RL_EIO: return "i/o error";
    case RL_EFORMAT: return "malformed file";
    case RL_ENOMEM: return "out of memory";
    case RL_ERANGE: return "out of range";
    case RL_ENONFINITE: return "non-finite value";
    case RL_EUNSUPPORTED: return "unsupported";
    case RL_EINTERRUPTED: return "interrupted";
    default: return "unknown error";
    }
}
