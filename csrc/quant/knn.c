/* quant/knn.c — k-nearest-neighbour radii and ball membership, the two kernels behind PRDC
 * (precision, recall, density, coverage; Naeem et al. 2020).
 *
 * Distances come from blocks of BLOCK query rows against all reference rows:
 *   d2[q][r] = ||q||^2 + ||r||^2 - 2 q.r   (one sgemm per block, float32)
 * Float32 cancellation makes d2 inexact, so:
 *   - a radius is the exact (double) distance to the k-th neighbour, chosen among the
 *     k + SLACK nearest by d2 after recomputing those exactly;
 *   - a membership whose d2 lies within a relative TOL of radius^2 is decided again with the
 *     exact distance.
 * Memory: BLOCK x N floats per block (40 MB for N = 10,000), independent of N x N.
 */
#include "ops/ops.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 1024
#define SLACK 8
#define TOL 1e-3

static int check_points(const char *fname, const char *name, const pivq_tensor *t)
{
    if (pivq_check_tensor(fname, name, t)) return -1;
    if (t->ndim != 2 || t->scalar_type != PIVQ_FLOAT32) {
        char buf[160];
        return pivq_set_error("%s: %s must be a 2-D float32 tensor (points x dims), got %s %s",
                              fname, name, pivq_shape_str(t, buf, sizeof buf),
                              pivq_dtype_name(t->scalar_type));
    }
    return 0;
}

static double exact_sq(const float *a, const float *b, int64_t d)
{
    double s = 0;
    for (int64_t j = 0; j < d; j++) {
        double t = (double)a[j] - (double)b[j];
        s += t * t;
    }
    return s;
}

static void sq_norms(const float *x, int64_t n, int64_t d, float *out)
{
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int64_t j = 0; j < d; j++)
            s += (double)x[i * d + j] * x[i * d + j];
        out[i] = (float)s;
    }
}

/* d2 block: rows q0..q0+nq-1 of Q against all of R (nr rows); out is nq x nr. */
static void block_d2(const float *Q, const float *qn, int64_t q0, int64_t nq, const float *R,
                     const float *rn, int64_t nr, int64_t d, float *out)
{
    pivq_sgemm_mt(0, 1, nq, nr, d, -2.0f, Q + q0 * d, d, R, d, 0.0f, out, nr);
    for (int64_t i = 0; i < nq; i++)
        for (int64_t r = 0; r < nr; r++)
            out[i * nr + r] += qn[q0 + i] + rn[r];
}

static int finite_points(const char *fname, const char *name, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return pivq_set_error("%s: %s contains NaN or Inf", fname, name);
    return 0;
}

