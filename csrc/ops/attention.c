/* ops/attention.c — fused scaled dot-product attention, multi-head by its batch dims.
 *
 *   q (..., Lq, D), k (..., Lk, D), v (..., Lk, Dv), the same batch dims "..." (batch and
 *   heads, any strides); mask additive, broadcastable to (..., Lq, Lk), or NULL.
 *   out (..., Lq, Dv) = softmax(scale * q k^T + mask) v
 *
 * Per batch matrix (one head of one sample) the work is two sgemms around a row softmax;
 * the probabilities P are kept for the backward:
 *   dV = P^T dO;  dP = dO V^T;  dS = P * (dP - rowsum(dP * P));  dQ = scale dS K;
 *   dK = scale dS^T Q;  dmask = dS.
 * Heads run in parallel on the OpenMP threads, each head's products on one thread (the
 * register-tiled kernels of ops/gemm_small.c for small heads, single-threaded sgemm for large).
 * q, k, v are read in place whatever their batch strides (a (B, L, H, Dh) projection viewed
 * as (B, H, L, Dh) needs no copy) as long as their last dim is contiguous.
 */
#include "ops/ops.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Element offset of batch matrix bi (row-major over the first nb dims). */
static int64_t batch_offset(const pivq_tensor *t, int nb, int64_t bi)
{
    int64_t off = t->offset;
    for (int d = nb - 1; d >= 0; d--) {
        off += (bi % t->shape[d]) * t->strides[d];
        bi /= t->shape[d];
    }
    return off;
}

static const float *mat_ptr(const pivq_tensor *t, int nb, int64_t bi)
{
    return (const float *)t->storage->data + batch_offset(t, nb, bi);
}

/* Row stride usable as a BLAS leading dimension, or -1 if the last dim is not contiguous. */
static int64_t row_stride(const pivq_tensor *t)
{
    int64_t rows = t->shape[t->ndim - 2], cols = t->shape[t->ndim - 1];
    if (cols != 1 && t->strides[t->ndim - 1] != 1) return -1;
    int64_t ld = rows > 1 ? t->strides[t->ndim - 2] : cols;
    return ld >= cols && ld > 0 ? ld : (cols > 0 ? cols : 1);
}

/* t itself if BLAS can read it, else a contiguous copy (new reference either way). */
static pivq_tensor *blas_ready(const pivq_tensor *t)
{
    if (row_stride(t) >= 0) return pivq_tensor_retain((pivq_tensor *)t);
    return pivq_contiguous_nograd(t);
}

/* An empty float32 tensor of `shape` whose memory runs in the order of t's strides (batch and
   row dims by decreasing stride, the last dim innermost). For heads viewed from a projection,
   t (B, H, L, Dh) with strides (L*E, Dh, E, 1), the buffer is (B, L, H, Dh) and the result its
   permuted view: the (B, L, E) tensor the caller folds it back into is then a free reshape
   instead of a copy, in the forward (the output) and in the backward (dq, dk, dv). */
