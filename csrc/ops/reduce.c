/* ops/reduce.c — sum, mean, var, max, min, argmax, argmin, norm, prod over one dim or all.
 *
 * The input is made contiguous (integer inputs widened to int64) and seen as
 * (outer, R, inner): output element (o, i) reduces the "lane" x[o, 0..R-1, i]. Every lane
 * reduces into a `partial` (a running sum/product, Welford's mean and M2 for var, the running
 * extremum and its index for max/argmax); partials of consecutive chunks of one lane combine
 * exactly (Chan et al. for var), which is how long lanes are split among threads.
 *
 * Two kernels walk memory in its own order:
 *  - lane kernels (inner == 1: a lane is contiguous): tight loops with several independent
 *    accumulators, so the compiler vectorises them;
 *  - row kernels (inner > 1: a lane is strided): rather than walking each lane with stride
 *    `inner` (one cache line per element), they sweep the rows x[o, r, block of columns] and
 *    update one partial per column, reading memory sequentially.
 * Work is split into (lane or column block) x (chunk of R) units; chunks are merged in order,
 * so a result depends on the thread count only through the rounding of float sums (which
 * accumulate in double).
 *
 * The kernel is pivq_reduce_nograd; pivq_reduce records the graph node, and its backward
 * (with pivq_sum_to_shape, the gradient of a broadcast) follows it at the end.
 */
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const char *reduce_names[PIVQ_REDUCE_COUNT] = {"sum",    "mean",   "var",  "max", "min",
                                                      "argmax", "argmin", "norm", "prod"};

const char *pivq_reduce_name(int op)
{
    return op >= 0 && op < PIVQ_REDUCE_COUNT ? reduce_names[op] : "?";
}

/* Columns a row kernel updates at once: their partials (64 bytes each) stay in L1. */
#define REDUCE_BLOCK 256

