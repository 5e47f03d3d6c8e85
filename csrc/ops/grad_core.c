/* ops/grad_core.c — autograd for the tensor core's ops: the recording entry points
 * (pivq_ag_*, same arguments as the plain ops) and their backward functions.
 *
 * Backward of the elementwise ops with a simple derivative runs one fused loop over
 * contiguous buffers; the rest (broadcasting binary ops, reductions, views) are compositions
 * of the core's own kernels, which are already vectorised and threaded.
 */
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Release a list of temporaries (NULL entries are fine). */
static void drop(int n, pivq_tensor **ts)
{
    for (int i = 0; i < n; i++) {
        pivq_tensor_release(ts[i]);
        ts[i] = NULL;
    }
}

/* A recorded result must be a fresh header: ops such as contiguous may return their input. */
static pivq_tensor *fresh(pivq_tensor *out, const pivq_tensor *in)
{
    if (out != in) return out;
    pivq_tensor *v = pivq_view_alloc(out);
    pivq_tensor_release(out);
    return v;
}

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
        pivq_tensor *r = pivq_reshape(cur, ndim + 1, sz);
        pivq_tensor_release(cur);
        if (!r) return NULL;
        cur = pivq_reduce(r, PIVQ_SUM, 0, 0, 0);
        pivq_tensor_release(r);
        if (!cur) return NULL;
        if (ndim == 0) return cur;
    }
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 1 && cur->shape[i] != 1) {
            pivq_tensor *r = pivq_reduce(cur, PIVQ_SUM, i, 1, 0);
            pivq_tensor_release(cur);
            if (!r) return NULL;
            cur = r;
        }
    }
    return cur;
}

/* g (the output's shape) broadcast back to each input shape. */
static pivq_tensor *to_input(pivq_node *n, int i, pivq_tensor *full)
{
    if (!full) return NULL;
    pivq_tensor *r = pivq_sum_to_shape(full, n->in[i].ndim, n->in[i].shape);
    pivq_tensor_release(full);
    return r;
}

/* ---- unary ---------------------------------------------------------------------------------- */

pivq_tensor *pivq_ag_unary(const pivq_tensor *x, int op)
{
    pivq_tensor *y = pivq_unary(x, op);
    if (!y || !pivq_ag_wants(1, &x)) return y;
    pivq_node *nd = pivq_ag_record(PIVQ_GOP_UNARY, y, 1, &x);
    if (!nd) return pivq_ag_finish(y, NULL, -1);
    nd->ip[0] = op;
    /* exp, sqrt, rsqrt, tanh, sigmoid, relu differentiate through their result */
    int rc = 0;
    switch (op) {
    case PIVQ_EXP:
    case PIVQ_SQRT:
    case PIVQ_RSQRT:
    case PIVQ_TANH:
    case PIVQ_SIGMOID:
    case PIVQ_RELU: rc = pivq_ag_save(nd, 1, y); break;
    case PIVQ_NEG:
    case PIVQ_SIGN:
    case PIVQ_FLOOR:
    case PIVQ_CEIL:
    case PIVQ_ROUND: break;
    default: rc = pivq_ag_save(nd, 0, x); break;
    }
    return pivq_ag_finish(y, nd, rc);
}

/* Range kernels of the unary derivatives: o = dy * op'(x), from x and/or y = op(x). Plain
   loops over restrict pointers, one per op, so that each vectorises. */
typedef void (*unary_grad_kernel)(const float *restrict x, const float *restrict y,
                                  const float *restrict g, float *restrict o, int64_t n);
#define UG_KERNEL(NAME, EXPR)                                                                      \
    static void NAME(const float *restrict x, const float *restrict y, const float *restrict g,    \
                     float *restrict o, int64_t n)                                                 \
    {                                                                                              \
        (void)x;                                                                                   \
        (void)y;                                                                                   \
        for (int64_t i = 0; i < n; i++)                                                            \
            o[i] = (EXPR);                                                                         \
    }
UG_KERNEL(neg_grad, -g[i])
UG_KERNEL(abs_grad, x[i] > 0 ? g[i] : (x[i] < 0 ? -g[i] : 0.0f))
UG_KERNEL(exp_grad, g[i] * y[i])
UG_KERNEL(log_grad, g[i] / x[i])
UG_KERNEL(sqrt_grad, g[i] * 0.5f / y[i])
UG_KERNEL(rsqrt_grad, -0.5f * g[i] * y[i] * y[i] * y[i])
UG_KERNEL(sin_grad, g[i] * cosf(x[i]))
UG_KERNEL(cos_grad, -g[i] * sinf(x[i]))
UG_KERNEL(tanh_grad, g[i] * (1.0f - y[i] * y[i]))
UG_KERNEL(sigmoid_grad, g[i] * y[i] * (1.0f - y[i]))
UG_KERNEL(relu_grad, y[i] > 0 ? g[i] : 0.0f)
UG_KERNEL(zero_grad, 0.0f) /* sign, floor, ceil, round: piecewise constant */
#undef UG_KERNEL

