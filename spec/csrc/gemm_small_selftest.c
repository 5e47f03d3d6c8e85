/* Self-test of the register-tiled small products (csrc/ops/gemm_small.c) against a naive product
 * in double precision: every size from 1 to past two tiles in M and N (the leftover rows and
 * columns run through zero-padded panels), K of 0, 1, typical and past the stack panels' 256
 * (the element-by-element route), A plain and transposed, strided A, B and C (C's padding
 * must stay untouched), and the transposed panel B^T -> B. Prints "N passed, N failed". */
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int passed, failed;

static float urand(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static void check(int ok, const char *what, int ta, long M, long N, long K)
{
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("FAIL %s ta=%d M=%ld N=%ld K=%ld\n", what, ta, M, N, K);
    }
}

static void one_case(int ta, long M, long N, long K, unsigned *seed)
{
    long lda = (ta ? M : K) + 3, ldb = N + 5, ldc = N + 2, arows = ta ? K : M;
    float *A = malloc(sizeof(float) * (size_t)(arows * lda + 1));
    float *B = malloc(sizeof(float) * (size_t)(K * ldb + 1));
    float *C = malloc(sizeof(float) * (size_t)(M * ldc + 1));
    for (long i = 0; i < arows * lda + 1; i++)
        A[i] = urand(seed);
    for (long i = 0; i < K * ldb + 1; i++)
        B[i] = urand(seed);
    for (long i = 0; i < M * ldc + 1; i++)
        C[i] = 1234.5f; /* sentinel: padding and the element past the end must survive */
    float alpha = 0.75f;
    pivq_gemm_small(ta, M, N, K, alpha, A, lda, B, ldb, C, ldc);
    int ok = 1, pad_ok = C[M * ldc] == 1234.5f;
    for (long i = 0; i < M; i++) {
        for (long j = 0; j < N; j++) {
            double s = 0, mag = 0;
            for (long k = 0; k < K; k++) {
                double a = ta ? A[k * lda + i] : A[i * lda + k];
                s += a * B[k * ldb + j];
                mag += fabs(a * B[k * ldb + j]);
            }
            s *= alpha;
            /* float32 accumulation: a few ulps of the sum of magnitudes */
            if (fabs(C[i * ldc + j] - s) > 1e-6 * (double)(K + 1) * (mag + 1)) ok = 0;
        }
        for (long j = N; j < ldc; j++)
            if (C[i * ldc + j] != 1234.5f) pad_ok = 0;
    }
    check(ok, "values", ta, M, N, K);
    check(pad_ok, "padding untouched", ta, M, N, K);
    free(A);
    free(B);
    free(C);
}

int main(void)
{
    unsigned seed = 12345;
    static const long Ks[] = {0, 1, 7, 32, 49, 256, 300};
    for (int ta = 0; ta <= 1; ta++)
        for (long M = 1; M <= 19; M++)
            for (long N = 1; N <= 35; N += (N < 17 ? 1 : 3))
                for (size_t k = 0; k < sizeof Ks / sizeof Ks[0]; k++)
                    one_case(ta, M, N, Ks[k], &seed);
    one_case(0, 80, 80, 32, &seed); /* an attention head's sizes */
    one_case(1, 64, 32, 80, &seed);

    /* the panel: dst (cols, rows) = src (rows, cols)^T with src rows ld apart */
    float src[5 * 9], dst[5 * 7];
    for (int i = 0; i < 5 * 9; i++)
        src[i] = (float)i;
    pivq_transpose_panel(src, 9, 5, 7, dst);
    int ok = 1;
    for (int r = 0; r < 5; r++)
        for (int c = 0; c < 7; c++)
            if (dst[c * 5 + r] != src[r * 9 + c]) ok = 0;
    check(ok, "transpose_panel", 0, 5, 7, 0);

    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
