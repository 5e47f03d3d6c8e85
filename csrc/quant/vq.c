/* quant/vq.c — vector-quantization kernels: squared distances by GEMM, k-means with k-means++
 * seeding (the delayed codebook initialisation), EMA codebook upkeep and code statistics.
 * The matching solver itself lives in quant/assign.c.
 */
#include "core/core.h"
#include "ops/ops.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_rows(const char *fname, const char *name, const pivq_tensor *t)
{
    if (pivq_check_tensor(fname, name, t)) return -1;
    if (t->ndim != 2 || t->scalar_type != PIVQ_FLOAT32) {
        char buf[160];
        return pivq_set_error("%s: %s must be a 2-D float32 tensor (rows x c), got %s %s", fname,
                              name, pivq_shape_str(t, buf, sizeof buf),
                              pivq_dtype_name(t->scalar_type));
    }
    return 0;
}

/* Squared norm of each row of a contiguous n x c matrix. */
static void row_sq_norms(const float *x, int64_t n, int64_t c, double *out)
{
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int64_t j = 0; j < c; j++)
            s += (double)x[i * c + j] * x[i * c + j];
        out[i] = s;
    }
}

pivq_tensor *pivq_sq_distances(const pivq_tensor *x, const pivq_tensor *e)
{
    if (check_rows("sq_distances", "x", x) || check_rows("sq_distances", "e", e)) return NULL;
    if (x->shape[1] != e->shape[1]) {
        pivq_set_error("sq_distances: x has rows of %lld values but e has %lld",
                       (long long)x->shape[1], (long long)e->shape[1]);
        return NULL;
    }
    int64_t N = x->shape[0], K = e->shape[0], c = x->shape[1];
    pivq_tensor *xc = pivq_contiguous_nograd(x), *ec = xc ? pivq_contiguous_nograd(e) : NULL;
    int64_t size[2] = {N, K};
    pivq_tensor *out = ec ? pivq_empty(PIVQ_FLOAT32, 2, size) : NULL;
    double *xn = out ? malloc(sizeof(double) * (size_t)(N + K + 1)) : NULL;
    if (!xn) {
        if (out) pivq_set_error("sq_distances: out of memory");
        pivq_tensor_release(xc);
        pivq_tensor_release(ec);
        pivq_tensor_release(out);
        return NULL;
    }
    double *en = xn + N;
    row_sq_norms(pivq_data(xc), N, c, xn);
    row_sq_norms(pivq_data(ec), K, c, en);
    /* out = -2 x e^T, then add the norms: always fp32 (pivq_sgemm_mt, never pivq_gemm), also
       under bf16 precision, where the assignment would otherwise see rounded distances */
    if (N > 0 && K > 0)
        pivq_sgemm_mt(0, 1, N, K, c, -2.0f, pivq_data(xc), c, pivq_data(ec), c, 0.0f,
                      pivq_data(out), K);
    float *d = pivq_data(out);
    int nth = pivq_threads_for(N * K);
#pragma omp parallel for num_threads(nth) if (nth > 1)
    for (int64_t i = 0; i < N; i++)
        for (int64_t k = 0; k < K; k++) {
            float v = (float)(xn[i] + en[k]) + d[i * K + k];
            d[i * K + k] = v > 0 ? v : 0;
        }
    free(xn);
    pivq_tensor_release(xc);
    pivq_tensor_release(ec);
    return out;
}

static double sq_dist(const float *a, const float *b, int64_t c)
{
    double s = 0;
    for (int64_t j = 0; j < c; j++) {
        double t = (double)a[j] - b[j];
        s += t * t;
    }
    return s;
}