typedef struct unary_grad_ctx {
    unary_grad_kernel k;
    const float *x, *y, *g;
    float *o;
} unary_grad_ctx;

static void unary_grad_range(int64_t lo, int64_t hi, void *ctx)
{
    const unary_grad_ctx *c = ctx;
    c->k(c->x ? c->x + lo : NULL, c->y ? c->y + lo : NULL, c->g + lo, c->o + lo, hi - lo);
}

static void unary_grad_run(int op, const float *x, const float *y, const float *g, float *o,
                           int64_t n)
{
    unary_grad_kernel k;
    switch (op) {
    case PIVQ_NEG: k = neg_grad; break;
    case PIVQ_ABS: k = abs_grad; break;
    case PIVQ_EXP: k = exp_grad; break;
    case PIVQ_LOG: k = log_grad; break;
    case PIVQ_SQRT: k = sqrt_grad; break;
    case PIVQ_RSQRT: k = rsqrt_grad; break;
    case PIVQ_SIN: k = sin_grad; break;
    case PIVQ_COS: k = cos_grad; break;
    case PIVQ_TANH: k = tanh_grad; break;
    case PIVQ_SIGMOID: k = sigmoid_grad; break;
    case PIVQ_RELU: k = relu_grad; break;
    default: k = zero_grad; break;
    }
    unary_grad_ctx c = {k, x, y, g, o};
    pivq_parallel_range(n, n, unary_grad_range, &c);
}

int pivq_unary_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    int op = (int)n->ip[0];
    pivq_tensor *xs = n->saved[0] ? pivq_contiguous(n->saved[0]) : NULL;
    pivq_tensor *ys = n->saved[1] ? pivq_contiguous(n->saved[1]) : NULL;
    if ((n->saved[0] && !xs) || (n->saved[1] && !ys)) goto fail;
    pivq_tensor *out = pivq_empty(PIVQ_FLOAT32, g->ndim, g->shape); /* dx: x's shape */
    if (!out) goto fail;
    const float *gp = pivq_data(g);             /* dy: y's shape (== x's) */
    const float *x = xs ? pivq_data(xs) : NULL; /* x */
    const float *y = ys ? pivq_data(ys) : NULL; /* y = op(x) */
    float *o = pivq_data(out);
    unary_grad_run(op, x, y, gp, o, pivq_numel(g));
    pivq_tensor_release(xs);
    pivq_tensor_release(ys);
    gin[0] = out;
    return 0;
fail:
    pivq_tensor_release(xs);
    pivq_tensor_release(ys);
    return -1;
}

pivq_tensor *pivq_ag_clamp(const pivq_tensor *x, double lo, double hi)
{
    pivq_tensor *y = pivq_clamp(x, lo, hi);
    if (!y || !pivq_ag_wants(1, &x)) return y;
    pivq_node *nd = pivq_ag_record(PIVQ_GOP_CLAMP, y, 1, &x);
    if (!nd) return pivq_ag_finish(y, NULL, -1);
    nd->fp[0] = lo;
    nd->fp[1] = hi;
    return pivq_ag_finish(y, nd, pivq_ag_save(nd, 0, x));
}

int pivq_clamp_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    pivq_tensor *xs = pivq_contiguous(n->saved[0]);
    if (!xs) return -1;
    pivq_tensor *out = pivq_empty(PIVQ_FLOAT32, g->ndim, g->shape);
    if (!out) {
        pivq_tensor_release(xs);
        return -1;
    }
    const float *x = pivq_data(xs), *gp = pivq_data(g);
    float *o = pivq_data(out);
    double lo = n->fp[0], hi = n->fp[1];
    int64_t N = pivq_numel(g);
    /* the gradient passes where the input was inside [lo, hi] (bounds included, as PyTorch) */
    for (int64_t i = 0; i < N; i++)
        o[i] = (x[i] >= lo && x[i] <= hi) ? gp[i] : 0.0f;
    pivq_tensor_release(xs);
    gin[0] = out;
    return 0;
}

/* ---- binary ---------------------------------------------------------------------------------- */

pivq_tensor *pivq_ag_binary(const pivq_tensor *a, const pivq_tensor *b, int op)
{
    pivq_tensor *y = pivq_binary(a, b, op);
    const pivq_tensor *in[2] = {a, b};
    if (!y || !pivq_ag_wants(2, in)) return y;
    pivq_node *nd = pivq_ag_record(PIVQ_GOP_BINARY, y, 2, in);
    if (!nd) return pivq_ag_finish(y, NULL, -1);
    nd->ip[0] = op;
    int rc = 0;
    if (op != PIVQ_ADD && op != PIVQ_SUB) rc = pivq_ag_save(nd, 0, a) || pivq_ag_save(nd, 1, b);
    if (!rc && op == PIVQ_POW) rc = pivq_ag_save(nd, 2, y);
    return pivq_ag_finish(y, nd, rc);
}

