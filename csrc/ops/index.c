/* ops/index.c — index_select, gather, scatter_add, masked_fill, cat, stack: each a kernel
 * (pivq_<op>_nograd) followed by its public form, which records the graph node, and its
 * backward. */
#include "ops/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Contiguous int64 copy of an index tensor (int64 or int32), or NULL with an error. */
static pivq_tensor *index_as_i64(const char *fname, const pivq_tensor *index)
{
    if (pivq_check_tensor(fname, "index", index)) return NULL;
    if (index->scalar_type != PIVQ_INT64 && index->scalar_type != PIVQ_INT32) {
        pivq_set_error("%s: index must be int64 or int32, got %s", fname,
                       pivq_dtype_name(index->scalar_type));
        return NULL;
    }
    return index->scalar_type == PIVQ_INT64 ? pivq_contiguous_nograd(index)
                                            : pivq_to_dtype_nograd(index, PIVQ_INT64);
}

/* Check every index lies in [0, limit); report the first offender. */
static int check_index_range(const char *fname, const pivq_tensor *idx, int64_t limit, int dim)
{
    const int64_t *p = pivq_data(idx);
    int64_t n = pivq_numel(idx);
    for (int64_t i = 0; i < n; i++)
        if (p[i] < 0 || p[i] >= limit)
            return pivq_set_error("%s: index %lld out of range for dim %d of size %lld", fname,
                                  (long long)p[i], dim, (long long)limit);
    return 0;
}

static int check_dim_arg(const char *fname, const pivq_tensor *x, int dim)
{
    if (dim < 0 || dim >= x->ndim) {
        char buf[160];
        return pivq_set_error("%s: dim %d out of range for shape %s", fname, dim,
                              pivq_shape_str(x, buf, sizeof buf));
    }
    return 0;
}

/* index_select's rows u = (o, j) of the output: out[o, j, :] = x[o, index[j], :]. */
typedef struct select_ctx {
    char *dst;
    const char *src;
    const int64_t *ix;
    int64_t n, R, inner, es;
} select_ctx;

static void select_rows(int64_t u0, int64_t u1, void *vctx)
{
    const select_ctx *c = vctx;
    for (int64_t u = u0; u < u1; u++) {
        int64_t o = u / c->n, j = u % c->n;
        memcpy(c->dst + u * c->inner * c->es, c->src + (o * c->R + c->ix[j]) * c->inner * c->es,
               (size_t)(c->inner * c->es));
    }
}

pivq_tensor *pivq_index_select_nograd(const pivq_tensor *x, int dim, const pivq_tensor *index)
{
    if (pivq_check_tensor("index_select", "input", x) || check_dim_arg("index_select", x, dim))
        return NULL;
    if (index && index->ndim != 1) {
        pivq_set_error("index_select: index must be 1-D, got %d dims", index->ndim);
        return NULL;
    }
    pivq_tensor *idx = index_as_i64("index_select", index);
    if (!idx) return NULL;
    pivq_tensor *xc = NULL, *out = NULL;
    if (check_index_range("index_select", idx, x->shape[dim], dim)) goto done;
    xc = pivq_contiguous_nograd(x);
    if (!xc) goto done;
    int64_t size[PIVQ_MAX_DIMS];
    memcpy(size, x->shape, sizeof size);
    int64_t n = idx->shape[0];
    size[dim] = n;
    out = pivq_empty(x->scalar_type, x->ndim, size);
    if (!out) goto done;
    int64_t outer = 1, inner = 1, es = pivq_dtype_size(x->scalar_type);
    for (int i = 0; i < dim; i++)
        outer *= x->shape[i];
    for (int i = dim + 1; i < x->ndim; i++)
        inner *= x->shape[i];
    const char *src = pivq_data(xc);
    char *dst = pivq_data(out);
    const int64_t *ix = pivq_data(idx);
    int64_t R = x->shape[dim];
    select_ctx c = {dst, src, ix, n, R, inner, es};
    pivq_parallel_range(outer * n, outer * n * inner, select_rows, &c);
done:
    pivq_tensor_release(idx);
    pivq_tensor_release(xc);
    return out;
}

