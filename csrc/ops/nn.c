/* ops/nn.c — layers of neural networks that are not convolutions, norms, attention or
 * losses: linear, activations, softmax / log_softmax, embedding, dropout. Each op is a
 * forward kernel, its backward kernel beside it, and an autograd-aware entry point that
 * records the node.
 */
#include "ops/ops.h"

#include <cblas.h>
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

/* ---- linear ------------------------------------------------------------------------------ */

typedef struct colsum_ctx {
    const float *g;
    float *out;
    int64_t M, N;
} colsum_ctx;

static void colsum_range(int64_t c0, int64_t c1, void *ctx)
{
    const colsum_ctx *c = ctx;
    const float *g = c->g;
    float *out = c->out;
    int64_t M = c->M, N = c->N;
    for (int64_t j = c0; j < c1; j++)
        out[j] = 0.0f;
    for (int64_t i = 0; i < M; i++) {
        const float *row = g + i * N;
        for (int64_t j = c0; j < c1; j++)
            out[j] += row[j];
    }
}

/* Column sums: out (N) = sum over rows of g (M, N). Threads split the columns so that each
   output is written by one thread (none when there are too few columns to share); rows stream
   through the cache in order. */
void pivq_colsum(const float *g, float *out, int64_t M, int64_t N)
{
    colsum_ctx c = {g, out, M, N};
    pivq_parallel_range(N, N < 64 ? 0 : M * N, colsum_range, &c);
}

pivq_tensor *pivq_linear(const pivq_tensor *x, const pivq_tensor *w, const pivq_tensor *b)
{
    if (check_f32("linear", "input", x) || check_f32("linear", "weight", w) ||
        (b && check_f32("linear", "bias", b)))
        return NULL;
    char sx[160], sw[160], sb[160];
    if (x->ndim < 1 || w->ndim != 2 || x->shape[x->ndim - 1] != w->shape[1] ||
        (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))) {
        pivq_set_error("linear: input %s, weight %s (out x in) and bias %s do not match",
                       pivq_shape_str(x, sx, sizeof sx), pivq_shape_str(w, sw, sizeof sw),
                       b ? pivq_shape_str(b, sb, sizeof sb) : "none");
        return NULL;
    }
    int64_t K = w->shape[1], N = w->shape[0], M = K ? pivq_numel(x) / K : 0;
    if (K == 0) {
        M = 1;
        for (int i = 0; i < x->ndim - 1; i++)
            M *= x->shape[i];
    }
    int64_t osz[PIVQ_MAX_DIMS];
    memcpy(osz, x->shape, sizeof osz);
    osz[x->ndim - 1] = N;
    pivq_tensor *xc = pivq_contiguous_nograd(x), *wc = pivq_contiguous_nograd(w);
    pivq_tensor *bc = b ? pivq_contiguous_nograd(b) : NULL;
    pivq_tensor *y = (xc && wc && (!b || bc)) ? pivq_empty(PIVQ_FLOAT32, x->ndim, osz) : NULL;
    if (y && M > 0 && N > 0)
        pivq_gemm_bias(M, N, K, pivq_data(xc), pivq_data(wc), bc ? pivq_data(bc) : NULL,
                       pivq_data(y));
    const pivq_tensor *in[3] = {x, w, b};
    if (y && pivq_ag_wants(3, in)) {
        pivq_node *nd = pivq_ag_record(PIVQ_GOP_LINEAR, y, 3, in);
        int rc = nd ? 0 : -1;
        if (nd && pivq_ag_needs(nd, 1)) rc = pivq_ag_save(nd, 0, xc);
        if (nd && !rc && pivq_ag_needs(nd, 0)) rc = pivq_ag_save(nd, 1, wc);
        y = pivq_ag_finish(y, nd, rc);
    }
    pivq_tensor_release(xc);
    pivq_tensor_release(wc);
    pivq_tensor_release(bc);
    return y;
}