/* Share of the gradient of max(a, b) going to a: 1 where a wins, 1/2 on ties (PyTorch). */
static pivq_tensor *winner_share(const pivq_tensor *a, const pivq_tensor *b, int op_gt)
{
    pivq_tensor *t[4] = {0};
    pivq_tensor *r = NULL;
    if ((t[0] = pivq_compare(a, b, op_gt)) && (t[1] = pivq_compare(a, b, PIVQ_EQ)) &&
        (t[2] = pivq_to_dtype(t[0], PIVQ_FLOAT32)) &&
        (t[3] = pivq_binary_scalar(t[1], 0.5, PIVQ_MUL, 0)))
        r = pivq_binary(t[2], t[3], PIVQ_ADD);
    drop(4, t);
    return r;
}

int pivq_binary_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    int op = (int)n->ip[0];
    const pivq_tensor *a = n->saved[0], *b = n->saved[1], *y = n->saved[2];
    pivq_tensor *t[6] = {0};
    pivq_tensor *ga = NULL, *gb = NULL; /* full (broadcast) shape, reduced by to_input */
    int na = pivq_ag_needs(n, 0), nb = pivq_ag_needs(n, 1);
    switch (op) {
    case PIVQ_ADD:
    case PIVQ_SUB:
        if (na) ga = pivq_tensor_retain((pivq_tensor *)g);
        if (nb)
            gb = op == PIVQ_ADD ? pivq_tensor_retain((pivq_tensor *)g) : pivq_unary(g, PIVQ_NEG);
        break;
    case PIVQ_MUL:
        if (na) ga = pivq_binary(g, b, PIVQ_MUL);
        if (nb) gb = pivq_binary(g, a, PIVQ_MUL);
        break;
    case PIVQ_DIV: /* d(a/b)/db = -a/b^2 */
        if (na) ga = pivq_binary(g, b, PIVQ_DIV);
        if (nb && (t[0] = pivq_binary(b, b, PIVQ_MUL)) && (t[1] = pivq_binary(a, t[0], PIVQ_DIV)) &&
            (t[2] = pivq_binary(g, t[1], PIVQ_MUL)))
            gb = pivq_unary(t[2], PIVQ_NEG);
        break;
    case PIVQ_MAX:
    case PIVQ_MIN:
        if ((t[0] = winner_share(a, b, op == PIVQ_MAX ? PIVQ_GT : PIVQ_LT))) {
            if (na) ga = pivq_binary(g, t[0], PIVQ_MUL);
            if (nb && (t[1] = pivq_binary_scalar(t[0], 1.0, PIVQ_SUB, 1)))
                gb = pivq_binary(g, t[1], PIVQ_MUL);
        }
        break;
    case PIVQ_POW: /* d(a^b)/da = b a^(b-1); d/db = a^b ln a (0 where a^b == 0) */
        if (na && (t[0] = pivq_binary_scalar(b, 1.0, PIVQ_SUB, 0)) &&
            (t[1] = pivq_binary(a, t[0], PIVQ_POW)) && (t[2] = pivq_binary(t[1], b, PIVQ_MUL)))
            ga = pivq_binary(g, t[2], PIVQ_MUL);
        if (nb && (t[3] = pivq_unary(a, PIVQ_LOG)) && (t[4] = pivq_binary(y, t[3], PIVQ_MUL)) &&
            (t[5] = pivq_compare_scalar(y, 0.0, PIVQ_EQ))) {
            pivq_tensor *m = pivq_masked_fill(t[4], t[5], 0.0);
            if (m) gb = pivq_binary(g, m, PIVQ_MUL);
            pivq_tensor_release(m);
        }
        break;
    default: pivq_set_error("backward: binary op %d has no derivative", op);
    }
    drop(6, t);
    int ok = (!na || ga) && (!nb || gb);
    if (ok) {
        if (na)
            ok = (gin[0] = to_input(n, 0, ga)) != NULL;
        else
            pivq_tensor_release(ga);
        if (nb)
            ok = ok && (gin[1] = to_input(n, 1, gb)) != NULL;
        else
            pivq_tensor_release(gb);
        return ok ? 0 : -1;
    }
    pivq_tensor_release(ga);
    pivq_tensor_release(gb);
    return -1;
}

pivq_tensor *pivq_ag_binary_scalar(const pivq_tensor *a, double s, int op, int scalar_first)
{
    pivq_tensor *y = pivq_binary_scalar(a, s, op, scalar_first);
    if (!y || !pivq_ag_wants(1, &a)) return y;
    pivq_node *nd = pivq_ag_record(PIVQ_GOP_BINARY_SCALAR, y, 1, &a);
    if (!nd) return pivq_ag_finish(y, NULL, -1);
    nd->ip[0] = op;
    nd->ip[1] = scalar_first;
    nd->fp[0] = s;
    int rc = 0;
    if (op != PIVQ_ADD && op != PIVQ_SUB && op != PIVQ_MUL) rc = pivq_ag_save(nd, 0, a);
    if (!rc && (op == PIVQ_POW || op == PIVQ_DIV)) rc = pivq_ag_save(nd, 1, y);
    return pivq_ag_finish(y, nd, rc);
}

