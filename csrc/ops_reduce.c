/* ops_reduce.c — sum, mean, var, max, min, argmax, argmin, norm, prod over one dim or all.
 *
 * The input is made contiguous (integer inputs widened to int64) and seen as
 * (outer, R, inner): each output element reduces one "lane" of R elements spaced `inner`
 * apart. A lane reduces into a partial (Welford mean/M2 for var, running extremum and its
 * index for max/argmax, a double or int64 accumulator for the rest); partials of chunks of a
 * long lane combine exactly (Chan et al. for var), which lets a single all-dims reduction
 * use every thread.
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>

static const char *reduce_names[PIVQ_REDUCE_COUNT] = {"sum", "mean", "var", "max", "min",
                                                      "argmax", "argmin", "norm", "prod"};

const char *pivq_reduce_name(int op)
{
    return op >= 0 && op < PIVQ_REDUCE_COUNT ? reduce_names[op] : "?";
}

typedef struct partial {
    double acc;      /* sum, sum |x|^p, or product (floats) */
    int64_t iacc;    /* sum or product (integers: exact, wrapping) */
    double mean, m2; /* Welford, for var */
    int64_t count;
    double ext;      /* running max/min (floats) */
    int64_t iext;    /* running max/min (integers) */
    int64_t arg;     /* index of the extremum within the lane */
} partial;

static partial partial_empty(int op)
{
    partial q = {0};
    if (op == PIVQ_PROD) {
        q.acc = 1.0;
        q.iacc = 1;
    }
    q.arg = -1;
    return q;
}

static int wants_max(int op) { return op == PIVQ_RMAX || op == PIVQ_ARGMAX || op == PIVQ_NORM; }

/* Reduce n float32 elements p[0], p[stride], ... ; `first` is the lane index of p[0]. */
static partial lane_f32(int op, const float *p, int64_t n, int64_t stride, double param,
                        int64_t first)
{
    partial q = partial_empty(op);
    switch (op) {
    case PIVQ_SUM:
    case PIVQ_MEAN:
        for (int64_t j = 0; j < n; j++) q.acc += p[j * stride];
        break;
    case PIVQ_PROD:
        for (int64_t j = 0; j < n; j++) q.acc *= p[j * stride];
        break;
    case PIVQ_VAR:
        for (int64_t j = 0; j < n; j++) {
            double x = p[j * stride], d = x - q.mean;
            q.count++;
            q.mean += d / (double)q.count;
            q.m2 += d * (x - q.mean);
        }
        break;
    case PIVQ_NORM:
        if (isinf(param)) { /* max |x| */
            q.ext = 0;
            for (int64_t j = 0; j < n; j++) {
                double a = fabs(p[j * stride]);
                if (a > q.ext || a != a) q.ext = a;
            }
        } else if (param == 2.0) {
            for (int64_t j = 0; j < n; j++) q.acc += (double)p[j * stride] * p[j * stride];
        } else if (param == 1.0) {
            for (int64_t j = 0; j < n; j++) q.acc += fabs(p[j * stride]);
        } else {
            for (int64_t j = 0; j < n; j++) q.acc += pow(fabs(p[j * stride]), param);
        }
        break;
    default: { /* max, min, argmax, argmin: first occurrence wins; NaN beats everything */
        int mx = wants_max(op);
        for (int64_t j = 0; j < n; j++) {
            double x = p[j * stride];
            if (q.arg < 0 || (x != x && q.ext == q.ext) ||
                (q.ext == q.ext && (mx ? x > q.ext : x < q.ext))) {
                q.ext = x;
                q.arg = first + j;
            }
        }
    }
    }
    q.count = op == PIVQ_VAR ? q.count : n;
    return q;
}