static pivq_tensor *empty_like_layout(const pivq_tensor *t, const int64_t *shape)
{
    int nd = t->ndim, order[PIVQ_MAX_DIMS], inv[PIVQ_MAX_DIMS];
    int64_t dense[PIVQ_MAX_DIMS];
    for (int i = 0; i < nd; i++)
        order[i] = i;
    for (int i = 1; i < nd - 1; i++) /* stable insertion sort of dims 0 .. nd-2 */
        for (int j = i; j > 0 && t->strides[order[j]] > t->strides[order[j - 1]]; j--) {
            int tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    for (int i = 0; i < nd; i++) {
        dense[i] = shape[order[i]];
        inv[order[i]] = i;
    }
    pivq_tensor *buf = pivq_empty(PIVQ_FLOAT32, nd, dense);
    if (!buf) return NULL;
    pivq_tensor *view = pivq_permute_nograd(buf, inv);
    pivq_tensor_release(buf);
    return view;
}

static int heads_parallel(int64_t nbatch)
{
    int nt = pivq_get_num_threads();
    return nt > 1 && nbatch >= nt ? nt : 1;
}

/* Heads this small run their products on the register-tiled kernels of ops/gemm_small.c (a call
   to OpenBLAS costs more than the work at these sizes); larger ones on OpenBLAS. */
static int small_heads(int64_t Lq, int64_t Lk, int64_t D, int64_t Dv)
{
    return Lq <= 256 && Lk <= 256 && D <= 128 && Dv <= 128;
}

/* One product of a head, C (M, N) = alpha op(A) op(B), beta 0, on one of three engines: with
   bsc (bf16 scratch, under bf16 precision) the bf16 register-tiled kernels, else the fp32 ones
   (small) or OpenBLAS. With tb = 1 the fp32 small kernels first transpose B (N, K) into panel
   (K, N): they need B's rows. */
static void head_product(int small, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                         int64_t ldc, float *panel, void *bsc)
{
    pivq_flops_add(2 * M * N * K);
    if (bsc) {
        pivq_gemm_small_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, C, ldc, bsc);
    } else if (small) {
        if (tb) {
            pivq_transpose_panel(B, ldb, N, K, panel);
            B = panel;
            ldb = N;
        }
        pivq_gemm_small(ta, M, N, K, alpha, A, lda, B, ldb, C, ldc);
    } else if (K == 0) { /* an empty sum (BLAS may leave C alone) */
        for (int64_t i = 0; i < M; i++)
            memset(C + i * ldc, 0, (size_t)N * sizeof *C);
    } else {
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, 0.0f, C, (int)ldc);
    }
}

/* Bytes of bf16 scratch per thread for every product of a head, forward and backward (64-byte
   multiples); 0 when the heads run fp32: not small, or not under bf16 precision. */
static size_t bf16_scratch(int small, int64_t Lq, int64_t Lk, int64_t D, int64_t Dv)
{
    if (!small || !pivq_small_bf16_ok()) return 0;
    const int64_t shapes[6][3] = {{Lq, Lk, D},  {Lq, Dv, Lk}, {Lk, Dv, Lq},
                                  {Lq, Lk, Dv}, {Lq, D, Lk},  {Lk, D, Lq}};
    size_t n = 0;
    for (int i = 0; i < 6; i++) {
        size_t s = pivq_small_bf16_scratch(shapes[i][0], shapes[i][1], shapes[i][2]);
        n = s > n ? s : n;
    }
    return (n + 63) / 64 * 64;
}

/* Stable softmax of each of `rows` rows of length n, in place. The `omp simd` reductions let
   the compiler keep vector partial maxima and sums (a fixed order, so still deterministic);
   without them it must add in index order, one lane at a time. */
static void softmax_rows(float *s, int64_t rows, int64_t n)
{
    for (int64_t i = 0; i < rows; i++) {
        float *r = s + i * n, m = -INFINITY, sum = 0.0f;
#pragma omp simd reduction(max : m)
        for (int64_t j = 0; j < n; j++)
            m = r[j] > m ? r[j] : m;
        if (m == -INFINITY) m = 0.0f; /* a fully masked row gives zeros, not NaN */
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < n; j++) {
            r[j] = pivq_fast_expf(r[j] - m);
            sum += r[j];
        }
        float inv = sum > 0 ? 1.0f / sum : 0.0f;
        for (int64_t j = 0; j < n; j++)
            r[j] *= inv;
    }
}