int pivq_binary_scalar_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    int op = (int)n->ip[0], first = (int)n->ip[1];
    double s = n->fp[0];
    const pivq_tensor *a = n->saved[0], *y = n->saved[1];
    pivq_tensor *t[3] = {0};
    pivq_tensor *r = NULL;
    switch (op) {
    case PIVQ_ADD: r = pivq_tensor_retain((pivq_tensor *)g); break;
    case PIVQ_SUB:
        r = first ? pivq_unary(g, PIVQ_NEG) : pivq_tensor_retain((pivq_tensor *)g);
        break;
    case PIVQ_MUL: r = pivq_binary_scalar(g, s, PIVQ_MUL, 0); break;
    case PIVQ_DIV:
        if (!first) {
            r = pivq_binary_scalar(g, s, PIVQ_DIV, 0);
        } else if ((t[0] = pivq_binary(y, a, PIVQ_DIV)) &&
                   (t[1] = pivq_binary(g, t[0], PIVQ_MUL))) {
            r = pivq_unary(t[1], PIVQ_NEG); /* d(s/a)/da = -s/a^2 = -y/a */
        }
        break;
    case PIVQ_MAX:
    case PIVQ_MIN:
        if ((t[0] = pivq_compare_scalar(a, s, op == PIVQ_MAX ? PIVQ_GT : PIVQ_LT)) &&
            (t[1] = pivq_compare_scalar(a, s, PIVQ_EQ)) &&
            (t[2] = pivq_binary_scalar(t[1], 0.5, PIVQ_MUL, 0))) {
            pivq_tensor *share = pivq_binary(t[2], t[0], PIVQ_ADD);
            if (share) r = pivq_binary(g, share, PIVQ_MUL);
            pivq_tensor_release(share);
        }
        break;
    case PIVQ_POW:
        if (!first) { /* d(a^s)/da = s a^(s-1) */
            if ((t[0] = pivq_binary_scalar(a, s - 1.0, PIVQ_POW, 0)) &&
                (t[1] = pivq_binary_scalar(t[0], s, PIVQ_MUL, 0)))
                r = pivq_binary(g, t[1], PIVQ_MUL);
        } else if ((t[0] = pivq_binary_scalar(y, log(s), PIVQ_MUL, 0))) { /* d(s^a)/da */
            r = pivq_binary(g, t[0], PIVQ_MUL);
        }
        break;
    default: pivq_set_error("backward: binary op %d has no derivative", op);
    }
    drop(3, t);
    if (!r) return -1;
    gin[0] = r;
    return 0;
}

pivq_tensor *pivq_ag_where(const pivq_tensor *cond, const pivq_tensor *a, const pivq_tensor *b)
{
    pivq_tensor *y = pivq_where(cond, a, b);
    const pivq_tensor *in[3] = {cond, a, b};
    if (!y || !pivq_ag_wants(3, in)) return y;
    pivq_node *nd = pivq_ag_record(PIVQ_GOP_WHERE, y, 3, in);
    if (!nd) return pivq_ag_finish(y, NULL, -1);
    return pivq_ag_finish(y, nd, pivq_ag_save(nd, 0, cond));
}

int pivq_where_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    pivq_tensor *zero = pivq_zeros(PIVQ_FLOAT32, 0, NULL);
    if (!zero) return -1;
    int rc = 0;
    for (int i = 1; i <= 2 && rc == 0; i++) {
        if (!pivq_ag_needs(n, i)) continue;
        pivq_tensor *full =
            i == 1 ? pivq_where(n->saved[0], g, zero) : pivq_where(n->saved[0], zero, g);
        if (!full) {
            rc = -1;
            break;
        }
        /* where broadcast g to cond's shape too; sum back to the input's */
        gin[i] = to_input(n, i, full);
        if (!gin[i]) rc = -1;
    }
    pivq_tensor_release(zero);
    return rc;
}

/* ---- reductions ------------------------------------------------------------------------------ */