int pivq_linear_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    const pivq_edge *ex = &n->in[0], *ew = &n->in[1];
    int64_t N = ew->shape[0], K = ew->shape[1], M = N ? pivq_numel(g) / N : 0;
    const float *gp = pivq_data(g); /* dy (M, N) */
    /* under bf16 both products take dy as A: rounded once for the two */
    uint16_t *g16 = pivq_ag_needs(n, 0) && pivq_ag_needs(n, 1) && pivq_gemm_uses_bf16(M, N, K)
                        ? pivq_bf16_copy(gp, M, N, N)
                        : NULL;
    if (pivq_ag_needs(n, 0)) { /* dx (M, K) = dy (M, N) @ w (N, K) */
        /* sgemm writes every element (beta 0; zero-fills when N == 0): no memset needed */
        gin[0] = pivq_empty(PIVQ_FLOAT32, ex->ndim, ex->shape);
        if (!gin[0]) {
            free(g16);
            return -1;
        }
        pivq_gemm_ex(0, 0, M, K, N, 1.0f, gp, N, g16, pivq_data(n->saved[1]), K, 0.0f,
                     pivq_data(gin[0]), K);
    }
    if (pivq_ag_needs(n, 1)) { /* dw (N, K) = dy^T (N, M) @ x (M, K) */
        gin[1] = pivq_empty(PIVQ_FLOAT32, 2, ew->shape);
        if (!gin[1]) {
            free(g16);
            return -1;
        }
        pivq_gemm_ex(1, 0, N, K, M, 1.0f, gp, N, g16, pivq_data(n->saved[0]), K, 0.0f,
                     pivq_data(gin[1]), K);
    }
    free(g16);
    if (n->n_in > 2 && pivq_ag_needs(n, 2)) { /* db (N) = column sums of dy */
        gin[2] = pivq_empty(PIVQ_FLOAT32, 1, &N);
        if (!gin[2]) return -1;
        pivq_colsum(gp, pivq_data(gin[2]), M, N);
    }
    return 0;
}

/* ---- activations ------------------------------------------------------------------------- */

#define SQRT1_2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f
#define SQRT_2_OVER_PI 0.79788456080286536f

/* Standard normal CDF and density at v, sharing one exponential: with z = |v|/sqrt 2,
   erf(z) = 1 - t P(t) e^(-z^2), t = 1/(1 + p z) (Abramowitz & Stegun 7.1.26, absolute error
   < 1.5e-7), and e^(-z^2) = e^(-v^2/2) is also the density's. */
static inline void normal_cdf_pdf(float v, float *cdf, float *pdf)
{
    float e = pivq_fast_expf(-0.5f * v * v);
    float z = fabsf(v) * SQRT1_2;
    float t = 1.0f / (1.0f + 0.3275911f * z);
    float poly =
        t * (0.254829592f +
             t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    float erf_abs = 1.0f - poly * e;
    float erf_v = v < 0 ? -erf_abs : erf_abs;
    *cdf = 0.5f * (1.0f + erf_v);
    *pdf = INV_SQRT_2PI * e;
}

static inline float gelu_value(float v)
{
    float c, p;
    normal_cdf_pdf(v, &c, &p);
    return v * c;
}

static inline float gelu_slope(float v) /* Phi(x) + x phi(x) */
{
    float c, p;
    normal_cdf_pdf(v, &c, &p);
    return c + v * p;
}

static inline float gelu_tanh_slope(float v)
{
    float t = tanhf(SQRT_2_OVER_PI * (v + 0.044715f * v * v * v));
    return 0.5f * (1.0f + t) +
           0.5f * v * (1.0f - t * t) * SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * v * v);
}

static inline float silu_slope(float v)
{
    float s = 1.0f / (1.0f + pivq_fast_expf(-v));
    return s * (1.0f + v * (1.0f - s));
}

/* Range kernels: y[i] = act(x[i]) (g == NULL) or y[i] = g[i] act'(x[i]), over n contiguous
   values. Plain loops over restrict pointers, one per kind, so that each vectorises. */
typedef void (*act_kernel)(const float *restrict x, const float *restrict g, float *restrict y,
                           int64_t n, float a);

