/* dist/dist.c — data-parallel communication over MPI: rank, size, in-place allreduce of many
 * float32 tensors through bucketed flat buffers, broadcast, gather, barrier, abort.
 *
 * Built with MPI when CMake's option PIVQ_MPI is on (it defines PIVQ_HAVE_MPI for this file);
 * otherwise every function below except pivq_dist_available fails with "pivq was built without
 * MPI", so the rest of the library and the FFI cdef are the same either way.
 *
 * Why everything is nonblocking underneath: each collective is started with its MPI_I* form and
 * completed by one wait loop (wait_all) that (1) turns MPI error codes into pivq errors — the
 * communicator's error handler is MPI_ERRORS_RETURN, so nothing here aborts on its own — (2)
 * gives up after the timeout set at init, so a rank whose peer died or hangs gets an error to
 * report instead of waiting forever, (3) backs off to short sleeps after 10 ms of waiting, so a
 * rank waiting for rank 0's k-means does not steal a core from it, and (4) counts the time
 * spent in communication (pivq_dist_comm_seconds; the benchmark reads it).
 *
 * Only the thread that called pivq_dist_init may call these (MPI_THREAD_FUNNELED): OpenMP and
 * loader threads never communicate.
 */
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef PIVQ_HAVE_MPI
#include <mpi.h>
#include <sched.h>
#include <time.h>

static int g_ready;     /* 1 between a successful init and finalize */
static int g_finalized; /* MPI cannot start again in a process once finalized */
static int g_owner;     /* we called MPI_Init, so we finalize */
static MPI_Comm g_comm = MPI_COMM_NULL;
static int g_rank = -1, g_size = 0, g_local_size = 0;
static double g_timeout;    /* seconds; <= 0 waits forever */
static double g_comm_time;  /* seconds spent inside the collectives below */
static float *g_flat;       /* the allreduce buffer, kept between calls (one step's gradients) */
static int64_t g_flat_cap;  /* its capacity in floats */
static MPI_Request *g_reqs; /* request slots, kept likewise */
static int g_reqs_cap;

/* Largest count handed to one MPI call: MPI counts are int. */
#define DIST_MAX_COUNT ((int64_t)1 << 30)

static int mpi_fail(const char *fn, const char *what, int rc)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", rc);
    return pivq_set_error("%s: %s failed on rank %d of %d: %s (a rank has probably died)", fn, what,
                          g_rank, g_size, msg);
}

static int need_ready(const char *fn)
{
    if (g_ready) return 0;
    return pivq_set_error("%s: MPI is not initialised (call pivq_dist_init first%s)", fn,
                          g_finalized ? "; it was finalized and cannot start again" : "");
}

static int reserve_requests(const char *fn, int n)
{
    if (n <= g_reqs_cap) return 0;
    MPI_Request *r = realloc(g_reqs, (size_t)n * sizeof *r);
    if (!r) return pivq_set_error("%s: out of memory for %d requests", fn, n);
    g_reqs = r;
    g_reqs_cap = n;
    return 0;
}

