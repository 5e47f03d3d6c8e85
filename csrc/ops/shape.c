/* ops/shape.c — the differentiable views and copies of the tensor core (narrow, select,
 * transpose, permute, view, reshape, expand, squeeze, unsqueeze, contiguous, clone, to_dtype)
 * and its guarded in-place writes (copy_, fill_). The kernels are core's (core/tensor.c, the
 * `_nograd` forms); here each public op records its graph node, beside its backward.
 */
#include "ops/ops.h"

/* A recorded result must be a fresh header: ops such as contiguous may return their input. */
static pivq_tensor *fresh(pivq_tensor *out, const pivq_tensor *in)
{
    if (out != in) return out;
    pivq_tensor *v = pivq_view_alloc(out);
    pivq_tensor_release(out);
    return v;
}

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

pivq_tensor *pivq_narrow(const pivq_tensor *t, int dim, int64_t start, int64_t length)
{
    return record_view(PIVQ_GOP_NARROW, pivq_narrow_nograd(t, dim, start, length), t, dim, start);
}

int pivq_narrow_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    const pivq_edge *in = &n->in[0];
    pivq_tensor *z = pivq_zeros_f32(in->ndim, in->shape); /* dx: x's shape, zero outside */
    if (!z) return -1;
    pivq_tensor *v = pivq_narrow_nograd(z, (int)n->ip[0], n->ip[1], g->shape[n->ip[0]]);
    if (!v || pivq_copy_nograd_(v, g)) {
        pivq_tensor_release(v);
        pivq_tensor_release(z);
        return -1;
    }
    pivq_tensor_release(v);
    gin[0] = z;
    return 0;
}

pivq_tensor *pivq_select(const pivq_tensor *t, int dim, int64_t index)
{
    return record_view(PIVQ_GOP_SELECT, pivq_select_nograd(t, dim, index), t, dim, index);
}

int pivq_select_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    const pivq_edge *in = &n->in[0];
    pivq_tensor *z = pivq_zeros_f32(in->ndim, in->shape);
    if (!z) return -1;
    pivq_tensor *v = pivq_select_nograd(z, (int)n->ip[0], n->ip[1]);
    if (!v || pivq_copy_nograd_(v, g)) {
        pivq_tensor_release(v);
        pivq_tensor_release(z);
        return -1;
    }
    pivq_tensor_release(v);
    gin[0] = z;
    return 0;
}

pivq_tensor *pivq_permute(const pivq_tensor *t, const int *perm)
{
    pivq_tensor *y = pivq_permute_nograd(t, perm);
    y = record_view(PIVQ_GOP_PERMUTE, y, t, 0, 0);
    if (y && y->ag && y->ag->grad_fn)
        for (int i = 0; i < t->ndim; i++)
            y->ag->grad_fn->ip[i] = perm[i];
    return y;
}

pivq_tensor *pivq_transpose(const pivq_tensor *t, int dim0, int dim1)
{
    pivq_tensor *y = pivq_transpose_nograd(t, dim0, dim1);
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
    gin[0] = pivq_permute_nograd(g, inv);
    return gin[0] ? 0 : -1;
}

pivq_tensor *pivq_view(const pivq_tensor *t, int ndim, const int64_t *size)
{
    return record_view(PIVQ_GOP_RESHAPE, pivq_view_nograd(t, ndim, size), t, 0, 0);
}

pivq_tensor *pivq_reshape(const pivq_tensor *t, int ndim, const int64_t *size)
{
    return record_view(PIVQ_GOP_RESHAPE, pivq_reshape_nograd(t, ndim, size), t, 0, 0);
}

pivq_tensor *pivq_squeeze(const pivq_tensor *t, int dim)
{
    return record_view(PIVQ_GOP_RESHAPE, pivq_squeeze_nograd(t, dim), t, 0, 0);
}

pivq_tensor *pivq_unsqueeze(const pivq_tensor *t, int dim)
{
    return record_view(PIVQ_GOP_RESHAPE, pivq_unsqueeze_nograd(t, dim), t, 0, 0);
}

int pivq_reshape_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    gin[0] = pivq_reshape_nograd(g, n->in[0].ndim, n->in[0].shape);
    return gin[0] ? 0 : -1;
}

pivq_tensor *pivq_expand(const pivq_tensor *t, int ndim, const int64_t *size)
{
    return record_view(PIVQ_GOP_EXPAND, pivq_expand_nograd(t, ndim, size), t, 0, 0);
}

int pivq_expand_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    gin[0] = pivq_sum_to_shape(g, n->in[0].ndim, n->in[0].shape);
    return gin[0] ? 0 : -1;
}

pivq_tensor *pivq_contiguous(const pivq_tensor *t)
{
    pivq_tensor *y = pivq_contiguous_nograd(t);
    if (!y || !pivq_ag_wants(1, &t)) return y;
    return record_view(PIVQ_GOP_IDENTITY, fresh(y, t), t, 0, 0);
}

pivq_tensor *pivq_clone(const pivq_tensor *t)
{
    return record_view(PIVQ_GOP_IDENTITY, pivq_clone_nograd(t), t, 0, 0);
}

pivq_tensor *pivq_to_dtype(const pivq_tensor *t, int dtype)
{
    pivq_tensor *y = pivq_to_dtype_nograd(t, dtype);
    if (dtype != PIVQ_FLOAT32) return y; /* integer results carry no gradient */
    return record_view(PIVQ_GOP_IDENTITY, y, t, 0, 0);
}

int pivq_identity_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    gin[0] = pivq_tensor_retain((pivq_tensor *)g);
    return 0;
}

/* ---- guarded in-place writes: refuse a tensor that is part of a graph ------------------------ */

int pivq_fill_(pivq_tensor *t, double value)
{
    if (pivq_check_tensor("fill", "tensor", t) || pivq_check_inplace(t, "fill")) return -1;
    return pivq_fill_nograd_(t, value);
}

int pivq_copy_(pivq_tensor *dst, const pivq_tensor *src)
{
    if (pivq_check_tensor("copy", "dst", dst) || pivq_check_inplace(dst, "copy")) return -1;
    return pivq_copy_nograd_(dst, src);
}