pivq_tensor *pivq_ag_reduce(const pivq_tensor *x, int op, int dim, int keepdim, double param)
{
    pivq_tensor *y = pivq_reduce(x, op, dim, keepdim, param);
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
    return pivq_reshape(t, in->ndim, sz);
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
    case PIVQ_SUM: r = pivq_expand(gk, in->ndim, in->shape); break;
    case PIVQ_MEAN:
        if ((t[0] = pivq_binary_scalar(gk, 1.0 / (double)(count ? count : 1), PIVQ_MUL, 0)))
            r = pivq_expand(t[0], in->ndim, in->shape);
        break;
    case PIVQ_VAR: /* d var / dx = 2 (x - mean) / (count - correction) */
        if ((t[0] = pivq_reduce(x, PIVQ_MEAN, dim, 1, 0)) &&
            (t[1] = pivq_binary(x, t[0], PIVQ_SUB)) &&
            (t[2] = pivq_binary_scalar(gk, 2.0 / ((double)count - p), PIVQ_MUL, 0)))
            r = pivq_binary(t[1], t[2], PIVQ_MUL);
        break;
    case PIVQ_RMAX:
    case PIVQ_RMIN: /* to the extremal elements, shared evenly on ties */
        if ((t[0] = pivq_compare(x, yk, PIVQ_EQ)) && (t[1] = pivq_to_dtype(t[0], PIVQ_FLOAT32)) &&
            (t[2] = pivq_reduce(t[1], PIVQ_SUM, dim, 1, 0)) &&
            (t[3] = pivq_binary(gk, t[2], PIVQ_DIV)))
            r = pivq_binary(t[1], t[3], PIVQ_MUL);
        break;
    case PIVQ_NORM:
        if (isinf(p)) { /* like max of |x| */
            if ((t[0] = pivq_unary(x, PIVQ_ABS)) && (t[1] = pivq_compare(t[0], yk, PIVQ_EQ)) &&
                (t[2] = pivq_to_dtype(t[1], PIVQ_FLOAT32)) &&
                (t[3] = pivq_reduce(t[2], PIVQ_SUM, dim, 1, 0)) &&
                (t[4] = pivq_binary(gk, t[3], PIVQ_DIV)) && (t[5] = pivq_unary(x, PIVQ_SIGN)) &&
                (t[6] = pivq_binary(t[2], t[5], PIVQ_MUL)))
                r = pivq_binary(t[6], t[4], PIVQ_MUL);
        } else { /* d ||x||_p / dx = sign(x) |x|^(p-1) / ||x||^(p-1); 0 where the norm is 0 */
            if ((t[0] = pivq_unary(x, PIVQ_ABS)) &&
                (t[1] = pivq_binary_scalar(t[0], p - 1.0, PIVQ_POW, 0)) &&
                (t[2] = pivq_unary(x, PIVQ_SIGN)) && (t[3] = pivq_binary(t[1], t[2], PIVQ_MUL)) &&
                (t[4] = pivq_binary_scalar(yk, p - 1.0, PIVQ_POW, 0)) &&
                (t[5] = pivq_binary(gk, t[4], PIVQ_DIV)) &&
                (t[6] = pivq_compare_scalar(yk, 0.0, PIVQ_EQ)) &&
                (t[7] = pivq_masked_fill(t[5], t[6], 0.0)))
                r = pivq_binary(t[3], t[7], PIVQ_MUL);
        }
        break;
    case PIVQ_PROD: /* y / x: assumes no zero in x (documented in the Lua API) */
        if ((t[0] = pivq_binary(gk, yk, PIVQ_MUL))) r = pivq_binary(t[0], x, PIVQ_DIV);
        break;
    default: pivq_set_error("backward: reduction %d has no derivative", op);
    }
done:
    drop(8, t);
    pivq_tensor_release(gk);
    pivq_tensor_release(yk);
    if (!r) return -1;
    gin[0] = r;
    return 0;
}

/* ---- matmul --------------------------------------------------------------------------------- */

pivq_tensor *pivq_ag_matmul(const pivq_tensor *a, const pivq_tensor *b)
{
    pivq_tensor *y = pivq_matmul(a, b);
    const pivq_tensor *in[2] = {a, b};
    if (!y || !pivq_ag_wants(2, in)) return y;
    pivq_node *nd = pivq_ag_record(PIVQ_GOP_MATMUL, y, 2, in);
    if (!nd) return pivq_ag_finish(y, NULL, -1);
    int rc = 0;
    if (pivq_ag_needs(nd, 1)) rc = pivq_ag_save(nd, 0, a);
    if (!rc && pivq_ag_needs(nd, 0)) rc = pivq_ag_save(nd, 1, b);
    return pivq_ag_finish(y, nd, rc);
}

/* The last two dims swapped (a view). */
static pivq_tensor *mT(const pivq_tensor *t)
{
    return pivq_transpose(t, t->ndim - 2, t->ndim - 1);
}