/* Complete n started requests (see the file comment). Time spent is added by the caller. */
static int wait_all(const char *fn, int n, MPI_Request *req)
{
    double t0 = MPI_Wtime();
    for (;;) {
        int done = 0;
        int rc = MPI_Testall(n, req, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(fn, "waiting for the other ranks", rc);
        if (done) return 0;
        double waited = MPI_Wtime() - t0;
        if (g_timeout > 0 && waited > g_timeout)
            return pivq_set_error(
                "%s: rank %d of %d had no answer from the other ranks for %.0f s: "
                "a rank has died or hangs (PIVQ_DIST_TIMEOUT sets this limit)",
                fn, g_rank, g_size, g_timeout);
        if (waited > 0.01) {
            struct timespec ts = {0, 200000}; /* 0.2 ms: latency matters less once this late */
            nanosleep(&ts, NULL);
        } else {
            sched_yield(); /* a rank sharing this core (oversubscribed) gets to progress */
        }
    }
}

static int check_contiguous(const char *fn, const pivq_tensor *t, int i, int float_only)
{
    char buf[160];
    if (pivq_check_tensor(fn, "tensor", t)) return -1;
    if (float_only && t->scalar_type != PIVQ_FLOAT32)
        return pivq_set_error("%s: tensor %d must be float32, got %s of %s", fn, i + 1,
                              pivq_dtype_name(t->scalar_type), pivq_shape_str(t, buf, sizeof buf));
    if (!pivq_is_contiguous(t))
        return pivq_set_error("%s: tensor %d (%s) must be contiguous", fn, i + 1,
                              pivq_shape_str(t, buf, sizeof buf));
    return 0;
}

int pivq_dist_available(void)
{
    return 1;
}

/* MPI must be finalized before a process that initialised it exits, or mpirun reports an
   abnormal termination; a program that forgets gets it done here. */
static void finalize_at_exit(void)
{
    pivq_dist_finalize();
}

int pivq_dist_init(double timeout_seconds)
{
    g_timeout = timeout_seconds;
    if (g_ready) return 0;
    if (g_finalized)
        return pivq_set_error(
            "dist_init: MPI was finalized in this process and cannot start again");
    int flag = 0;
    MPI_Initialized(&flag);
    if (!flag) {
        int provided = 0;
        /* MPI's errors before a communicator exists are fatal by the standard: nothing to do */
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return pivq_set_error("dist_init: MPI_Init_thread failed");
        g_owner = 1;
        atexit(finalize_at_exit);
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &g_comm);
    if (rc != MPI_SUCCESS) return mpi_fail("dist_init", "MPI_Comm_dup", rc);
    MPI_Comm_set_errhandler(g_comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(g_comm, &g_rank);
    MPI_Comm_size(g_comm, &g_size);
    /* ranks sharing this machine's memory: the default thread count divides the cores by it */
    MPI_Comm local;
    if (MPI_Comm_split_type(g_comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) ==
        MPI_SUCCESS) {
        MPI_Comm_size(local, &g_local_size);
        MPI_Comm_free(&local);
    } else {
        g_local_size = 1;
    }
    g_ready = 1;
    return 0;
}

int pivq_dist_initialized(void)
{
    return g_ready;
}

int pivq_dist_rank(void)
{
    return g_ready ? g_rank : -1;
}

int pivq_dist_size(void)
{
    return g_ready ? g_size : 0;
}

int pivq_dist_local_size(void)
{
    return g_ready ? g_local_size : 0;
}

double pivq_dist_comm_seconds(void)
{
    return g_comm_time;
}

int pivq_dist_finalize(void)
{
    if (!g_ready) return 0;
    g_ready = 0;
    g_finalized = 1;
    MPI_Comm_free(&g_comm);
    free(g_flat);
    free(g_reqs);
    g_flat = NULL;
    g_reqs = NULL;
    g_flat_cap = 0;
    g_reqs_cap = 0;
    if (g_owner && MPI_Finalize() != MPI_SUCCESS)
        return pivq_set_error("dist_finalize: MPI_Finalize failed");
    return 0;
}

void pivq_dist_abort(int code)
{
    int started = 0, ended = 0;
    MPI_Initialized(&started);
    MPI_Finalized(&ended);
    if (!started || ended) return; /* no job to end (MPI_Abort would be erroneous) */
    MPI_Abort(g_ready ? g_comm : MPI_COMM_WORLD, code);
}

int pivq_dist_allreduce_(pivq_tensor *const *ts, int n, int mean, int64_t bucket_bytes)
{
    const char *fn = "dist_allreduce";
    if (need_ready(fn)) return -1;
    if (n < 0 || (n > 0 && !ts)) return pivq_set_error("%s: need n >= 0 tensors, got %d", fn, n);
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        if (check_contiguous(fn, ts[i], i, 1)) return -1;
        total += pivq_numel(ts[i]);
    }
    if (bucket_bytes < 0) return pivq_set_error("%s: bucket_bytes must be >= 0", fn);
    /* 1. bucket size in floats: 0 or more than the total means one bucket */
    int64_t bucket = bucket_bytes / (int64_t)sizeof(float);
    if (bucket <= 0 || bucket > total) bucket = total;
    if (bucket > DIST_MAX_COUNT) bucket = DIST_MAX_COUNT;
    if (total == 0) return 0;
    int64_t nb = (total + bucket - 1) / bucket;
    if (nb > 1 << 20) return pivq_set_error("%s: %lld buckets is too many", fn, (long long)nb);
    if (reserve_requests(fn, (int)nb)) return -1;
    if (total > g_flat_cap) {
        float *f = realloc(g_flat, (size_t)total * sizeof(float));
        if (!f) return pivq_set_error("%s: out of memory for %lld floats", fn, (long long)total);
        g_flat = f;
        g_flat_cap = total;
    }
    double t0 = MPI_Wtime();
    /* 2. pack tensor after tensor; a bucket's reduction starts as soon as it is full, so packing
       the next bucket overlaps the transfer of this one */
    int64_t filled = 0, started = 0;
    int rc = MPI_SUCCESS;
    for (int i = 0; i <= n && rc == MPI_SUCCESS; i++) {
        if (i < n) {
            int64_t m = pivq_numel(ts[i]);
            memcpy(g_flat + filled, pivq_data(ts[i]), (size_t)m * sizeof(float));
            filled += m;
        }
        /* full buckets as they fill; after the last tensor, the partial one too */
        int64_t ready = i < n ? filled / bucket : nb;
        for (; rc == MPI_SUCCESS && started < ready; started++) {
            int64_t off = started * bucket, cnt = total - off < bucket ? total - off : bucket;
            rc = MPI_Iallreduce(MPI_IN_PLACE, g_flat + off, (int)cnt, MPI_FLOAT, MPI_SUM, g_comm,
                                &g_reqs[started]);
        }
    }
    if (rc != MPI_SUCCESS) {
        /* started requests are left to MPI: a failed collective leaves the job unusable */
        return mpi_fail(fn, "MPI_Iallreduce", rc);
    }
    int wrc = wait_all(fn, (int)nb, g_reqs);
    if (wrc == 0) {
        /* 3. unpack, dividing by the number of ranks for a mean */
        float scale = mean ? 1.0f / (float)g_size : 1.0f;
        int64_t off = 0;
        for (int i = 0; i < n; i++) {
            float *p = pivq_data(ts[i]);
            int64_t m = pivq_numel(ts[i]);
            if (mean)
                for (int64_t j = 0; j < m; j++)
                    p[j] = g_flat[off + j] * scale;
            else
                memcpy(p, g_flat + off, (size_t)m * sizeof(float));
            off += m;
        }
    }
    g_comm_time += MPI_Wtime() - t0;
    return wrc;
}

/* Start one MPI_Ibcast per at most DIST_MAX_COUNT bytes of t, from *k on. */
static int start_bcast(const char *fn, pivq_tensor *t, int root, int *k)
{
    int64_t bytes = pivq_numel(t) * pivq_dtype_size(t->scalar_type);
    char *p = pivq_data(t);
    for (int64_t off = 0; off < bytes; off += DIST_MAX_COUNT) {
        int64_t cnt = bytes - off < DIST_MAX_COUNT ? bytes - off : DIST_MAX_COUNT;
        int rc = MPI_Ibcast(p + off, (int)cnt, MPI_BYTE, root, g_comm, &g_reqs[(*k)++]);
        if (rc != MPI_SUCCESS) return mpi_fail(fn, "MPI_Ibcast", rc);
    }
    return 0;
}

int pivq_dist_broadcast_(pivq_tensor *const *ts, int n, int root)
{
    const char *fn = "dist_broadcast";
    if (need_ready(fn)) return -1;
    if (root < 0 || root >= g_size)
        return pivq_set_error("%s: root %d is not a rank (0..%d)", fn, root, g_size - 1);
    if (n < 0 || (n > 0 && !ts)) return pivq_set_error("%s: need n >= 0 tensors, got %d", fn, n);
    int64_t nreq = 0;
    for (int i = 0; i < n; i++) {
        if (check_contiguous(fn, ts[i], i, 0)) return -1;
        int64_t bytes = pivq_numel(ts[i]) * pivq_dtype_size(ts[i]->scalar_type);
        nreq += (bytes + DIST_MAX_COUNT - 1) / DIST_MAX_COUNT;
    }
    if (nreq > 1 << 20) return pivq_set_error("%s: too many tensors (%d)", fn, n);
    if (reserve_requests(fn, (int)nreq)) return -1;
    double t0 = MPI_Wtime();
    int k = 0, rc = 0;
    for (int i = 0; i < n && rc == 0; i++)
        rc = start_bcast(fn, ts[i], root, &k);
    if (rc == 0) rc = wait_all(fn, k, g_reqs);
    g_comm_time += MPI_Wtime() - t0;
    return rc;
}

pivq_tensor *pivq_dist_gather(const pivq_tensor *x, int root)
{
    const char *fn = "dist_gather";
    if (need_ready(fn)) return NULL;
    if (root < 0 || root >= g_size) {
        pivq_set_error("%s: root %d is not a rank (0..%d)", fn, root, g_size - 1);
        return NULL;
    }
    if (check_contiguous(fn, x, 0, 0)) return NULL;
    int64_t bytes = pivq_numel(x) * pivq_dtype_size(x->scalar_type);
    if (bytes > DIST_MAX_COUNT) {
        pivq_set_error("%s: %lld bytes per rank is more than one gather can carry", fn,
                       (long long)bytes);
        return NULL;
    }
    if (reserve_requests(fn, 1)) return NULL;
    double t0 = MPI_Wtime();
    /* 1. every rank must send the same shape: compare (bytes, -bytes) maxima first, so that a
       mismatch is an error naming the sizes rather than MPI's truncation message */
    long long range[2] = {bytes, -bytes};
    int rc = MPI_Iallreduce(MPI_IN_PLACE, range, 2, MPI_LONG_LONG, MPI_MAX, g_comm, &g_reqs[0]);
    if (rc != MPI_SUCCESS) {
        mpi_fail(fn, "MPI_Iallreduce", rc);
        return NULL;
    }
    if (wait_all(fn, 1, g_reqs)) return NULL;
    if (range[0] != -range[1]) {
        pivq_set_error("%s: the ranks hold different sizes (%lld to %lld bytes); every rank "
                       "must gather the same shape",
                       fn, -range[1], range[0]);
        g_comm_time += MPI_Wtime() - t0;
        return NULL;
    }
    /* 2. root receives size x shape, the others an empty 0 x shape */
    int64_t shape[PIVQ_MAX_DIMS + 1];
    if (x->ndim + 1 > PIVQ_MAX_DIMS) {
        pivq_set_error("%s: %d dims leave no room for the rank dim", fn, x->ndim);
        return NULL;
    }
    shape[0] = g_rank == root ? g_size : 0;
    for (int d = 0; d < x->ndim; d++)
        shape[d + 1] = x->shape[d];
    pivq_tensor *out = pivq_empty(x->scalar_type, x->ndim + 1, shape);
    if (!out) return NULL;
    rc = MPI_Igather(pivq_data(x), (int)bytes, MPI_BYTE, g_rank == root ? pivq_data(out) : NULL,
                     (int)bytes, MPI_BYTE, root, g_comm, &g_reqs[0]);
    if (rc != MPI_SUCCESS) mpi_fail(fn, "MPI_Igather", rc);
    if (rc != MPI_SUCCESS || wait_all(fn, 1, g_reqs)) {
        pivq_tensor_release(out);
        return NULL;
    }
    g_comm_time += MPI_Wtime() - t0;
    return out;
}

int pivq_dist_barrier(void)
{
    const char *fn = "dist_barrier";
    if (need_ready(fn) || reserve_requests(fn, 1)) return -1;
    double t0 = MPI_Wtime();
    int rc = MPI_Ibarrier(g_comm, &g_reqs[0]);
    if (rc != MPI_SUCCESS) return mpi_fail(fn, "MPI_Ibarrier", rc);
    rc = wait_all(fn, 1, g_reqs);
    g_comm_time += MPI_Wtime() - t0;
    return rc;
}

#else /* !PIVQ_HAVE_MPI */

static int no_mpi(const char *fn)
{
    return pivq_set_error("%s: pivq was built without MPI (install libopenmpi-dev and rebuild; "
                          "CMake turns PIVQ_MPI on when it finds MPI)",
                          fn);
}

int pivq_dist_available(void)
{
    return 0;
}

int pivq_dist_init(double timeout_seconds)
{
    return no_mpi("dist_init");
}

int pivq_dist_initialized(void)
{
    return 0;
}

int pivq_dist_rank(void)
{
    return -1;
}

int pivq_dist_size(void)
{
    return 0;
}

int pivq_dist_local_size(void)
{
    return 0;
}

double pivq_dist_comm_seconds(void)
{
    return 0;
}

int pivq_dist_finalize(void)
{
    return 0;
}

void pivq_dist_abort(int code)
{
    /* nothing to abort: without MPI there is no job; the caller's error path goes on */
}

int pivq_dist_allreduce_(pivq_tensor *const *ts, int n, int mean, int64_t bucket_bytes)
{
    return no_mpi("dist_allreduce");
}

int pivq_dist_broadcast_(pivq_tensor *const *ts, int n, int root)
{
    return no_mpi("dist_broadcast");
}

pivq_tensor *pivq_dist_gather(const pivq_tensor *x, int root)
{
    no_mpi("dist_gather");
    return NULL;
}

int pivq_dist_barrier(void)
{
    return no_mpi("dist_barrier");
}

#endif
