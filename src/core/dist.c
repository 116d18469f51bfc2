/* Several processes on one task: MPI where the build has it and a launcher
 * started us, one process of one otherwise (reflabel/dist.h). */
#include "reflabel/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef RL_HAVE_MPI
#include <mpi.h>

static int started;   /* rl_dist_init called MPI_Init_thread */
static int rank, size = 1, local_size = 1;
/* (2 size) counts and offsets of the v-collectives, allocated once by
 * rl_dist_init, so that a collective on a step's hot path neither allocates
 * nor first has to agree on whether its allocation succeeded. */
static int *counts;

/* The variables each launcher family sets in its ranks' environment: Open
 * MPI's mpirun, MPICH/Hydra and Slurm's PMI-2, PMIx (srun --mpi=pmix,
 * Open MPI 5). Without one of them we were started by hand: MPI_Init would
 * still work (a singleton), but it starts MPI's runtime for nothing and
 * may print warnings about the network on a machine that has none. */
static int under_launcher(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

static int mpi_error(int code, const char *what, rl_error *err) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "code %d", code);
    return rl_error_set(err, RL_EIO, "MPI %s failed: %s", what, text);
}

int rl_dist_available(void) { return 1; }

int rl_dist_init(int *argc, char ***argv, rl_error *err) {
    if (started || !under_launcher()) return RL_OK;
    int provided = 0;
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return mpi_error(rc, "initialisation", err);
    started = 1;
    /* Errors come back as codes that become one line, instead of MPI's
     * default of aborting the job from inside the library. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    counts = malloc(2 * (size_t)size * sizeof *counts);
    if (!counts) {
        rl_error_set(err, RL_ENOMEM, "out of memory for %d MPI ranks", size);
        rl_dist_finalize();
        return RL_ENOMEM;
    }
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) ==
        MPI_SUCCESS) {
        MPI_Comm_size(node, &local_size);
        MPI_Comm_free(&node);
    }
    return RL_OK;
}

void rl_dist_finalize(void) {
    if (!started) return;
    free(counts);
    counts = NULL;
    MPI_Finalize();
    started = 0;
    rank = 0;
    size = local_size = 1;
}

int rl_dist_rank(void) { return rank; }
int rl_dist_size(void) { return size; }
int rl_dist_local_size(void) { return local_size; }

/* MPI counts are int: large buffers go in slices. */
#define SLICE ((size_t)1 << 28)

static int sum_in_place(void *buf, size_t n, MPI_Datatype type, size_t elem, rl_error *err) {
    if (size == 1) return RL_OK;
    for (size_t at = 0; at < n; at += SLICE) {
        int count = (int)(n - at < SLICE ? n - at : SLICE);
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + at * elem, count, type, MPI_SUM,
                               MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_error(rc, "sum", err);
    }
    return RL_OK;
}

/* Each slice is reduced in parts, part r on rank r alone (MPI_Reduce_scatter),
 * then every part is copied to every rank (MPI_Allgatherv): an element's sum
 * is computed once, in one order, so the ranks hold the same bits. (An
 * MPI_Allreduce may add on every rank in its own order; the standard only
 * advises that the results agree.) The traffic is that of a ring allreduce. */
int rl_dist_sum_f32(float *buf, size_t n, rl_error *err) {
    if (size == 1) return RL_OK;
    int *offsets = counts + size;
    for (size_t at = 0; at < n; at += SLICE) {
        int count = (int)(n - at < SLICE ? n - at : SLICE), offset = 0;
        for (int r = 0; r < size; r++) {
            counts[r] = count / size + (r < count % size);
            offsets[r] = offset;
            offset += counts[r];
        }
        float *slice = buf + at;
        int mrc = MPI_Reduce_scatter(MPI_IN_PLACE, slice, counts, MPI_FLOAT, MPI_SUM,
                                     MPI_COMM_WORLD);
        /* MPI_IN_PLACE leaves this rank's part at the front of the slice */
        if (mrc == MPI_SUCCESS && rank > 0)
            memmove(slice + offsets[rank], slice, (size_t)counts[rank] * sizeof *slice);
        if (mrc == MPI_SUCCESS)
            mrc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, slice, counts, offsets,
                                 MPI_FLOAT, MPI_COMM_WORLD);
        if (mrc != MPI_SUCCESS) return mpi_error(mrc, "sum", err);
    }
    return RL_OK;
}