int pivq_matmul_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    /* With 1-D operands promoted as in the forward: a2 (.., m, k), b2 (.., k, n), g2 (.., m, n)
       dA = g2 @ b2^T summed over broadcast batch dims; dB = a2^T @ g2 likewise. */
    const pivq_edge *ea = &n->in[0], *eb = &n->in[1];
    pivq_tensor *t[8] = {0};
    int rc = -1;
    int a1 = ea->ndim == 1, b1 = eb->ndim == 1;
    pivq_tensor *g2 = pivq_tensor_retain((pivq_tensor *)g);
    if (a1) { /* g lacks the m dim */
        pivq_tensor *u = pivq_unsqueeze(g2, b1 ? g2->ndim : g2->ndim - 1);
        pivq_tensor_release(g2);
        g2 = u;
    }
    if (g2 && b1) {
        pivq_tensor *u = pivq_unsqueeze(g2, g2->ndim);
        pivq_tensor_release(g2);
        g2 = u;
    }
    if (!g2) return -1;
    if (pivq_ag_needs(n, 0)) {
        const pivq_tensor *b = n->saved[1];
        t[0] = b1 ? pivq_unsqueeze(b, 1) : pivq_tensor_retain((pivq_tensor *)b); /* k x 1 */
        if (!t[0] || !(t[1] = mT(t[0])) || !(t[2] = pivq_matmul(g2, t[1]))) goto done;
        int64_t sz[PIVQ_MAX_DIMS];
        int nd = ea->ndim;
        if (a1) { /* reduce to (1, k) then drop the 1 */
            int64_t one_k[2] = {1, ea->shape[0]};
            if (!(t[3] = pivq_sum_to_shape(t[2], 2, one_k))) goto done;
            sz[0] = ea->shape[0];
            nd = 1;
        } else {
            if (!(t[3] = pivq_sum_to_shape(t[2], ea->ndim, ea->shape))) goto done;
            memcpy(sz, ea->shape, sizeof sz);
        }
        if (!(gin[0] = pivq_reshape(t[3], nd, sz))) goto done;
    }
    if (pivq_ag_needs(n, 1)) {
        const pivq_tensor *a = n->saved[0];
        t[4] = a1 ? pivq_unsqueeze(a, 0) : pivq_tensor_retain((pivq_tensor *)a); /* 1 x k */
        if (!t[4] || !(t[5] = mT(t[4])) || !(t[6] = pivq_matmul(t[5], g2))) goto done;
        if (b1) {
            int64_t k_one[2] = {eb->shape[0], 1};
            if (!(t[7] = pivq_sum_to_shape(t[6], 2, k_one))) goto done;
            if (!(gin[1] = pivq_reshape(t[7], 1, eb->shape))) goto done;
        } else {
            if (!(gin[1] = pivq_sum_to_shape(t[6], eb->ndim, eb->shape))) goto done;
        }
    }
    rc = 0;
done:
    drop(8, t);
    pivq_tensor_release(g2);
    return rc;
}

/* ---- views ------------------------------------------------------------------------------------
 */

static pivq_tensor *record_view(int op, pivq_tensor *y, const pivq_tensor *x, int64_t p0,
                                int64_t p1)
{
    if (!y || !pivq_ag_wants(1, &x)) return y;
    pivq_node *nd = pivq_ag_record(op, y, 1, &x);
    if (!nd) return pivq_ag_finish(y, NULL, -1);
    nd->ip[0] = p0;
    nd->ip[1] = p1;
    return y;
}

pivq_tensor *pivq_ag_narrow(const pivq_tensor *t, int dim, int64_t start, int64_t length)
{
    return record_view(PIVQ_GOP_NARROW, pivq_narrow(t, dim, start, length), t, dim, start);
}

int pivq_narrow_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    const pivq_edge *in = &n->in[0];
    pivq_tensor *z = pivq_zeros_f32(in->ndim, in->shape); /* dx: x's shape, zero outside */
    if (!z) return -1;
    pivq_tensor *v = pivq_narrow(z, (int)n->ip[0], n->ip[1], g->shape[n->ip[0]]);
    if (!v || pivq_copy_(v, g)) {
        pivq_tensor_release(v);
        pivq_tensor_release(z);
        return -1;
    }
    pivq_tensor_release(v);
    gin[0] = z;
    return 0;
}

pivq_tensor *pivq_ag_select(const pivq_tensor *t, int dim, int64_t index)
{
    return record_view(PIVQ_GOP_SELECT, pivq_select(t, dim, index), t, dim, index);
}

int pivq_select_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    const pivq_edge *in = &n->in[0];
    pivq_tensor *z = pivq_zeros_f32(in->ndim, in->shape);
    if (!z) return -1;
    pivq_tensor *v = pivq_select(z, (int)n->ip[0], n->ip[1]);
    if (!v || pivq_copy_(v, g)) {
        pivq_tensor_release(v);
        pivq_tensor_release(z);
        return -1;
    }
    pivq_tensor_release(v);
    gin[0] = z;
    return 0;
}

pivq_tensor *pivq_ag_permute(const pivq_tensor *t, const int *perm)
{
    pivq_tensor *y = pivq_permute(t, perm);
    y = record_view(PIVQ_GOP_PERMUTE, y, t, 0, 0);
    if (y && y->ag && y->ag->grad_fn)
        for (int i = 0; i < t->ndim; i++)
            y->ag->grad_fn->ip[i] = perm[i];
    return y;
}

pivq_tensor *pivq_ag_transpose(const pivq_tensor *t, int dim0, int dim1)
{
    pivq_tensor *y = pivq_transpose(t, dim0, dim1);
    y = record_view(PIVQ_GOP_PERMUTE, y, t, 0, 0);
    if (y && y->ag && y->ag->grad_fn) {
        int64_t *perm = y->ag->grad_fn->ip;
        for (int i = 0; i < t->ndim; i++)
            perm[i] = i;
        perm[dim0] = dim1;
        perm[dim1] = dim0;
    }
    return y;
}

int pivq_permute_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    int inv[PIVQ_MAX_DIMS];
    for (int i = 0; i < g->ndim; i++)
        inv[n->ip[i]] = i;
    gin[0] = pivq_permute(g, inv);
    return gin[0] ? 0 : -1;
}