pivq_tensor *pivq_kmeans(const pivq_tensor *x, int64_t K, int iters, pivq_generator *g)
{
    if (check_rows("kmeans", "x", x)) return NULL;
    int64_t N = x->shape[0], c = x->shape[1];
    if (K < 1 || K > N) {
        pivq_set_error("kmeans: need 1 <= K <= N (number of rows), got K=%lld N=%lld", (long long)K,
                       (long long)N);
        return NULL;
    }
    if (iters < 0 || iters > 100000) {
        pivq_set_error("kmeans: iters must be in 0..100000, got %d", iters);
        return NULL;
    }
    pivq_tensor *xc = pivq_contiguous_nograd(x);
    if (!xc) return NULL;
    const float *X = pivq_data(xc);
    for (int64_t i = 0; i < N * c; i++)
        if (!isfinite(X[i])) {
            pivq_set_error("kmeans: x contains NaN or Inf (first in row %lld of %lld, 1-based)",
                           (long long)(i / c + 1), (long long)N);
            pivq_tensor_release(xc);
            return NULL;
        }
    int64_t size[2] = {K, c};
    pivq_tensor *cent = pivq_empty(PIVQ_FLOAT32, 2, size);
    double *dmin = malloc(sizeof(double) * (size_t)N);
    int64_t *assign = malloc(sizeof(int64_t) * (size_t)N);
    double *sums = malloc(sizeof(double) * (size_t)(K * c));
    int64_t *counts = malloc(sizeof(int64_t) * (size_t)K);
    if (!cent || !dmin || !assign || !sums || !counts) {
        if (cent) pivq_set_error("kmeans: out of memory");
        goto fail;
    }
    float *Cn = pivq_data(cent);

    /* 1. k-means++ seeding: first seed uniform; then proportional to D(x)^2. */
    int64_t first = (int64_t)(pivq_random_uniform(g) * (double)N);
    if (first >= N) first = N - 1;
    memcpy(Cn, X + first * c, sizeof(float) * (size_t)c);
    for (int64_t i = 0; i < N; i++)
        dmin[i] = sq_dist(X + i * c, Cn, c);
    for (int64_t k = 1; k < K; k++) {
        double total = 0;
        for (int64_t i = 0; i < N; i++)
            total += dmin[i];
        int64_t pick = -1;
        if (total > 0) {
            double target = pivq_random_uniform(g) * total, run = 0;
            for (int64_t i = 0; i < N; i++) {
                if (dmin[i] <= 0) continue;
                pick = i; /* the last positive weight absorbs rounding at the top */
                run += dmin[i];
                if (target < run) break;
            }
        } else { /* every point coincides with a seed: any point will do */
            pick = (int64_t)(pivq_random_uniform(g) * (double)N);
            if (pick >= N) pick = N - 1;
        }
        memcpy(Cn + k * c, X + pick * c, sizeof(float) * (size_t)c);
        int nth = pivq_threads_for(N * c);
#pragma omp parallel for num_threads(nth) if (nth > 1)
        for (int64_t i = 0; i < N; i++) {
            double d = sq_dist(X + i * c, Cn + k * c, c);
            if (d < dmin[i]) dmin[i] = d;
        }
    }

    /* 2. Lloyd iterations: assign by GEMM distances, move centroids to the means. The
       distances go by blocks of rows: the whole N x K matrix (128 MB for the trainer's 65,536
       latents and K = 512) was a transient that the heap kept as resident memory for good. */
    const int64_t block = 4096;
    for (int it = 0; it < iters; it++) {
        int64_t changed = 0;
        for (int64_t i0 = 0; i0 < N; i0 += block) {
            int64_t rows = N - i0 < block ? N - i0 : block;
            pivq_tensor *xb = pivq_narrow_nograd(xc, 0, i0, rows);
            pivq_tensor *D = xb ? pivq_sq_distances(xb, cent) : NULL;
            pivq_tensor_release(xb);
            if (!D) goto fail;
            const float *d = pivq_data(D);
            for (int64_t r = 0; r < rows; r++) {
                int64_t i = i0 + r, best = 0;
                for (int64_t k = 1; k < K; k++)
                    if (d[r * K + k] < d[r * K + best]) best = k;
                changed += (it == 0 || assign[i] != best);
                assign[i] = best;
                dmin[i] = d[r * K + best];
            }
            pivq_tensor_release(D);
        }
        memset(sums, 0, sizeof(double) * (size_t)(K * c));
        memset(counts, 0, sizeof(int64_t) * (size_t)K);
        for (int64_t i = 0; i < N; i++) {
            counts[assign[i]]++;
            for (int64_t j = 0; j < c; j++)
                sums[assign[i] * c + j] += X[i * c + j];
        }
        for (int64_t k = 0; k < K; k++) {
            if (counts[k] > 0) {
                for (int64_t j = 0; j < c; j++)
                    Cn[k * c + j] = (float)(sums[k * c + j] / (double)counts[k]);
                continue;
            }
            /* empty cluster: take the point farthest from its centroid, then forget its
               distance so that two empty clusters do not take the same point */
            int64_t far = 0;
            for (int64_t i = 1; i < N; i++)
                if (dmin[i] > dmin[far]) far = i;
            memcpy(Cn + k * c, X + far * c, sizeof(float) * (size_t)c);
            dmin[far] = 0;
            changed++;
        }
        if (changed == 0) break;
    }
    free(dmin);
    free(assign);
    free(sums);
    free(counts);
    pivq_tensor_release(xc);
    return cent;
fail:
    free(dmin);
    free(assign);
    free(sums);
    free(counts);
    pivq_tensor_release(xc);
    pivq_tensor_release(cent);
    return NULL;
}