#define ACT_KERNEL(NAME, EXPR)                                                                     \
    static void NAME(const float *restrict x, const float *restrict g, float *restrict y,          \
                     int64_t n, float a)                                                           \
    {                                                                                              \
        (void)g;                                                                                   \
        (void)a;                                                                                   \
        for (int64_t i = 0; i < n; i++) {                                                          \
            float v = x[i];                                                                        \
            y[i] = (EXPR);                                                                         \
        }                                                                                          \
    }

ACT_KERNEL(relu_fwd, v > 0 ? v : 0.0f)
ACT_KERNEL(relu_bwd, v > 0 ? g[i] : 0.0f)
ACT_KERNEL(gelu_fwd, gelu_value(v))
ACT_KERNEL(gelu_bwd, g[i] * gelu_slope(v))
ACT_KERNEL(gelu_tanh_fwd, 0.5f * v * (1.0f + tanhf(SQRT_2_OVER_PI * (v + 0.044715f * v * v * v))))
ACT_KERNEL(gelu_tanh_bwd, g[i] * gelu_tanh_slope(v))
ACT_KERNEL(silu_fwd, v / (1.0f + pivq_fast_expf(-v)))
ACT_KERNEL(silu_bwd, g[i] * silu_slope(v))
ACT_KERNEL(leaky_fwd, v > 0 ? v : a * v)
ACT_KERNEL(leaky_bwd, v > 0 ? g[i] : a * g[i])
ACT_KERNEL(elu_fwd, v > 0 ? v : a * (pivq_fast_expf(v) - 1.0f))
ACT_KERNEL(elu_bwd, v > 0 ? g[i] : g[i] * a * pivq_fast_expf(v))
#undef ACT_KERNEL

static const act_kernel ACT_FWD[PIVQ_ACT_COUNT] = {
    [PIVQ_ACT_RELU] = relu_fwd,           [PIVQ_ACT_GELU] = gelu_fwd,
    [PIVQ_ACT_GELU_TANH] = gelu_tanh_fwd, [PIVQ_ACT_SILU] = silu_fwd,
    [PIVQ_ACT_LEAKY_RELU] = leaky_fwd,    [PIVQ_ACT_ELU] = elu_fwd};
static const act_kernel ACT_BWD[PIVQ_ACT_COUNT] = {
    [PIVQ_ACT_RELU] = relu_bwd,           [PIVQ_ACT_GELU] = gelu_bwd,
    [PIVQ_ACT_GELU_TANH] = gelu_tanh_bwd, [PIVQ_ACT_SILU] = silu_bwd,
    [PIVQ_ACT_LEAKY_RELU] = leaky_bwd,    [PIVQ_ACT_ELU] = elu_bwd};

typedef struct act_ctx {
    act_kernel k;
    const float *x, *g;
    float *y, a;
} act_ctx;

static void act_range(int64_t lo, int64_t hi, void *ctx)
{
    const act_ctx *c = ctx;
    c->k(c->x + lo, c->g ? c->g + lo : NULL, c->y + lo, hi - lo, c->a);
}

/* Split [0, n) evenly among the threads, each running the kernel on its range. */
static void act_run(act_kernel k, const float *x, const float *g, float *y, int64_t n, float a)
{
    act_ctx c = {k, x, g, y, a};
    pivq_parallel_range(n, n * 4, act_range, &c);
}

static void activation_forward(const float *x, float *y, int64_t n, int kind, float a)
{
    act_run(ACT_FWD[kind], x, NULL, y, n, a);
}

/* dx = dy * act'(x) elementwise. */
static void activation_backward(const float *x, const float *g, float *dx, int64_t n, int kind,
                                float a)
{
    act_run(ACT_BWD[kind], x, g, dx, n, a);
}

