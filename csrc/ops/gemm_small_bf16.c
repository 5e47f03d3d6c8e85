/* ops/gemm_small_bf16.c — the bf16 twin of ops/gemm_small.c: register-tiled products of the
 * attention heads' small matrices with bf16 operands and fp32 accumulation (AVX512-BF16), and
 * the vectorised fp32 -> bf16 conversion that ops/bf16.c rounds oneDNN's operands with.
 *
 *   C (M, N) = alpha op(A) (M, K) op(B) (K, N),  op(X) = X or X^T;  C fp32, overwritten.
 *
 * The operands are fp32; each product first rounds them to bf16 (nearest even, like oneDNN's
 * and PyTorch's conversion) into per-thread scratch, in the layouts `vdpbf16ps` wants: it
 * multiplies pairs of bf16 along k and adds both products into one fp32 lane. So B is packed
 * as k-pairs (K/2, N, 2) ("VNNI" layout) and each row of op(A) is read as k-pairs, either
 * straight from a converted row-major copy (op(A) = A) or from the same pair layout as B
 * (op(A) = A^T, its columns interleaved two rows at a time). An odd K gets a zero pair half.
 * The tile is 8 rows x 32 columns of C in 16 registers; each step broadcasts one k-pair of A
 * per row and does two dot products per row. Per element of C the sum runs over k-pairs in
 * increasing order (one thread per product), so results do not depend on the thread count.
 *
 * Only built for x86-64 with GCC or clang; the kernels carry target attributes, so the file
 * compiles without -march=native, and they run only when pivq_small_bf16_ok() (the CPU has
 * AVX512-BF16 and the precision is bf16: ops/bf16.c sets it only then). Like every AVX512-BF16
 * conversion, subnormal inputs (|x| < 1.2e-38) become zero.
 */
#include "ops/ops.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_BF16_KERNELS 1
#include <immintrin.h>
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))
#endif

enum { TM = 8, TN = 16 }; /* tile rows; columns per register */

static int64_t round_up(int64_t n, int64_t m)
{
    return (n + m - 1) / m * m;
}

/* 1 if the CPU has AVX512-BF16 (and the kernels are built) */
static int cpu_bf16(void)
{
#ifdef HAVE_BF16_KERNELS
    static int cpu = -1;
    if (cpu < 0) {
        __builtin_cpu_init();
        cpu = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
    }
    return cpu;
#else
    return 0;
#endif
}

int pivq_small_bf16_ok(void)
{
    return cpu_bf16() && pivq_get_precision() == PIVQ_PRECISION_BF16;
}

/* f32 -> bf16, rounding to nearest even; NaN stays a (quiet) NaN: the scalar path */
static inline uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Rows of up to two fp32 matrices to packed bf16 (rows cols apart): row r of the job is row r
   of the first (r < rows[0]) or row r - rows[0] of the second, so one parallel range covers both
   operands of a product (one OpenMP region instead of two). */
typedef struct conv_job {
    const float *src[2];
    uint16_t *dst[2];
    int64_t rows[2], cols[2], ld[2];
} conv_job;

/* the matrix of job row r, and r within it */
static inline int job_row(const conv_job *j, int64_t *r)
{
    if (*r < j->rows[0]) return 0;
    *r -= j->rows[0];
    return 1;
}

static void convert_rows_scalar(int64_t r0, int64_t r1, void *ctx)
{
    const conv_job *j = ctx;
    for (int64_t i = r0; i < r1; i++) {
        int64_t r = i;
        int m = job_row(j, &r);
        const float *s = j->src[m] + r * j->ld[m];
        uint16_t *d = j->dst[m] + r * j->cols[m];
        for (int64_t c = 0; c < j->cols[m]; c++)
            d[c] = to_bf16(s[c]);
    }
}

size_t pivq_small_bf16_scratch(int64_t M, int64_t N, int64_t K)
{
    int64_t kp = (K + 1) / 2;
    /* op(A) pairs (Mpad x kp) and B pairs (kp x Npad), 32-bit each */
    return (size_t)((round_up(M, TN) + round_up(N, TN)) * kp) * 4 + 64;
}

#ifdef HAVE_BF16_KERNELS

/* n (<= 16) floats from p, zeros after them */
BF16_TARGET static inline __m512 load_part(const float *p, int64_t n)
{
    return n >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
}

/* One row of n fp32 values to n bf16 values, nearest even (dst may have room for an even
   count: an odd n leaves dst[n] = 0 when pad is set). */