pivq_tensor *pivq_attention(const pivq_tensor *q, const pivq_tensor *k, const pivq_tensor *v,
                            const pivq_tensor *mask, double scale)
{
    const char *F = "attention";
    const pivq_tensor *args[4] = {q, k, v, mask};
    const char *names[4] = {"q", "k", "v", "mask"};
    for (int i = 0; i < 4; i++) {
        if (i == 3 && !mask) break;
        if (pivq_check_tensor(F, names[i], args[i])) return NULL;
        if (args[i]->scalar_type != PIVQ_FLOAT32) {
            pivq_set_error("%s: %s must be float32, got %s", F, names[i],
                           pivq_dtype_name(args[i]->scalar_type));
            return NULL;
        }
    }
    char a[160], b[160], c[160];
    int nd = q->ndim, nb = nd - 2;
    int ok = nd >= 2 && k->ndim == nd && v->ndim == nd;
    for (int i = 0; ok && i < nb; i++)
        ok = k->shape[i] == q->shape[i] && v->shape[i] == q->shape[i];
    if (ok) ok = k->shape[nd - 1] == q->shape[nd - 1] && v->shape[nd - 2] == k->shape[nd - 2];
    if (!ok) {
        pivq_set_error("%s: q %s, k %s and v %s must be (..., Lq, D), (..., Lk, D), "
                       "(..., Lk, Dv) with the same batch dims",
                       F, pivq_shape_str(q, a, sizeof a), pivq_shape_str(k, b, sizeof b),
                       pivq_shape_str(v, c, sizeof c));
        return NULL;
    }
    int64_t Lq = q->shape[nd - 2], D = q->shape[nd - 1], Lk = k->shape[nd - 2],
            Dv = v->shape[nd - 1];
    int64_t nbatch = 1;
    for (int i = 0; i < nb; i++)
        nbatch *= q->shape[i];
    if (scale <= 0) scale = D > 0 ? 1.0 / sqrt((double)D) : 1.0;
    int64_t ssz[PIVQ_MAX_DIMS], osz[PIVQ_MAX_DIMS];
    memcpy(ssz, q->shape, sizeof ssz);
    ssz[nd - 1] = Lk;
    memcpy(osz, q->shape, sizeof osz);
    osz[nd - 1] = Dv;
    pivq_tensor *qc = blas_ready(q), *kc = blas_ready(k), *vc = blas_ready(v);
    pivq_tensor *mc = NULL, *P = NULL, *out = NULL;
    if (!qc || !kc || !vc) goto fail;
    if (mask) { /* broadcast to (..., Lq, Lk) and make it contiguous: read once per row */
        pivq_tensor *e = pivq_expand_nograd(mask, nd, ssz);
        if (!e) {
            pivq_set_error("%s: mask %s cannot broadcast to the scores %s", F,
                           pivq_shape_str(mask, a, sizeof a), pivq_sizes_str(nd, ssz, b, sizeof b));
            goto fail;
        }
        mc = pivq_contiguous_nograd(e);
        pivq_tensor_release(e);
        if (!mc) goto fail;
    }
    P = pivq_empty(PIVQ_FLOAT32, nd, ssz); /* P (..., Lq, Lk): the attention weights */
    out = empty_like_layout(q, osz);       /* O (..., Lq, Dv), batch dims laid out as q's */
    if (!P || !out) goto fail;
    if (Lq > 0 && Lk > 0 && Dv > 0 && nbatch > 0) {
        int64_t ldq = row_stride(qc), ldk = row_stride(kc), ldv = row_stride(vc),
                ldo = row_stride(out);
        float *Pp = pivq_data(P);
        const float *Mp = mc ? pivq_data(mc) : NULL;
        int nt = heads_parallel(nbatch), small = small_heads(Lq, Lk, D, Dv);
        size_t bsz = bf16_scratch(small, Lq, Lk, D, Dv);
        /* per thread, the transposed K of the current head (D, Lk) for the fp32 small kernels,
           or the bf16 kernels' scratch */
        float *panels = bsz     ? aligned_alloc(64, (size_t)nt * bsz)
                        : small ? malloc((size_t)(nt * (D * Lk > 0 ? D * Lk : 1)) * sizeof(float))
                                : NULL;
        if (small && !panels) {
            pivq_set_error("%s: out of memory", F);
            goto fail;
        }
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int64_t bi = 0; bi < nbatch; bi++) {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            float *S = Pp + bi * Lq * Lk; /* scores, then P in place (Lq, Lk) */
            void *bsc = bsz ? (char *)panels + tid * bsz : NULL;
            /* S (Lq, Lk) = scale Q (Lq, D) K^T (D, Lk) */
            head_product(small, 0, 1, Lq, Lk, D, (float)scale, mat_ptr(qc, nb, bi), ldq,
                         mat_ptr(kc, nb, bi), ldk, S, Lk,
                         bsz || !panels ? NULL : panels + tid * D * Lk, bsc);
            if (Mp) {
                const float *M = Mp + bi * Lq * Lk;
                for (int64_t j = 0; j < Lq * Lk; j++)
                    S[j] += M[j];
            }
            softmax_rows(S, Lq, Lk);
            /* O (Lq, Dv) = P (Lq, Lk) V (Lk, Dv) */
            head_product(small, 0, 0, Lq, Dv, Lk, 1.0f, S, Lk, mat_ptr(vc, nb, bi), ldv,
                         (float *)mat_ptr(out, nb, bi), ldo, NULL, bsc);
        }
        free(panels);
    } else if (Lq > 0 && Dv > 0) {
        pivq_fill_nograd_(out, 0.0); /* no keys: an empty sum */
    }
    const pivq_tensor *in[4] = {q, k, v, mask};
    if (pivq_ag_wants(4, in)) {
        pivq_node *ndn = pivq_ag_record(PIVQ_GOP_ATTENTION, out, 4, in);
        int rc = ndn ? (pivq_ag_save(ndn, 0, qc) || pivq_ag_save(ndn, 1, kc) ||
                        pivq_ag_save(ndn, 2, vc) || pivq_ag_save(ndn, 3, P))
                     : -1;
        if (ndn) ndn->fp[0] = scale;
        out = pivq_ag_finish(out, ndn, rc);
    }
    pivq_tensor_release(qc);
    pivq_tensor_release(kc);
    pivq_tensor_release(vc);
    pivq_tensor_release(mc);
    pivq_tensor_release(P);
    return out;