pivq_tensor *pivq_ag_view(const pivq_tensor *t, int ndim, const int64_t *size)
{
    return record_view(PIVQ_GOP_RESHAPE, pivq_view(t, ndim, size), t, 0, 0);
}

pivq_tensor *pivq_ag_reshape(const pivq_tensor *t, int ndim, const int64_t *size)
{
    return record_view(PIVQ_GOP_RESHAPE, pivq_reshape(t, ndim, size), t, 0, 0);
}

pivq_tensor *pivq_ag_squeeze(const pivq_tensor *t, int dim)
{
    return record_view(PIVQ_GOP_RESHAPE, pivq_squeeze(t, dim), t, 0, 0);
}

pivq_tensor *pivq_ag_unsqueeze(const pivq_tensor *t, int dim)
{
    return record_view(PIVQ_GOP_RESHAPE, pivq_unsqueeze(t, dim), t, 0, 0);
}

int pivq_reshape_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    gin[0] = pivq_reshape(g, n->in[0].ndim, n->in[0].shape);
    return gin[0] ? 0 : -1;
}

pivq_tensor *pivq_ag_expand(const pivq_tensor *t, int ndim, const int64_t *size)
{
    return record_view(PIVQ_GOP_EXPAND, pivq_expand(t, ndim, size), t, 0, 0);
}

int pivq_expand_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    gin[0] = pivq_sum_to_shape(g, n->in[0].ndim, n->in[0].shape);
    return gin[0] ? 0 : -1;
}

pivq_tensor *pivq_ag_contiguous(const pivq_tensor *t)
{
    pivq_tensor *y = pivq_contiguous(t);
    if (!y || !pivq_ag_wants(1, &t)) return y;
    return record_view(PIVQ_GOP_IDENTITY, fresh(y, t), t, 0, 0);
}

pivq_tensor *pivq_ag_clone(const pivq_tensor *t)
{
    return record_view(PIVQ_GOP_IDENTITY, pivq_clone(t), t, 0, 0);
}

pivq_tensor *pivq_ag_to_dtype(const pivq_tensor *t, int dtype)
{
    pivq_tensor *y = pivq_to_dtype(t, dtype);
    if (dtype != PIVQ_FLOAT32) return y; /* integer results carry no gradient */
    return record_view(PIVQ_GOP_IDENTITY, y, t, 0, 0);
}

int pivq_identity_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    gin[0] = pivq_tensor_retain((pivq_tensor *)g);
    return 0;
}

/* ---- indexing ------------------------------------------------------------------------------ */

pivq_tensor *pivq_ag_index_select(const pivq_tensor *x, int dim, const pivq_tensor *index)
{
    pivq_tensor *y = pivq_index_select(x, dim, index);
    if (!y || !pivq_ag_wants(1, &x)) return y;
    pivq_node *nd = pivq_ag_record(PIVQ_GOP_INDEX_SELECT, y, 1, &x);
    if (!nd) return pivq_ag_finish(y, NULL, -1);
    nd->ip[0] = dim;
    pivq_tensor *idx = pivq_to_dtype(index, PIVQ_INT64);
    int rc = idx ? pivq_ag_save(nd, 0, idx) : -1;
    pivq_tensor_release(idx);
    return pivq_ag_finish(y, nd, rc);
}

int pivq_index_select_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    /* dx viewed as (outer, D, inner), g as (outer, K, inner): dx[o, idx[k], :] += g[o, k, :] */
    const pivq_edge *in = &n->in[0];
    int dim = (int)n->ip[0];
    pivq_tensor *z = pivq_zeros_f32(in->ndim, in->shape);
    pivq_tensor *idx = pivq_contiguous(n->saved[0]);
    if (!z || !idx) {
        pivq_tensor_release(z);
        pivq_tensor_release(idx);
        return -1;
    }
    int64_t outer = 1, inner = 1, D = in->shape[dim], K = idx->shape[0];
    for (int i = 0; i < dim; i++)
        outer *= in->shape[i];
    for (int i = dim + 1; i < in->ndim; i++)
        inner *= in->shape[i];
    const int64_t *ix = pivq_data(idx);
    const float *gp = pivq_data(g);
    float *zp = pivq_data(z);
    /* parallel over outer rows only: repeated indices within a row would race otherwise */
    int nt = outer > 1 ? pivq_threads_for(outer * K * inner) : 1;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < K; k++) {
            float *dst = zp + (o * D + ix[k]) * inner;
            const float *src = gp + (o * K + k) * inner;
            for (int64_t j = 0; j < inner; j++)
                dst[j] += src[j];
        }
    pivq_tensor_release(idx);
    gin[0] = z;
    return 0;
}

pivq_tensor *pivq_ag_gather(const pivq_tensor *x, int dim, const pivq_tensor *index)
{
    pivq_tensor *y = pivq_gather(x, dim, index);
    if (!y || !pivq_ag_wants(1, &x)) return y;
    pivq_node *nd = pivq_ag_record(PIVQ_GOP_GATHER, y, 1, &x);
    if (!nd) return pivq_ag_finish(y, NULL, -1);
    nd->ip[0] = dim;
    return pivq_ag_finish(y, nd, pivq_ag_save(nd, 0, index));
}

