/* A one-line progress bar with rate and ETA on stderr, redrawn in place.
 * Disabled (silent) with --quiet or when stderr is not a terminal, so logs
 * and CI output stay clean. */
#ifndef RL_PROGRESS_H
#define RL_PROGRESS_H

typedef struct rl_progress {
    int enabled;
    long total;
    double start_seconds;
    double last_draw_seconds;
    char label[32];
} rl_progress;

void rl_progress_start(rl_progress *p, const char *label, long total, int quiet);
/* done items so far; note is a short status text (e.g. "loss 0.123") or NULL. */
void rl_progress_update(rl_progress *p, long done, const char *note);
void rl_progress_finish(rl_progress *p);

#endif