BF16_TARGET static void row_to_bf16(const float *src, int64_t n, uint16_t *dst, int pad)
{
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + j + 16), _mm512_loadu_ps(src + j));
        _mm512_storeu_si512(dst + j, (__m512i)v);
    }
    if (j < n) {
        int64_t r = n - j, lo = r < 16 ? r : 16;
        __m512 a = load_part(src + j, lo),
               b = r > 16 ? load_part(src + j + 16, r - 16) : _mm512_setzero_ps();
        __m512i v = (__m512i)_mm512_cvtne2ps_pbh(b, a);
        int64_t keep = pad ? r + (r & 1) : r;
        _mm512_mask_storeu_epi16(dst + j, (__mmask32)(keep >= 32 ? ~0u : (1u << keep) - 1), v);
    }
}

BF16_TARGET static void convert_rows(int64_t r0, int64_t r1, void *ctx)
{
    const conv_job *j = ctx;
    for (int64_t i = r0; i < r1; i++) {
        int64_t r = i;
        int m = job_row(j, &r);
        row_to_bf16(j->src[m] + r * j->ld[m], j->cols[m], j->dst[m] + r * j->cols[m], 0);
    }
}

/* Pairs of rows interleaved: dst[p * dld + n] = (src[2p][n], src[2p+1][n]) as two bf16 in
   one 32-bit word, for p < (rows + 1) / 2 and n < cols rounded up to 16 (zeros past rows and
   cols). The layout of B, and of op(A) = A^T. */