pivq_tensor *pivq_activation(const pivq_tensor *x, int kind, double param)
{
    /* errors name the activation the user called (F.gelu, F.silu, ...) */
    static const char *const names[PIVQ_ACT_COUNT] = {"relu", "gelu",       "gelu",
                                                      "silu", "leaky_relu", "elu"};
    if (kind < 0 || kind >= PIVQ_ACT_COUNT) {
        pivq_set_error("activation: unknown kind %d", kind);
        return NULL;
    }
    if (check_f32(names[kind], "input", x)) return NULL;
    pivq_tensor *xc = pivq_contiguous_nograd(x);
    if (!xc) return NULL;
    pivq_tensor *y = pivq_empty(PIVQ_FLOAT32, x->ndim, x->shape);
    if (y) activation_forward(pivq_data(xc), pivq_data(y), pivq_numel(x), kind, (float)param);
    if (y && pivq_ag_wants(1, &x)) {
        pivq_node *nd = pivq_ag_record(PIVQ_GOP_ACTIVATION, y, 1, &x);
        if (nd) {
            nd->ip[0] = kind;
            nd->fp[0] = param;
        }
        y = pivq_ag_finish(y, nd, nd ? pivq_ag_save(nd, 0, xc) : -1);
    }
    pivq_tensor_release(xc);
    return y;
}

int pivq_activation_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    pivq_tensor *dx = pivq_empty(PIVQ_FLOAT32, g->ndim, g->shape);
    if (!dx) return -1;
    activation_backward(pivq_data(n->saved[0]), pivq_data(g), pivq_data(dx), pivq_numel(g),
                        (int)n->ip[0], (float)n->fp[0]);
    gin[0] = dx;
    return 0;
}

/* ---- softmax / log_softmax --------------------------------------------------------------- */

/* x viewed as (outer, D, inner) around the softmax dim. */
static void split_dims(const pivq_tensor *t, int dim, int64_t *outer, int64_t *D, int64_t *inner)
{
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < dim; i++)
        *outer *= t->shape[i];
    for (int i = dim + 1; i < t->ndim; i++)
        *inner *= t->shape[i];
    *D = t->shape[dim];
}

/* y = softmax or log_softmax of x along D (stride `inner`), for each (outer, inner) line. */
static void softmax_forward(const float *x, float *y, int64_t outer, int64_t D, int64_t inner,
                            int log_out)
{
    int64_t lines = outer * inner;
    int nt = pivq_threads_for(lines * D * 4);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t l = 0; l < lines; l++) {
        int64_t o = l / inner, i = l % inner;
        const float *xp = x + o * D * inner + i;
        float *yp = y + o * D * inner + i;
        float m = -INFINITY;
        for (int64_t d = 0; d < D; d++)
            m = xp[d * inner] > m ? xp[d * inner] : m;
        if (m == -INFINITY) m = 0.0f; /* an all -inf line: avoid inf - inf */
        double s = 0.0;
        for (int64_t d = 0; d < D; d++) {
            float e = pivq_fast_expf(xp[d * inner] - m);
            if (!log_out) yp[d * inner] = e;
            s += e;
        }
        if (log_out) {
            float ls = m + (float)log(s);
            for (int64_t d = 0; d < D; d++)
                yp[d * inner] = xp[d * inner] - ls;
        } else {
            float inv = s > 0 ? (float)(1.0 / s) : 0.0f;
            for (int64_t d = 0; d < D; d++)
                yp[d * inner] *= inv;
        }
    }
}

/* softmax: dx = y (g - sum(g y)); log_softmax: dx = g - exp(y) sum(g). */
static void softmax_backward(const float *y, const float *g, float *dx, int64_t outer, int64_t D,
                             int64_t inner, int log_out)
{
    int64_t lines = outer * inner;
    int nt = pivq_threads_for(lines * D * 4);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t l = 0; l < lines; l++) {
        int64_t o = l / inner, i = l % inner, base = o * D * inner + i;
        const float *yp = y + base, *gp = g + base;
        float *dp = dx + base;
        double s = 0.0;
        if (log_out) {
            for (int64_t d = 0; d < D; d++)
                s += gp[d * inner];
            for (int64_t d = 0; d < D; d++)
                dp[d * inner] = gp[d * inner] - pivq_fast_expf(yp[d * inner]) * (float)s;
        } else {
            for (int64_t d = 0; d < D; d++)
                s += gp[d * inner] * yp[d * inner];
            for (int64_t d = 0; d < D; d++)
                dp[d * inner] = yp[d * inner] * (gp[d * inner] - (float)s);
        }
    }
}