/* Every rank passes the same bytes[] (the callers derive it from the
 * shapes of the step), so the range check fails on all ranks or none and
 * needs no agreement. */
int rl_dist_gather(void *buf, const size_t *bytes, rl_error *err) {
    if (size == 1) return RL_OK;
    int *offsets = counts + size;
    size_t offset = 0;
    for (int r = 0; r < size; r++) {
        if (bytes[r] > (size_t)INT32_MAX || offset > (size_t)INT32_MAX)
            return rl_error_set(err, RL_EINVAL, "MPI gather of %zu bytes from one rank: too many",
                                bytes[r]);
        counts[r] = (int)bytes[r];
        offsets[r] = (int)offset;
        offset += bytes[r];
    }
    int mrc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, offsets, MPI_BYTE,
                             MPI_COMM_WORLD);
    return mrc == MPI_SUCCESS ? RL_OK : mpi_error(mrc, "gather", err);
}

int rl_dist_sum_f64(double *buf, size_t n, rl_error *err) {
    return sum_in_place(buf, n, MPI_DOUBLE, sizeof *buf, err);
}
int rl_dist_sum_i64(int64_t *buf, size_t n, rl_error *err) {
    return sum_in_place(buf, n, MPI_INT64_T, sizeof *buf, err);
}

int rl_dist_broadcast(void *buf, size_t bytes, int root, rl_error *err) {
    if (size == 1) return RL_OK;
    for (size_t at = 0; at < bytes; at += SLICE) {
        int count = (int)(bytes - at < SLICE ? bytes - at : SLICE);
        int rc = MPI_Bcast((char *)buf + at, count, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_error(rc, "broadcast", err);
    }
    return RL_OK;
}

int rl_dist_agree(int rc, rl_error *err) {
    if (size == 1) return rc;
    /* The lowest failing rank, then its code and line from it to all. */
    int mine = rc ? rank : size, first = size;
    int mrc = MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (mrc != MPI_SUCCESS) return mpi_error(mrc, "agreement", err);
    if (first == size) return RL_OK;
    struct {
        int code;
        char msg[RL_ERROR_MSG_MAX];
    } verdict;
    memset(&verdict, 0, sizeof verdict);
    if (rank == first) {
        verdict.code = rc;
        snprintf(verdict.msg, sizeof verdict.msg, "%s", err ? err->msg : "failed");
    }
    mrc = MPI_Bcast(&verdict, (int)sizeof verdict, MPI_BYTE, first, MPI_COMM_WORLD);
    if (mrc != MPI_SUCCESS) return mpi_error(mrc, "agreement", err);
    if (rank != first) rl_error_set(err, verdict.code, "rank %d: %s", first, verdict.msg);
    return verdict.code;
}

#else /* one process: every collective is the identity */

int rl_dist_available(void) { return 0; }
int rl_dist_init(int *argc, char ***argv, rl_error *err) {
    (void)argc;
    (void)argv;
    (void)err;
    return RL_OK;
}
void rl_dist_finalize(void) {}
int rl_dist_rank(void) { return 0; }
int rl_dist_size(void) { return 1; }
int rl_dist_local_size(void) { return 1; }
int rl_dist_agree(int rc, rl_error *err) {
    (void)err;
    return rc;
}
int rl_dist_sum_f32(float *buf, size_t n, rl_error *err) {
    (void)buf, (void)n, (void)err;
    return RL_OK;
}
int rl_dist_gather(void *buf, const size_t *bytes, rl_error *err) {
    (void)buf, (void)bytes, (void)err;
    return RL_OK;
}
int rl_dist_sum_f64(double *buf, size_t n, rl_error *err) {
    (void)buf, (void)n, (void)err;
    return RL_OK;
}
int rl_dist_sum_i64(int64_t *buf, size_t n, rl_error *err) {
    (void)buf, (void)n, (void)err;
    return RL_OK;
}
int rl_dist_broadcast(void *buf, size_t bytes, int root, rl_error *err) {
    (void)buf, (void)bytes, (void)root, (void)err;
    return RL_OK;
}

#endif

uint64_t rl_dist_hash(uint64_t h, const void *data, size_t bytes) {
    const unsigned char *b = data;
    for (size_t i = 0; i < bytes; i++) h = (h ^ b[i]) * UINT64_C(1099511628211);
    return h;
}