pivq_tensor *pivq_index_select(const pivq_tensor *x, int dim, const pivq_tensor *index)
{
    pivq_tensor *y = pivq_index_select_nograd(x, dim, index);
    if (!y || !pivq_ag_wants(1, &x)) return y;
    pivq_node *nd = pivq_ag_record(PIVQ_GOP_INDEX_SELECT, y, 1, &x);
    if (!nd) return pivq_ag_finish(y, NULL, -1);
    nd->ip[0] = dim;
    pivq_tensor *idx = pivq_to_dtype_nograd(index, PIVQ_INT64);
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
    pivq_tensor *idx = pivq_contiguous_nograd(n->saved[0]);
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

/* Shared checks of gather/scatter: index has x's ndim and fits inside `other` off dim. */
static int check_gather_shapes(const char *fname, const pivq_tensor *x, int dim,
                               const pivq_tensor *index, const pivq_tensor *other,
                               const char *other_name)
{
    char a[160], b[160];
    if (index->ndim != x->ndim)
        return pivq_set_error("%s: index (%s) must have as many dims as the input (%s)", fname,
                              pivq_shape_str(index, a, sizeof a), pivq_shape_str(x, b, sizeof b));
    for (int d = 0; d < x->ndim; d++)
        if (index->shape[d] > other->shape[d] || (d != dim && index->shape[d] > x->shape[d]))
            return pivq_set_error("%s: index shape %s does not fit the %s shape %s off dim %d",
                                  fname, pivq_shape_str(index, a, sizeof a), other_name,
                                  pivq_shape_str(other, b, sizeof b), dim);
    return 0;
}

/* Byte offset, in a tensor with the given strides, of flat position i of the index shape,
   with the coordinate on `dim` replaced by `at` (at < 0: keep it). */
static int64_t gather_offset(const pivq_tensor *shape, int64_t i, const int64_t *stride, int dim,
                             int64_t at)
{
    int64_t off = 0;
    for (int d = shape->ndim - 1; d >= 0; d--) {
        int64_t c = i % shape->shape[d];
        i /= shape->shape[d];
        off += (d == dim && at >= 0 ? at : c) * stride[d];
    }
    return off;
}

typedef struct gather_ctx {
    char *dst;
    const char *src;
    const int64_t *ix;
    const pivq_tensor *idx;
    const int64_t *xstrides;
    int dim;
    int64_t es;
} gather_ctx;

static void gather_elems(int64_t i0, int64_t i1, void *vctx)
{
    const gather_ctx *c = vctx;
    for (int64_t i = i0; i < i1; i++)
        memcpy(c->dst + i * c->es,
               c->src + gather_offset(c->idx, i, c->xstrides, c->dim, c->ix[i]) * c->es,
               (size_t)c->es);
}

pivq_tensor *pivq_gather_nograd(const pivq_tensor *x, int dim, const pivq_tensor *index)
{
    if (pivq_check_tensor("gather", "input", x) || check_dim_arg("gather", x, dim)) return NULL;
    pivq_tensor *idx = index_as_i64("gather", index);
    if (!idx) return NULL;
    pivq_tensor *out = NULL;
    if (check_gather_shapes("gather", x, dim, idx, idx, "index") ||
        check_index_range("gather", idx, x->shape[dim], dim))
        goto done;
    out = pivq_empty(x->scalar_type, idx->ndim, idx->shape);
    if (!out) goto done;
    int64_t n = pivq_numel(idx), es = pivq_dtype_size(x->scalar_type);
    const int64_t *ix = pivq_data(idx);
    const char *src = (const char *)x->storage->data + x->offset * es;
    char *dst = pivq_data(out);
    gather_ctx c = {dst, src, ix, idx, x->strides, dim, es};
    pivq_parallel_range(n, n * 4, gather_elems, &c);
done:
    pivq_tensor_release(idx);
    return out;
}

pivq_tensor *pivq_gather(const pivq_tensor *x, int dim, const pivq_tensor *index)
{
    pivq_tensor *y = pivq_gather_nograd(x, dim, index);
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
    gin[0] = pivq_scatter_add_nograd(z, (int)n->ip[0], n->saved[0], g);
    pivq_tensor_release(z);
    return gin[0] ? 0 : -1;
}

pivq_tensor *pivq_scatter_add_nograd(const pivq_tensor *x, int dim, const pivq_tensor *index,
                                     const pivq_tensor *src)
{
    if (pivq_check_tensor("scatter_add", "input", x) || check_dim_arg("scatter_add", x, dim) ||
        pivq_check_tensor("scatter_add", "src", src))
        return NULL;
    if (src->scalar_type != x->scalar_type) {
        pivq_set_error("scatter_add: src is %s but the input is %s",
                       pivq_dtype_name(src->scalar_type), pivq_dtype_name(x->scalar_type));
        return NULL;
    }
    pivq_tensor *idx = index_as_i64("scatter_add", index);
    if (!idx) return NULL;
    pivq_tensor *out = NULL;
    if (src->ndim != x->ndim) {
        pivq_set_error("scatter_add: src must have as many dims as the input (%d), got %d", x->ndim,
                       src->ndim);
        goto done;
    }
    if (check_gather_shapes("scatter_add", x, dim, idx, src, "src") ||
        check_index_range("scatter_add", idx, x->shape[dim], dim))
        goto done;
    out = pivq_clone_nograd(x);
    if (!out) goto done;
    int64_t n = pivq_numel(idx), es = pivq_dtype_size(x->scalar_type);
    const int64_t *ix = pivq_data(idx);
    const char *s = (const char *)src->storage->data + src->offset * es;
    char *d = pivq_data(out);
    /* Sequential: several positions may add into one element. */
    for (int64_t i = 0; i < n; i++) {
        char *to = d + gather_offset(idx, i, out->strides, dim, ix[i]) * es;
        const char *from = s + gather_offset(idx, i, src->strides, dim, -1) * es;
        switch (x->scalar_type) {
        case PIVQ_FLOAT32: *(float *)to += *(const float *)from; break;
        case PIVQ_INT32:
            *(int32_t *)to =
                (int32_t)((uint32_t) * (int32_t *)to + (uint32_t) * (const int32_t *)from);
            break;
        case PIVQ_INT64:
            *(int64_t *)to =
                (int64_t)((uint64_t) * (int64_t *)to + (uint64_t) * (const int64_t *)from);
            break;
        default: *(uint8_t *)to = (uint8_t)(*(uint8_t *)to + *(const uint8_t *)from); break;
        }
    }
done:
    pivq_tensor_release(idx);
    return out;
}

pivq_tensor *pivq_scatter_add(const pivq_tensor *x, int dim, const pivq_tensor *index,
                              const pivq_tensor *src)
{
    pivq_tensor *y = pivq_scatter_add_nograd(x, dim, index, src);
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
    if (pivq_ag_needs(n, 1) && !(gin[1] = pivq_gather_nograd(g, (int)n->ip[0], n->saved[0])))
        return -1;
    return 0;
}

pivq_tensor *pivq_masked_fill_nograd(const pivq_tensor *x, const pivq_tensor *mask, double value)
{
    if (pivq_check_tensor("masked_fill", "input", x) ||
        pivq_check_tensor("masked_fill", "mask", mask))
        return NULL;
    if (mask->scalar_type != PIVQ_UINT8) {
        pivq_set_error("masked_fill: mask must be uint8 (a comparison result), got %s",
                       pivq_dtype_name(mask->scalar_type));
        return NULL;
    }
    int lead = x->ndim - mask->ndim;
    for (int i = 0; i < mask->ndim; i++)
        if (lead < 0 || (mask->shape[i] != 1 && mask->shape[i] != x->shape[i + lead])) {
            char a[160], b[160];
            pivq_set_error("masked_fill: mask of shape %s cannot be broadcast to %s",
                           pivq_shape_str(mask, a, sizeof a), pivq_shape_str(x, b, sizeof b));
            return NULL;
        }
    pivq_tensor *v = pivq_empty(x->scalar_type, 0, NULL);
    if (!v) return NULL;
    if (pivq_fill_nograd_(v, value)) {
        pivq_tensor_release(v);
        pivq_set_error("masked_fill: cannot store %g in a %s tensor", value,
                       pivq_dtype_name(x->scalar_type));
        return NULL;
    }
    pivq_tensor *out = pivq_where_nograd(mask, v, x);
    pivq_tensor_release(v);
    return out;
}

pivq_tensor *pivq_masked_fill(const pivq_tensor *x, const pivq_tensor *mask, double value)
{
    pivq_tensor *y = pivq_masked_fill_nograd(x, mask, value);
    if (!y || !pivq_ag_wants(1, &x)) return y;
    pivq_node *nd = pivq_ag_record(PIVQ_GOP_MASKED_FILL, y, 1, &x);
    if (!nd) return pivq_ag_finish(y, NULL, -1);
    return pivq_ag_finish(y, nd, pivq_ag_save(nd, 0, mask));
}

int pivq_masked_fill_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    gin[0] = pivq_masked_fill_nograd(g, n->saved[0], 0.0);
    return gin[0] ? 0 : -1;
}

