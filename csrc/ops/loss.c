/* ops/loss.c — losses: mse, l1, binary cross-entropy with logits, hinge (pointwise, one
 * kernel pair with a switch), and cross-entropy over class logits with label indices.
 * reduction: PIVQ_REDUCTION_NONE (per element), _MEAN (0-dim), _SUM (0-dim).
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

static const char *POINTWISE_NAMES[] = {"mse_loss", "l1_loss", "bce_with_logits", "hinge_loss"};

/* loss of one element x against target t; kind in PIVQ_LOSS_*, m the hinge margin */
static inline float pointwise(int kind, float x, float t, float m)
{
    switch (kind) {
    case PIVQ_LOSS_MSE: return (x - t) * (x - t);
    case PIVQ_LOSS_L1: return fabsf(x - t);
    case PIVQ_LOSS_BCE_LOGITS: /* max(x, 0) - x t + log(1 + exp(-|x|)): stable for any x */
        return (x > 0 ? x : 0.0f) - x * t + log1pf(expf(-fabsf(x)));
    default: { /* hinge: max(0, m - t x), t in {-1, 1} */
        float v = m - t * x;
        return v > 0 ? v : 0.0f;
    }
    }
}

/* d loss / dx and d loss / dt of one element */
static inline void pointwise_grad(int kind, float x, float t, float m, float *dx, float *dt)
{
    switch (kind) {
    case PIVQ_LOSS_MSE:
        *dx = 2.0f * (x - t);
        *dt = -*dx;
        break;
    case PIVQ_LOSS_L1:
        *dx = x > t ? 1.0f : (x < t ? -1.0f : 0.0f);
        *dt = -*dx;
        break;
    case PIVQ_LOSS_BCE_LOGITS:
        *dx = 1.0f / (1.0f + expf(-x)) - t;
        *dt = -x;
        break;
    default: {
        int active = m - t * x > 0;
        *dx = active ? -t : 0.0f;
        *dt = active ? -x : 0.0f;
    }
    }
}

static int reduction_ok(const char *fname, int reduction)
{
    if (reduction < PIVQ_REDUCTION_NONE || reduction > PIVQ_REDUCTION_SUM)
        return pivq_set_error("%s: reduction must be none (0), mean (1) or sum (2), got %d", fname,
                              reduction);
    return 0;
}

pivq_tensor *pivq_pointwise_loss(const pivq_tensor *x, const pivq_tensor *target, int kind,
                                 int reduction, double margin)
{
    if (kind < 0 || kind > PIVQ_LOSS_HINGE) {
        pivq_set_error("loss: unknown kind %d", kind);
        return NULL;
    }
    const char *fname = POINTWISE_NAMES[kind];
    if (check_f32(fname, "input", x) || check_f32(fname, "target", target) ||
        reduction_ok(fname, reduction))
        return NULL;
    char a[160], b[160];
    if (x->ndim != target->ndim || memcmp(x->shape, target->shape, sizeof(int64_t) * x->ndim)) {
        pivq_set_error("%s: input %s and target %s must have the same shape", fname,
                       pivq_shape_str(x, a, sizeof a), pivq_shape_str(target, b, sizeof b));
        return NULL;
    }
    pivq_tensor *xc = pivq_contiguous_nograd(x), *tc = pivq_contiguous_nograd(target), *y = NULL;
    if (!xc || !tc) goto done;
    int64_t N = pivq_numel(x);
    const float *xp = pivq_data(xc), *tp = pivq_data(tc);
    float m = (float)margin;
    if (reduction == PIVQ_REDUCTION_NONE) {
        y = pivq_empty(PIVQ_FLOAT32, x->ndim, x->shape);
        if (!y) goto done;
        float *yp = pivq_data(y);
        for (int64_t i = 0; i < N; i++)
            yp[i] = pointwise(kind, xp[i], tp[i], m);
    } else {
        y = pivq_empty(PIVQ_FLOAT32, 0, NULL);
        if (!y) goto done;
        double s = 0.0;
        enum { MAX_BLOCKS = 256 };
        int nt = pivq_threads_for(N * 4);
        if (nt > MAX_BLOCKS) nt = MAX_BLOCKS;
        /* one partial sum per block of the range, added in block order: a reduction clause
           adds the threads' sums in the order they finish, so with 3 or more threads the
           loss's last bit would depend on timing (README, "Determinism") */
        double part[MAX_BLOCKS];
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int blk = 0; blk < nt; blk++) {
            double p = 0.0;
            for (int64_t i = N * blk / nt; i < N * (blk + 1) / nt; i++)
                p += pointwise(kind, xp[i], tp[i], m);
            part[blk] = p;
        }
        for (int blk = 0; blk < nt; blk++)
            s += part[blk];
        *(float *)pivq_data(y) =
            (float)(reduction == PIVQ_REDUCTION_MEAN ? (N ? s / (double)N : NAN) : s);
    }
    const pivq_tensor *in[2] = {x, target};
    if (pivq_ag_wants(2, in)) {
        pivq_node *nd = pivq_ag_record(PIVQ_GOP_POINTWISE_LOSS, y, 2, in);
        if (nd) {
            nd->ip[0] = kind;
            nd->ip[1] = reduction;
            nd->fp[0] = margin;
        }
        y = pivq_ag_finish(y, nd, nd ? (pivq_ag_save(nd, 0, xc) || pivq_ag_save(nd, 1, tc)) : -1);
    }