/* Check codes: int64, numel n, values in [0, K). */
static int check_codes(const char *fname, const pivq_tensor *codes, int64_t K)
{
    if (pivq_check_tensor(fname, "codes", codes)) return -1;
    if (codes->scalar_type != PIVQ_INT64)
        return pivq_set_error("%s: codes must be int64, got %s", fname,
                              pivq_dtype_name(codes->scalar_type));
    if (K < 1) return pivq_set_error("%s: K must be >= 1, got %lld", fname, (long long)K);
    return 0;
}

static int check_code_range(const char *fname, const int64_t *p, int64_t n, int64_t K)
{
    for (int64_t i = 0; i < n; i++)
        if (p[i] < 0 || p[i] >= K)
            return pivq_set_error("%s: code %lld out of range for a codebook of %lld", fname,
                                  (long long)p[i], (long long)K);
    return 0;
}

/* Check the EMA state (codebook K x c, ema_count K, ema_sum K x c: float32, contiguous), the
   latents' width c and the decay/eps of an EMA update. */
static int check_ema_state(const char *fn, const pivq_tensor *codebook,
                           const pivq_tensor *ema_count, const pivq_tensor *ema_sum,
                           const pivq_tensor *latents, double decay, double eps)
{
    if (check_rows(fn, "codebook", codebook) || check_rows(fn, "ema_sum", ema_sum) ||
        check_rows(fn, "latents", latents) || pivq_check_tensor(fn, "ema_count", ema_count))
        return -1;
    int64_t K = codebook->shape[0], c = codebook->shape[1];
    char a[160], b[160];
    if (ema_sum->shape[0] != K || ema_sum->shape[1] != c || latents->shape[1] != c ||
        ema_count->ndim != 1 || ema_count->shape[0] != K || ema_count->scalar_type != PIVQ_FLOAT32)
        return pivq_set_error("%s: shapes disagree: codebook %s, ema_sum %s, ema_count of %lld, "
                              "latents with rows of %lld",
                              fn, pivq_shape_str(codebook, a, sizeof a),
                              pivq_shape_str(ema_sum, b, sizeof b),
                              (long long)(ema_count->ndim == 1 ? ema_count->shape[0] : -1),
                              (long long)latents->shape[1]);
    if (!pivq_is_contiguous(codebook) || !pivq_is_contiguous(ema_sum) ||
        !pivq_is_contiguous(ema_count))
        return pivq_set_error("%s: codebook, ema_sum and ema_count must be contiguous", fn);
    if (!(decay >= 0 && decay < 1) || !(eps >= 0))
        return pivq_set_error("%s: need 0 <= decay < 1 and eps >= 0, got %g and %g", fn, decay,
                              eps);
    return 0;
}

/* Contiguous copies of codes (N int64 in [0, K)) and latents (N x c); -1 with the error set. */
static int ema_inputs(const char *fn, const pivq_tensor *latents, const pivq_tensor *codes,
                      int64_t K, pivq_tensor **cc, pivq_tensor **lc)
{
    *cc = *lc = NULL;
    if (check_codes(fn, codes, K)) return -1;
    if (pivq_numel(codes) != latents->shape[0])
        return pivq_set_error("%s: %lld codes for %lld latents", fn, (long long)pivq_numel(codes),
                              (long long)latents->shape[0]);
    *cc = pivq_contiguous_nograd(codes);
    *lc = *cc ? pivq_contiguous_nograd(latents) : NULL;
    if (*lc && check_code_range(fn, pivq_data(*cc), pivq_numel(*cc), K) == 0) return 0;
    pivq_tensor_release(*cc);
    pivq_tensor_release(*lc);
    return -1;
}