static pivq_tensor *softmax_common(const char *fname, const pivq_tensor *x, int dim, int log_out)
{
    if (check_f32(fname, "input", x)) return NULL;
    if (dim < 0 || dim >= x->ndim) {
        char s[160];
        pivq_set_error("%s: dim %d out of range for shape %s", fname, dim,
                       pivq_shape_str(x, s, sizeof s));
        return NULL;
    }
    pivq_tensor *xc = pivq_contiguous_nograd(x);
    if (!xc) return NULL;
    pivq_tensor *y = pivq_empty(PIVQ_FLOAT32, x->ndim, x->shape);
    int64_t outer, D, inner;
    split_dims(x, dim, &outer, &D, &inner);
    if (y) softmax_forward(pivq_data(xc), pivq_data(y), outer, D, inner, log_out);
    pivq_tensor_release(xc);
    if (y && pivq_ag_wants(1, &x)) {
        pivq_node *nd = pivq_ag_record(PIVQ_GOP_SOFTMAX, y, 1, &x);
        if (nd) {
            nd->ip[0] = dim;
            nd->ip[1] = log_out;
        }
        y = pivq_ag_finish(y, nd, nd ? pivq_ag_save(nd, 0, y) : -1);
    }
    return y;
}

pivq_tensor *pivq_softmax(const pivq_tensor *x, int dim)
{
    return softmax_common("softmax", x, dim, 0);
}

pivq_tensor *pivq_log_softmax(const pivq_tensor *x, int dim)
{
    return softmax_common("log_softmax", x, dim, 1);
}

int pivq_softmax_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    pivq_tensor *dx = pivq_empty(PIVQ_FLOAT32, g->ndim, g->shape);
    if (!dx) return -1;
    int64_t outer, D, inner;
    split_dims(g, (int)n->ip[0], &outer, &D, &inner);
    softmax_backward(pivq_data(n->saved[0]), pivq_data(g), pivq_data(dx), outer, D, inner,
                     (int)n->ip[1]);
    gin[0] = dx;
    return 0;
}

/* ---- embedding ---------------------------------------------------------------------------- */

pivq_tensor *pivq_embedding(const pivq_tensor *index, const pivq_tensor *weight)
{
    if (pivq_check_tensor("embedding", "index", index) || check_f32("embedding", "weight", weight))
        return NULL;
    char s[160];
    if (weight->ndim != 2) {
        pivq_set_error("embedding: weight must be 2-D (num x dim), got %s",
                       pivq_shape_str(weight, s, sizeof s));
        return NULL;
    }
    if (index->ndim >= PIVQ_MAX_DIMS ||
        (index->scalar_type != PIVQ_INT64 && index->scalar_type != PIVQ_INT32)) {
        pivq_set_error("embedding: index must be int64 or int32 with fewer than %d dims",
                       PIVQ_MAX_DIMS);
        return NULL;
    }
    int64_t V = weight->shape[0], D = weight->shape[1], K = pivq_numel(index);
    pivq_tensor *idx = pivq_to_dtype_nograd(index, PIVQ_INT64),
                *wc = pivq_contiguous_nograd(weight);
    pivq_tensor *y = NULL;
    if (!idx || !wc) goto done;
    const int64_t *ix = pivq_data(idx);
    for (int64_t k = 0; k < K; k++)
        if (ix[k] < 0 || ix[k] >= V) {
            pivq_set_error("embedding: index %lld out of range for %lld embeddings",
                           (long long)ix[k], (long long)V);
            goto done;
        }
    int64_t osz[PIVQ_MAX_DIMS];
    memcpy(osz, index->shape, sizeof osz);
    osz[index->ndim] = D;
    y = pivq_empty(PIVQ_FLOAT32, index->ndim + 1, osz); /* y (index..., D) */
    if (!y) goto done;
    const float *w = pivq_data(wc);
    float *yp = pivq_data(y);
    for (int64_t k = 0; k < K; k++)
        memcpy(yp + k * D, w + ix[k] * D, (size_t)D * sizeof *yp);
    if (pivq_ag_wants(1, &weight)) {
        const pivq_tensor *in[2] = {weight, NULL};
        pivq_node *nd = pivq_ag_record(PIVQ_GOP_EMBEDDING, y, 1, in);
        y = pivq_ag_finish(y, nd, nd ? pivq_ag_save(nd, 0, idx) : -1);
    }
done:
    pivq_tensor_release(idx);
    pivq_tensor_release(wc);
    return y;
}

