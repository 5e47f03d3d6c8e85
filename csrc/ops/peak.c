/* ops/peak.c — the machine's measured arithmetic peak, the denominator of model FLOP utilisation.
 *
 * A loop of independent register-only multiply-adds on every thread: fp32 FMA (AVX-512, else
 * AVX2 + FMA, else scalar) and bf16 dot products (AVX512-BF16 vdpbf16ps: per 32-bit lane two
 * bf16 products added into fp32, 4 FLOPs). Twelve accumulators cover the instructions' latency
 * (4-6 cycles at 2 per cycle). The instruction set is chosen at run time (__builtin_cpu_supports),
 * so a build without -march=native (the valgrind stage) measures what it can run. The loop is
 * timed by the wall clock: on a busy machine it measures the share the process got.
 */
#include "ops/ops.h"

#include <immintrin.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define ACC 12

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) static float fma512(int64_t iters)
{
    __m512 acc[ACC], b = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-6f);
    for (int i = 0; i < ACC; i++)
        acc[i] = _mm512_set1_ps((float)i);
    for (int64_t n = 0; n < iters; n++)
        for (int i = 0; i < ACC; i++)
            acc[i] = _mm512_fmadd_ps(acc[i], b, c);
    float s = 0;
    for (int i = 0; i < ACC; i++)
        s += _mm512_reduce_add_ps(acc[i]);
    return s;
}

__attribute__((target("avx2,fma"))) static float fma256(int64_t iters)
{
    __m256 acc[ACC], b = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-6f);
    for (int i = 0; i < ACC; i++)
        acc[i] = _mm256_set1_ps((float)i);
    for (int64_t n = 0; n < iters; n++)
        for (int i = 0; i < ACC; i++)
            acc[i] = _mm256_fmadd_ps(acc[i], b, c);
    float s = 0, out[8];
    for (int i = 0; i < ACC; i++) {
        _mm256_storeu_ps(out, acc[i]);
        for (int j = 0; j < 8; j++)
            s += out[j];
    }
    return s;
}

__attribute__((target("avx512f,avx512bf16"))) static float dpbf16(int64_t iters)
{
    __m512 acc[ACC];
    __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), y = (__m512bh)_mm512_set1_epi16(0x3380);
    for (int i = 0; i < ACC; i++)
        acc[i] = _mm512_set1_ps((float)i);
    for (int64_t n = 0; n < iters; n++)
        for (int i = 0; i < ACC; i++)
            acc[i] = _mm512_dpbf16_ps(acc[i], x, y);
    float s = 0;
    for (int i = 0; i < ACC; i++)
        s += _mm512_reduce_add_ps(acc[i]);
    return s;
}
#endif

/* FLOPs per loop iteration of one thread, and the loop; 0 when the CPU cannot run it */
static int64_t kernel(int precision, float (**fn)(int64_t))
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (precision == PIVQ_PRECISION_BF16) {
        if (!__builtin_cpu_supports("avx512bf16")) return 0;
        *fn = dpbf16;
        return (int64_t)ACC * 16 * 4;
    }
    if (__builtin_cpu_supports("avx512f")) {
        *fn = fma512;
        return (int64_t)ACC * 16 * 2;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        *fn = fma256;
        return (int64_t)ACC * 8 * 2;
    }
#endif
    (void)precision, (void)fn;
    return 0;
}

double pivq_peak_gflops(int precision, int threads, double seconds)
{
    if (precision != PIVQ_PRECISION_FP32 && precision != PIVQ_PRECISION_BF16)
        return pivq_set_error("peak_gflops: precision must be PIVQ_PRECISION_FP32 (0) or "
                              "PIVQ_PRECISION_BF16 (1), got %d",
                              precision);
    if (threads < 1 || threads > 1024)
        return pivq_set_error("peak_gflops: threads must be in 1..1024, got %d", threads);
    if (!(seconds > 0 && seconds <= 60))
        return pivq_set_error("peak_gflops: seconds must be in (0, 60], got %g", seconds);
#ifndef _OPENMP
    threads = 1; /* built without OpenMP: one thread is all there is */
#endif
    float (*fn)(int64_t) = NULL;
    int64_t per_iter = kernel(precision, &fn);
    if (!per_iter) return 0; /* no such instructions: no peak */
    /* iterations per slice: ~1 ms at 100 GFLOP/s per thread */
    int64_t iters = 100000000 / per_iter;
    double t0 = now(), flops = 0;
    volatile float sink = 0;
    while (now() - t0 < seconds) {
#pragma omp parallel num_threads(threads)
        {
            float s = fn(iters);
#pragma omp atomic
            sink += s;
        }
        flops += (double)threads * (double)iters * (double)per_iter;
    }
    return flops / (now() - t0) * 1e-9;
}
