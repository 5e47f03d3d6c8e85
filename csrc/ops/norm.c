/* ops/norm.c — layer norm and group norm, forward and backward.
 *
 * Both normalise groups of elements by their mean and biased variance and then apply a
 * per-element (layer norm) or per-channel (group norm) affine map. Statistics accumulate in
 * double; mean and 1/std per group are saved for the backward, which uses the closed form
 *     dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),  dxhat = dy * w.
 */
#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int check_f32(const char *fname, const char *arg, const pivq_tensor *t)
{
    if (pivq_check_tensor(fname, arg, t)) return -1;
    if (t->scalar_type != PIVQ_FLOAT32)
        return pivq_set_error("%s: %s must be float32, got %s", fname, arg,
                              pivq_dtype_name(t->scalar_type));
    return 0;
}

/* Sums in float lanes (vectorised) over blocks of 4096, the blocks added in double: as
   accurate as a double loop for these sizes and several times faster. */
#define SUM_BLOCK 4096

static double sum_f32(const float *x, int64_t n)
{
    double total = 0.0;
    for (int64_t i0 = 0; i0 < n; i0 += SUM_BLOCK) {
        int64_t i1 = n - i0 < SUM_BLOCK ? n : i0 + SUM_BLOCK;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t i = i0; i < i1; i++)
            s += x[i];
        total += s;
    }
    return total;
}

static double sum_sq_dev_f32(const float *x, int64_t n, float m)
{
    double total = 0.0;
    for (int64_t i0 = 0; i0 < n; i0 += SUM_BLOCK) {
        int64_t i1 = n - i0 < SUM_BLOCK ? n : i0 + SUM_BLOCK;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t i = i0; i < i1; i++)
            s += (x[i] - m) * (x[i] - m);
        total += s;
    }
    return total;
}

/* Mean and 1/sqrt(var + eps) of n values (two passes: no cancellation). */
static void moments(const float *x, int64_t n, double eps, float *mean, float *rstd)
{
    double m = n ? sum_f32(x, n) / (double)n : 0.0;
    double ss = sum_sq_dev_f32(x, n, (float)m);
    *mean = (float)m;
    *rstd = (float)(1.0 / sqrt((n ? ss / (double)n : 0.0) + eps));
}

/* Per-thread partial sums of the weight and bias gradients, reduced at the end: writing the
   shared C-vector from every thread would race. */
typedef struct partials {
    float *buf; /* (threads, 2, C): dw then db */
    int threads;
    int64_t C;
} partials;

static int partials_init(partials *p, int threads, int64_t C)
{
    p->threads = threads;
    p->C = C;
    p->buf = calloc((size_t)(threads * 2 * (C > 0 ? C : 1)), sizeof(float));
    return p->buf ? 0 : pivq_set_error("norm backward: out of memory");
}

static void partials_reduce(partials *p, float *dw, float *db)
{
    for (int64_t c = 0; c < p->C; c++) {
        float a = 0.0f, b = 0.0f;
        for (int t = 0; t < p->threads; t++) {
            a += p->buf[(t * 2) * p->C + c];
            b += p->buf[(t * 2 + 1) * p->C + c];
        }
        if (dw) dw[c] = a;
        if (db) db[c] = b;
    }
    free(p->buf);
}

/* ---- layer norm --------------------------------------------------------------------------- */