int pivq_embedding_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    /* dw (V, D): row ix[k] += g[k] (g viewed as (K, D)); serial over k (repeats race) and
       vectorised along D */
    const pivq_edge *ew = &n->in[0];
    pivq_tensor *dw = pivq_zeros_f32(2, ew->shape);
    if (!dw) return -1;
    int64_t D = ew->shape[1], K = pivq_numel(n->saved[0]);
    const int64_t *ix = pivq_data(n->saved[0]);
    const float *gp = pivq_data(g);
    float *d = pivq_data(dw);
    for (int64_t k = 0; k < K; k++) {
        float *row = d + ix[k] * D;
        const float *src = gp + k * D;
        for (int64_t j = 0; j < D; j++)
            row[j] += src[j];
    }
    gin[0] = dw;
    return 0;
}

/* ---- dropout ------------------------------------------------------------------------------ */

pivq_tensor *pivq_dropout(const pivq_tensor *x, double p, int training, pivq_generator *gen)
{
    if (check_f32("dropout", "input", x)) return NULL;
    if (!(p >= 0 && p <= 1)) {
        pivq_set_error("dropout: p must be in [0, 1], got %g", p);
        return NULL;
    }
    if (!training || p == 0) return pivq_clone(x); /* identity: the recorded copy (ops/shape.c) */
    pivq_tensor *xc = pivq_contiguous_nograd(x);
    pivq_tensor *mask = pivq_empty(PIVQ_FLOAT32, x->ndim, x->shape); /* kept / (1 - p), or 0 */
    pivq_tensor *y = NULL;
    if (!xc || !mask || pivq_uniform_(mask, 0.0, 1.0, gen)) goto done;
    y = pivq_empty(PIVQ_FLOAT32, x->ndim, x->shape);
    if (!y) goto done;
    float *m = pivq_data(mask), *yp = pivq_data(y);
    const float *xp = pivq_data(xc);
    float scale = p < 1 ? (float)(1.0 / (1.0 - p)) : 0.0f;
    int64_t N = pivq_numel(x);
    for (int64_t i = 0; i < N; i++) {
        m[i] = m[i] >= (float)p ? scale : 0.0f;
        yp[i] = xp[i] * m[i];
    }
    if (pivq_ag_wants(1, &x)) {
        pivq_node *nd = pivq_ag_record(PIVQ_GOP_DROPOUT, y, 1, &x);
        y = pivq_ag_finish(y, nd, nd ? pivq_ag_save(nd, 0, mask) : -1);
    }
done:
    pivq_tensor_release(xc);
    pivq_tensor_release(mask);
    return y;
}

int pivq_dropout_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    gin[0] = pivq_binary_nograd(g, n->saved[0], PIVQ_MUL);
    return gin[0] ? 0 : -1;
}

/* log_softmax for internal users that record their own node (cross_entropy). */
pivq_tensor *pivq_log_softmax_nograd(const pivq_tensor *x, int dim)
{
    int prev = pivq_set_grad_enabled(0);
    pivq_tensor *y = pivq_log_softmax(x, dim);
    pivq_set_grad_enabled(prev);
    return y;
}