typedef struct partial {
    double acc;      /* sum, sum |x|^p, or product (floats and float results of ints) */
    int64_t iacc;    /* sum or product of integers: exact, wrapping */
    double mean, m2; /* Welford, for var */
    int64_t count;   /* elements seen */
    double ext;      /* running max/min (floats), max |x| for the inf-norm */
    int64_t iext;    /* running max/min (integers) */
    int64_t arg;     /* lane index of the extremum; -1 before the first element */
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

static int wants_max(int op)
{
    return op == PIVQ_RMAX || op == PIVQ_ARGMAX;
}
static int is_extremum(int op)
{
    return op == PIVQ_RMAX || op == PIVQ_RMIN || op == PIVQ_ARGMAX || op == PIVQ_ARGMIN;
}

/* Chan et al.: fold the (count, mean, m2) of b into a. */
static void var_merge(partial *a, int64_t nb, double mean_b, double m2_b)
{
    int64_t n = a->count + nb;
    if (nb == 0) return;
    double d = mean_b - a->mean;
    a->m2 += m2_b + d * d * (double)a->count * (double)nb / (double)n;
    a->mean += d * (double)nb / (double)n;
    a->count = n;
}

/* Does float x replace the running extremum e (index arg)? NaN wins, the first one stays. */
static inline int f_better(int mx, double x, double e, int64_t arg)
{
    if (arg < 0) return 1;
    if (e != e) return 0;
    if (x != x) return 1;
    return mx ? x > e : x < e;
}

/* ---- lane kernels (contiguous) ------------------------------------------------------------ */

/* Sums with eight independent double accumulators: vectorisable without -ffast-math. */
#define SUM8(EXPR)                                                                                 \
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tail = 0;                                              \
    int64_t j = 0;                                                                                 \
    for (; j + 8 <= n; j += 8)                                                                     \
        for (int k = 0; k < 8; k++) {                                                              \
            double x = p[j + k];                                                                   \
            s[k] += (EXPR);                                                                        \
        }                                                                                          \
    for (; j < n; j++) {                                                                           \
        double x = p[j];                                                                           \
        tail += (EXPR);                                                                            \
    }                                                                                              \
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + tail;

static double sum_f32(const float *p, int64_t n)
{
    SUM8(x)
}
static double sumsq_f32(const float *p, int64_t n)
{
    SUM8(x * x)
}
static double sumabs_f32(const float *p, int64_t n)
{
    SUM8(fabs(x))
}
static double sumdev2_f32(const float *p, int64_t n, double mean)
{
    SUM8((x - mean) * (x - mean))
}

/* Reduce the contiguous float32 lane p[0..n); `first` is the lane index of p[0]. */
static partial lane_f32(int op, const float *p, int64_t n, double param, int64_t first)
{
    partial q = partial_empty(op);
    switch (op) {
    case PIVQ_SUM:
    case PIVQ_MEAN: q.acc = sum_f32(p, n); break;
    case PIVQ_PROD:
        for (int64_t j = 0; j < n; j++)
            q.acc *= p[j];
        break;
    case PIVQ_VAR:
        /* Blocks small enough for L1: exact two-pass mean and M2 per block, then Chan. */
        for (int64_t b = 0; b < n; b += 2048) {
            int64_t m = n - b < 2048 ? n - b : 2048;
            double mean = sum_f32(p + b, m) / (double)m;
            var_merge(&q, m, mean, sumdev2_f32(p + b, m, mean));
        }
        return q;
    case PIVQ_NORM:
        if (isinf(param)) {
            for (int64_t j = 0; j < n; j++) {
                double a = fabs(p[j]);
                if (a > q.ext || a != a) q.ext = a;
                if (q.ext != q.ext) break;
            }
        } else if (param == 2.0) {
            q.acc = sumsq_f32(p, n);
        } else if (param == 1.0) {
            q.acc = sumabs_f32(p, n);
        } else {
            for (int64_t j = 0; j < n; j++)
                q.acc += pow(fabs(p[j]), param);
        }
        break;
    default: { /* max, min, argmax, argmin */
        int mx = wants_max(op);
        for (int64_t j = 0; j < n; j++) {
            double x = p[j];
            if (f_better(mx, x, q.ext, q.arg)) {
                q.ext = x;
                q.arg = first + j;
            }
        }
    }
    }
    q.count = n;
    return q;
}

static partial lane_i64(int op, const int64_t *p, int64_t n, double param, int64_t first)
{
    partial q = partial_empty(op);
    switch (op) {
    case PIVQ_SUM:
        for (int64_t j = 0; j < n; j++)
            q.iacc = (int64_t)((uint64_t)q.iacc + (uint64_t)p[j]);
        break;
    case PIVQ_PROD:
        for (int64_t j = 0; j < n; j++)
            q.iacc = (int64_t)((uint64_t)q.iacc * (uint64_t)p[j]);
        break;
    case PIVQ_MEAN:
        for (int64_t j = 0; j < n; j++)
            q.acc += (double)p[j];
        break;
    case PIVQ_VAR:
        for (int64_t j = 0; j < n; j++) {
            double x = (double)p[j], d = x - q.mean;
            q.count++;
            q.mean += d / (double)q.count;
            q.m2 += d * (x - q.mean);
        }
        return q;
    case PIVQ_NORM:
        for (int64_t j = 0; j < n; j++) {
            double a = fabs((double)p[j]);
            if (isinf(param))
                q.ext = a > q.ext ? a : q.ext;
            else
                q.acc += param == 1.0 ? a : (param == 2.0 ? a * a : pow(a, param));
        }
        break;
    default: {
        int mx = wants_max(op);
        for (int64_t j = 0; j < n; j++)
            if (q.arg < 0 || (mx ? p[j] > q.iext : p[j] < q.iext)) {
                q.iext = p[j];
                q.arg = first + j;
            }
    }
    }
    q.count = n;
    return q;
}

/* ---- row kernels (strided lanes) ----------------------------------------------------------- */

/* Update the partials q[0..m) of m adjacent columns with rows r0..r1-1; row r starts at
   base + (r - r0) * inner. T is float or int64_t. */
#define ROWS_KERNEL(NAME, T, IS_INT)                                                               \
    static void NAME(int op, partial *q, int64_t m, const T *base, int64_t r0, int64_t r1,         \
                     int64_t inner, double param)                                                  \
    {                                                                                              \
        int mx = wants_max(op);                                                                    \
        for (int64_t r = r0; r < r1; r++) {                                                        \
            const T *row = base + (r - r0) * inner;                                                \
            switch (op) {                                                                          \
            case PIVQ_SUM:                                                                         \
                if (IS_INT)                                                                        \
                    for (int64_t j = 0; j < m; j++)                                                \
                        q[j].iacc = (int64_t)((uint64_t)q[j].iacc + (uint64_t)(int64_t)row[j]);    \
                else                                                                               \
                    for (int64_t j = 0; j < m; j++)                                                \
                        q[j].acc += (double)row[j];                                                \
                break;                                                                             \
            case PIVQ_MEAN:                                                                        \
                for (int64_t j = 0; j < m; j++)                                                    \
                    q[j].acc += (double)row[j];                                                    \
                break;                                                                             \
            case PIVQ_PROD:                                                                        \
                if (IS_INT)                                                                        \
                    for (int64_t j = 0; j < m; j++)                                                \
                        q[j].iacc = (int64_t)((uint64_t)q[j].iacc * (uint64_t)(int64_t)row[j]);    \
                else                                                                               \
                    for (int64_t j = 0; j < m; j++)                                                \
                        q[j].acc *= (double)row[j];                                                \
                break;                                                                             \
            case PIVQ_VAR: { /* Welford; every column has seen the same count */                   \
                double inv = 1.0 / (double)(r - r0 + 1);                                           \
                for (int64_t j = 0; j < m; j++) {                                                  \
                    double x = (double)row[j], d = x - q[j].mean;                                  \
                    q[j].mean += d * inv;                                                          \
                    q[j].m2 += d * (x - q[j].mean);                                                \
                }                                                                                  \
                break;                                                                             \
            }                                                                                      \
            case PIVQ_NORM:                                                                        \
                if (isinf(param)) {                                                                \
                    for (int64_t j = 0; j < m; j++) {                                              \
                        double a = fabs((double)row[j]);                                           \
                        if ((a > q[j].ext || a != a) && q[j].ext == q[j].ext) q[j].ext = a;        \
                    }                                                                              \
                } else if (param == 2.0) {                                                         \
                    for (int64_t j = 0; j < m; j++)                                                \
                        q[j].acc += (double)row[j] * (double)row[j];                               \
                } else if (param == 1.0) {                                                         \
                    for (int64_t j = 0; j < m; j++)                                                \
                        q[j].acc += fabs((double)row[j]);                                          \
                } else {                                                                           \
                    for (int64_t j = 0; j < m; j++)                                                \
                        q[j].acc += pow(fabs((double)row[j]), param);                              \
                }                                                                                  \
                break;                                                                             \
            default:                                                                               \
                for (int64_t j = 0; j < m; j++) {                                                  \
                    if (IS_INT) {                                                                  \
                        int64_t x = (int64_t)row[j];                                               \
                        if (q[j].arg < 0 || (mx ? x > q[j].iext : x < q[j].iext)) {                \
                            q[j].iext = x;                                                         \
                            q[j].arg = r;                                                          \
                        }                                                                          \
                    } else {                                                                       \
                        double x = (double)row[j];                                                 \
                        if (f_better(mx, x, q[j].ext, q[j].arg)) {                                 \
                            q[j].ext = x;                                                          \
                            q[j].arg = r;                                                          \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (int64_t j = 0; j < m; j++)                                                            \
            q[j].count = r1 - r0;                                                                  \
    }

ROWS_KERNEL(rows_f32, float, 0)
ROWS_KERNEL(rows_i64, int64_t, 1)

/* The common float ops over rows, with one array per field (structure of arrays): the inner
   loops are unit-stride over doubles and branch-free, which the compiler vectorises, where the
   generic kernel's array of partials strides 64 bytes. Returns 0 for ops it leaves to
   rows_f32. Same results as rows_f32: extrema keep the first occurrence, NaN wins and stays. */
static int rows_f32_soa(int op, partial *q, int64_t m, const float *base, int64_t r0, int64_t r1,
                        int64_t inner, double param)
{
    double a[REDUCE_BLOCK], b[REDUCE_BLOCK];
    int64_t arg[REDUCE_BLOCK];
    enum { SUM, SUMSQ, SUMABS, VAR, MAX, MIN } kind;
    switch (op) {
    case PIVQ_SUM:
    case PIVQ_MEAN: kind = SUM; break;
    case PIVQ_NORM:
        if (param == 2.0)
            kind = SUMSQ;
        else if (param == 1.0)
            kind = SUMABS;
        else
            return 0;
        break;
    case PIVQ_VAR: kind = VAR; break;
    case PIVQ_RMAX:
    case PIVQ_ARGMAX: kind = MAX; break;
    case PIVQ_RMIN:
    case PIVQ_ARGMIN: kind = MIN; break;
    default: return 0;
    }
    int64_t r = r0;
    if ((kind == MAX || kind == MIN) && r1 > r0) { /* start from the first row */
        for (int64_t j = 0; j < m; j++) {
            a[j] = base[j];
            arg[j] = r0;
        }
        r++;
    } else {
        for (int64_t j = 0; j < m; j++)
            a[j] = b[j] = 0;
    }
    for (; r < r1; r++) {
        const float *row = base + (r - r0) * inner;
        switch (kind) {
        case SUM:
            for (int64_t j = 0; j < m; j++)
                a[j] += (double)row[j];
            break;
        case SUMSQ:
            for (int64_t j = 0; j < m; j++)
                a[j] += (double)row[j] * (double)row[j];
            break;
        case SUMABS:
            for (int64_t j = 0; j < m; j++)
                a[j] += fabs((double)row[j]);
            break;
        case VAR: { /* Welford: a = mean, b = M2; every column has seen the same count */
            double inv = 1.0 / (double)(r - r0 + 1);
            for (int64_t j = 0; j < m; j++) {
                double x = row[j], d = x - a[j];
                a[j] += d * inv;
                b[j] += d * (x - a[j]);
            }
            break;
        }
        case MAX:
            for (int64_t j = 0; j < m; j++) {
                double x = row[j];
                int take = (x > a[j]) | ((x != x) & (a[j] == a[j]));
                a[j] = take ? x : a[j];
                arg[j] = take ? r : arg[j];
            }
            break;
        case MIN:
            for (int64_t j = 0; j < m; j++) {
                double x = row[j];
                int take = (x < a[j]) | ((x != x) & (a[j] == a[j]));
                a[j] = take ? x : a[j];
                arg[j] = take ? r : arg[j];
            }
            break;
        }
    }
    for (int64_t j = 0; j < m; j++) {
        q[j] = partial_empty(op);
        q[j].count = r1 - r0;
        if (kind == VAR) {
            q[j].mean = a[j];
            q[j].m2 = b[j];
        } else if (kind == MAX || kind == MIN) {
            if (r1 > r0) {
                q[j].ext = a[j];
                q[j].arg = arg[j];
            }
        } else {
            q[j].acc = a[j];
        }
    }
    return 1;
}

/* ---- combining and storing ----------------------------------------------------------------- */

/* Merge partial b (a later chunk of the same lane) into a. */
static void partial_merge(int op, int is_int, partial *a, const partial *b)
{
    switch (op) {
    case PIVQ_SUM:
    case PIVQ_MEAN:
        a->acc += b->acc;
        a->iacc = (int64_t)((uint64_t)a->iacc + (uint64_t)b->iacc);
        break;
    case PIVQ_PROD:
        a->acc *= b->acc;
        a->iacc = (int64_t)((uint64_t)a->iacc * (uint64_t)b->iacc);
        break;
    case PIVQ_VAR: var_merge(a, b->count, b->mean, b->m2); return;
    case PIVQ_NORM:
        a->acc += b->acc;
        if ((b->ext > a->ext || b->ext != b->ext) && a->ext == a->ext) a->ext = b->ext;
        break;
    default: {
        if (b->arg < 0) break;
        int mx = wants_max(op), take;
        if (is_int)
            take = a->arg < 0 || (mx ? b->iext > a->iext : b->iext < a->iext);
        else
            take = f_better(mx, b->ext, a->ext, a->arg);
        if (take) {
            a->ext = b->ext;
            a->iext = b->iext;
            a->arg = b->arg;
        }
    }
    }
    a->count += b->count;
}

/* Write the final value of a lane of length R into out[i] (out has the result dtype). */
static void partial_store(int op, int is_int, const partial *q, int64_t R, double param, void *out,
                          int64_t i)
{
    double v;
    switch (op) {
    case PIVQ_SUM:
    case PIVQ_PROD:
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
    case PIVQ_ARGMAX:
    case PIVQ_ARGMIN: ((int64_t *)out)[i] = q->arg; return;
    default: /* max, min */
        if (is_int) {
            ((int64_t *)out)[i] = q->iext;
            return;
        }
        v = q->ext;
    }
    ((float *)out)[i] = (float)v;
}

/* ---- the driver -------------------------------------------------------------------------- */

typedef struct reduce_plan {
    int op, is_int;
    double param;
    const void *x; /* contiguous (outer, R, inner) */
    int64_t outer, R, inner, nout;
    int64_t nblk, bsize; /* column blocks (row mode) or 1 lane each (lane mode) */
    int64_t nchunk;      /* pieces each lane is cut into */
} reduce_plan;

/* Compute work unit u = (group g, chunk c): the partials of the lanes of group g over chunk c
   of R, into q[0..m); returns m and the first output index. */
static int64_t reduce_unit(const reduce_plan *pl, int64_t u, partial *q, int64_t *first_out)
{
    int64_t c = u % pl->nchunk, g = u / pl->nchunk;
    int64_t r0 = pl->R * c / pl->nchunk, r1 = pl->R * (c + 1) / pl->nchunk;
    if (pl->inner == 1) { /* lane mode: group g is lane g */
        *first_out = g;
        if (pl->is_int)
            q[0] =
                lane_i64(pl->op, (const int64_t *)pl->x + g * pl->R + r0, r1 - r0, pl->param, r0);
        else
            q[0] = lane_f32(pl->op, (const float *)pl->x + g * pl->R + r0, r1 - r0, pl->param, r0);
        return 1;
    }
    int64_t o = g / pl->nblk, b = g % pl->nblk;
    int64_t j0 = b * pl->bsize, m = pl->inner - j0 < pl->bsize ? pl->inner - j0 : pl->bsize;
    for (int64_t j = 0; j < m; j++)
        q[j] = partial_empty(pl->op);
    int64_t at = (o * pl->R + r0) * pl->inner + j0;
    if (pl->is_int)
        rows_i64(pl->op, q, m, (const int64_t *)pl->x + at, r0, r1, pl->inner, pl->param);
    else if (!rows_f32_soa(pl->op, q, m, (const float *)pl->x + at, r0, r1, pl->inner, pl->param))
        rows_f32(pl->op, q, m, (const float *)pl->x + at, r0, r1, pl->inner, pl->param);
    *first_out = o * pl->inner + j0;
    return m;
}

pivq_tensor *pivq_reduce_nograd(const pivq_tensor *x, int op, int dim, int keepdim, double param)
{
    if (op < 0 || op >= PIVQ_REDUCE_COUNT) {
        pivq_set_error("reduce: unknown op %d", op);
        return NULL;
    }
    const char *fname = reduce_names[op];
    if (pivq_check_tensor(fname, "input", x)) return NULL;
    char buf[160];
    if (dim < -1 || dim >= x->ndim) {
        pivq_set_error("%s: dim %d out of range for a tensor of shape %s", fname, dim,
                       pivq_shape_str(x, buf, sizeof buf));
        return NULL;
    }
    if (op == PIVQ_NORM && !(param > 0)) {
        pivq_set_error("norm: p must be positive, got %g", param);
        return NULL;
    }
    if (op == PIVQ_VAR && !(param >= 0 && isfinite(param))) {
        pivq_set_error("var: the correction must be finite and >= 0, got %g", param);
        return NULL;
    }
    int64_t R = dim < 0 ? pivq_numel(x) : x->shape[dim];
    if (R == 0 && is_extremum(op)) {
        pivq_set_error("%s: cannot reduce over an empty dimension (input shape %s)", fname,
                       pivq_shape_str(x, buf, sizeof buf));
        return NULL;
    }
    int is_int = x->scalar_type != PIVQ_FLOAT32;
    int out_dtype;
    switch (op) {
    case PIVQ_SUM:
    case PIVQ_PROD:
    case PIVQ_RMAX:
    case PIVQ_RMIN: out_dtype = is_int ? PIVQ_INT64 : PIVQ_FLOAT32; break;
    case PIVQ_ARGMAX:
    case PIVQ_ARGMIN: out_dtype = PIVQ_INT64; break;
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
    pivq_tensor *xc = is_int && x->scalar_type != PIVQ_INT64 ? pivq_to_dtype_nograd(x, PIVQ_INT64)
                                                             : pivq_contiguous_nograd(x);
    pivq_tensor *out = xc ? pivq_empty(out_dtype, ond, osize) : NULL;
    if (!out) {
        pivq_tensor_release(xc);
        return NULL;
    }
    reduce_plan pl = {op, is_int, param, pivq_data(xc), 1, R, 1, 0, 1, 1, 1};
    if (dim >= 0) {
        for (int i = 0; i < dim; i++)
            pl.outer *= x->shape[i];
        for (int i = dim + 1; i < x->ndim; i++)
            pl.inner *= x->shape[i];
    }
    pl.nout = pl.outer * pl.inner;
    void *o = pivq_data(out);
    if (pl.nout == 0) goto done;
    if (pl.inner > 1) {
        pl.bsize = REDUCE_BLOCK;
        pl.nblk = (pl.inner + REDUCE_BLOCK - 1) / REDUCE_BLOCK;
    }
    int64_t groups = pl.inner == 1 ? pl.outer : pl.outer * pl.nblk;
    int nth = pivq_threads_for(pl.nout * (R > 0 ? R : 1));
    /* Too few groups to keep every thread busy: cut each lane into chunks as well. */
    if (groups < nth && R > 1) {
        int64_t want = (nth + groups - 1) / groups;
        pl.nchunk = want < R ? want : R;
    }
    int64_t units = groups * pl.nchunk;
    if (pl.nchunk == 1 && nth == 1) {
        /* serial: no OpenMP region at all (its set-up dominates a small reduction) */
        partial q[REDUCE_BLOCK];
        for (int64_t u = 0; u < units; u++) {
            int64_t first, m = reduce_unit(&pl, u, q, &first);
            for (int64_t j = 0; j < m; j++)
                partial_store(op, is_int, &q[j], R, param, o, first + j);
        }
    } else if (pl.nchunk == 1) {
#pragma omp parallel num_threads(nth)
        {
            partial q[REDUCE_BLOCK];
#pragma omp for schedule(static)
            for (int64_t u = 0; u < units; u++) {
                int64_t first, m = reduce_unit(&pl, u, q, &first);
                for (int64_t j = 0; j < m; j++)
                    partial_store(op, is_int, &q[j], R, param, o, first + j);
            }
        }
    } else {
        /* partials of every chunk, merged in chunk order below (deterministic) */
        partial *scratch = malloc(sizeof(partial) * (size_t)(pl.nchunk * pl.nout));
        if (!scratch) {
            pivq_set_error("%s: out of memory", fname);
            pivq_tensor_release(out);
            pivq_tensor_release(xc);
            return NULL;
        }
#pragma omp parallel num_threads(nth) if (nth > 1)
        {
            partial q[REDUCE_BLOCK];
#pragma omp for schedule(static)
            for (int64_t u = 0; u < units; u++) {
                int64_t first, m = reduce_unit(&pl, u, q, &first), c = u % pl.nchunk;
                for (int64_t j = 0; j < m; j++)
                    scratch[c * pl.nout + first + j] = q[j];
            }
        }
        for (int64_t i = 0; i < pl.nout; i++) {
            for (int64_t c = 1; c < pl.nchunk; c++)
                partial_merge(op, is_int, &scratch[i], &scratch[c * pl.nout + i]);
            partial_store(op, is_int, &scratch[i], R, param, o, i);
        }
        free(scratch);
    }
done:
    pivq_tensor_release(xc);
    /* max/min keep the input's integer dtype */
    if ((op == PIVQ_RMAX || op == PIVQ_RMIN) && is_int && x->scalar_type != PIVQ_INT64) {
        pivq_tensor *r = pivq_to_dtype_nograd(out, x->scalar_type);
        pivq_tensor_release(out);
        return r;
    }
    return out;
}

/* ---- recorded form and backward -------------------------------------------------------------- */

pivq_tensor *pivq_sum_to_shape(const pivq_tensor *g, int ndim, const int64_t *shape)
{
    pivq_tensor *cur = pivq_tensor_retain((pivq_tensor *)g);
    int lead = g->ndim - ndim;
    if (lead < 0) {
        pivq_tensor_release(cur);
        pivq_set_error("sum_to_shape: gradient has fewer dims (%d) than its input (%d)", g->ndim,
                       ndim);
        return NULL;
    }
    if (lead > 0) {
        /* fold the leading (broadcast) dims into one and sum it away */
        int64_t sz[PIVQ_MAX_DIMS];
        sz[0] = 1;
        for (int i = 0; i < lead; i++)
            sz[0] *= g->shape[i];
        for (int i = 0; i < ndim; i++)
            sz[i + 1] = g->shape[lead + i];
        pivq_tensor *r = pivq_reshape_nograd(cur, ndim + 1, sz);
        pivq_tensor_release(cur);
        if (!r) return NULL;
        cur = pivq_reduce_nograd(r, PIVQ_SUM, 0, 0, 0);
        pivq_tensor_release(r);
        if (!cur) return NULL;
        if (ndim == 0) return cur;
    }
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 1 && cur->shape[i] != 1) {
            pivq_tensor *r = pivq_reduce_nograd(cur, PIVQ_SUM, i, 1, 0);
            pivq_tensor_release(cur);
            if (!r) return NULL;
            cur = r;
        }
    }
    return cur;
}

pivq_tensor *pivq_reduce(const pivq_tensor *x, int op, int dim, int keepdim, double param)
{
    pivq_tensor *y = pivq_reduce_nograd(x, op, dim, keepdim, param);
    if (!y || op == PIVQ_ARGMAX || op == PIVQ_ARGMIN || !pivq_ag_wants(1, &x)) return y;
    pivq_node *nd = pivq_ag_record(PIVQ_GOP_REDUCE, y, 1, &x);
    if (!nd) return pivq_ag_finish(y, NULL, -1);
    nd->ip[0] = op;
    nd->ip[1] = dim;
    nd->fp[0] = param;
    int rc = 0;
    if (op != PIVQ_SUM && op != PIVQ_MEAN) rc = pivq_ag_save(nd, 0, x) || pivq_ag_save(nd, 1, y);
    return pivq_ag_finish(y, nd, rc);
}

/* View t (shape of the reduced result) with the reduced dims kept as size 1. */
static pivq_tensor *keepdim_view(const pivq_tensor *t, const pivq_edge *in, int dim)
{
    int64_t sz[PIVQ_MAX_DIMS];
    for (int i = 0; i < in->ndim; i++)
        sz[i] = (dim < 0 || i == dim) ? 1 : in->shape[i];
    return pivq_reshape_nograd(t, in->ndim, sz);
}

int pivq_reduce_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    int op = (int)n->ip[0], dim = (int)n->ip[1];
    double p = n->fp[0];
    const pivq_edge *in = &n->in[0];
    const pivq_tensor *x = n->saved[0];
    int64_t count = 1; /* elements reduced into each output */
    for (int i = 0; i < in->ndim; i++)
        if (dim < 0 || i == dim) count *= in->shape[i];
    pivq_tensor *t[8] = {0};
    pivq_tensor *r = NULL;
    pivq_tensor *gk = keepdim_view(g, in, dim); /* g with size-1 reduced dims */
    pivq_tensor *yk = n->saved[1] ? keepdim_view(n->saved[1], in, dim) : NULL;
    if (!gk || (n->saved[1] && !yk)) goto done;
    switch (op) {
    case PIVQ_SUM: r = pivq_expand_nograd(gk, in->ndim, in->shape); break;
    case PIVQ_MEAN:
        if ((t[0] = pivq_binary_scalar_nograd(gk, 1.0 / (double)(count ? count : 1), PIVQ_MUL, 0)))
            r = pivq_expand_nograd(t[0], in->ndim, in->shape);
        break;
    case PIVQ_VAR: /* d var / dx = 2 (x - mean) / (count - correction) */
        if ((t[0] = pivq_reduce_nograd(x, PIVQ_MEAN, dim, 1, 0)) &&
            (t[1] = pivq_binary_nograd(x, t[0], PIVQ_SUB)) &&
            (t[2] = pivq_binary_scalar_nograd(gk, 2.0 / ((double)count - p), PIVQ_MUL, 0)))
            r = pivq_binary_nograd(t[1], t[2], PIVQ_MUL);
        break;
    case PIVQ_RMAX:
    case PIVQ_RMIN: /* to the extremal elements, shared evenly on ties */
        if ((t[0] = pivq_compare(x, yk, PIVQ_EQ)) &&
            (t[1] = pivq_to_dtype_nograd(t[0], PIVQ_FLOAT32)) &&
            (t[2] = pivq_reduce_nograd(t[1], PIVQ_SUM, dim, 1, 0)) &&
            (t[3] = pivq_binary_nograd(gk, t[2], PIVQ_DIV)))
            r = pivq_binary_nograd(t[1], t[3], PIVQ_MUL);
        break;
    case PIVQ_NORM:
        if (isinf(p)) { /* like max of |x| */
            if ((t[0] = pivq_unary_nograd(x, PIVQ_ABS)) &&
                (t[1] = pivq_compare(t[0], yk, PIVQ_EQ)) &&
                (t[2] = pivq_to_dtype_nograd(t[1], PIVQ_FLOAT32)) &&
                (t[3] = pivq_reduce_nograd(t[2], PIVQ_SUM, dim, 1, 0)) &&
                (t[4] = pivq_binary_nograd(gk, t[3], PIVQ_DIV)) &&
                (t[5] = pivq_unary_nograd(x, PIVQ_SIGN)) &&
                (t[6] = pivq_binary_nograd(t[2], t[5], PIVQ_MUL)))
                r = pivq_binary_nograd(t[6], t[4], PIVQ_MUL);
        } else { /* d ||x||_p / dx = sign(x) |x|^(p-1) / ||x||^(p-1); 0 where the norm is 0 */
            if ((t[0] = pivq_unary_nograd(x, PIVQ_ABS)) &&
                (t[1] = pivq_binary_scalar_nograd(t[0], p - 1.0, PIVQ_POW, 0)) &&
                (t[2] = pivq_unary_nograd(x, PIVQ_SIGN)) &&
                (t[3] = pivq_binary_nograd(t[1], t[2], PIVQ_MUL)) &&
                (t[4] = pivq_binary_scalar_nograd(yk, p - 1.0, PIVQ_POW, 0)) &&
                (t[5] = pivq_binary_nograd(gk, t[4], PIVQ_DIV)) &&
                (t[6] = pivq_compare_scalar(yk, 0.0, PIVQ_EQ)) &&
                (t[7] = pivq_masked_fill_nograd(t[5], t[6], 0.0)))
                r = pivq_binary_nograd(t[3], t[7], PIVQ_MUL);
        }
        break;
    case PIVQ_PROD: /* y / x: assumes no zero in x (documented in the Lua API) */
        if ((t[0] = pivq_binary_nograd(gk, yk, PIVQ_MUL)))
            r = pivq_binary_nograd(t[0], x, PIVQ_DIV);
        break;
    default: pivq_set_error("backward: reduction %d has no derivative", op);
    }
done:
    pivq_drop(8, t);
    pivq_tensor_release(gk);
    pivq_tensor_release(yk);
    if (!r) return -1;
    gin[0] = r;
    return 0;
}