static partial lane_i64(int op, const int64_t *p, int64_t n, int64_t stride, double param,
                        int64_t first)
{
    partial q = partial_empty(op);
    switch (op) {
    case PIVQ_SUM:
        for (int64_t j = 0; j < n; j++) q.iacc = (int64_t)((uint64_t)q.iacc + (uint64_t)p[j * stride]);
        break;
    case PIVQ_PROD:
        for (int64_t j = 0; j < n; j++) q.iacc = (int64_t)((uint64_t)q.iacc * (uint64_t)p[j * stride]);
        break;
    case PIVQ_RMAX: case PIVQ_RMIN: case PIVQ_ARGMAX: case PIVQ_ARGMIN: {
        int mx = wants_max(op);
        for (int64_t j = 0; j < n; j++) {
            int64_t x = p[j * stride];
            if (q.arg < 0 || (mx ? x > q.iext : x < q.iext)) {
                q.iext = x;
                q.arg = first + j;
            }
        }
        break;
    }
    default: { /* mean, var, norm: through floating point */
        for (int64_t j = 0; j < n; j++) {
            double x = (double)p[j * stride];
            if (op == PIVQ_VAR) {
                double d = x - q.mean;
                q.count++;
                q.mean += d / (double)q.count;
                q.m2 += d * (x - q.mean);
            } else if (op == PIVQ_NORM) {
                if (isinf(param)) q.ext = fabs(x) > q.ext ? fabs(x) : q.ext;
                else q.acc += pow(fabs(x), param);
            } else {
                q.acc += x;
            }
        }
    }
    }
    q.count = op == PIVQ_VAR ? q.count : n;
    return q;
}

/* Merge partial b (a later chunk of the same lane) into a. */
static void partial_merge(int op, int is_int, partial *a, const partial *b)
{
    switch (op) {
    case PIVQ_SUM: case PIVQ_MEAN:
        a->acc += b->acc;
        a->iacc = (int64_t)((uint64_t)a->iacc + (uint64_t)b->iacc);
        break;
    case PIVQ_PROD:
        a->acc *= b->acc;
        a->iacc = (int64_t)((uint64_t)a->iacc * (uint64_t)b->iacc);
        break;
    case PIVQ_VAR: {
        int64_t n = a->count + b->count;
        if (n == 0) break;
        double d = b->mean - a->mean;
        a->m2 += b->m2 + d * d * (double)a->count * (double)b->count / (double)n;
        a->mean += d * (double)b->count / (double)n;
        a->count = n;
        return;
    }
    case PIVQ_NORM:
        a->acc += b->acc;
        if (b->ext > a->ext || b->ext != b->ext) a->ext = b->ext;
        break;
    default: {
        if (b->arg < 0) break;
        int mx = wants_max(op);
        int take;
        if (a->arg < 0) take = 1;
        else if (is_int) take = mx ? b->iext > a->iext : b->iext < a->iext;
        else take = (b->ext != b->ext && a->ext == a->ext) ||
                    (a->ext == a->ext && (mx ? b->ext > a->ext : b->ext < a->ext));
        if (take) {
            a->ext = b->ext;
            a->iext = b->iext;
            a->arg = b->arg;
        }
    }
    }
    a->count += b->count;
}

/* Write the final value of a lane into out[i] (out has the result dtype). */
static void partial_store(int op, int is_int, const partial *q, int64_t R, double param,
                          void *out, int out_dtype, int64_t i)
{
    double v;
    switch (op) {
    case PIVQ_SUM: case PIVQ_PROD:
        if (is_int) {
            ((int64_t *)out)[i] = q->iacc;
            return;
        }
        v = q->acc;
        break;
    case PIVQ_MEAN: v = R > 0 ? q->acc / (double)R : NAN; break;
    case PIVQ_VAR: {
        double dof = (double)q->count - param;
        v = dof > 0 ? q->m2 / dof : NAN;
        break;
    }
    case PIVQ_NORM:
        v = isinf(param) ? q->ext : (param == 2.0 ? sqrt(q->acc) : pow(q->acc, 1.0 / param));
        break;
    case PIVQ_ARGMAX: case PIVQ_ARGMIN:
        ((int64_t *)out)[i] = q->arg;
        return;
    default: /* max, min */
        if (is_int) {
            ((int64_t *)out)[i] = q->iext;
            return;
        }
        v = q->ext;
    }
    (void)out_dtype;
    ((float *)out)[i] = (float)v;
}

static partial lane(int op, int is_int, const void *base, int64_t start, int64_t n,
                    int64_t stride, double param, int64_t first)
{
    return is_int ? lane_i64(op, (const int64_t *)base + start, n, stride, param, first)
                  : lane_f32(op, (const float *)base + start, n, stride, param, first);
}