pivq_tensor *pivq_knn_radii(const pivq_tensor *x, int k)
{
    if (check_points("knn_radii", "x", x)) return NULL;
    int64_t N = x->shape[0], d = x->shape[1];
    if (k < 1 || k >= N) {
        pivq_set_error("knn_radii: need 1 <= k < N, got k=%d with N=%lld points", k, (long long)N);
        return NULL;
    }
    if (N > INT32_MAX || d > INT32_MAX) {
        pivq_set_error("knn_radii: %lld points of dimension %lld exceed BLAS's int range",
                       (long long)N, (long long)d);
        return NULL;
    }
    pivq_tensor *xc = pivq_contiguous_nograd(x);
    pivq_tensor *out = xc ? pivq_empty(PIVQ_FLOAT32, 1, &N) : NULL;
    int64_t bq = N < BLOCK ? N : BLOCK;
    float *norms = out ? malloc(sizeof(float) * (size_t)N) : NULL;
    float *buf = norms ? malloc(sizeof(float) * (size_t)(bq * N)) : NULL;
    if (!buf) {
        if (out)
            pivq_set_error("knn_radii: out of memory for a %lld x %lld block", (long long)bq,
                           (long long)N);
        goto fail;
    }
    const float *X = pivq_data(xc);
    if (finite_points("knn_radii", "x", X, N * d)) goto fail;
    sq_norms(X, N, d, norms);
    float *radii = pivq_data(out);
    int cand = k + SLACK < (int)(N - 1) ? k + SLACK : (int)(N - 1);
    for (int64_t q0 = 0; q0 < N; q0 += bq) {
        int64_t nq = q0 + bq <= N ? bq : N - q0;
        block_d2(X, norms, q0, nq, X, norms, N, d, buf);
        int nth = pivq_threads_for(nq * N);
#pragma omp parallel num_threads(nth) if (nth > 1)
        {
            /* per thread: the `cand` smallest (d2, index), kept sorted by insertion */
            float *bd = malloc(sizeof(float) * (size_t)cand);
            int64_t *bi = malloc(sizeof(int64_t) * (size_t)cand);
            double *ex = malloc(sizeof(double) * (size_t)cand);
#pragma omp for schedule(static)
            for (int64_t i = 0; i < nq; i++) {
                if (!bd || !bi || !ex) continue;
                int64_t self = q0 + i;
                const float *row = buf + i * N;
                int n = 0;
                for (int64_t r = 0; r < N; r++) {
                    if (r == self) continue;
                    float v = row[r];
                    if (n == cand && v >= bd[n - 1]) continue;
                    int p = n < cand ? n++ : cand - 1;
                    while (p > 0 && bd[p - 1] > v) {
                        bd[p] = bd[p - 1];
                        bi[p] = bi[p - 1];
                        p--;
                    }
                    bd[p] = v;
                    bi[p] = r;
                }
                /* exact distances of the candidates, then the k-th smallest */
                for (int c = 0; c < n; c++)
                    ex[c] = exact_sq(X + self * d, X + bi[c] * d, d);
                for (int a = 1; a < n; a++) { /* insertion sort, n is small */
                    double v = ex[a];
                    int b = a;
                    while (b > 0 && ex[b - 1] > v) {
                        ex[b] = ex[b - 1];
                        b--;
                    }
                    ex[b] = v;
                }
                radii[self] = (float)sqrt(ex[k - 1]);
            }
            free(bd);
            free(bi);
            free(ex);
        }
    }
    free(norms);
    free(buf);
    pivq_tensor_release(xc);
    return out;
fail:
    free(norms);
    free(buf);
    pivq_tensor_release(xc);
    pivq_tensor_release(out);
    return NULL;
}