pivq_tensor *pivq_layer_norm(const pivq_tensor *x, int norm_ndim, const pivq_tensor *w,
                             const pivq_tensor *b, double eps)
{
    if (check_f32("layer_norm", "input", x) || (w && check_f32("layer_norm", "weight", w)) ||
        (b && check_f32("layer_norm", "bias", b)))
        return NULL;
    char s[160];
    if (norm_ndim < 1 || norm_ndim > x->ndim) {
        pivq_set_error("layer_norm: cannot normalise the last %d dims of shape %s", norm_ndim,
                       pivq_shape_str(x, s, sizeof s));
        return NULL;
    }
    int64_t D = 1;
    for (int i = x->ndim - norm_ndim; i < x->ndim; i++)
        D *= x->shape[i];
    if ((w && pivq_numel(w) != D) || (b && pivq_numel(b) != D)) {
        pivq_set_error("layer_norm: weight and bias need %lld elements (the normalised dims "
                       "of %s)",
                       (long long)D, pivq_shape_str(x, s, sizeof s));
        return NULL;
    }
    int64_t M = D ? pivq_numel(x) / D : 0;
    pivq_tensor *xc = pivq_contiguous_nograd(x), *wc = w ? pivq_contiguous_nograd(w) : NULL;
    pivq_tensor *bc = b ? pivq_contiguous_nograd(b) : NULL;
    pivq_tensor *y = pivq_empty(PIVQ_FLOAT32, x->ndim, x->shape);        /* y: x's shape */
    pivq_tensor *stats = pivq_empty(PIVQ_FLOAT32, 2, (int64_t[]){M, 2}); /* (M, [mean, rstd]) */
    if (!xc || (w && !wc) || (b && !bc) || !y || !stats) goto fail;
    const float *xp = pivq_data(xc), *wp = wc ? pivq_data(wc) : NULL;
    const float *bp = bc ? pivq_data(bc) : NULL;
    float *yp = pivq_data(y), *st = pivq_data(stats);
    int nt = pivq_threads_for(M * D * 4);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t r = 0; r < M; r++) {
        const float *xr = xp + r * D;
        float *yr = yp + r * D, mean, rstd;
        moments(xr, D, eps, &mean, &rstd);
        st[2 * r] = mean;
        st[2 * r + 1] = rstd;
        for (int64_t j = 0; j < D; j++) {
            float v = (xr[j] - mean) * rstd;
            yr[j] = v * (wp ? wp[j] : 1.0f) + (bp ? bp[j] : 0.0f);
        }
    }
    const pivq_tensor *in[3] = {x, w, b};
    if (pivq_ag_wants(3, in)) {
        pivq_node *nd = pivq_ag_record(PIVQ_GOP_LAYER_NORM, y, 3, in);
        int rc =
            nd ? (pivq_ag_save(nd, 0, xc) || pivq_ag_save(nd, 1, wc) || pivq_ag_save(nd, 2, stats))
               : -1;
        if (nd) nd->ip[0] = D;
        y = pivq_ag_finish(y, nd, rc);
    }
    pivq_tensor_release(xc);
    pivq_tensor_release(wc);
    pivq_tensor_release(bc);
    pivq_tensor_release(stats);
    return y;
fail:
    pivq_tensor_release(xc);
    pivq_tensor_release(wc);
    pivq_tensor_release(bc);
    pivq_tensor_release(y);
    pivq_tensor_release(stats);
    return NULL;
}

int pivq_layer_norm_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    int64_t D = n->ip[0], M = D ? pivq_numel(g) / D : 0;
    const float *xp = pivq_data(n->saved[0]);                      /* x (M, D) */
    const float *wp = n->saved[1] ? pivq_data(n->saved[1]) : NULL; /* w (D) */
    const float *st = pivq_data(n->saved[2]);                      /* (M, [mean, rstd]) */
    const float *gp = pivq_data(g);                                /* dy (M, D) */
    int need_x = pivq_ag_needs(n, 0), need_w = pivq_ag_needs(n, 1), need_b = pivq_ag_needs(n, 2);
    float *dx = NULL;
    if (need_x) {
        gin[0] = pivq_empty(PIVQ_FLOAT32, n->in[0].ndim, n->in[0].shape);
        if (!gin[0]) return -1;
        dx = pivq_data(gin[0]);
    }
    int nt = pivq_threads_for(M * D * 4);
    partials P;
    if (partials_init(&P, nt, D)) return -1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *pw = P.buf + (tid * 2) * D, *pb = P.buf + (tid * 2 + 1) * D;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < M; r++) {
            const float *xr = xp + r * D, *gr = gp + r * D;
            float mean = st[2 * r], rstd = st[2 * r + 1];
            double s1 = 0.0, s2 = 0.0; /* sum dxhat, sum dxhat * xhat */
            for (int64_t j0 = 0; j0 < D; j0 += SUM_BLOCK) {
                int64_t j1 = D - j0 < SUM_BLOCK ? D : j0 + SUM_BLOCK;
                float f1 = 0.0f, f2 = 0.0f;
#pragma omp simd reduction(+ : f1, f2)
                for (int64_t j = j0; j < j1; j++) {
                    float xh = (xr[j] - mean) * rstd, dxh = gr[j] * (wp ? wp[j] : 1.0f);
                    f1 += dxh;
                    f2 += dxh * xh;
                    pw[j] += gr[j] * xh;
                    pb[j] += gr[j];
                }
                s1 += f1;
                s2 += f2;
            }
            if (dx) {
                float m1 = (float)(s1 / (double)D), m2 = (float)(s2 / (double)D);
                float *dr = dx + r * D;
                for (int64_t j = 0; j < D; j++) {
                    float xh = (xr[j] - mean) * rstd, dxh = gr[j] * (wp ? wp[j] : 1.0f);
                    dr[j] = rstd * (dxh - m1 - xh * m2);
                }
            }
        }
    }
    float *dw = NULL, *db = NULL;
    if (need_w && (gin[1] = pivq_empty(PIVQ_FLOAT32, n->in[1].ndim, n->in[1].shape)))
        dw = pivq_data(gin[1]);
    if (need_b && (gin[2] = pivq_empty(PIVQ_FLOAT32, n->in[2].ndim, n->in[2].shape)))
        db = pivq_data(gin[2]);
    partials_reduce(&P, dw, db);
    if ((need_w && !dw) || (need_b && !db)) return -1;
    return 0;
}