pivq_tensor *pivq_reduce(const pivq_tensor *x, int op, int dim, int keepdim, double param)
{
    if (op < 0 || op >= PIVQ_REDUCE_COUNT) {
        pivq_set_error("reduce: unknown op %d", op);
        return NULL;
    }
    const char *fname = reduce_names[op];
    if (pivq_check_tensor(fname, "input", x)) return NULL;
    if (dim < -1 || dim >= x->ndim || (dim == -1 && 0)) {
        char buf[160];
        pivq_set_error("%s: dim %d out of range for a tensor of shape %s", fname, dim,
                       pivq_shape_str(x, buf, sizeof buf));
        return NULL;
    }
    if (op == PIVQ_NORM && !(param > 0)) {
        pivq_set_error("norm: p must be positive, got %g", param);
        return NULL;
    }
    int64_t R = dim < 0 ? pivq_numel(x) : x->shape[dim];
    if (R == 0 && (op == PIVQ_RMAX || op == PIVQ_RMIN || op == PIVQ_ARGMAX || op == PIVQ_ARGMIN)) {
        pivq_set_error("%s: cannot reduce over an empty dimension", fname);
        return NULL;
    }
    /* Result shape and dtype. */
    int is_int = x->scalar_type != PIVQ_FLOAT32;
    int out_dtype;
    switch (op) {
    case PIVQ_SUM: case PIVQ_PROD: out_dtype = is_int ? PIVQ_INT64 : PIVQ_FLOAT32; break;
    case PIVQ_ARGMAX: case PIVQ_ARGMIN: out_dtype = PIVQ_INT64; break;
    case PIVQ_RMAX: case PIVQ_RMIN: out_dtype = is_int ? PIVQ_INT64 : PIVQ_FLOAT32; break;
    default: out_dtype = PIVQ_FLOAT32;
    }
    int ond = 0;
    int64_t osize[PIVQ_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        if (dim < 0 || i == dim) {
            if (keepdim) osize[ond++] = 1;
        } else {
            osize[ond++] = x->shape[i];
        }
    }
    pivq_tensor *xc = is_int ? pivq_to_dtype(x, PIVQ_INT64) : pivq_contiguous(x);
    pivq_tensor *out = xc ? pivq_empty(out_dtype, ond, osize) : NULL;
    if (!out) {
        pivq_tensor_release(xc);
        return NULL;
    }
    int64_t outer = 1, inner = 1;
    if (dim >= 0) {
        for (int i = 0; i < dim; i++) outer *= x->shape[i];
        for (int i = dim + 1; i < x->ndim; i++) inner *= x->shape[i];
    }
    const void *base = pivq_data(xc);
    void *o = pivq_data(out);
    int64_t nout = outer * inner;
    int nth = pivq_threads_for(nout * R);
    if (nout < nth) {
        /* Few long lanes (e.g. an all-dims reduction): split each lane into one chunk per
           thread and merge the partials in chunk order, so the result is deterministic for a
           given thread count. */
        for (int64_t i = 0; i < nout; i++) {
            int64_t ob = i / inner, ib = i % inner, start = ob * R * inner + ib;
            partial parts[64];
            int nt = nth > 64 ? 64 : nth;
#pragma omp parallel for num_threads(nt) if (nt > 1)
            for (int t = 0; t < nt; t++) {
                int64_t r0 = R * t / nt, r1 = R * (t + 1) / nt;
                parts[t] = lane(op, is_int, base, start + r0 * inner, r1 - r0, inner, param, r0);
            }
            for (int t = 1; t < nt; t++) partial_merge(op, is_int, &parts[0], &parts[t]);
            partial_store(op, is_int, &parts[0], R, param, o, out_dtype, i);
        }
    } else {
#pragma omp parallel for num_threads(nth) if (nth > 1) schedule(static)
        for (int64_t i = 0; i < nout; i++) {
            int64_t ob = i / inner, ib = i % inner;
            partial q = lane(op, is_int, base, ob * R * inner + ib, R, inner, param, 0);
            partial_store(op, is_int, &q, R, param, o, out_dtype, i);
        }
    }
    pivq_tensor_release(xc);
    /* max/min keep the input's integer dtype */
    if ((op == PIVQ_RMAX || op == PIVQ_RMIN) && is_int && x->scalar_type != PIVQ_INT64) {
        pivq_tensor *r = pivq_to_dtype(out, x->scalar_type);
        pivq_tensor_release(out);
        return r;
    }
    return out;
}