int pivq_gather_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    const pivq_edge *in = &n->in[0];
    pivq_tensor *z = pivq_zeros_f32(in->ndim, in->shape);
    if (!z) return -1;
    gin[0] = pivq_scatter_add(z, (int)n->ip[0], n->saved[0], g);
    pivq_tensor_release(z);
    return gin[0] ? 0 : -1;
}

pivq_tensor *pivq_ag_masked_fill(const pivq_tensor *x, const pivq_tensor *mask, double value)
{
    pivq_tensor *y = pivq_masked_fill(x, mask, value);
    if (!y || !pivq_ag_wants(1, &x)) return y;
    pivq_node *nd = pivq_ag_record(PIVQ_GOP_MASKED_FILL, y, 1, &x);
    if (!nd) return pivq_ag_finish(y, NULL, -1);
    return pivq_ag_finish(y, nd, pivq_ag_save(nd, 0, mask));
}

int pivq_masked_fill_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    gin[0] = pivq_masked_fill(g, n->saved[0], 0.0);
    return gin[0] ? 0 : -1;
}

pivq_tensor *pivq_ag_scatter_add(const pivq_tensor *x, int dim, const pivq_tensor *index,
                                 const pivq_tensor *src)
{
    pivq_tensor *y = pivq_scatter_add(x, dim, index, src);
    const pivq_tensor *in[2] = {x, src};
    if (!y || !pivq_ag_wants(2, in)) return y;
    pivq_node *nd = pivq_ag_record(PIVQ_GOP_SCATTER_ADD, y, 2, in);
    if (!nd) return pivq_ag_finish(y, NULL, -1);
    nd->ip[0] = dim;
    return pivq_ag_finish(y, nd, pivq_ag_needs(nd, 1) ? pivq_ag_save(nd, 0, index) : 0);
}

int pivq_scatter_add_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    /* y = x + scatter(src): dx = dy; dsrc = dy gathered at the same indices */
    if (pivq_ag_needs(n, 0)) gin[0] = pivq_tensor_retain((pivq_tensor *)g);
    if (pivq_ag_needs(n, 1) && !(gin[1] = pivq_gather(g, (int)n->ip[0], n->saved[0]))) return -1;
    return 0;
}

static pivq_tensor *record_cat(pivq_tensor *y, pivq_tensor *const *ts, int n, int dim, int stack)
{
    if (!y || !pivq_ag_wants(n, (const pivq_tensor *const *)ts)) return y;
    pivq_node *nd = pivq_ag_record(PIVQ_GOP_CAT, y, n, (const pivq_tensor *const *)ts);
    if (!nd) return pivq_ag_finish(y, NULL, -1);
    nd->ip[0] = dim;
    nd->ip[1] = stack;
    return y;
}

pivq_tensor *pivq_ag_cat(pivq_tensor *const *ts, int n, int dim)
{
    return record_cat(pivq_cat(ts, n, dim), ts, n, dim, 0);
}

pivq_tensor *pivq_ag_stack(pivq_tensor *const *ts, int n, int dim)
{
    return record_cat(pivq_stack(ts, n, dim), ts, n, dim, 1);
}

int pivq_cat_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    int dim = (int)n->ip[0];
    int64_t start = 0;
    for (int i = 0; i < n->n_in; i++) {
        int64_t len = n->ip[1] ? 1 : n->in[i].shape[dim];
        if (pivq_ag_needs(n, i)) {
            gin[i] = n->ip[1] ? pivq_select(g, dim, start) : pivq_narrow(g, dim, start, len);
            if (!gin[i]) return -1;
        }
        start += len;
    }
    return 0;
}

/* ---- guarded in-place ops ---------------------------------------------------------------------
 */

int pivq_ag_binary_(pivq_tensor *a, const pivq_tensor *b, int op)
{
    char name[32];
    snprintf(name, sizeof name, "%s_", pivq_binary_name(op));
    if (pivq_check_tensor(name, "tensor", a) || pivq_check_inplace(a, name)) return -1;
    return pivq_binary_(a, b, op);
}

int pivq_ag_binary_scalar_(pivq_tensor *a, double s, int op)
{
    char name[32];
    snprintf(name, sizeof name, "%s_", pivq_binary_name(op));
    if (pivq_check_tensor(name, "tensor", a) || pivq_check_inplace(a, name)) return -1;
    return pivq_binary_scalar_(a, s, op);
}

int pivq_ag_fill_(pivq_tensor *t, double value)
{
    if (pivq_check_tensor("fill", "tensor", t) || pivq_check_inplace(t, "fill")) return -1;
    return pivq_fill_(t, value);
}

int pivq_ag_copy_(pivq_tensor *dst, const pivq_tensor *src)
{
    if (pivq_check_tensor("copy", "dst", dst) || pivq_check_inplace(dst, "copy")) return -1;
    return pivq_copy_(dst, src);
}
