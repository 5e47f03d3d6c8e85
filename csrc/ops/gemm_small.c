/* ops/gemm_small.c — register-tiled products of the small matrices inside attention heads.
 *
 * At one head's sizes (tens of rows, head dims of 16-64) OpenBLAS spends much of each call
 * outside its kernel (argument checks, dispatch, packing into its panels): inside a training
 * step its small sgemms ran at about a third of the rate the same shapes reach in a loop. These
 * kernels keep an 8 x 16 tile of C in registers, broadcast A's elements one at a time (so a
 * transposed A costs nothing) and stream B's rows; B must be row-major along N (a caller with
 * B^T transposes it into a panel first, pivq_transpose_panel).
 *
 *   C (M, N) = alpha op(A) (M, K) B (K, N),  op(A) = A (ta = 0) or A^T (ta = 1);  C overwritten.
 *
 * The vector type is GCC's generic vector extension: one AVX-512 register with -march=native
 * on this machine, split into narrower registers by the compiler elsewhere (same results:
 * each C element is one sum over k in increasing order, whatever the vector width).
 */
#include "ops/ops.h"

typedef float v16 __attribute__((vector_size(64)));

enum { TILE_M = 8, TILE_N = 16 };

static inline v16 load16(const float *p)
{
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store16(float *p, v16 v)
{
    memcpy(p, &v, sizeof v);
}

/* op(A)(r, k) for a tile whose first row is A's row (ta = 0) or column (ta = 1) i */
static inline float a_at(int ta, const float *A, int64_t lda, int64_t r, int64_t k)
{
    return ta ? A[k * lda + r] : A[r * lda + k];
}

/* One TILE_M x TILE_N tile of C; A points at the tile's first row of op(A). always_inline
   with a constant ta gives one specialised loop per orientation. */
static inline __attribute__((always_inline)) void tile(int ta, int64_t K, float alpha,
                                                       const float *A, int64_t lda, const float *B,
                                                       int64_t ldb, float *C, int64_t ldc)
{
    v16 acc[TILE_M];
    for (int r = 0; r < TILE_M; r++)
        acc[r] = (v16){0};
    for (int64_t k = 0; k < K; k++) {
        v16 b = load16(B + k * ldb);
        for (int r = 0; r < TILE_M; r++)
            acc[r] += a_at(ta, A, lda, r, k) * b;
    }
    for (int r = 0; r < TILE_M; r++)
        store16(C + r * ldc, acc[r] * alpha);
}

/* Element by element, for the leftover rows/columns when K is too long for the stack panels
   below (same summation order as a tile). */
static void edge(int ta, int64_t i0, int64_t i1, int64_t j0, int64_t j1, int64_t K, float alpha,
                 const float *A, int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc)
{
    for (int64_t i = i0; i < i1; i++)
        for (int64_t j = j0; j < j1; j++) {
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++)
                s += a_at(ta, A, lda, i, k) * B[k * ldb + j];
            C[i * ldc + j] = alpha * s;
        }
}

/* C's rows i.., columns j.. from a full tile computed into c (TILE_N apart): mr x nr of it */
static void store_part(const float *c, int64_t mr, int64_t nr, float *C, int64_t ldc)
{
    for (int64_t r = 0; r < mr; r++)
        memcpy(C + r * ldc, c + r * TILE_N, (size_t)nr * sizeof *C);
}

enum { PANEL_K = 256 }; /* longest K whose edge panels live on the stack (24 KB) */

static inline __attribute__((always_inline)) void gemm_small(int ta, int64_t M, int64_t N,
                                                             int64_t K, float alpha, const float *A,
                                                             int64_t lda, const float *B,
                                                             int64_t ldb, float *C, int64_t ldc)
{
    int64_t Mt = M - M % TILE_M, Nt = N - N % TILE_N;
    for (int64_t i = 0; i < Mt; i += TILE_M) {
        const float *Ai = ta ? A + i : A + i * lda;
        for (int64_t j = 0; j < Nt; j += TILE_N)
            tile(ta, K, alpha, Ai, lda, B + j, ldb, C + i * ldc + j, ldc);
    }
    if (Mt == M && Nt == N) return;
    if (K > PANEL_K) {
        edge(ta, 0, Mt, Nt, N, K, alpha, A, lda, B, ldb, C, ldc);
        edge(ta, Mt, M, 0, N, K, alpha, A, lda, B, ldb, C, ldc);
        return;
    }
    /* The leftovers run on full tiles too: the last columns of B and the last rows of op(A)
       copied into zero-padded panels (so no load reads past a matrix), the tile computed into
       c and its valid part stored. */
    float b_pad[PANEL_K * TILE_N], a_pad[TILE_M * PANEL_K], c[TILE_M * TILE_N];
    if (Nt < N) {
        for (int64_t k = 0; k < K; k++)
            for (int64_t n = 0; n < TILE_N; n++)
                b_pad[k * TILE_N + n] = Nt + n < N ? B[k * ldb + Nt + n] : 0.0f;
        for (int64_t i = 0; i < Mt; i += TILE_M) {
            tile(ta, K, alpha, ta ? A + i : A + i * lda, lda, b_pad, TILE_N, c, TILE_N);
            store_part(c, TILE_M, N - Nt, C + i * ldc + Nt, ldc);
        }
    }
    if (Mt < M) {
        for (int64_t r = 0; r < TILE_M; r++)
            for (int64_t k = 0; k < K; k++)
                a_pad[r * K + k] = Mt + r < M ? a_at(ta, A, lda, Mt + r, k) : 0.0f;
        for (int64_t j = 0; j < Nt; j += TILE_N) {
            tile(0, K, alpha, a_pad, K, B + j, ldb, c, TILE_N);
            store_part(c, M - Mt, TILE_N, C + Mt * ldc + j, ldc);
        }
        if (Nt < N) {
            tile(0, K, alpha, a_pad, K, b_pad, TILE_N, c, TILE_N);
            store_part(c, M - Mt, N - Nt, C + Mt * ldc + Nt, ldc);
        }
    }
}

void pivq_gemm_small(int ta, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc)
{
    if (ta)
        gemm_small(1, M, N, K, alpha, A, lda, B, ldb, C, ldc);
    else
        gemm_small(0, M, N, K, alpha, A, lda, B, ldb, C, ldc);
}

void pivq_transpose_panel(const float *src, int64_t ld, int64_t rows, int64_t cols, float *dst)
{
    /* column by column: contiguous stores measured faster than contiguous loads here (the
       other order, row by row, doubled this function's time in a training step) */
    for (int64_t c = 0; c < cols; c++)
        for (int64_t r = 0; r < rows; r++)
            dst[c * rows + r] = src[r * ld + c];
}
