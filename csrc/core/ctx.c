/* core/ctx.c — the library's context: the per-thread error message, thread count, heap counters.
 *
 * Errors are reported, never raised: a function records a message with pivq_set_error and
 * returns -1 or NULL; the Lua binding reads pivq_last_error() and raises it at the caller's
 * line. The buffer is thread-local so that OpenMP workers and several Lua states in one
 * process do not overwrite each other's messages.
 */
#include "core/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <cblas.h>

static _Thread_local char error_message[1024];

const char *pivq_last_error(void)
{
    return error_message;
}

void pivq_clear_error(void)
{
    error_message[0] = '\0';
}

int pivq_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    return -1;
}

/* PIVQ_VERSION comes from CMakeLists.txt's project() line, where the version is defined once. */
const char *pivq_version(void)
{
    return PIVQ_VERSION;
}

static int64_t flops;

void pivq_flops_add(int64_t n)
{
    __atomic_add_fetch(&flops, n, __ATOMIC_RELAXED);
}

int64_t pivq_flop_count(void)
{
    return __atomic_load_n(&flops, __ATOMIC_RELAXED);
}

/* OpenBLAS from Debian (openblas-pthread) exports this; it is not in every cblas.h. */
extern void openblas_set_num_threads(int num_threads);

/* OpenBLAS never threads a call: pivq splits its large products across the OpenMP threads
   (ops/gemm_mt.c) and runs every BLAS call single-threaded. An OpenBLAS-threaded call leaves its
   worker threads spinning (sched_yield) for a long while afterwards, on the cores the OpenMP
   threads need: with the small products a training step makes, 2 threads ran slower than 1
   (180 vs 143 ms a step; 107 ms once OpenBLAS stayed single-threaded). Set when the library
   loads, before any call. */
__attribute__((constructor)) static void blas_single_threaded(void)
{
    openblas_set_num_threads(1);
}

static int num_threads = 0; /* 0 = not set yet: ask OpenMP */

int pivq_set_num_threads(int n)
{
    if (n < 1 || n > 1024)
        return pivq_set_error("set_num_threads: n must be in 1..1024, got %d", n);
    num_threads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    return 0;
}

int pivq_get_num_threads(void)
{
    if (num_threads > 0) return num_threads;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Heap accounting: atomics because OpenMP workers may allocate scratch tensors. */
static int64_t heap_bytes = 0;
static int64_t heap_count = 0;
static int64_t heap_peak = 0; /* the highest heap_bytes of the period (pivq_heap_peak_reset) */

static void note_bytes(int64_t delta)
{
    int64_t now = __atomic_add_fetch(&heap_bytes, delta, __ATOMIC_RELAXED);
    if (delta <= 0) return;
    int64_t peak = __atomic_load_n(&heap_peak, __ATOMIC_RELAXED);
    while (now > peak && !__atomic_compare_exchange_n(&heap_peak, &peak, now, true,
                                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

void pivq_heap_note_alloc(int64_t nbytes)
{
    note_bytes(nbytes);
    __atomic_add_fetch(&heap_count, 1, __ATOMIC_RELAXED);
}

void pivq_heap_note_free(int64_t nbytes)
{
    note_bytes(-nbytes);
    __atomic_sub_fetch(&heap_count, 1, __ATOMIC_RELAXED);
}

void pivq_heap_note_header(int delta)
{
    note_bytes(delta * (int64_t)sizeof(pivq_tensor));
}

int64_t pivq_heap_peak_reset(void)
{
    int64_t now = __atomic_load_n(&heap_bytes, __ATOMIC_RELAXED);
    return __atomic_exchange_n(&heap_peak, now, __ATOMIC_RELAXED);
}

int64_t pivq_heap_bytes(void)
{
    return __atomic_load_n(&heap_bytes, __ATOMIC_RELAXED);
}

int64_t pivq_heap_count(void)
{
    return __atomic_load_n(&heap_count, __ATOMIC_RELAXED);
}