/* nk[k] += #{i: code_i = k}, sk[k] += sum of those z_i (z N x c), in double. */
static void ema_accumulate(const int64_t *code, const float *z, int64_t N, int64_t c, double *nk,
                           double *sk)
{
    for (int64_t i = 0; i < N; i++) {
        nk[code[i]] += 1;
        for (int64_t j = 0; j < c; j++)
            sk[code[i] * c + j] += z[i * c + j];
    }
}

/* The EMA step itself from batch statistics nk (K) and sk (K x c); see pivq.h. */
static void ema_apply(float *cnt, float *sum, float *e, int64_t K, int64_t c, const double *nk,
                      const double *sk, double decay, double eps)
{
    double n = 0;
    for (int64_t k = 0; k < K; k++) {
        cnt[k] = (float)(decay * cnt[k] + (1 - decay) * nk[k]);
        n += cnt[k];
        for (int64_t j = 0; j < c; j++)
            sum[k * c + j] = (float)(decay * sum[k * c + j] + (1 - decay) * sk[k * c + j]);
    }
    for (int64_t k = 0; k < K; k++) {
        double smoothed = (cnt[k] + eps) / (n + (double)K * eps) * n;
        if (smoothed > 0)
            for (int64_t j = 0; j < c; j++)
                e[k * c + j] = (float)(sum[k * c + j] / smoothed);
    }
}

int pivq_vq_ema_update_(pivq_tensor *codebook, pivq_tensor *ema_count, pivq_tensor *ema_sum,
                        const pivq_tensor *latents, const pivq_tensor *codes, double decay,
                        double eps)
{
    const char *fn = "vq_ema_update";
    if (check_ema_state(fn, codebook, ema_count, ema_sum, latents, decay, eps)) return -1;
    int64_t K = codebook->shape[0], c = codebook->shape[1];
    pivq_tensor *cc, *lc;
    if (ema_inputs(fn, latents, codes, K, &cc, &lc)) return -1;
    double *nk = calloc((size_t)(K * (c + 1)), sizeof(double));
    if (nk) {
        ema_accumulate(pivq_data(cc), pivq_data(lc), lc->shape[0], c, nk, nk + K);
        ema_apply(pivq_data(ema_count), pivq_data(ema_sum), pivq_data(codebook), K, c, nk, nk + K,
                  decay, eps);
    }
    free(nk);
    pivq_tensor_release(cc);
    pivq_tensor_release(lc);
    return nk ? 0 : pivq_set_error("%s: out of memory", fn);
}

int pivq_vq_ema_stats(const pivq_tensor *latents, const pivq_tensor *codes, pivq_tensor *counts,
                      pivq_tensor *sums)
{
    const char *fn = "vq_ema_stats";
    if (check_rows(fn, "latents", latents) || check_rows(fn, "sums", sums) ||
        pivq_check_tensor(fn, "counts", counts))
        return -1;
    int64_t K = sums->shape[0], c = sums->shape[1];
    char a[160], b[160], l[160];
    if (counts->ndim != 1 || counts->shape[0] != K || counts->scalar_type != PIVQ_FLOAT32 ||
        latents->shape[1] != c || !pivq_is_contiguous(counts) || !pivq_is_contiguous(sums))
        return pivq_set_error("%s: need contiguous float32 counts (K) and sums (K x c) for "
                              "latents with rows of c, got counts %s, sums %s, latents %s",
                              fn, pivq_shape_str(counts, a, sizeof a),
                              pivq_shape_str(sums, b, sizeof b),
                              pivq_shape_str(latents, l, sizeof l));
    pivq_tensor *cc, *lc;
    if (ema_inputs(fn, latents, codes, K, &cc, &lc)) return -1;
    double *nk = calloc((size_t)(K * (c + 1)), sizeof(double));
    if (nk) {
        ema_accumulate(pivq_data(cc), pivq_data(lc), lc->shape[0], c, nk, nk + K);
        float *pc = pivq_data(counts), *ps = pivq_data(sums);
        for (int64_t k = 0; k < K; k++)
            pc[k] = (float)nk[k];
        for (int64_t i = 0; i < K * c; i++)
            ps[i] = (float)nk[K + i];
    }
    free(nk);
    pivq_tensor_release(cc);
    pivq_tensor_release(lc);
    return nk ? 0 : pivq_set_error("%s: out of memory", fn);
}

