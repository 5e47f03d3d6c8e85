/* ops/ops.h — kernels shared by the files of the ops layer (and by quant/, which sits above it);
 * not part of the public API. */
#ifndef PIVQ_OPS_OPS_H
#define PIVQ_OPS_OPS_H

#include "autograd/autograd.h"

/* gemm_mt.c: C (M, N) = alpha op(A) op(B) + beta C (row-major), split across the OpenMP
   threads with single-threaded BLAS in each. */
void pivq_sgemm_mt(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* The same as one (single-threaded) BLAS call. */
void pivq_sgemm_serial(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                       int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* gemm_small.c: C (M, N) = alpha op(A) B, op(A) = A or A^T (ta), B row-major, C overwritten;
   register-tiled for the small matrices of attention heads (single-threaded). */
void pivq_gemm_small(int ta, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc);
/* dst (cols, rows) = src (rows, cols)^T, src rows ld apart, dst contiguous. */
void pivq_transpose_panel(const float *src, int64_t ld, int64_t rows, int64_t cols, float *dst);
/* out (N) = column sums of g (M, N), contiguous. */
void pivq_colsum(const float *g, float *out, int64_t M, int64_t N);
/* log_softmax without recording (for ops that record their own node). */
pivq_tensor *pivq_log_softmax_nograd(const pivq_tensor *x, int dim);

#endif
