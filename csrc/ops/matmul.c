/* ops/matmul.c — matrix products through OpenBLAS sgemm.
 *
 * A 2-D float32 view is handed to BLAS without copying when it is row-major (stride[1] == 1)
 * or column-major (stride[0] == 1, i.e. the transpose of a row-major matrix: passed with
 * CblasTrans). Anything else is copied to contiguous first. Batched products loop over the
 * broadcast batch dims and call sgemm per matrix; OpenBLAS threads each call.
 * pivq_matmul (recording the graph node) and its backward follow the kernel, pivq_matmul_nograd.
 */
#include "ops/ops.h"

#include <cblas.h>
#include <stdio.h>

/* How to pass a rows x cols matrix with element strides (s0, s1) to BLAS, if possible. */
typedef struct blas_operand {
    int ok;
    CBLAS_TRANSPOSE trans;
    int64_t ld;
} blas_operand;

static blas_operand blas_layout(int64_t rows, int64_t cols, int64_t s0, int64_t s1)
{
    blas_operand r = {0, CblasNoTrans, 0};
    int64_t min_row = cols > 1 ? cols : 1, min_col = rows > 1 ? rows : 1;
    if ((s1 == 1 || cols == 1) && (s0 >= min_row || rows == 1)) {
        r.ok = 1;
        r.ld = rows == 1 ? min_row : s0;
        if (r.ld < min_row) r.ld = min_row;
    } else if ((s0 == 1 || rows == 1) && (s1 >= min_col || cols == 1)) {
        r.ok = 1;
        r.trans = CblasTrans;
        r.ld = cols == 1 ? min_col : s1;
        if (r.ld < min_col) r.ld = min_col;
    }
    return r;
}

static int check_blas_dims(const char *fname, int64_t m, int64_t n, int64_t k)
{
    if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX)
        return pivq_set_error("%s: matrix dims %lldx%lldx%lld exceed BLAS's int range", fname,
                              (long long)m, (long long)n, (long long)k);
    return 0;
}

int pivq_gemm_(pivq_tensor *out, const pivq_tensor *a, const pivq_tensor *b, int trans_a,
               int trans_b, float alpha, float beta)
{
    if (pivq_check_tensor("gemm", "out", out) || pivq_check_tensor("gemm", "a", a) ||
        pivq_check_tensor("gemm", "b", b))
        return -1;
    char sa[160], sb[160], so[160];
    if (out->ndim != 2 || a->ndim != 2 || b->ndim != 2 || out->scalar_type != PIVQ_FLOAT32 ||
        a->scalar_type != PIVQ_FLOAT32 || b->scalar_type != PIVQ_FLOAT32)
        return pivq_set_error("gemm: need 2-D float32 tensors, got out %s %s, a %s %s, b %s %s",
                              pivq_shape_str(out, so, sizeof so), pivq_dtype_name(out->scalar_type),
                              pivq_shape_str(a, sa, sizeof sa), pivq_dtype_name(a->scalar_type),
                              pivq_shape_str(b, sb, sizeof sb), pivq_dtype_name(b->scalar_type));
    /* logical op(a) is m x k, op(b) is k x n */
    int64_t m = trans_a ? a->shape[1] : a->shape[0], k = trans_a ? a->shape[0] : a->shape[1];
    int64_t k2 = trans_b ? b->shape[1] : b->shape[0], n = trans_b ? b->shape[0] : b->shape[1];
    if (k != k2 || out->shape[0] != m || out->shape[1] != n)
        return pivq_set_error("gemm: shapes do not match: op(a) %lldx%lld, op(b) %lldx%lld, "
                              "out %s",
                              (long long)m, (long long)k, (long long)k2, (long long)n,
                              pivq_shape_str(out, so, sizeof so));
    if (check_blas_dims("gemm", m, n, k) ||
        check_blas_dims("gemm", out->strides[0], a->strides[0] + a->strides[1],
                        b->strides[0] + b->strides[1]))
        return -1;
    if (m == 0 || n == 0) return 0;
    blas_operand lo = blas_layout(m, n, out->strides[0], out->strides[1]);
    if (!lo.ok || lo.trans != CblasNoTrans)
        return pivq_set_error("gemm: out must be row-major (stride[1] == 1), got strides %lld,%lld",
                              (long long)out->strides[0], (long long)out->strides[1]);
    pivq_tensor *ac = NULL, *bc = NULL;
    blas_operand la = blas_layout(a->shape[0], a->shape[1], a->strides[0], a->strides[1]);
    if (!la.ok) {
        ac = pivq_contiguous_nograd(a);
        if (!ac) return -1;
        la = blas_layout(a->shape[0], a->shape[1], ac->strides[0], ac->strides[1]);
    }
    blas_operand lb = blas_layout(b->shape[0], b->shape[1], b->strides[0], b->strides[1]);
    if (!lb.ok) {
        bc = pivq_contiguous_nograd(b);
        if (!bc) {
            pivq_tensor_release(ac);
            return -1;
        }
        lb = blas_layout(b->shape[0], b->shape[1], bc->strides[0], bc->strides[1]);
    }
    /* Stored transposition composed with the requested one. */
    CBLAS_TRANSPOSE ta = (la.trans == CblasTrans) != (trans_a != 0) ? CblasTrans : CblasNoTrans;
    CBLAS_TRANSPOSE tb = (lb.trans == CblasTrans) != (trans_b != 0) ? CblasTrans : CblasNoTrans;
    if (k == 0) {
        /* an empty sum: out = beta * out, where beta == 0 means "overwrite" (as in BLAS, old
           contents such as NaN must not leak through 0 * NaN) */
        if (beta == 0.0f)
            pivq_fill_nograd_(out, 0.0);
        else
            pivq_binary_scalar_nograd_(out, beta, PIVQ_MUL);
    } else {
        pivq_gemm(ta == CblasTrans, tb == CblasTrans, m, n, k, alpha, pivq_data(ac ? ac : a), la.ld,
                  pivq_data(bc ? bc : b), lb.ld, beta, pivq_data(out), lo.ld);
    }
    pivq_tensor_release(ac);
    pivq_tensor_release(bc);
    return 0;
}

