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

/* bf16.c: the products of matmul, linear (and their backward): pivq_sgemm_mt, or under
   PIVQ_PRECISION_BF16 oneDNN's matmul with bf16 operands and fp32 accumulation and output. */
void pivq_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
               int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* 1 if pivq_gemm would run an (M, N, K) product in bf16: the precision is bf16 and the product
   is large enough (matmul / linear products of fewer than 2^18 multiply-adds stay fp32). */
int pivq_gemm_uses_bf16(int64_t M, int64_t N, int64_t K);
/* pivq_gemm, with a16 (or NULL) a bf16 copy of A as stored (pivq_bf16_copy), for an operand that
   several products share: the bf16 path then skips rounding A again. */
void pivq_gemm_ex(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, const uint16_t *a16, const float *B, int64_t ldb, float beta,
                  float *C, int64_t ldc);
/* A new (free()) packed bf16 copy of src (rows, cols; rows ld apart), or NULL when out of memory
   or empty (the products then round their operand themselves). */
uint16_t *pivq_bf16_copy(const float *src, int64_t rows, int64_t cols, int64_t ld);
/* linear's forward: y (M, N) = x (M, K) @ w (N, K)^T + b (N; may be NULL). fp32: rows of y start
   as b and one sgemm adds; bf16: oneDNN adds the bias in its kernel. */
void pivq_gemm_bias(int64_t M, int64_t N, int64_t K, const float *x, const float *w, const float *b,
                    float *y);
/* gemm_small.c: C (M, N) = alpha op(A) B, op(A) = A or A^T (ta), B row-major, C overwritten;
   register-tiled for the small matrices of attention heads (single-threaded). */
void pivq_gemm_small(int ta, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc);
/* gemm_small_bf16.c: the same products with bf16 operands and fp32 accumulation (AVX512-BF16),
   C (M, N) = alpha op(A) op(B), op(B) = B or B^T (tb; B^T stored (N, K)), C overwritten. The
   operands are rounded into `scratch`, pivq_small_bf16_scratch(M, N, K) bytes (one per thread).
   Call only when pivq_small_bf16_ok(): the CPU has AVX512-BF16 and the precision is bf16. */
int pivq_small_bf16_ok(void);
size_t pivq_small_bf16_scratch(int64_t M, int64_t N, int64_t K);
void pivq_gemm_small_bf16(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                          const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                          int64_t ldc, void *scratch);
/* dst (rows, cols), packed, = src (rows, cols; rows ld apart) rounded to bf16 (nearest even),
   split over the threads when large; vectorised where the CPU has AVX512-BF16. */
void pivq_to_bf16(const float *src, int64_t rows, int64_t cols, int64_t ld, uint16_t *dst);
/* Both a (ra, ca) and b (rb, cb; b may be NULL) to bf16 the same way, in one parallel pass. */
void pivq_to_bf16_pair(const float *a, int64_t ra, int64_t ca, int64_t lda, uint16_t *da,
                       const float *b, int64_t rb, int64_t cb, int64_t ldb, uint16_t *db);
/* dst (cols, rows) = src (rows, cols)^T, src rows ld apart, dst contiguous. */
void pivq_transpose_panel(const float *src, int64_t ld, int64_t rows, int64_t cols, float *dst);
/* out (N) = column sums of g (M, N), contiguous. */
void pivq_colsum(const float *g, float *out, int64_t M, int64_t N);
/* The ops of this layer without autograd (the `_nograd` convention of core/core.h): what the
   public forms compute, without recording a node or refusing a tensor in a graph. Kernels,
   backward functions and ops built from other ops call these. Arguments, results and messages
   as documented for the public forms in pivq.h. */
pivq_tensor *pivq_unary_nograd(const pivq_tensor *x, int op);
pivq_tensor *pivq_clamp_nograd(const pivq_tensor *x, double lo, double hi);
pivq_tensor *pivq_binary_nograd(const pivq_tensor *a, const pivq_tensor *b, int op);
pivq_tensor *pivq_binary_scalar_nograd(const pivq_tensor *a, double s, int op, int scalar_first);
int pivq_binary_nograd_(pivq_tensor *a, const pivq_tensor *b, int op);
int pivq_binary_scalar_nograd_(pivq_tensor *a, double s, int op);
pivq_tensor *pivq_where_nograd(const pivq_tensor *cond, const pivq_tensor *a, const pivq_tensor *b);
pivq_tensor *pivq_reduce_nograd(const pivq_tensor *x, int op, int dim, int keepdim, double param);
pivq_tensor *pivq_matmul_nograd(const pivq_tensor *a, const pivq_tensor *b);
pivq_tensor *pivq_index_select_nograd(const pivq_tensor *x, int dim, const pivq_tensor *index);
pivq_tensor *pivq_gather_nograd(const pivq_tensor *x, int dim, const pivq_tensor *index);
pivq_tensor *pivq_scatter_add_nograd(const pivq_tensor *x, int dim, const pivq_tensor *index,
                                     const pivq_tensor *src);
pivq_tensor *pivq_masked_fill_nograd(const pivq_tensor *x, const pivq_tensor *mask, double value);
pivq_tensor *pivq_cat_nograd(pivq_tensor *const *ts, int n, int dim);
pivq_tensor *pivq_stack_nograd(pivq_tensor *const *ts, int n, int dim);
pivq_tensor *pivq_log_softmax_nograd(const pivq_tensor *x, int dim);

/* Helpers of the backward functions. */
/* Sum g down to a broadcast-compatible shape (the gradient of a broadcast). New reference. */
pivq_tensor *pivq_sum_to_shape(const pivq_tensor *g, int ndim, const int64_t *shape);
/* Release n temporaries and clear their slots (NULL entries are fine). */
static inline void pivq_drop(int n, pivq_tensor **ts)
{
    for (int i = 0; i < n; i++) {
        pivq_tensor_release(ts[i]);
        ts[i] = NULL;
    }
}

#endif