pivq_tensor *pivq_cat_nograd(pivq_tensor *const *ts, int n, int dim)
{
    if (n < 1 || !ts) {
        pivq_set_error("cat: need at least one tensor, got %d", n);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (pivq_check_tensor("cat", "a tensor in the list", ts[i])) return NULL;
    const pivq_tensor *t0 = ts[0];
    if (dim < 0 || dim >= t0->ndim) {
        pivq_set_error("cat: dim %d out of range for %d-dim tensors", dim, t0->ndim);
        return NULL;
    }
    int64_t size[PIVQ_MAX_DIMS];
    memcpy(size, t0->shape, sizeof size);
    size[dim] = 0;
    for (int i = 0; i < n; i++) {
        const pivq_tensor *t = ts[i];
        char a[160], b[160];
        int bad = t->ndim != t0->ndim || t->scalar_type != t0->scalar_type;
        for (int d = 0; !bad && d < t0->ndim; d++)
            if (d != dim && t->shape[d] != t0->shape[d]) bad = 1;
        if (bad) {
            pivq_set_error("cat: tensor %d (%s %s) does not match tensor 1 (%s %s) off dim %d",
                           i + 1, pivq_shape_str(t, a, sizeof a), pivq_dtype_name(t->scalar_type),
                           pivq_shape_str(t0, b, sizeof b), pivq_dtype_name(t0->scalar_type), dim);
            return NULL;
        }
        size[dim] += t->shape[dim];
    }
    pivq_tensor *out = pivq_empty(t0->scalar_type, t0->ndim, size);
    if (!out) return NULL;
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        pivq_tensor *slot = pivq_narrow_nograd(out, dim, at, ts[i]->shape[dim]);
        int rc = slot ? pivq_copy_nograd_(slot, ts[i]) : -1;
        pivq_tensor_release(slot);
        if (rc) {
            pivq_tensor_release(out);
            return NULL;
        }
        at += ts[i]->shape[dim];
    }
    return out;
}