/* ---- group norm --------------------------------------------------------------------------- */

pivq_tensor *pivq_group_norm(const pivq_tensor *x, int groups, const pivq_tensor *w,
                             const pivq_tensor *b, double eps)
{
    if (check_f32("group_norm", "input", x) || (w && check_f32("group_norm", "weight", w)) ||
        (b && check_f32("group_norm", "bias", b)))
        return NULL;
    char s[160];
    if (x->ndim < 2 || groups < 1 || x->shape[1] % groups != 0) {
        pivq_set_error("group_norm: input %s (N, C, ...) needs C divisible by %d groups",
                       pivq_shape_str(x, s, sizeof s), groups);
        return NULL;
    }
    int64_t N = x->shape[0], C = x->shape[1], S = 1;
    for (int i = 2; i < x->ndim; i++)
        S *= x->shape[i];
    if ((w && (w->ndim != 1 || w->shape[0] != C)) || (b && (b->ndim != 1 || b->shape[0] != C))) {
        pivq_set_error("group_norm: weight and bias must be 1-D of size C = %lld", (long long)C);
        return NULL;
    }
    int64_t Cg = C / groups, NG = N * groups;
    pivq_tensor *xc = pivq_contiguous_nograd(x), *wc = w ? pivq_contiguous_nograd(w) : NULL;
    pivq_tensor *bc = b ? pivq_contiguous_nograd(b) : NULL;
    pivq_tensor *y = pivq_empty(PIVQ_FLOAT32, x->ndim, x->shape);         /* y: x's shape */
    pivq_tensor *stats = pivq_empty(PIVQ_FLOAT32, 2, (int64_t[]){NG, 2}); /* (N*G, [mean, rstd]) */
    if (!xc || (w && !wc) || (b && !bc) || !y || !stats) goto fail;
    const float *xp = pivq_data(xc), *wp = wc ? pivq_data(wc) : NULL;
    const float *bp = bc ? pivq_data(bc) : NULL;
    float *yp = pivq_data(y), *st = pivq_data(stats);
    int nt = pivq_threads_for(N * C * S * 4);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t q = 0; q < NG; q++) { /* group q: channels (q % G) * Cg .. of image q / G */
        const float *xg = xp + q * Cg * S;
        float *yg = yp + q * Cg * S, mean, rstd;
        moments(xg, Cg * S, eps, &mean, &rstd);
        st[2 * q] = mean;
        st[2 * q + 1] = rstd;
        int64_t c0 = (q % groups) * Cg;
        for (int64_t c = 0; c < Cg; c++) {
            float a = rstd * (wp ? wp[c0 + c] : 1.0f);
            float sh = (bp ? bp[c0 + c] : 0.0f) - mean * a;
            for (int64_t j = 0; j < S; j++)
                yg[c * S + j] = xg[c * S + j] * a + sh;
        }
    }
    const pivq_tensor *in[3] = {x, w, b};
    if (pivq_ag_wants(3, in)) {
        pivq_node *nd = pivq_ag_record(PIVQ_GOP_GROUP_NORM, y, 3, in);
        int rc =
            nd ? (pivq_ag_save(nd, 0, xc) || pivq_ag_save(nd, 1, wc) || pivq_ag_save(nd, 2, stats))
               : -1;
        if (nd) nd->ip[0] = groups;
        y = pivq_ag_finish(y, nd, rc);
    }
    pivq_tensor_release(xc);
    pivq_tensor_release(wc);
    pivq_tensor_release(bc);
    pivq_tensor_release(stats);
    return y;