int pivq_ball_counts(const pivq_tensor *ref, const pivq_tensor *radii, const pivq_tensor *query,
                     int inclusive, pivq_tensor **query_counts, pivq_tensor **ref_nearest)
{
    const char *fn = "ball_counts";
    if (check_points(fn, "ref", ref) || check_points(fn, "query", query) ||
        pivq_check_tensor(fn, "radii", radii))
        return -1;
    if (!query_counts || !ref_nearest) return pivq_set_error("%s: output pointers are NULL", fn);
    int64_t N = ref->shape[0], M = query->shape[0], d = ref->shape[1];
    if (query->shape[1] != d)
        return pivq_set_error("%s: ref has %lld dims but query has %lld", fn, (long long)d,
                              (long long)query->shape[1]);
    if (radii->ndim != 1 || radii->shape[0] != N || radii->scalar_type != PIVQ_FLOAT32)
        return pivq_set_error("%s: radii must be %lld float32 values (one per ref row)", fn,
                              (long long)N);
    if (N < 1 || M < 1) return pivq_set_error("%s: need at least one ref and one query row", fn);
    if (N > INT32_MAX || M > INT32_MAX || d > INT32_MAX)
        return pivq_set_error("%s: sizes exceed BLAS's int range", fn);
    *query_counts = NULL;
    *ref_nearest = NULL;
    pivq_tensor *rc = pivq_contiguous_nograd(ref), *qc = rc ? pivq_contiguous_nograd(query) : NULL;
    pivq_tensor *radc = qc ? pivq_contiguous_nograd(radii) : NULL;
    pivq_tensor *counts = radc ? pivq_zeros(PIVQ_INT64, 1, &M) : NULL;
    pivq_tensor *nearest = counts ? pivq_empty(PIVQ_FLOAT32, 1, &N) : NULL;
    int64_t bq = M < BLOCK ? M : BLOCK;
    float *rn = nearest ? malloc(sizeof(float) * (size_t)(N + M)) : NULL;
    float *buf = rn ? malloc(sizeof(float) * (size_t)(bq * N)) : NULL;
    double *near2 = buf ? malloc(sizeof(double) * (size_t)N) : NULL;
    int status = -1;
    if (!near2) {
        if (nearest) pivq_set_error("%s: out of memory", fn);
        goto done;
    }
    const float *R = pivq_data(rc), *Q = pivq_data(qc), *rad = pivq_data(radc);
    if (finite_points(fn, "ref", R, N * d) || finite_points(fn, "query", Q, M * d)) goto done;
    float *qn = rn + N;
    sq_norms(R, N, d, rn);
    sq_norms(Q, M, d, qn);
    int64_t *cnt = pivq_data(counts);
    for (int64_t i = 0; i < N; i++)
        near2[i] = INFINITY;
    for (int64_t q0 = 0; q0 < M; q0 += bq) {
        int64_t nq = q0 + bq <= M ? bq : M - q0;
        block_d2(Q, qn, q0, nq, R, rn, N, d, buf);
        int nth = pivq_threads_for(nq * N);
        /* 1. counts per query row (rows are independent) */
#pragma omp parallel for num_threads(nth) if (nth > 1) schedule(static)
        for (int64_t j = 0; j < nq; j++) {
            const float *row = buf + j * N;
            int64_t c = 0;
            for (int64_t i = 0; i < N; i++) {
                double r2 = (double)rad[i] * rad[i];
                double v = row[i];
                if (fabs(v - r2) <= TOL * (r2 + 1e-12)) {
                    /* too close to call in float: compare the distance rounded exactly as
                       the radius was, so a point on the radius is judged consistently */
                    float dist = (float)sqrt(exact_sq(Q + (q0 + j) * d, R + i * d, d));
                    c += inclusive ? dist <= rad[i] : dist < rad[i];
                } else {
                    c += v < r2;
                }
            }
            cnt[q0 + j] = c;
        }
        /* 2. nearest query of each ref row (columns of the block) */
#pragma omp parallel for num_threads(nth) if (nth > 1) schedule(static)
        for (int64_t i = 0; i < N; i++) {
            double best = near2[i];
            int64_t arg = -1;
            for (int64_t j = 0; j < nq; j++)
                if (buf[j * N + i] < best) {
                    best = buf[j * N + i];
                    arg = j;
                }
            if (arg >= 0) near2[i] = exact_sq(Q + (q0 + arg) * d, R + i * d, d);
        }
    }
    float *nr = pivq_data(nearest);
    for (int64_t i = 0; i < N; i++)
        nr[i] = (float)sqrt(near2[i]);
    *query_counts = counts;
    *ref_nearest = nearest;
    counts = nearest = NULL;
    status = 0;
done:
    free(rn);
    free(buf);
    free(near2);
    pivq_tensor_release(rc);
    pivq_tensor_release(qc);
    pivq_tensor_release(radc);
    pivq_tensor_release(counts);
    pivq_tensor_release(nearest);
    return status;
}

/* Exact nearest neighbours: tiles of NQ query rows x NR reference rows (4 MB of float d2,
 * whatever the set sizes). A float d2 is within ERR(i, r) = (d + 4) * FLT_EPSILON * (|q|^2 +
 * |r|^2) of the true squared distance (a dot product of d terms has error at most
 * d * u * |q| |r| <= d * u * (|q|^2 + |r|^2) / 2, times 2, plus the roundings of the sums),
 * so every reference whose d2 - ERR does not exceed the best exact distance so far is
 * recomputed in double: the result is the true nearest row (ties: the lowest index). */
#define NN_QB 256
#define NN_RB 4096