done:
    pivq_tensor_release(xc);
    pivq_tensor_release(tc);
    return y;
}

int pivq_pointwise_loss_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    int kind = (int)n->ip[0], reduction = (int)n->ip[1];
    float m = (float)n->fp[0];
    const pivq_edge *ex = &n->in[0];
    int64_t N = pivq_numel(n->saved[0]);
    const float *xp = pivq_data(n->saved[0]), *tp = pivq_data(n->saved[1]);
    const float *gp = pivq_data(g); /* dloss: x's shape (none) or a scalar */
    float scale = reduction == PIVQ_REDUCTION_NONE   ? 0.0f
                  : reduction == PIVQ_REDUCTION_MEAN ? gp[0] / (float)(N ? N : 1)
                                                     : gp[0];
    float *dx = NULL, *dt = NULL;
    for (int k = 0; k < 2; k++) {
        if (!pivq_ag_needs(n, k)) continue;
        gin[k] = pivq_empty(PIVQ_FLOAT32, ex->ndim, ex->shape);
        if (!gin[k]) return -1;
        if (k == 0)
            dx = pivq_data(gin[0]);
        else
            dt = pivq_data(gin[1]);
    }
    int nt = pivq_threads_for(N * 4);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t i = 0; i < N; i++) {
        float a, b, s = reduction == PIVQ_REDUCTION_NONE ? gp[i] : scale;
        pointwise_grad(kind, xp[i], tp[i], m, &a, &b);
        if (dx) dx[i] = s * a;
        if (dt) dt[i] = s * b;
    }
    return 0;
}

/* ---- cross-entropy ------------------------------------------------------------------------ */

/* logits (N, C, d...) viewed as (N, C, S); target int (N, d...) of class indices 0..C-1, or
   ignore_index (skipped, not counted in the mean). Saves log-probabilities for the backward:
   d loss / d logits = softmax - onehot(target), per counted element. */