fail:
    pivq_tensor_release(xc);
    pivq_tensor_release(wc);
    pivq_tensor_release(bc);
    pivq_tensor_release(y);
    pivq_tensor_release(stats);
    return NULL;
}

int pivq_group_norm_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    const pivq_edge *ex = &n->in[0];
    int groups = (int)n->ip[0];
    int64_t N = ex->shape[0], C = ex->shape[1], S = 1;
    for (int i = 2; i < ex->ndim; i++)
        S *= ex->shape[i];
    int64_t Cg = C / groups, NG = N * groups, E = Cg * S;          /* E elements per group */
    const float *xp = pivq_data(n->saved[0]);                      /* x (N, C, S) */
    const float *wp = n->saved[1] ? pivq_data(n->saved[1]) : NULL; /* w (C) */
    const float *st = pivq_data(n->saved[2]);                      /* (N*G, [mean, rstd]) */
    const float *gp = pivq_data(g);                                /* dy (N, C, S) */
    int need_w = pivq_ag_needs(n, 1), need_b = pivq_ag_needs(n, 2);
    float *dx = NULL;
    if (pivq_ag_needs(n, 0)) {
        gin[0] = pivq_empty(PIVQ_FLOAT32, ex->ndim, ex->shape);
        if (!gin[0]) return -1;
        dx = pivq_data(gin[0]);
    }
    int nt = pivq_threads_for(N * C * S * 4);
    partials P;
    if (partials_init(&P, nt, C)) return -1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *pw = P.buf + (tid * 2) * C, *pb = P.buf + (tid * 2 + 1) * C;
#pragma omp for schedule(static)
        for (int64_t q = 0; q < NG; q++) {
            const float *xg = xp + q * E, *gg = gp + q * E;
            float mean = st[2 * q], rstd = st[2 * q + 1];
            int64_t c0 = (q % groups) * Cg;
            double s1 = 0.0, s2 = 0.0;
            for (int64_t c = 0; c < Cg; c++) {
                float wc = wp ? wp[c0 + c] : 1.0f;
                double sw = 0.0, sb = 0.0;
                for (int64_t j = 0; j < S; j++) {
                    float xh = (xg[c * S + j] - mean) * rstd, gv = gg[c * S + j];
                    sw += gv * xh;
                    sb += gv;
                }
                pw[c0 + c] += (float)sw;
                pb[c0 + c] += (float)sb;
                s1 += sb * wc;
                s2 += sw * wc;
            }
            if (dx) {
                float m1 = (float)(s1 / (double)E), m2 = (float)(s2 / (double)E);
                float *dg = dx + q * E;
                for (int64_t c = 0; c < Cg; c++) {
                    float wc = wp ? wp[c0 + c] : 1.0f;
                    for (int64_t j = 0; j < S; j++) {
                        float xh = (xg[c * S + j] - mean) * rstd;
                        dg[c * S + j] = rstd * (gg[c * S + j] * wc - m1 - xh * m2);
                    }
                }
            }
        }
    }
    float *dw = NULL, *db = NULL;
    if (need_w && (gin[1] = pivq_empty(PIVQ_FLOAT32, 1, &C))) dw = pivq_data(gin[1]);
    if (need_b && (gin[2] = pivq_empty(PIVQ_FLOAT32, 1, &C))) db = pivq_data(gin[2]);
    partials_reduce(&P, dw, db);
    if ((need_w && !dw) || (need_b && !db)) return -1;
    return 0;
}