int pivq_knn_nearest(const pivq_tensor *ref, const pivq_tensor *query, pivq_tensor **dist,
                     pivq_tensor **index)
{
    const char *fn = "knn_nearest";
    if (check_points(fn, "ref", ref) || check_points(fn, "query", query)) return -1;
    if (!dist || !index) return pivq_set_error("%s: output pointers are NULL", fn);
    *dist = NULL;
    *index = NULL;
    int64_t N = ref->shape[0], M = query->shape[0], d = ref->shape[1];
    if (query->shape[1] != d)
        return pivq_set_error("%s: ref has %lld dims but query has %lld", fn, (long long)d,
                              (long long)query->shape[1]);
    if (N < 1 || M < 1) return pivq_set_error("%s: need at least one ref and one query row", fn);
    if (d > INT32_MAX)
        return pivq_set_error("%s: dimension %lld exceeds BLAS's int range", fn, (long long)d);
    pivq_tensor *rc = pivq_contiguous_nograd(ref), *qc = rc ? pivq_contiguous_nograd(query) : NULL;
    pivq_tensor *dt = qc ? pivq_empty(PIVQ_FLOAT32, 1, &M) : NULL;
    pivq_tensor *it = dt ? pivq_empty(PIVQ_INT64, 1, &M) : NULL;
    int64_t qb = M < NN_QB ? M : NN_QB, rb = N < NN_RB ? N : NN_RB;
    float *rn = it ? malloc(sizeof(float) * (size_t)(N + M)) : NULL;
    float *buf = rn ? malloc(sizeof(float) * (size_t)(qb * rb)) : NULL;
    double *best = buf ? malloc(sizeof(double) * (size_t)M) : NULL;
    int status = -1;
    if (!best) {
        if (it) pivq_set_error("%s: out of memory", fn);
        goto done;
    }
    const float *R = pivq_data(rc), *Q = pivq_data(qc);
    if (finite_points(fn, "ref", R, N * d) || finite_points(fn, "query", Q, M * d)) goto done;
    float *qn = rn + N;
    sq_norms(R, N, d, rn);
    sq_norms(Q, M, d, qn);
    int64_t *bi = pivq_data(it);
    const double err = (double)(d + 4) * FLT_EPSILON;
    for (int64_t j = 0; j < M; j++) {
        best[j] = INFINITY;
        bi[j] = -1;
    }
    for (int64_t q0 = 0; q0 < M; q0 += qb) {
        int64_t nq = q0 + qb <= M ? qb : M - q0;
        for (int64_t r0 = 0; r0 < N; r0 += rb) {
            int64_t nr = r0 + rb <= N ? rb : N - r0;
            pivq_sgemm_mt(0, 1, nq, nr, d, -2.0f, Q + q0 * d, d, R + r0 * d, d, 0.0f, buf, nr);
            int nth = pivq_threads_for(nq * nr);
#pragma omp parallel for num_threads(nth) if (nth > 1) schedule(static)
            for (int64_t j = 0; j < nq; j++) {
                const float *row = buf + j * nr;
                const float *qj = Q + (q0 + j) * d;
                double b = best[q0 + j];
                int64_t arg = bi[q0 + j];
                /* the float minimum first, so the bound below is tight from the start */
                int64_t m = 0;
                for (int64_t r = 1; r < nr; r++)
                    if (row[r] + rn[r0 + r] < row[m] + rn[r0 + m]) m = r;
                double e = exact_sq(qj, R + (r0 + m) * d, d);
                if (e < b || (e == b && r0 + m < arg)) {
                    b = e;
                    arg = r0 + m;
                }
                for (int64_t r = 0; r < nr; r++) {
                    double v = (double)row[r] + qn[q0 + j] + rn[r0 + r];
                    if (r == m || v - err * ((double)qn[q0 + j] + rn[r0 + r]) > b) continue;
                    e = exact_sq(qj, R + (r0 + r) * d, d);
                    if (e < b || (e == b && r0 + r < arg)) {
                        b = e;
                        arg = r0 + r;
                    }
                }
                best[q0 + j] = b;
                bi[q0 + j] = arg;
            }
        }
    }
    float *dd = pivq_data(dt);
    for (int64_t j = 0; j < M; j++)
        dd[j] = (float)sqrt(best[j]);
    *dist = dt;
    *index = it;
    dt = it = NULL;
    status = 0;
done:
    free(rn);
    free(buf);
    free(best);
    pivq_tensor_release(rc);
    pivq_tensor_release(qc);
    pivq_tensor_release(dt);
    pivq_tensor_release(it);
    return status;
}
