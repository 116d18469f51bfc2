/* Bump allocator for activations: sized once by a measuring pass, so that a
 * training step never calls malloc. */
#include "reflabel/core.h"

#include <stdlib.h>
#include <string.h>

void rl_arena_measure(rl_arena *arena) {
    arena->base = NULL;
    arena->size = 0;
    arena->used = 0;
}

int rl_arena_init(rl_arena *arena, size_t bytes, rl_error *err) {
    arena->used = 0;
    arena->size = 0;
    arena->base = NULL;
    if (bytes == 0) return RL_OK;
    size_t rounded = (bytes + RL_ARENA_ALIGN - 1) / RL_ARENA_ALIGN * RL_ARENA_ALIGN;
    void *p = aligned_alloc(RL_ARENA_ALIGN, rounded);
    if (!p)
        return rl_error_set(err, RL_ENOMEM, "cannot allocate %zu MiB of activation memory",
                            rounded >> 20);
    memset(p, 0, rounded);
    arena->base = p;
    arena->size = rounded;
    return RL_OK;
}

void *rl_arena_alloc(rl_arena *arena, size_t bytes) {
    size_t start = (arena->used + RL_ARENA_ALIGN - 1) / RL_ARENA_ALIGN * RL_ARENA_ALIGN;
    size_t end = start + (bytes + RL_ARENA_ALIGN - 1) / RL_ARENA_ALIGN * RL_ARENA_ALIGN;
    arena->used = end;
    if (!arena->base || end > arena->size) return NULL;
    return arena->base + start;
}

float *rl_arena_floats(rl_arena *arena, size_t count) {
    return rl_arena_alloc(arena, count * sizeof(float));
}

void rl_arena_free(rl_arena *arena) {
    free(arena->base);
    arena->base = NULL;
    arena->size = arena->used = 0;
}

rl_tensor rl_tensor_from_arena(rl_arena *arena, int n, int c, int h, int w) {
    rl_tensor t = {NULL, n, c, h, w};
    t.data = rl_arena_floats(arena, rl_tensor_numel(&t));
    return t;
}