pivq_tensor *pivq_stack_nograd(pivq_tensor *const *ts, int n, int dim)
{
    if (n < 1 || !ts || n > 1 << 20) {
        pivq_set_error("stack: need between 1 and 2^20 tensors, got %d", n);
        return NULL;
    }
    pivq_tensor **us = calloc((size_t)n, sizeof *us);
    if (!us) {
        pivq_set_error("stack: out of memory");
        return NULL;
    }
    pivq_tensor *out = NULL;
    for (int i = 0; i < n; i++) {
        char a[160], b[160];
        if (pivq_check_tensor("stack", "a tensor in the list", ts[i])) goto done;
        if (ts[i]->ndim != ts[0]->ndim ||
            memcmp(ts[i]->shape, ts[0]->shape, sizeof(int64_t) * (size_t)ts[0]->ndim)) {
            pivq_set_error("stack: tensor %d has shape %s but tensor 1 has %s", i + 1,
                           pivq_shape_str(ts[i], a, sizeof a), pivq_shape_str(ts[0], b, sizeof b));
            goto done;
        }
        if (ts[i]->scalar_type != ts[0]->scalar_type) { /* here, not in cat: errors name stack */
            pivq_set_error("stack: tensor %d is %s but tensor 1 is %s", i + 1,
                           pivq_dtype_name(ts[i]->scalar_type),
                           pivq_dtype_name(ts[0]->scalar_type));
            goto done;
        }
        if (dim < 0 || dim > ts[i]->ndim) {
            pivq_set_error("stack: dim %d out of range for %d-dim tensors", dim, ts[i]->ndim);
            goto done;
        }
        us[i] = pivq_unsqueeze_nograd(ts[i], dim);
        if (!us[i]) goto done;
    }
    out = pivq_cat_nograd(us, n, dim);
done:
    for (int i = 0; i < n; i++)
        pivq_tensor_release(us[i]);
    free(us);
    return out;
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

pivq_tensor *pivq_cat(pivq_tensor *const *ts, int n, int dim)
{
    return record_cat(pivq_cat_nograd(ts, n, dim), ts, n, dim, 0);
}

pivq_tensor *pivq_stack(pivq_tensor *const *ts, int n, int dim)
{
    return record_cat(pivq_stack_nograd(ts, n, dim), ts, n, dim, 1);
}

int pivq_cat_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    int dim = (int)n->ip[0];
    int64_t start = 0;
    for (int i = 0; i < n->n_in; i++) {
        int64_t len = n->ip[1] ? 1 : n->in[i].shape[dim];
        if (pivq_ag_needs(n, i)) {
            gin[i] = n->ip[1] ? pivq_select_nograd(g, dim, start)
                              : pivq_narrow_nograd(g, dim, start, len);
            if (!gin[i]) return -1;
        }
        start += len;
    }
    return 0;
}
