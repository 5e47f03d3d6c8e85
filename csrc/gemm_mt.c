/* gemm_mt.c — sgemm split across the OpenMP threads, each running single-threaded BLAS.
 *
 * Why not let OpenBLAS thread its own calls: its worker threads busy-wait for a long time
 * after each call, and the OpenMP loops of the neighbouring kernels (im2col, activations,
 * norms) then fight them for the same cores; with every thread an OpenMP thread, one pool
 * does all the work and idles politely (OMP_WAIT_POLICY). Rows of C (or columns, when C is
 * short and wide) are split in blocks of whole cache lines.
 */
#include "autograd_internal.h"

#include <cblas.h>

extern void openblas_set_num_threads(int num_threads);

void pivq_blas_serial_begin(void)
{
    if (pivq_get_num_threads() > 1) openblas_set_num_threads(1);
}

void pivq_blas_serial_end(void)
{
    int n = pivq_get_num_threads();
    if (n > 1) openblas_set_num_threads(n);
}

void pivq_sgemm_serial(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                       int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0 ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

void pivq_sgemm_mt(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    int nt = pivq_get_num_threads();
    /* too little work to split: one call (BLAS threads it if it is allowed to) */
    if (nt <= 1 || M * N * K < ((int64_t)1 << 21) || (M < 32 * nt && N < 32 * nt)) {
        pivq_sgemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int split_rows = M >= N;
    pivq_blas_serial_begin();
#pragma omp parallel num_threads(nt)
    {
        int tid = 0, T = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        T = omp_get_num_threads();
#endif
        int64_t len = split_rows ? M : N;
        /* block bounds rounded to 16 (a 64-byte line of floats) */
        int64_t lo = (len * tid / T) & ~(int64_t)15,
                hi = tid == T - 1 ? len : (len * (tid + 1) / T) & ~(int64_t)15;
        if (hi > lo) {
            if (split_rows) /* rows lo..hi of op(A) and C */
                pivq_sgemm_serial(ta, tb, hi - lo, N, K, alpha, ta ? A + lo : A + lo * lda, lda, B,
                                  ldb, beta, C + lo * ldc, ldc);
            else /* columns lo..hi of op(B) and C */
                pivq_sgemm_serial(ta, tb, M, hi - lo, K, alpha, A, lda, tb ? B + lo * ldb : B + lo,
                                  ldb, beta, C + lo, ldc);
        }
    }
    pivq_blas_serial_end();
}
