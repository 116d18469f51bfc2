/* The growing text of the demo report (report_parts.h): report.html and
 * the SVG charts are printed into memory piece by piece, with HTML/XML
 * escaping, and written in one atomic step at the end. An allocation failure
 * is remembered and reported once, by text_write. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "report_parts.h"

static int text_reserve(text *t, size_t extra) {
    if (t->out_of_memory) return 0;
    if (t->len + extra + 1 <= t->cap) return 1;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->len + extra + 1) cap *= 2;
    char *s = realloc(t->s, cap);
    if (!s) {
        t->out_of_memory = 1;
        return 0;
    }
    t->s = s;
    t->cap = cap;
    return 1;
}

void text_printf(text *t, const char *fmt, ...) {
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n >= 0 && text_reserve(t, (size_t)n)) {
        vsnprintf(t->s + t->len, (size_t)n + 1, fmt, again);
        t->len += (size_t)n;
    } else {
        t->out_of_memory = 1;
    }
    va_end(again);
}

void text_escaped(text *t, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': text_printf(t, "&amp;"); break;
        case '<': text_printf(t, "&lt;"); break;
        case '>': text_printf(t, "&gt;"); break;
        case '"': text_printf(t, "&quot;"); break;
        case '\'': text_printf(t, "&#39;"); break;
        default:
            if (text_reserve(t, 1)) {
                t->s[t->len++] = *s;
                t->s[t->len] = '\0';
            }
        }
    }
}

int text_write(text *t, const char *path, rl_error *err) {
    if (t->out_of_memory) return rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    return rl_write_file_atomic(path, t->s ? t->s : "", t->len, err);
}