int pivq_vq_ema_apply_(pivq_tensor *codebook, pivq_tensor *ema_count, pivq_tensor *ema_sum,
                       const pivq_tensor *counts, const pivq_tensor *sums, double decay, double eps)
{
    const char *fn = "vq_ema_apply";
    if (check_ema_state(fn, codebook, ema_count, ema_sum, sums, decay, eps) ||
        pivq_check_tensor(fn, "counts", counts))
        return -1;
    int64_t K = codebook->shape[0], c = codebook->shape[1];
    char a[160], b[160];
    if (counts->ndim != 1 || counts->shape[0] != K || counts->scalar_type != PIVQ_FLOAT32 ||
        sums->shape[0] != K || !pivq_is_contiguous(counts) || !pivq_is_contiguous(sums))
        return pivq_set_error("%s: need contiguous float32 counts (%lld) and sums (%lldx%lld), "
                              "got %s and %s",
                              fn, (long long)K, (long long)K, (long long)c,
                              pivq_shape_str(counts, a, sizeof a),
                              pivq_shape_str(sums, b, sizeof b));
    double *nk = malloc((size_t)(K * (c + 1)) * sizeof(double));
    if (!nk) return pivq_set_error("%s: out of memory", fn);
    const float *pc = pivq_data(counts), *ps = pivq_data(sums);
    for (int64_t i = 0; i < K * (c + 1); i++)
        nk[i] = i < K ? pc[i] : ps[i - K];
    ema_apply(pivq_data(ema_count), pivq_data(ema_sum), pivq_data(codebook), K, c, nk, nk + K,
              decay, eps);
    free(nk);
    return 0;
}

pivq_tensor *pivq_code_counts(const pivq_tensor *codes, int64_t K)
{
    if (check_codes("code_counts", codes, K)) return NULL;
    pivq_tensor *cc = pivq_contiguous_nograd(codes);
    pivq_tensor *out = cc ? pivq_zeros(PIVQ_INT64, 1, &K) : NULL;
    if (out) {
        const int64_t *p = pivq_data(cc);
        int64_t n = pivq_numel(cc), *o = pivq_data(out);
        if (check_code_range("code_counts", p, n, K)) {
            pivq_tensor_release(out);
            out = NULL;
        } else {
            for (int64_t i = 0; i < n; i++)
                o[p[i]]++;
        }
    }
    pivq_tensor_release(cc);
    return out;
}

int pivq_distinct_per_row(const pivq_tensor *codes, int64_t K, double *out_mean)
{
    if (check_codes("distinct_per_row", codes, K)) return -1;
    if (codes->ndim != 2) {
        char buf[160];
        return pivq_set_error("distinct_per_row: codes must be B x L, got %s",
                              pivq_shape_str(codes, buf, sizeof buf));
    }
    pivq_tensor *cc = pivq_contiguous_nograd(codes);
    uint8_t *seen = cc ? calloc((size_t)K, 1) : NULL;
    if (!seen) {
        if (cc) pivq_set_error("distinct_per_row: out of memory");
        pivq_tensor_release(cc);
        return -1;
    }
    int64_t B = codes->shape[0], L = codes->shape[1], total = 0;
    const int64_t *p = pivq_data(cc);
    int rc = check_code_range("distinct_per_row", p, B * L, K);
    for (int64_t b = 0; rc == 0 && b < B; b++) {
        for (int64_t i = 0; i < L; i++) {
            total += !seen[p[b * L + i]];
            seen[p[b * L + i]] = 1;
        }
        for (int64_t i = 0; i < L; i++)
            seen[p[b * L + i]] = 0;
    }
    if (rc == 0) *out_mean = B > 0 ? (double)total / (double)B : 0.0;
    free(seen);
    pivq_tensor_release(cc);
    return rc;
}

