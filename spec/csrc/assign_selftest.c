/* assign_selftest.c — C tests of the assignment solver (csrc/quant/assign.c), built by CMake as
 * build/pivq_assign_selftest and run by spec/csrc/assign_selftest_spec.lua.
 *
 * References: exhaustive enumeration (L <= 5, K <= 8) and an independent textbook Hungarian
 * (dense, no candidate lists, no greedy start): on the zero-padded K x K square for medium sizes,
 * and on the L x K rectangle directly for K in the thousands (the two forms are checked against
 * each other). Totals must match exactly for integer costs, within 1e-9 relative otherwise.
 * Pass --quick for a short run (valgrind).
 */
#include "pivq.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The library's error buffer (core/ctx.c), read after each failing call. */
#define last_error pivq_last_error()

/* The out-of-memory test asks for an impossible allocation: under ASan, get NULL, not a crash. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

/* ---- tiny harness ---- */
static int failures = 0, checks = 0;
#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        checks++;                                                          \
        if (!(cond)) {                                                     \
            failures++;                                                    \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
            if (failures > 20) exit(1);                                    \
        }                                                                  \
    } while (0)

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void)
{ /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int rng_int(int n) { return (int)(rng_next() % (uint64_t)n); }
static double rng_unit(void) { return (double)(rng_next() >> 11) * 0x1.0p-53; }
static double rng_gauss(void)
{
    double a = rng_unit(), b = rng_unit();
    return sqrt(-2.0 * log(a + 1e-300)) * cos(6.283185307179586 * b);
}

/* Cost kinds exercised everywhere. */
enum { KIND_UNIFORM, KIND_SMALL_INT, KIND_DUP_ROWS, KIND_NEGATIVE, KIND_CONSTANT, KIND_SQEUCLID, KIND_HUBS, KIND_HUBS_INT,
       KIND_COLLAPSED, KIND_COUNT };
static const char *kind_name[] = {"uniform",  "small-int", "dup-rows", "negative", "constant",
                                  "sq-euclid", "hubs",     "hubs-int", "collapsed"};
static bool kind_is_integer(int kind)
{
    return kind == KIND_SMALL_INT || kind == KIND_DUP_ROWS || kind == KIND_CONSTANT || kind == KIND_HUBS_INT;
}

static void fill_cost(float *c, int L, int K, int kind)
{
    switch (kind) {
    case KIND_UNIFORM:
        for (int i = 0; i < L * K; i++) c[i] = (float)rng_unit();
        break;
    case KIND_SMALL_INT: /* many ties */
        for (int i = 0; i < L * K; i++) c[i] = (float)rng_int(4);
        break;
    case KIND_DUP_ROWS: /* integer rows, each a copy of an earlier one with probability 1/2 */
        for (int i = 0; i < L; i++) {
            if (i > 0 && rng_int(2)) memcpy(c + i * K, c + rng_int(i) * K, K * sizeof(float));
            else
                for (int j = 0; j < K; j++) c[i * K + j] = (float)rng_int(10);
        }
        break;
    case KIND_NEGATIVE:
        for (int i = 0; i < L * K; i++) c[i] = (float)(rng_unit() * 2000.0 - 1000.0);
        break;
    case KIND_CONSTANT:
        for (int i = 0; i < L * K; i++) c[i] = 7.0f;
        break;
    case KIND_SQEUCLID: { /* latents vs codebook in 3 dims: many shared nearest codes */
        enum { DIM = 3 };
        double *z = malloc(sizeof(double) * DIM * L), *e = malloc(sizeof(double) * DIM * K);
        for (int i = 0; i < DIM * L; i++) z[i] = rng_gauss();
        for (int i = 0; i < DIM * K; i++) e[i] = rng_gauss();
        for (int i = 0; i < L; i++)
            for (int j = 0; j < K; j++) {
                double s = 0;
                for (int d = 0; d < DIM; d++) s += (z[i * DIM + d] - e[j * DIM + d]) * (z[i * DIM + d] - e[j * DIM + d]);
                c[i * K + j] = (float)s;
            }
        free(z);
        free(e);
        break;
    }
    case KIND_COLLAPSED: { /* latents in 3 tight clusters (nearest-code collapse), 8 dims */
        enum { DIM = 8 };
        double centre[3][DIM], *e = malloc(sizeof(double) * DIM * K);
        for (int m = 0; m < 3; m++)
            for (int d = 0; d < DIM; d++) centre[m][d] = rng_gauss();
        for (int i = 0; i < DIM * K; i++) e[i] = rng_gauss();
        for (int i = 0; i < L; i++) {
            double z[DIM];
            int m = rng_int(3);
            for (int d = 0; d < DIM; d++) z[d] = centre[m][d] + 0.05 * rng_gauss();
            for (int j = 0; j < K; j++) {
                double s = 0;
                for (int d = 0; d < DIM; d++) s += (z[d] - e[j * DIM + d]) * (z[d] - e[j * DIM + d]);
                c[i * K + j] = (float)s;
            }
        }
        free(e);
        break;
    }
    case KIND_HUBS: /* every row prefers the same few columns: long searches, lists must grow */
    case KIND_HUBS_INT: {
        float *column_base = malloc(sizeof(float) * K);
        for (int j = 0; j < K; j++) {
            double h = rng_unit();
            column_base[j] = kind == KIND_HUBS ? (float)(h * h * h * 10.0) : (float)(rng_int(8) == 0 ? 0 : 5 + rng_int(5));
        }
        for (int i = 0; i < L; i++)
            for (int j = 0; j < K; j++)
                c[i * K + j] = column_base[j] + (kind == KIND_HUBS ? (float)(0.05 * rng_unit()) : (float)rng_int(3));
        free(column_base);
        break;
    }
    }
}

/* Columns in range and pairwise distinct. */
static bool valid_assignment(const int64_t *cols, int L, int K)
{
    char *seen = calloc(K, 1);
    bool ok = true;
    for (int i = 0; i < L; i++) {
        if (cols[i] < 0 || cols[i] >= K || seen[cols[i]]) ok = false;
        else seen[cols[i]] = 1;
    }
    free(seen);
    return ok;
}

/* ---- reference 1: exhaustive enumeration of injective maps ---- */
static void brute_rec(const float *c, int L, int K, int i, double sum, char *used, double *best)
{
    if (i == L) {
        if (sum < *best) *best = sum;
        return;
    }
    for (int j = 0; j < K; j++)
        if (!used[j]) {
            used[j] = 1;
            brute_rec(c, L, K, i + 1, sum + (double)c[i * K + j], used, best);
            used[j] = 0;
        }
}
static double brute_force_optimum(const float *c, int L, int K)
{
    char used[64] = {0};
    double best = INFINITY;
    brute_rec(c, L, K, 0, 0.0, used, &best);
    return best;
}

/* ---- reference 2: textbook O(n^2 m) Hungarian (Kuhn-Munkres with potentials) for n <= m;
   rows >= L are all-zero padding. square=true pads to K x K (the plain O(K^3) square form);
   square=false runs the same algorithm on the L x K rectangle directly (valid for n <= m),
   which is fast enough for K in the thousands. ---- */
static double hungarian_optimum(const float *c, int L, int K, bool square)
{
    const int n = square ? K : L, m = K;
    double *u = calloc(n + 1, sizeof(double)), *v = calloc(m + 1, sizeof(double));
    double *minv = malloc((m + 1) * sizeof(double));
    int *match = calloc(m + 1, sizeof(int)), *way = calloc(m + 1, sizeof(int)); /* match[j]: row of column j */
    char *used = malloc(m + 1);
    for (int i = 1; i <= n; i++) {
        match[0] = i;
        int j0 = 0;
        for (int j = 0; j <= m; j++) {
            minv[j] = INFINITY;
            used[j] = 0;
        }
        do {
            used[j0] = 1;
            int i0 = match[j0], j1 = 0;
            double delta = INFINITY;
            for (int j = 1; j <= m; j++)
                if (!used[j]) {
                    double a = i0 <= L ? (double)c[(i0 - 1) * K + (j - 1)] : 0.0;
                    double cur = a - u[i0] - v[j];
                    if (cur < minv[j]) {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if (minv[j] < delta) {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            for (int j = 0; j <= m; j++) {
                if (used[j]) {
                    u[match[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
        } while (match[j0] != 0);
        do {
            int j1 = way[j0];
            match[j0] = match[j1];
            j0 = j1;
        } while (j0);
    }
    double total = 0;
    for (int j = 1; j <= m; j++)
        if (match[j] >= 1 && match[j] <= L) total += (double)c[(match[j] - 1) * K + (j - 1)];
    free(u);
    free(v);
    free(minv);
    free(match);
    free(way);
    free(used);
    return total;
}
static double hungarian_square_optimum(const float *c, int L, int K) { return hungarian_optimum(c, L, K, true); }

static bool totals_agree(double got, double want, bool exact)
{
    if (exact) return got == want;
    return fabs(got - want) <= 1e-9 * fmax(1.0, fabs(want));
}

/* ---- tests ---- */

static void test_brute_force(int instances)
{
    int run = 0;
    for (int t = 0; t < instances; t++) {
        int L = 1 + rng_int(5), K = L + rng_int(9 - L); /* L <= 5, L <= K <= 8 */
        if (t % 7 == 0) K = L;                          /* square */
        if (t % 11 == 0) L = 1;
        int kind = t % KIND_COUNT;
        float c[5 * 8];
        int64_t cols[5];
        fill_cost(c, L, K, kind);
        int rc = pivq_assign_one(c, L, K, K, cols);
        CHECK(rc == 0, "L=%d K=%d kind=%s: %s", L, K, kind_name[kind], last_error);
        CHECK(valid_assignment(cols, L, K), "L=%d K=%d: columns not distinct/in range", L, K);
        double got = pivq_assign_total_cost(c, L, K, cols), want = brute_force_optimum(c, L, K);
        CHECK(totals_agree(got, want, kind_is_integer(kind)), "L=%d K=%d kind=%s: total %.17g, brute force %.17g",
              L, K, kind_name[kind], got, want);
        run++;
    }
    printf("brute force (L<=5, K<=8): %d instances\n", run);
}

/* Few rows, many columns: exercises the grouped candidate selection (8L <= K) with ties. */
static void test_small_rows_wide(int instances)
{
    for (int t = 0; t < instances; t++) {
        int L = 2 + rng_int(7), K = 64 + rng_int(150), kind = t % KIND_COUNT;
        float *c = malloc(sizeof(float) * L * K);
        int64_t cols[8];
        fill_cost(c, L, K, kind);
        /* Force collisions: make every row's minimum sit in column 5 half of the time. */
        if (t % 2)
            for (int i = 0; i < L; i++) c[i * K + 5] = -1.0f - (float)rng_int(2);
        int rc = pivq_assign_one(c, L, K, K, cols);
        CHECK(rc == 0, "%s", last_error);
        CHECK(valid_assignment(cols, L, K), "L=%d K=%d: invalid", L, K);
        double got = pivq_assign_total_cost(c, L, K, cols), want = hungarian_square_optimum(c, L, K);
        CHECK(totals_agree(got, want, kind_is_integer(kind)), "L=%d K=%d kind=%s: %.17g vs %.17g", L, K,
              kind_name[kind], got, want);
        free(c);
    }
    printf("few rows, wide (L<=8, K=64..213) vs Hungarian: %d instances\n", instances);
}

static void test_medium_vs_hungarian(int instances)
{
    for (int t = 0; t < instances; t++) {
        int L = 20 + rng_int(45), K = 64 + rng_int(237);
        if (K < L) K = L;
        if (t % 5 == 0) K = L + rng_int(L / 2 + 1); /* L > K/2: no reduction */
        int kind = t % KIND_COUNT;
        float *c = malloc(sizeof(float) * L * K);
        int64_t *cols = malloc(sizeof(int64_t) * L);
        fill_cost(c, L, K, kind);
        int rc = pivq_assign_one(c, L, K, K, cols);
        CHECK(rc == 0, "%s", last_error);
        CHECK(valid_assignment(cols, L, K), "L=%d K=%d: invalid", L, K);
        double got = pivq_assign_total_cost(c, L, K, cols), want = hungarian_square_optimum(c, L, K);
        CHECK(totals_agree(got, want, kind_is_integer(kind)), "L=%d K=%d kind=%s: %.17g vs %.17g", L, K,
              kind_name[kind], got, want);
        free(c);
        free(cols);
    }
    printf("medium (L=20..64, K=64..300) vs Hungarian: %d instances\n", instances);
}

/* PI-VQ-sized problems (K in the thousands) against the rectangular form of the reference. */
static void test_large_vs_hungarian(int instances)
{
    for (int t = 0; t < instances; t++) {
        int L = 16 + rng_int(113), K = 1024 + rng_int(3073), kind = t % KIND_COUNT;
        float *c = malloc(sizeof(float) * L * K);
        int64_t *cols = malloc(sizeof(int64_t) * L);
        fill_cost(c, L, K, kind);
        CHECK(pivq_assign_one(c, L, K, K, cols) == 0, "%s", last_error);
        CHECK(valid_assignment(cols, L, K), "L=%d K=%d: invalid", L, K);
        double got = pivq_assign_total_cost(c, L, K, cols), want = hungarian_optimum(c, L, K, false);
        CHECK(totals_agree(got, want, kind_is_integer(kind)), "L=%d K=%d kind=%s: %.17g vs %.17g", L, K,
              kind_name[kind], got, want);
        free(c);
        free(cols);
    }
    printf("large (L=16..128, K=1024..4096) vs rectangular Hungarian: %d instances\n", instances);
}

/* Collapsed and hub-dominated problems: long searches, lists grown to L over every bound path. */
static void test_collapse(void)
{
    static const int shapes[][3] = {{128, 8192, KIND_HUBS},      {128, 8192, KIND_COLLAPSED}, {200, 4096, KIND_HUBS_INT},
                                    {256, 4096, KIND_COLLAPSED}, {64, 1024, KIND_COLLAPSED},  {32, 512, KIND_HUBS},
                                    {100, 333, KIND_COLLAPSED},  {40, 90, KIND_HUBS_INT}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        int L = shapes[t][0], K = shapes[t][1], kind = shapes[t][2];
        float *c = malloc(sizeof(float) * L * K);
        int64_t *cols = malloc(sizeof(int64_t) * L);
        fill_cost(c, L, K, kind);
        CHECK(pivq_assign_one(c, L, K, K, cols) == 0, "%s", last_error);
        CHECK(valid_assignment(cols, L, K), "L=%d K=%d: invalid", L, K);
        double got = pivq_assign_total_cost(c, L, K, cols), want = hungarian_optimum(c, L, K, false);
        CHECK(totals_agree(got, want, kind_is_integer(kind)), "L=%d K=%d kind=%s: %.17g vs %.17g", L, K,
              kind_name[kind], got, want);
        free(c);
        free(cols);
    }
    printf("collapsed / hub problems vs rectangular Hungarian: %zu shapes\n", sizeof shapes / sizeof shapes[0]);
}

/* The two forms of the reference agree (so the fast one can be trusted on large sizes). */
static void test_reference_forms_agree(int instances)
{
    for (int t = 0; t < instances; t++) {
        int L = 1 + rng_int(40), K = L + rng_int(120), kind = t % KIND_COUNT;
        float *c = malloc(sizeof(float) * L * K);
        fill_cost(c, L, K, kind);
        double a = hungarian_optimum(c, L, K, true), b = hungarian_optimum(c, L, K, false);
        CHECK(totals_agree(a, b, kind_is_integer(kind)), "reference forms disagree: %.17g vs %.17g", a, b);
        free(c);
    }
    printf("reference square == rectangular: %d instances\n", instances);
}

/* Permuting rows permutes the answer (continuous costs: the optimum is unique). */
static void test_row_permutation(int instances)
{
    for (int t = 0; t < instances; t++) {
        int L = 2 + rng_int(63), K = L + rng_int(400);
        int kind = t % 3 == 0 ? KIND_UNIFORM : t % 3 == 1 ? KIND_SQEUCLID : KIND_HUBS;
        float *c = malloc(sizeof(float) * L * K), *pc = malloc(sizeof(float) * L * K);
        int64_t *cols = malloc(sizeof(int64_t) * L), *pcols = malloc(sizeof(int64_t) * L);
        int *perm = malloc(sizeof(int) * L);
        fill_cost(c, L, K, kind);
        for (int i = 0; i < L; i++) perm[i] = i;
        for (int i = L - 1; i > 0; i--) {
            int j = rng_int(i + 1), x = perm[i];
            perm[i] = perm[j];
            perm[j] = x;
        }
        for (int i = 0; i < L; i++) memcpy(pc + i * K, c + perm[i] * K, K * sizeof(float));
        CHECK(pivq_assign_one(c, L, K, K, cols) == 0, "%s", last_error);
        CHECK(pivq_assign_one(pc, L, K, K, pcols) == 0, "%s", last_error);
        int mismatched = 0;
        for (int i = 0; i < L; i++) mismatched += pcols[i] != cols[perm[i]];
        CHECK(mismatched == 0, "L=%d K=%d kind=%s: %d rows moved differently", L, K, kind_name[kind], mismatched);
        free(c);
        free(pc);
        free(cols);
        free(pcols);
        free(perm);
    }
    printf("row permutation: %d instances\n", instances);
}

/* A row stride wider than K gives the same answer as the packed matrix. */
static void test_row_stride(void)
{
    int L = 30, K = 200, stride = 237;
    float *c = malloc(sizeof(float) * L * K), *wide = malloc(sizeof(float) * L * stride);
    int64_t a[30], b[30];
    fill_cost(c, L, K, KIND_SQEUCLID);
    for (int i = 0; i < L; i++) {
        memcpy(wide + i * stride, c + i * K, K * sizeof(float));
        for (int j = K; j < stride; j++) wide[i * stride + j] = -1e30f; /* must be ignored */
    }
    CHECK(pivq_assign_one(c, L, K, K, a) == 0, "%s", last_error);
    CHECK(pivq_assign_one(wide, L, K, stride, b) == 0, "%s", last_error);
    CHECK(memcmp(a, b, sizeof a) == 0, "row_stride changed the answer");
    free(c);
    free(wide);
    printf("row stride: ok\n");
}

static void expect_error(int rc, const char *needle)
{
    CHECK(rc == -1, "expected -1, got %d", rc);
    CHECK(strstr(last_error, needle) != NULL, "message \"%s\" lacks \"%s\"", last_error, needle);
}

static void test_errors(void)
{
    float c[4 * 6];
    int64_t cols[6];
    for (int i = 0; i < 24; i++) c[i] = (float)i;
    expect_error(pivq_assign_one(c, 5, 3, 3, cols), "assign: cost has L=5 rows but only K=3 columns (need L <= K)");
    expect_error(pivq_assign_one(c, 0, 3, 3, cols), "assign: need at least one row to assign, got L=0");
    expect_error(pivq_assign_one(c, -2, 3, 3, cols), "L=-2");
    expect_error(pivq_assign_one(c, 2, 6, 4, cols), "assign: row_stride=4 is less than K=6");
    expect_error(pivq_assign_one(NULL, 2, 6, 6, cols), "assign: cost is NULL");
    expect_error(pivq_assign_one(c, 2, 6, 6, NULL), "assign: out_cols is NULL");
    c[2 * 6 + 5] = NAN;
    expect_error(pivq_assign_one(c, 4, 6, 6, cols), "assign: cost[2,5] (0-based) is NaN");
    c[2 * 6 + 5] = 1.0f;
    c[1 * 6 + 3] = INFINITY;
    expect_error(pivq_assign_one(c, 4, 6, 6, cols), "assign: cost[1,3] (0-based) is +Inf");
    c[1 * 6 + 3] = -INFINITY;
    expect_error(pivq_assign_one(c, 4, 6, 6, cols), "assign: cost[1,3] (0-based) is -Inf");
    c[1 * 6 + 3] = 1.0f;
    /* Past a wide stride, garbage outside the L x K window is not looked at. */
    c[0 * 6 + 5] = NAN;
    CHECK(pivq_assign_one(c, 4, 5, 6, cols) == 0, "NaN outside the window rejected: %s", last_error);
    c[0 * 6 + 5] = 0.0f;
    CHECK(pivq_assign_one(c, 4, 6, 6, cols) == 0, "%s", last_error);

    /* Sizes the solver cannot index or allocate fail cleanly, before touching the data. */
    expect_error(pivq_assign_one(c, 2, 3000000000LL, 3000000000LL, cols),
                 "assign: K=3000000000 columns exceeds the supported maximum 2147483647");
    expect_error(pivq_assign_one(c, 1LL << 29, 1LL << 30, 1LL << 30, cols), "assign: out of memory allocating");
    expect_error(pivq_assign_batch(c, INT64_MAX / 2, 4, 6, cols), "elements overflow");
    expect_error(pivq_assign_one(c, 4, 6, INT64_MAX / 2, cols), "assign: L=4 rows of row_stride=4611686018427387903 elements overflow");

    /* Batch: the lowest failing problem is named, whatever thread found it. */
    enum { B = 40, L = 6, K = 50 };
    float *bc = malloc(sizeof(float) * B * L * K);
    int64_t *bout = malloc(sizeof(int64_t) * B * L);
    fill_cost(bc, B * L, K, KIND_UNIFORM);
    bc[(size_t)33 * L * K + 4 * K + 1] = NAN;
    bc[(size_t)7 * L * K + 2 * K + 9] = INFINITY;
    expect_error(pivq_assign_batch(bc, B, L, K, bout), "assign_batch: cost[7,2,9] (0-based) is +Inf");
    expect_error(pivq_assign_batch(bc, B, 60, K, bout), "assign_batch: cost has L=60 rows but only K=50");
    expect_error(pivq_assign_batch(bc, -1, L, K, bout), "assign_batch: need B >= 0 problems, got B=-1");
    expect_error(pivq_assign_batch(bc, B, 0, K, bout), "L=0");
    expect_error(pivq_assign_batch(NULL, B, L, K, bout), "assign_batch: cost is NULL");
    CHECK(pivq_assign_batch(bc, 0, L, K, bout) == 0, "B=0 must succeed");
    free(bc);
    free(bout);
    printf("errors: ok\n");
}

static void test_batch_matches_single(int rounds)
{
    for (int r = 0; r < rounds; r++) {
        int B = 1 + rng_int(40), L = 1 + rng_int(48), K = L + rng_int(300), kind = r % KIND_COUNT;
        float *c = malloc(sizeof(float) * B * L * K);
        int64_t *bout = malloc(sizeof(int64_t) * B * L), *one = malloc(sizeof(int64_t) * L);
        for (int b = 0; b < B; b++) fill_cost(c + (size_t)b * L * K, L, K, kind);
        CHECK(pivq_assign_batch(c, B, L, K, bout) == 0, "%s", last_error);
        for (int b = 0; b < B; b++) {
            CHECK(pivq_assign_one(c + (size_t)b * L * K, L, K, K, one) == 0, "%s", last_error);
            CHECK(memcmp(one, bout + (size_t)b * L, sizeof(int64_t) * L) == 0,
                  "B=%d L=%d K=%d kind=%s: batch problem %d differs from single", B, L, K, kind_name[kind], b);
        }
        free(c);
        free(bout);
        free(one);
    }
    printf("batch == single: %d rounds\n", rounds);
}

/* Realistic PI-VQ shape against the reference once (slow reference: K^3). */
static void test_realistic(void)
{
    int L = 64, K = 512;
    float *c = malloc(sizeof(float) * L * K);
    int64_t cols[64];
    for (int kind = 0; kind < KIND_COUNT; kind++) {
        fill_cost(c, L, K, kind);
        CHECK(pivq_assign_one(c, L, K, K, cols) == 0, "%s", last_error);
        CHECK(valid_assignment(cols, L, K), "invalid");
        double got = pivq_assign_total_cost(c, L, K, cols), want = hungarian_square_optimum(c, L, K);
        CHECK(totals_agree(got, want, kind_is_integer(kind)), "64x512 %s: %.17g vs %.17g", kind_name[kind], got,
              want);
    }
    free(c);
    printf("64x512 all kinds vs Hungarian: ok\n");
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    int scale = quick ? 1 : 10;
    test_errors();
    test_brute_force(1000 * scale);
    test_small_rows_wide(100 * scale);
    test_medium_vs_hungarian(20 * scale);
    test_reference_forms_agree(10 * scale);
    test_large_vs_hungarian(4 * scale);
    test_collapse();
    test_row_permutation(30 * scale);
    test_row_stride();
    test_batch_matches_single(5 * scale);
    if (!quick) test_realistic();
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