pivq_tensor *pivq_cross_entropy(const pivq_tensor *logits, const pivq_tensor *target, int reduction,
                                int64_t ignore_index)
{
    if (check_f32("cross_entropy", "logits", logits) ||
        pivq_check_tensor("cross_entropy", "target", target) ||
        reduction_ok("cross_entropy", reduction))
        return NULL;
    char a[160], b[160];
    int bad = logits->ndim < 2 || target->ndim != logits->ndim - 1 ||
              (target->scalar_type != PIVQ_INT64 && target->scalar_type != PIVQ_INT32);
    for (int i = 0; !bad && i < target->ndim; i++)
        if (target->shape[i] != logits->shape[i ? i + 1 : 0]) bad = 1;
    if (bad) {
        pivq_set_error("cross_entropy: logits %s (N, C, ...) need integer targets (N, ...), got "
                       "%s %s",
                       pivq_shape_str(logits, a, sizeof a), pivq_shape_str(target, b, sizeof b),
                       pivq_dtype_name(target->scalar_type));
        return NULL;
    }
    int64_t N = logits->shape[0], C = logits->shape[1], S = 1;
    for (int i = 2; i < logits->ndim; i++)
        S *= logits->shape[i];
    pivq_tensor *tc = pivq_to_dtype_nograd(target, PIVQ_INT64);
    pivq_tensor *logp = pivq_log_softmax_nograd(logits, 1);
    pivq_tensor *y = NULL;
    if (!tc || !logp) goto done;
    const int64_t *tp = pivq_data(tc);
    const float *lp = pivq_data(logp); /* (N, C, S) */
    int64_t counted = 0;
    for (int64_t i = 0; i < N * S; i++) {
        if (tp[i] == ignore_index) continue;
        if (tp[i] < 0 || tp[i] >= C) {
            pivq_set_error("cross_entropy: target %lld out of range for %lld classes",
                           (long long)tp[i], (long long)C);
            goto done;
        }
        counted++;
    }
    if (reduction == PIVQ_REDUCTION_NONE) {
        y = pivq_empty(PIVQ_FLOAT32, target->ndim, target->shape);
        if (!y) goto done;
        float *yp = pivq_data(y);
        for (int64_t n = 0; n < N; n++)
            for (int64_t s = 0; s < S; s++) {
                int64_t t = tp[n * S + s];
                yp[n * S + s] = t == ignore_index ? 0.0f : -lp[(n * C + t) * S + s];
            }
    } else {
        y = pivq_empty(PIVQ_FLOAT32, 0, NULL);
        if (!y) goto done;
        double sum = 0.0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t s = 0; s < S; s++) {
                int64_t t = tp[n * S + s];
                if (t != ignore_index) sum -= lp[(n * C + t) * S + s];
            }
        /* mean over counted elements: all ignored gives NaN, as PyTorch */
        *(float *)pivq_data(y) =
            (float)(reduction == PIVQ_REDUCTION_MEAN ? (counted ? sum / (double)counted : NAN)
                                                     : sum);
    }
    if (pivq_ag_wants(1, &logits)) {
        const pivq_tensor *in[1] = {logits};
        pivq_node *nd = pivq_ag_record(PIVQ_GOP_CROSS_ENTROPY, y, 1, in);
        if (nd) {
            nd->ip[0] = reduction;
            nd->ip[1] = ignore_index;
            nd->ip[2] = counted;
        }
        y = pivq_ag_finish(y, nd, nd ? (pivq_ag_save(nd, 0, logp) || pivq_ag_save(nd, 1, tc)) : -1);
    }
done:
    pivq_tensor_release(tc);
    pivq_tensor_release(logp);
    return y;
}

int pivq_cross_entropy_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    const pivq_edge *ex = &n->in[0];
    int reduction = (int)n->ip[0];
    int64_t ignore = n->ip[1], counted = n->ip[2];
    int64_t N = ex->shape[0], C = ex->shape[1], S = 1;
    for (int i = 2; i < ex->ndim; i++)
        S *= ex->shape[i];
    const float *lp = pivq_data(n->saved[0]);   /* log-probabilities (N, C, S) */
    const int64_t *tp = pivq_data(n->saved[1]); /* targets (N, S) */
    const float *gp = pivq_data(g);             /* dloss: (N, S) or scalar */
    gin[0] = pivq_empty(PIVQ_FLOAT32, ex->ndim, ex->shape);
    if (!gin[0]) return -1;
    float *dx = pivq_data(gin[0]);
    float scale = reduction == PIVQ_REDUCTION_MEAN ? gp[0] / (float)(counted ? counted : 1) : gp[0];
    int nt = pivq_threads_for(N * C * S * 2);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t n_ = 0; n_ < N; n_++)
        for (int64_t s = 0; s < S; s++) {
            int64_t t = tp[n_ * S + s];
            float w =
                t == ignore ? 0.0f : (reduction == PIVQ_REDUCTION_NONE ? gp[n_ * S + s] : scale);
            for (int64_t c = 0; c < C; c++) {
                int64_t k = (n_ * C + c) * S + s;
                dx[k] = w * (expf(lp[k]) - (c == t ? 1.0f : 0.0f));
            }
        }
    return 0;
}