/* Rows of the n x K distances D whose assigned column cols[i] lies strictly farther than the
   row's minimum (a tie with the nearest code counts as agreeing). */
static int64_t count_differ(const float *D, int64_t n, int64_t K, const int64_t *cols)
{
    int64_t differ = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *row = D + i * K;
        float best = row[0];
        for (int64_t k = 1; k < K; k++)
            if (row[k] < best) best = row[k];
        differ += row[cols[i]] > best;
    }
    return differ;
}

/* The matching quantizer's codes straight from the latents, a block of images at a time: the
   B*L x K distance matrix (8 MB for a 64-image batch of L = 64 codes and K = 512) was a
   tensor the Lua side held as garbage until the end of the training step, where the GC
   runs, so it added to every step's high-water mark. A block's distances are freed before the
   next block's are computed. */
pivq_tensor *pivq_vq_match_differ(const pivq_tensor *z, const pivq_tensor *codebook,
                                  int64_t *out_differ)
{
    if (pivq_check_tensor("vq_match", "z", z) || check_rows("vq_match", "codebook", codebook))
        return NULL;
    char buf[160];
    if (z->ndim != 3 || z->scalar_type != PIVQ_FLOAT32 || z->shape[2] != codebook->shape[1]) {
        pivq_set_error("vq_match: z must be a float32 B x L x %lld tensor, got %s %s",
                       (long long)codebook->shape[1], pivq_shape_str(z, buf, sizeof buf),
                       pivq_dtype_name(z->scalar_type));
        return NULL;
    }
    int64_t B = z->shape[0], L = z->shape[1], c = z->shape[2], K = codebook->shape[0];
    if (L < 1 || L > K) {
        pivq_set_error("vq_match: need 1 <= L <= K codes per image, got L=%lld K=%lld",
                       (long long)L, (long long)K);
        return NULL;
    }
    int64_t flat_size[2] = {B * L, c}, out_size[2] = {B, L};
    pivq_tensor *zc = pivq_contiguous_nograd(z);
    pivq_tensor *flat = zc ? pivq_view_nograd(zc, 2, flat_size) : NULL;
    pivq_tensor *out = flat ? pivq_empty(PIVQ_INT64, 2, out_size) : NULL;
    pivq_tensor_release(zc);
    if (!out) {
        pivq_tensor_release(flat);
        return NULL;
    }
    /* about 1 MB of distances per block, whole images, at least one */
    int64_t per_block = ((int64_t)1 << 18) / (L * K);
    if (per_block < 1) per_block = 1;
    int64_t *cols = pivq_data(out), differ = 0;
    for (int64_t b0 = 0; b0 < B; b0 += per_block) {
        int64_t nb = B - b0 < per_block ? B - b0 : per_block;
        pivq_tensor *rows = pivq_narrow_nograd(flat, 0, b0 * L, nb * L);
        pivq_tensor *D = rows ? pivq_sq_distances(rows, codebook) : NULL;
        pivq_tensor_release(rows);
        int rc = D ? pivq_assign_batch(pivq_data(D), nb, L, K, cols + b0 * L) : -1;
        if (rc == 0 && out_differ) differ += count_differ(pivq_data(D), nb * L, K, cols + b0 * L);
        pivq_tensor_release(D);
        if (rc != 0) {
            if (D) { /* the solver's message (a non-finite cost; its problem index counts from b0)
                      */
                char msg[256];
                snprintf(msg, sizeof msg, "%s", pivq_last_error());
                pivq_set_error("vq_match: images %lld..%lld (1-based) give %s", (long long)(b0 + 1),
                               (long long)(b0 + nb), msg);
            }
            pivq_tensor_release(flat);
            pivq_tensor_release(out);
            return NULL;
        }
    }
    pivq_tensor_release(flat);
    if (out_differ) *out_differ = differ;
    return out;
}

pivq_tensor *pivq_vq_match(const pivq_tensor *z, const pivq_tensor *codebook)
{
    return pivq_vq_match_differ(z, codebook, NULL);
}