BF16_TARGET static void pack_pairs(const float *src, int64_t ld, int64_t rows, int64_t cols,
                                   uint32_t *dst, int64_t dld)
{
    /* element i of the result takes word i/2 of the low (even i) or high (odd i) half */
    static const uint16_t order[32] = {0,  16, 1,  17, 2,  18, 3,  19, 4,  20, 5,
                                       21, 6,  22, 7,  23, 8,  24, 9,  25, 10, 26,
                                       11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    __m512i idx = _mm512_loadu_si512(order);
    for (int64_t p = 0; 2 * p < rows; p++) {
        const float *r0 = src + 2 * p * ld, *r1 = 2 * p + 1 < rows ? r0 + ld : NULL;
        for (int64_t n = 0; n < cols; n += 16) {
            int64_t w = cols - n < 16 ? cols - n : 16;
            __m512 lo = load_part(r0 + n, w), hi = r1 ? load_part(r1 + n, w) : _mm512_setzero_ps();
            __m512i v = _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_storeu_si512(dst + p * dld + n, v);
        }
    }
}

/* The 16 x 16 transpose of 32-bit words: r[i] lane k -> r[k] lane i (pairs within 128-bit
   lanes, then quads, then the lanes themselves in two rounds). */
BF16_TARGET static inline void transpose16(__m512i r[16])
{
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    /* u[4g + c], 128-bit lane L: column 4L + c of rows 4g .. 4g+3 */
    for (int g = 0; g < 16; g += 4) {
        r[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
        r[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
        r[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
        r[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
    }
    for (int c = 0; c < 4; c++) { /* gather lane L of u[c], u[4+c], u[8+c], u[12+c] */
        __m512i v0 = _mm512_shuffle_i32x4(r[c], r[4 + c], 0x88);
        __m512i v1 = _mm512_shuffle_i32x4(r[c], r[4 + c], 0xdd);
        __m512i v2 = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0x88);
        __m512i v3 = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0xdd);
        t[c] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        t[8 + c] = _mm512_shuffle_i32x4(v0, v2, 0xdd);
        t[4 + c] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        t[12 + c] = _mm512_shuffle_i32x4(v1, v3, 0xdd);
    }
    for (int i = 0; i < 16; i++)
        r[i] = t[i];
}

/* Rows of src as k-pairs, transposed: dst[p * dld + n] = (src[n][2p], src[n][2p+1]) for
   n < rows rounded up to 16 (zeros past rows: B^T stored as (N, K)). Blocks of 16 rows x 16
   pairs: each row rounded to 16 words in a register, then transposed in registers. */
BF16_TARGET static void pack_pairs_t(const float *src, int64_t ld, int64_t rows, int64_t cols,
                                     uint32_t *dst, int64_t dld)
{
    int64_t kp = (cols + 1) / 2;
    for (int64_t n0 = 0; n0 < rows; n0 += 16) {
        for (int64_t p0 = 0; p0 < kp; p0 += 16) {
            int64_t c0 = 2 * p0, w = cols - c0 < 32 ? cols - c0 : 32;
            __m512i r[16];
            for (int i = 0; i < 16; i++) {
                if (n0 + i >= rows) {
                    r[i] = _mm512_setzero_si512();
                    continue;
                }
                const float *row = src + (n0 + i) * ld + c0;
                __m512 lo = load_part(row, w < 16 ? w : 16);
                __m512 hi = w > 16 ? load_part(row + 16, w - 16) : _mm512_setzero_ps();
                r[i] = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
            }
            transpose16(r);
            for (int p = 0; p < 16 && p0 + p < kp; p++)
                _mm512_storeu_si512(dst + (p0 + p) * dld + n0, r[p]);
        }
    }
}

/* One tile: rows i .. i+mr-1 of op(A) (pairs at a[r * am + p * ak]), NV registers of columns
   from b (pairs at b[p * bld + n]), nc of its columns stored. always_inline with a constant NV
   gives one specialised loop per width. */
BF16_TARGET static inline __attribute__((always_inline)) void
tile(int NV, int64_t kp, const uint32_t *a, int64_t am, int64_t ak, const uint32_t *b, int64_t bld,
     float alpha, float *C, int64_t ldc, int64_t mr, int64_t nc)
{
    __m512 acc[TM][2];
    for (int r = 0; r < TM; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kp; p++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + p * bld), b1 = b0;
        if (NV == 2) b1 = (__m512bh)_mm512_loadu_si512(b + p * bld + TN);
        for (int r = 0; r < TM; r++) {
            __m512bh x = (__m512bh)_mm512_set1_epi32((int)a[r * am + p * ak]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0);
            if (NV == 2) acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1);
        }
    }
    __m512 s = _mm512_set1_ps(alpha);
    __mmask16 m0 = nc >= TN ? 0xffff : (__mmask16)((1u << nc) - 1);
    __mmask16 m1 = nc >= 2 * TN ? 0xffff : nc > TN ? (__mmask16)((1u << (nc - TN)) - 1) : 0;
    for (int r = 0; r < TM; r++) {
        if (r >= mr) break;
        _mm512_mask_storeu_ps(C + r * ldc, m0, _mm512_mul_ps(acc[r][0], s));
        if (NV == 2) _mm512_mask_storeu_ps(C + r * ldc + TN, m1, _mm512_mul_ps(acc[r][1], s));
    }
}

BF16_TARGET static void product(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                                const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                                int64_t ldc, void *scratch)
{
    int64_t kp = (K + 1) / 2, Mp = round_up(M, TN), Np = round_up(N, TN);
    uint32_t *ap = scratch, *bp = ap + Mp * kp;
    int64_t am, ak;
    if (ta) { /* A stored (K, M): pairs of its rows, M apart */
        pack_pairs(A, lda, K, M, ap, Mp);
        am = 1, ak = Mp;
    } else { /* A stored (M, K): each row to bf16 pairs; rows past M zero */
        for (int64_t i = 0; i < M; i++)
            row_to_bf16(A + i * lda, K, (uint16_t *)(ap + i * kp), 1);
        memset(ap + M * kp, 0, (size_t)((Mp - M) * kp) * 4);
        am = kp, ak = 1;
    }
    if (tb) { /* B stored (N, K) */
        pack_pairs_t(B, ldb, N, K, bp, Np);
    } else {
        pack_pairs(B, ldb, K, N, bp, Np);
    }
    for (int64_t i = 0; i < M; i += TM) {
        int64_t mr = M - i < TM ? M - i : TM;
        const uint32_t *ai = ap + i * am;
        for (int64_t j = 0; j < N; j += 2 * TN) {
            int64_t nc = N - j < 2 * TN ? N - j : 2 * TN;
            if (nc > TN)
                tile(2, kp, ai, am, ak, bp + j, Np, alpha, C + i * ldc + j, ldc, mr, nc);
            else
                tile(1, kp, ai, am, ak, bp + j, Np, alpha, C + i * ldc + j, ldc, mr, nc);
        }
    }
}

void pivq_gemm_small_bf16(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                          const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                          int64_t ldc, void *scratch)
{
    if (M <= 0 || N <= 0) return;
    product(ta, tb, M, N, K, alpha, A, lda, B, ldb, C, ldc, scratch);
}

#else

void pivq_gemm_small_bf16(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                          const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                          int64_t ldc, void *scratch)
{
    (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)B,
        (void)ldb, (void)C, (void)ldc, (void)scratch;
}

#endif

void pivq_to_bf16_pair(const float *a, int64_t ra, int64_t ca, int64_t lda, uint16_t *da,
                       const float *b, int64_t rb, int64_t cb, int64_t ldb, uint16_t *db)
{
    conv_job j = {{a, b}, {da, db}, {ra, b ? rb : 0}, {ca, cb}, {lda, ldb}};
    int64_t rows = j.rows[0] + j.rows[1], n = ra * ca + j.rows[1] * cb;
    /* a memory-bound pass: threads only from 4 grains on (a region's start costs more below) */
#ifdef HAVE_BF16_KERNELS
    if (cpu_bf16()) {
        pivq_parallel_range(rows, n / 4, convert_rows, &j);
        return;
    }
#endif
    pivq_parallel_range(rows, n / 4, convert_rows_scalar, &j);
}

void pivq_to_bf16(const float *src, int64_t rows, int64_t cols, int64_t ld, uint16_t *dst)
{
    pivq_to_bf16_pair(src, rows, cols, ld, dst, NULL, 0, 0, 0, NULL);
}
