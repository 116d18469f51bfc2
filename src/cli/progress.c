#include "progress.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "reflabel/core.h"

void rl_progress_start(rl_progress *p, const char *label, long total, int quiet) {
    p->enabled = !quiet && isatty(STDERR_FILENO);
    p->total = total > 0 ? total : 1;
    p->start_seconds = rl_now_seconds();
    p->last_draw_seconds = 0;
    snprintf(p->label, sizeof p->label, "%s", label);
}

static void format_duration(char *buf, size_t size, double seconds) {
    long s = seconds > 0 ? (long)(seconds + 0.5) : 0;
    if (s >= 3600) snprintf(buf, size, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
    else snprintf(buf, size, "%ld:%02ld", s / 60, s % 60);
}

void rl_progress_update(rl_progress *p, long done, const char *note) {
    if (!p->enabled) return;
    double now = rl_now_seconds();
    /* Redrawing costs a write(2); ten times a second is plenty for a human. */
    if (done < p->total && now - p->last_draw_seconds < 0.1) return;
    p->last_draw_seconds = now;
    double elapsed = now - p->start_seconds;
    double rate = elapsed > 0 ? (double)done / elapsed : 0;
    char eta[32], spent[32];
    format_duration(eta, sizeof eta, rate > 0 ? (double)(p->total - done) / rate : 0);
    format_duration(spent, sizeof spent, elapsed);
    enum { WIDTH = 24 };
    char bar[WIDTH + 1];
    int filled = (int)((double)WIDTH * (double)done / (double)p->total);
    for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
    bar[WIDTH] = '\0';
    fprintf(stderr, "\r%s [%s] %ld/%ld %.1f/s %s ETA %s %s\033[K", p->label, bar, done,
            p->total, rate, spent, eta, note ? note : "");
    fflush(stderr);
}

void rl_progress_finish(rl_progress *p) {
    if (!p->enabled) return;
    p->last_draw_seconds = 0;
    fputc('\n', stderr);
}