pivq_tensor *pivq_matmul_nograd(const pivq_tensor *a, const pivq_tensor *b)
{
    if (pivq_check_tensor("matmul", "a", a) || pivq_check_tensor("matmul", "b", b)) return NULL;
    char sa[160], sb[160];
    if (a->scalar_type != PIVQ_FLOAT32 || b->scalar_type != PIVQ_FLOAT32) {
        pivq_set_error("matmul: need float32 operands, got %s and %s",
                       pivq_dtype_name(a->scalar_type), pivq_dtype_name(b->scalar_type));
        return NULL;
    }
    if (a->ndim == 0 || b->ndim == 0) {
        pivq_set_error("matmul: operands must have at least 1 dim, got shapes %s and %s",
                       pivq_shape_str(a, sa, sizeof sa), pivq_shape_str(b, sb, sizeof sb));
        return NULL;
    }
    /* Promote 1-D operands to matrices: a (k) -> (1, k), b (k) -> (k, 1). */
    pivq_tensor A = *a, B = *b;
    int drop_rows = 0, drop_cols = 0;
    if (A.ndim == 1) {
        A.ndim = 2;
        A.shape[1] = A.shape[0];
        A.strides[1] = A.strides[0];
        A.shape[0] = 1;
        A.strides[0] = A.shape[1];
        drop_rows = 1;
    }
    if (B.ndim == 1) {
        B.ndim = 2;
        B.shape[1] = 1;
        B.strides[1] = 1;
        drop_cols = 1;
    }
    int64_t m = A.shape[A.ndim - 2], k = A.shape[A.ndim - 1];
    int64_t k2 = B.shape[B.ndim - 2], n = B.shape[B.ndim - 1];
    if (k != k2) {
        pivq_set_error("matmul: shapes %s and %s are not aligned (%lld != %lld)",
                       pivq_shape_str(a, sa, sizeof sa), pivq_shape_str(b, sb, sizeof sb),
                       (long long)k, (long long)k2);
        return NULL;
    }
    if (check_blas_dims("matmul", m, n, k)) return NULL;
    /* Broadcast the batch dims. */
    pivq_tensor ba = A, bb = B;
    ba.ndim -= 2;
    bb.ndim -= 2;
    int nb;
    int64_t bsize[PIVQ_MAX_DIMS], sta[PIVQ_MAX_DIMS], stb[PIVQ_MAX_DIMS];
    if (pivq_broadcast_shapes("matmul", &ba, &bb, &nb, bsize)) {
        pivq_set_error("matmul: batch dims of %s and %s cannot broadcast",
                       pivq_shape_str(a, sa, sizeof sa), pivq_shape_str(b, sb, sizeof sb));
        return NULL;
    }
    pivq_broadcast_strides(&ba, nb, bsize, sta);
    pivq_broadcast_strides(&bb, nb, bsize, stb);
    int64_t osize[PIVQ_MAX_DIMS];
    int ond = 0;
    for (int i = 0; i < nb; i++)
        osize[ond++] = bsize[i];
    if (!drop_rows) osize[ond++] = m;
    if (!drop_cols) osize[ond++] = n;
    if (ond > PIVQ_MAX_DIMS) {
        pivq_set_error("matmul: result would have more than %d dims", PIVQ_MAX_DIMS);
        return NULL;
    }
    /* sgemm with beta = 0 overwrites out, except when k == 0 where out must read 0 */
    pivq_tensor *out =
        k == 0 ? pivq_zeros(PIVQ_FLOAT32, ond, osize) : pivq_empty(PIVQ_FLOAT32, ond, osize);
    if (!out) return NULL;
    int64_t nbatch = pivq_sizes_numel(nb, bsize);
    if (nbatch == 0 || m == 0 || n == 0) return out;
    /* Views of one matrix of each operand, moved along the batch. */
    pivq_tensor ma = A, mb = B, mo = *out;
    ma.ndim = mb.ndim = mo.ndim = 2;
    ma.shape[0] = m;
    ma.shape[1] = k;
    ma.strides[0] = A.strides[A.ndim - 2];
    ma.strides[1] = A.strides[A.ndim - 1];
    mb.shape[0] = k;
    mb.shape[1] = n;
    mb.strides[0] = B.strides[B.ndim - 2];
    mb.strides[1] = B.strides[B.ndim - 1];
    mo.shape[0] = m;
    mo.shape[1] = n;
    mo.strides[0] = n;
    mo.strides[1] = 1;
    int64_t a0 = A.offset, b0 = B.offset;
    for (int64_t bi = 0; bi < nbatch; bi++) {
        int64_t rem = bi, oa = 0, ob = 0;
        for (int d = nb - 1; d >= 0; d--) {
            int64_t idx = rem % bsize[d];
            rem /= bsize[d];
            oa += idx * sta[d];
            ob += idx * stb[d];
        }
        ma.offset = a0 + oa;
        mb.offset = b0 + ob;
        mo.offset = bi * m * n;
        if (pivq_gemm_(&mo, &ma, &mb, 0, 0, 1.0f, 0.0f)) {
            pivq_tensor_release(out);
            return NULL;
        }
    }
    return out;
}