fail:
    pivq_tensor_release(qc);
    pivq_tensor_release(kc);
    pivq_tensor_release(vc);
    pivq_tensor_release(mc);
    pivq_tensor_release(P);
    pivq_tensor_release(out);
    return NULL;
}

int pivq_attention_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    const pivq_tensor *q = n->saved[0], *k = n->saved[1], *v = n->saved[2], *P = n->saved[3];
    int nd = q->ndim, nb = nd - 2;
    int64_t Lq = q->shape[nd - 2], D = q->shape[nd - 1], Lk = k->shape[nd - 2],
            Dv = v->shape[nd - 1];
    int64_t nbatch = 1;
    for (int i = 0; i < nb; i++)
        nbatch *= q->shape[i];
    float scale = (float)n->fp[0];
    int need_q = pivq_ag_needs(n, 0), need_k = pivq_ag_needs(n, 1), need_v = pivq_ag_needs(n, 2);
    int need_m = n->n_in > 3 && pivq_ag_needs(n, 3);
    /* dq (..., Lq, D), dk (..., Lk, D), dv (..., Lk, Dv) laid out as q, k, v (so the heads fold
       back into their projections without a copy); dS_full (..., Lq, Lk). g, dO, may be any
       view whose rows are contiguous (the engine hands this op strided gradients). */
    pivq_tensor *dq = empty_like_layout(q, q->shape), *dk = empty_like_layout(k, k->shape);
    pivq_tensor *dv = empty_like_layout(v, v->shape);
    pivq_tensor *dS_full = need_m ? pivq_empty(PIVQ_FLOAT32, nd, P->shape) : NULL;
    pivq_tensor *gc = blas_ready(g);
    int nt = heads_parallel(nbatch), small = small_heads(Lq, Lk, D, Dv);
    size_t bsz = bf16_scratch(small, Lq, Lk, D, Dv);
    float *scratch = malloc((size_t)(nt * (Lq * Lk > 0 ? Lq * Lk : 1)) * sizeof(float));
    /* per thread, V^T of the current head (Dv, Lk) for the fp32 small kernels, or the bf16
       kernels' scratch */
    float *panels = bsz     ? aligned_alloc(64, (size_t)nt * bsz)
                    : small ? malloc((size_t)(nt * (Dv * Lk > 0 ? Dv * Lk : 1)) * sizeof(float))
                            : NULL;
    int rc = -1;
    if (!dq || !dk || !dv || (need_m && !dS_full) || !gc || !scratch || (small && !panels)) {
        pivq_set_error("attention backward: out of memory");
        goto done;
    }
    if (Lq == 0 || Lk == 0) { /* otherwise every element is written by an sgemm */
        pivq_fill_nograd_(dq, 0.0);
        pivq_fill_nograd_(dk, 0.0);
        pivq_fill_nograd_(dv, 0.0);
    }
    if (Lq > 0 && Lk > 0 && nbatch > 0) {
        int64_t ldq = row_stride(q), ldk = row_stride(k), ldv = row_stride(v), ldg = row_stride(gc),
                lddq = row_stride(dq), lddk = row_stride(dk), lddv = row_stride(dv);
        const float *Pp = pivq_data(P);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int64_t bi = 0; bi < nbatch; bi++) {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            const float *Pb = Pp + bi * Lq * Lk, *Gb = mat_ptr(gc, nb, bi); /* dO (Lq, Dv) */
            void *bsc = bsz ? (char *)panels + tid * bsz : NULL;
            float *dS =
                dS_full ? (float *)pivq_data(dS_full) + bi * Lq * Lk : scratch + tid * Lq * Lk;
            if (need_v && Dv > 0) /* dV (Lk, Dv) = P^T (Lk, Lq) @ dO (Lq, Dv) */
                head_product(small, 1, 0, Lk, Dv, Lq, 1.0f, Pb, Lk, Gb, ldg,
                             (float *)mat_ptr(dv, nb, bi), lddv, NULL, bsc);
            if (!(need_q || need_k || need_m)) continue;
            /* dP (Lq, Lk) = dO (Lq, Dv) @ V^T (Dv, Lk) */
            head_product(small, 0, 1, Lq, Lk, Dv, 1.0f, Gb, ldg, mat_ptr(v, nb, bi), ldv, dS, Lk,
                         bsz || !panels ? NULL : panels + tid * Dv * Lk, bsc);
            /* dS = P * (dP - rowsum(dP * P)): the softmax's backward, row by row */
            for (int64_t i = 0; i < Lq; i++) {
                const float *pr = Pb + i * Lk;
                float *dr = dS + i * Lk, s = 0.0f;
#pragma omp simd reduction(+ : s)
                for (int64_t j = 0; j < Lk; j++)
                    s += dr[j] * pr[j];
                for (int64_t j = 0; j < Lk; j++)
                    dr[j] = pr[j] * (dr[j] - s);
            }
            if (need_q && D > 0) /* dQ (Lq, D) = scale dS (Lq, Lk) @ K (Lk, D) */
                head_product(small, 0, 0, Lq, D, Lk, scale, dS, Lk, mat_ptr(k, nb, bi), ldk,
                             (float *)mat_ptr(dq, nb, bi), lddq, NULL, bsc);
            if (need_k && D > 0) /* dK (Lk, D) = scale dS^T (Lk, Lq) @ Q (Lq, D) */
                head_product(small, 1, 0, Lk, D, Lq, scale, dS, Lk, mat_ptr(q, nb, bi), ldq,
                             (float *)mat_ptr(dk, nb, bi), lddk, NULL, bsc);
        }
    } else if (need_m) {
        pivq_fill_nograd_(dS_full, 0.0);
    }
    if (need_q) gin[0] = pivq_tensor_retain(dq);
    if (need_k) gin[1] = pivq_tensor_retain(dk);
    if (need_v) gin[2] = pivq_tensor_retain(dv);
    if (need_m && !(gin[3] = pivq_sum_to_shape(dS_full, n->in[3].ndim, n->in[3].shape))) goto done;
    rc = 0;
done:
    pivq_tensor_release(dq);
    pivq_tensor_release(dk);
    pivq_tensor_release(dv);
    pivq_tensor_release(dS_full);
    pivq_tensor_release(gc);
    free(scratch);
    free(panels);
    return rc;
}
