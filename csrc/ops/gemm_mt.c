/* ops/gemm_mt.c — sgemm split across the OpenMP threads, each running single-threaded BLAS.
 *
 * Why not let OpenBLAS thread its own calls: its worker threads busy-wait for a long time
 * after each call, and the OpenMP loops of the neighbouring kernels (im2col, activations,
 * norms) then fight them for the same cores; with every thread an OpenMP thread, one pool
 * does all the work and idles politely (OMP_WAIT_POLICY). OpenBLAS is set single-threaded
 * once, when the library loads (core/ctx.c). Rows of C (or columns, when C is
 * short and wide) are split in blocks of whole cache lines.
 */
#include "ops/ops.h"

#include <cblas.h>

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
    pivq_flops_add(2 * M * N * K);
}

/* One sgemm's split: rows (split_rows) or columns of op(A)/op(B) and C, in blocks of 16 (a
   64-byte line of floats) so that no two threads write the same cache line of C. */
typedef struct gemm_split {
    int ta, tb, split_rows;
    int64_t M, N, K, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B;
    float *C;
} gemm_split;

static void gemm_blocks(int64_t b0, int64_t b1, void *ctx)
{
    const gemm_split *s = ctx;
    int64_t len = s->split_rows ? s->M : s->N, lo = b0 * 16, hi = b1 * 16 < len ? b1 * 16 : len;
    if (s->split_rows) /* rows lo..hi of op(A) and C */
        pivq_sgemm_serial(s->ta, s->tb, hi - lo, s->N, s->K, s->alpha,
                          s->ta ? s->A + lo : s->A + lo * s->lda, s->lda, s->B, s->ldb, s->beta,
                          s->C + lo * s->ldc, s->ldc);
    else /* columns lo..hi of op(B) and C */
        pivq_sgemm_serial(s->ta, s->tb, s->M, hi - lo, s->K, s->alpha, s->A, s->lda,
                          s->tb ? s->B + lo * s->ldb : s->B + lo, s->ldb, s->beta, s->C + lo,
                          s->ldc);
}

void pivq_sgemm_mt(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    int nt = pivq_get_num_threads();
    /* too little work to split: one single-threaded call */
    if (nt <= 1 || M * N * K < ((int64_t)1 << 21) || (M < 32 * nt && N < 32 * nt)) {
        pivq_sgemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    gemm_split s = {ta, tb, M >= N, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C};
    int64_t len = s.split_rows ? M : N;
    pivq_parallel_range((len + 15) / 16, M * N * K, gemm_blocks, &s);
}