/* ---- recorded form and backward -------------------------------------------------------------- */

pivq_tensor *pivq_matmul(const pivq_tensor *a, const pivq_tensor *b)
{
    pivq_tensor *y = pivq_matmul_nograd(a, b);
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
    return pivq_transpose_nograd(t, t->ndim - 2, t->ndim - 1);
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
        pivq_tensor *u = pivq_unsqueeze_nograd(g2, b1 ? g2->ndim : g2->ndim - 1);
        pivq_tensor_release(g2);
        g2 = u;
    }
    if (g2 && b1) {
        pivq_tensor *u = pivq_unsqueeze_nograd(g2, g2->ndim);
        pivq_tensor_release(g2);
        g2 = u;
    }
    if (!g2) return -1;
    if (pivq_ag_needs(n, 0)) {
        const pivq_tensor *b = n->saved[1];
        t[0] = b1 ? pivq_unsqueeze_nograd(b, 1) : pivq_tensor_retain((pivq_tensor *)b); /* k x 1 */
        if (!t[0] || !(t[1] = mT(t[0])) || !(t[2] = pivq_matmul_nograd(g2, t[1]))) goto done;
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
        if (!(gin[0] = pivq_reshape_nograd(t[3], nd, sz))) goto done;
    }
    if (pivq_ag_needs(n, 1)) {
        const pivq_tensor *a = n->saved[0];
        t[4] = a1 ? pivq_unsqueeze_nograd(a, 0) : pivq_tensor_retain((pivq_tensor *)a); /* 1 x k */
        if (!t[4] || !(t[5] = mT(t[4])) || !(t[6] = pivq_matmul_nograd(t[5], g2))) goto done;
        if (b1) {
            int64_t k_one[2] = {eb->shape[0], 1};
            if (!(t[7] = pivq_sum_to_shape(t[6], 2, k_one))) goto done;
            if (!(gin[1] = pivq_reshape_nograd(t[7], 1, eb->shape))) goto done;
        } else {
            if (!(gin[1] = pivq_sum_to_shape(t[6], eb->ndim, eb->shape))) goto done;
        }
    }
    rc = 0;
done:
    pivq_drop(8, t);
    pivq_tensor_release(g2);
    return rc;
}
