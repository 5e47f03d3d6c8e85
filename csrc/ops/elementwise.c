/* ops/elementwise.c — unary, binary, comparison and select ops with NumPy broadcasting.
 *
 * Every op runs through the coalescing iterator of core/tensor.c: operands are broadcast to one
 * shape (stride 0 on broadcast dims), the iterator hands each kernel runs of the innermost
 * dim, and the kernel picks a contiguous loop (which the compiler vectorises), a
 * scalar-operand loop, or a generic strided loop.
 *
 * Autograd: each differentiable op is a kernel (pivq_<op>_nograd, what code inside the library
 * calls) and a public pivq_<op> that runs it and records the graph node, followed by the op's
 * backward. Backward of the ops with a simple derivative runs one fused loop over contiguous
 * buffers; the rest (broadcasting binary ops, where) are compositions of the kernels here,
 * which are already vectorised and threaded. The in-place forms refuse tensors in a graph.
 */
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *unary_names[PIVQ_UNARY_COUNT] = {"neg",   "abs",  "exp",   "log",  "sqrt",
                                                    "rsqrt", "sin",  "cos",   "tanh", "sigmoid",
                                                    "relu",  "sign", "floor", "ceil", "round"};
static const char *binary_names[PIVQ_BINARY_COUNT] = {"add",     "sub",     "mul", "div",
                                                      "maximum", "minimum", "pow"};
static const char *compare_names[PIVQ_COMPARE_COUNT] = {"eq", "ne", "lt", "le", "gt", "ge"};

const char *pivq_unary_name(int op)
{
    return op >= 0 && op < PIVQ_UNARY_COUNT ? unary_names[op] : "?";
}
const char *pivq_binary_name(int op)
{
    return op >= 0 && op < PIVQ_BINARY_COUNT ? binary_names[op] : "?";
}
const char *pivq_compare_name(int op)
{
    return op >= 0 && op < PIVQ_COMPARE_COUNT ? compare_names[op] : "?";
}

/* Operand j of a run: contiguous when its byte stride equals the element size. */
#define AT(T, p, s, j) (*(T *)((p) + (j) * (s)))

/* ---- unary ---------------------------------------------------------------------------- */

/* True for ops whose result is only meaningful in floating point. */
static int unary_needs_float(int op)
{
    switch (op) {
    case PIVQ_NEG:
    case PIVQ_ABS:
    case PIVQ_RELU:
    case PIVQ_SIGN:
    case PIVQ_FLOOR:
    case PIVQ_CEIL:
    case PIVQ_ROUND: return 0;
    default: return 1;
    }
}

#define UNARY_LOOP(T, EXPR)                                                                        \
    do {                                                                                           \
        if (st[0] == (int64_t)sizeof(T) && st[1] == (int64_t)sizeof(T)) {                          \
            T *o = (T *)p[0];                                                                      \
            const T *in = (const T *)p[1];                                                         \
            for (int64_t j = 0; j < n; j++) {                                                      \
                T x = in[j];                                                                       \
                o[j] = (EXPR);                                                                     \
            }                                                                                      \
        } else {                                                                                   \
            for (int64_t j = 0; j < n; j++) {                                                      \
                T x = AT(T, p[1], st[1], j);                                                       \
                AT(T, p[0], st[0], j) = (EXPR);                                                    \
            }                                                                                      \
        }                                                                                          \
    } while (0)

typedef struct {
    int op;
    double lo, hi;
} unary_ctx;

static void unary_f32_run(char **p, const int64_t *st, int64_t n, void *vctx)
{
    const unary_ctx *c = vctx;
    switch (c->op) {
    case PIVQ_NEG: UNARY_LOOP(float, -x); break;
    case PIVQ_ABS: UNARY_LOOP(float, fabsf(x)); break;
    case PIVQ_EXP: UNARY_LOOP(float, expf(x)); break;
    case PIVQ_LOG: UNARY_LOOP(float, logf(x)); break;
    case PIVQ_SQRT: UNARY_LOOP(float, sqrtf(x)); break;
    case PIVQ_RSQRT: UNARY_LOOP(float, 1.0f / sqrtf(x)); break;
    case PIVQ_SIN: UNARY_LOOP(float, sinf(x)); break;
    case PIVQ_COS: UNARY_LOOP(float, cosf(x)); break;
    case PIVQ_TANH: UNARY_LOOP(float, tanhf(x)); break;
    case PIVQ_SIGMOID: UNARY_LOOP(float, 1.0f / (1.0f + expf(-x))); break;
    case PIVQ_RELU: UNARY_LOOP(float, x > 0.0f ? x : 0.0f); break;
    case PIVQ_SIGN: UNARY_LOOP(float, (float)((x > 0.0f) - (x < 0.0f))); break;
    case PIVQ_FLOOR: UNARY_LOOP(float, floorf(x)); break;
    case PIVQ_CEIL: UNARY_LOOP(float, ceilf(x)); break;
    case PIVQ_ROUND: UNARY_LOOP(float, nearbyintf(x)); break; /* half to even, as PyTorch */
    case -1: {                                                /* clamp */
        float lo = (float)c->lo, hi = (float)c->hi;
        UNARY_LOOP(float, x < lo ? lo : (x > hi ? hi : x));
        break;
    }
    }
}

/* Integer unary ops (only those that keep integers) and clamp. The same macro serves uint8,
   where `x < 0` is always false: that is intended, so the warning is silenced here. */
#pragma GCC diagnostic ignored "-Wtype-limits"
#define INT_UNARY_CASES(T)                                                                         \
    switch (c->op) {                                                                               \
    case PIVQ_NEG: UNARY_LOOP(T, (T)-x); break;                                                    \
    case PIVQ_ABS: UNARY_LOOP(T, (T)(x < 0 ? -x : x)); break;                                      \
    case PIVQ_RELU: UNARY_LOOP(T, (T)(x > 0 ? x : 0)); break;                                      \
    case PIVQ_SIGN: UNARY_LOOP(T, (T)((x > 0) - (x < 0))); break;                                  \
    case -1: {                                                                                     \
        double lo = c->lo, hi = c->hi;                                                             \
        UNARY_LOOP(T, (T)((double)x < lo ? lo : ((double)x > hi ? hi : (double)x)));               \
        break;                                                                                     \
    }                                                                                              \
    default: UNARY_LOOP(T, x); break; /* floor/ceil/round of an integer */                         \
    }

static void unary_i32_run(char **p, const int64_t *st, int64_t n, void *vctx)
{
    const unary_ctx *c = vctx;
    INT_UNARY_CASES(int32_t)
}
static void unary_i64_run(char **p, const int64_t *st, int64_t n, void *vctx)
{
    const unary_ctx *c = vctx;
    INT_UNARY_CASES(int64_t)
}
static void unary_u8_run(char **p, const int64_t *st, int64_t n, void *vctx)
{
    const unary_ctx *c = vctx;
    INT_UNARY_CASES(uint8_t)
}

static const pivq_run_fn unary_runs[4] = {unary_f32_run, unary_i32_run, unary_i64_run,
                                          unary_u8_run};

static pivq_tensor *unary_apply(const char *fname, const pivq_tensor *x, unary_ctx *c)
{
    if (pivq_check_tensor(fname, "input", x)) return NULL;
    int dtype = (c->op >= 0 && unary_needs_float(c->op)) ? PIVQ_FLOAT32 : x->scalar_type;
    pivq_tensor *in = dtype == x->scalar_type ? pivq_tensor_retain((pivq_tensor *)x)
                                              : pivq_to_dtype_nograd(x, dtype);
    if (!in) return NULL;
    pivq_tensor *out = pivq_empty(dtype, in->ndim, in->shape);
    if (out) {
        const int64_t *strides[2] = {out->strides, in->strides};
        char *base[2] = {pivq_data(out), pivq_data(in)};
        int es = pivq_dtype_size(dtype);
        int esize[2] = {es, es};
        pivq_iter it;
        pivq_iter_init(&it, 2, in->ndim, in->shape, strides, base, esize);
        pivq_iter_parallel(&it, unary_runs[dtype], c);
    }
    pivq_tensor_release(in);
    return out;
}

pivq_tensor *pivq_unary_nograd(const pivq_tensor *x, int op)
{
    if (op < 0 || op >= PIVQ_UNARY_COUNT) {
        pivq_set_error("unary: unknown op %d", op);
        return NULL;
    }
    unary_ctx c = {op, 0, 0};
    return unary_apply(unary_names[op], x, &c);
}

pivq_tensor *pivq_clamp_nograd(const pivq_tensor *x, double lo, double hi)
{
    if (isnan(lo) || isnan(hi) || lo > hi) {
        pivq_set_error("clamp: need lo <= hi, got %g and %g", lo, hi);
        return NULL;
    }
    unary_ctx c = {-1, lo, hi};
    return unary_apply("clamp", x, &c);
}

/* ---- unary and clamp: recorded forms and backward -------------------------------------------- */

pivq_tensor *pivq_unary(const pivq_tensor *x, int op)
{
    pivq_tensor *y = pivq_unary_nograd(x, op);
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
    pivq_tensor *xs = n->saved[0] ? pivq_contiguous_nograd(n->saved[0]) : NULL;
    pivq_tensor *ys = n->saved[1] ? pivq_contiguous_nograd(n->saved[1]) : NULL;
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

pivq_tensor *pivq_clamp(const pivq_tensor *x, double lo, double hi)
{
    pivq_tensor *y = pivq_clamp_nograd(x, lo, hi);
    if (!y || !pivq_ag_wants(1, &x)) return y;
    pivq_node *nd = pivq_ag_record(PIVQ_GOP_CLAMP, y, 1, &x);
    if (!nd) return pivq_ag_finish(y, NULL, -1);
    nd->fp[0] = lo;
    nd->fp[1] = hi;
    return pivq_ag_finish(y, nd, pivq_ag_save(nd, 0, x));
}

int pivq_clamp_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    pivq_tensor *xs = pivq_contiguous_nograd(n->saved[0]);
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

/* ---- binary --------------------------------------------------------------------------- */

/* Four loops per op: both contiguous, b or a a broadcast scalar, and generic strides. */
#define BINARY_LOOP(T, EXPR)                                                                       \
    do {                                                                                           \
        const int64_t es = (int64_t)sizeof(T);                                                     \
        if (st[0] == es && st[1] == es && st[2] == es) {                                           \
            T *o = (T *)p[0];                                                                      \
            const T *xa = (const T *)p[1], *xb = (const T *)p[2];                                  \
            for (int64_t j = 0; j < n; j++) {                                                      \
                T a = xa[j], b = xb[j];                                                            \
                o[j] = (EXPR);                                                                     \
            }                                                                                      \
        } else if (st[0] == es && st[1] == es && st[2] == 0) {                                     \
            T *o = (T *)p[0];                                                                      \
            const T *xa = (const T *)p[1];                                                         \
            const T b = *(const T *)p[2];                                                          \
            for (int64_t j = 0; j < n; j++) {                                                      \
                T a = xa[j];                                                                       \
                o[j] = (EXPR);                                                                     \
            }                                                                                      \
        } else if (st[0] == es && st[1] == 0 && st[2] == es) { /* number first: 2 - x */           \
            T *o = (T *)p[0];                                                                      \
            const T a = *(const T *)p[1];                                                          \
            const T *xb = (const T *)p[2];                                                         \
            for (int64_t j = 0; j < n; j++) {                                                      \
                T b = xb[j];                                                                       \
                o[j] = (EXPR);                                                                     \
            }                                                                                      \
        } else {                                                                                   \
            for (int64_t j = 0; j < n; j++) {                                                      \
                T a = AT(T, p[1], st[1], j), b = AT(T, p[2], st[2], j);                            \
                AT(T, p[0], st[0], j) = (EXPR);                                                    \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static void binary_f32_run(char **p, const int64_t *st, int64_t n, void *ctx)
{
    switch (*(const int *)ctx) {
    case PIVQ_ADD: BINARY_LOOP(float, a + b); break;
    case PIVQ_SUB: BINARY_LOOP(float, a - b); break;
    case PIVQ_MUL: BINARY_LOOP(float, a *b); break;
    case PIVQ_DIV: BINARY_LOOP(float, a / b); break;
    case PIVQ_MAX: BINARY_LOOP(float, (a != a || a > b) ? a : b); break; /* NaN propagates */
    case PIVQ_MIN: BINARY_LOOP(float, (a != a || a < b) ? a : b); break;
    case PIVQ_POW: BINARY_LOOP(float, powf(a, b)); break;
    }
}

/* Integer pow by squaring; negative exponents give 0 except for bases 1 and -1. */
static inline int64_t ipow(int64_t base, int64_t e)
{
    if (e < 0) return base == 1 ? 1 : (base == -1 ? ((e & 1) ? -1 : 1) : 0);
    uint64_t r = 1, b = (uint64_t)base; /* unsigned: wraparound instead of UB on overflow */
    while (e) {
        if (e & 1) r *= b;
        b *= b;
        e >>= 1;
    }
    return (int64_t)r;
}

/* Integer arithmetic wraps like PyTorch's; done in unsigned to avoid signed-overflow UB.
   Division is never reached: integer division promotes to float32 (true division). */
#define INT_BINARY_CASES(T, U)                                                                     \
    switch (*(const int *)ctx) {                                                                   \
    case PIVQ_ADD: BINARY_LOOP(T, (T)((U)a + (U)b)); break;                                        \
    case PIVQ_SUB: BINARY_LOOP(T, (T)((U)a - (U)b)); break;                                        \
    case PIVQ_MUL: BINARY_LOOP(T, (T)((U)a * (U)b)); break;                                        \
    case PIVQ_MAX: BINARY_LOOP(T, a > b ? a : b); break;                                           \
    case PIVQ_MIN: BINARY_LOOP(T, a < b ? a : b); break;                                           \
    case PIVQ_POW: BINARY_LOOP(T, (T)ipow(a, b)); break;                                           \
    }

static void binary_i32_run(char **p, const int64_t *st, int64_t n, void *ctx)
{
    INT_BINARY_CASES(int32_t, uint32_t)
}
static void binary_i64_run(char **p, const int64_t *st, int64_t n, void *ctx)
{
    INT_BINARY_CASES(int64_t, uint64_t)
}
static void binary_u8_run(char **p, const int64_t *st, int64_t n, void *ctx)
{
    INT_BINARY_CASES(uint8_t, uint8_t)
}

static const pivq_run_fn binary_runs[4] = {binary_f32_run, binary_i32_run, binary_i64_run,
                                           binary_u8_run};

/* Convert t to dtype unless it already has it (new reference either way). */
static pivq_tensor *as_dtype(const pivq_tensor *t, int dtype)
{
    if (t->scalar_type == dtype) return pivq_tensor_retain((pivq_tensor *)t);
    return pivq_to_dtype_nograd(t, dtype);
}

/* Run a kernel with out (shape ndim/size) and inputs broadcast to it. */
static void run_broadcast(pivq_tensor *out, const pivq_tensor *const *in, int nin, int dtype_in,
                          pivq_run_fn fn, void *ctx)
{
    int64_t bst[PIVQ_ITER_MAX_OPS][PIVQ_MAX_DIMS];
    const int64_t *strides[PIVQ_ITER_MAX_OPS];
    char *base[PIVQ_ITER_MAX_OPS];
    int esize[PIVQ_ITER_MAX_OPS];
    strides[0] = out->strides;
    base[0] = pivq_data(out);
    esize[0] = pivq_dtype_size(out->scalar_type);
    for (int k = 0; k < nin; k++) {
        pivq_broadcast_strides(in[k], out->ndim, out->shape, bst[k]);
        strides[k + 1] = bst[k];
        base[k + 1] = pivq_data(in[k]);
        esize[k + 1] = pivq_dtype_size(dtype_in >= 0 ? dtype_in : in[k]->scalar_type);
    }
    pivq_iter it;
    pivq_iter_init(&it, nin + 1, out->ndim, out->shape, strides, base, esize);
    pivq_iter_parallel(&it, fn, ctx);
}

pivq_tensor *pivq_binary_nograd(const pivq_tensor *a, const pivq_tensor *b, int op)
{
    if (op < 0 || op >= PIVQ_BINARY_COUNT) {
        pivq_set_error("binary: unknown op %d", op);
        return NULL;
    }
    const char *fname = binary_names[op];
    if (pivq_check_tensor(fname, "first operand", a) ||
        pivq_check_tensor(fname, "second operand", b))
        return NULL;
    int ndim;
    int64_t size[PIVQ_MAX_DIMS];
    if (pivq_broadcast_shapes(fname, a, b, &ndim, size)) return NULL;
    int dtype = pivq_promote_dtype(a->scalar_type, b->scalar_type);
    if (op == PIVQ_DIV) dtype = PIVQ_FLOAT32; /* true division, as PyTorch */
    pivq_tensor *ca = as_dtype(a, dtype), *cb = ca ? as_dtype(b, dtype) : NULL;
    pivq_tensor *out = cb ? pivq_empty(dtype, ndim, size) : NULL;
    if (out) {
        const pivq_tensor *in[2] = {ca, cb};
        run_broadcast(out, in, 2, -1, binary_runs[dtype], &op);
    }
    pivq_tensor_release(ca);
    pivq_tensor_release(cb);
    return out;
}

/* A 0-dim tensor holding a number, living on the caller's stack: scalar forms (x * 2) would
   otherwise allocate and free a tensor per call. The caller keeps the only reference it
   counts, so the refcount never reaches 0 and nothing frees it; ops that take a reference
   (as_dtype) give it back before returning. */
typedef struct stack_scalar {
    pivq_tensor t;
    pivq_storage s;
    union {
        float f;
        int32_t i32;
        int64_t i64;
        uint8_t u8;
    } v;
} stack_scalar;

static pivq_tensor *scalar_tensor(stack_scalar *ss, double s, int dtype)
{
    memset(ss, 0, sizeof *ss);
    ss->s.data = &ss->v;
    ss->s.nbytes = pivq_dtype_size(dtype);
    ss->s.refcount = 1;
    ss->t.refcount = 1;
    ss->t.scalar_type = dtype;
    ss->t.storage = &ss->s;
    switch (dtype) {
    case PIVQ_FLOAT32: ss->v.f = (float)s; break;
    case PIVQ_INT32: ss->v.i32 = (int32_t)(int64_t)s; break; /* wraps, as fill does */
    case PIVQ_INT64: ss->v.i64 = (int64_t)s; break;
    default: ss->v.u8 = (uint8_t)(int64_t)s; break;
    }
    return &ss->t;
}

/* An integer tensor meets a number as an integer only when the number is one that int64
   holds; anything else (0.5, 1e30, inf, nan) makes the op float32. */
static int scalar_dtype(const pivq_tensor *a, double s, int op)
{
    if (a->scalar_type == PIVQ_FLOAT32 || op == PIVQ_DIV) return PIVQ_FLOAT32;
    if (!pivq_fits_int64(s)) return PIVQ_FLOAT32;
    return a->scalar_type;
}

pivq_tensor *pivq_binary_scalar_nograd(const pivq_tensor *a, double s, int op, int scalar_first)
{
    if (op < 0 || op >= PIVQ_BINARY_COUNT) {
        pivq_set_error("binary: unknown op %d", op);
        return NULL;
    }
    if (pivq_check_tensor(binary_names[op], "tensor operand", a)) return NULL;
    stack_scalar ss;
    pivq_tensor *st = scalar_tensor(&ss, s, scalar_dtype(a, s, op));
    return scalar_first ? pivq_binary_nograd(st, a, op) : pivq_binary_nograd(a, st, op);
}

int pivq_binary_nograd_(pivq_tensor *a, const pivq_tensor *b, int op)
{
    if (op < 0 || op >= PIVQ_BINARY_COUNT) return pivq_set_error("binary_: unknown op %d", op);
    const char *fname = binary_names[op];
    if (pivq_check_tensor(fname, "destination", a) || pivq_check_tensor(fname, "operand", b))
        return -1;
    if (op == PIVQ_DIV && a->scalar_type != PIVQ_FLOAT32)
        return pivq_set_error("div_: a %s tensor cannot hold the result of a true division",
                              pivq_dtype_name(a->scalar_type));
    int ndim;
    int64_t size[PIVQ_MAX_DIMS];
    if (pivq_broadcast_shapes(fname, a, b, &ndim, size)) return -1;
    for (int i = 0; i < ndim; i++) {
        int k = i - (ndim - a->ndim);
        if (k < 0 || a->shape[k] != size[i]) {
            char x[160], y[160];
            return pivq_set_error("%s_: in-place result of shape %s does not fit the "
                                  "destination %s",
                                  fname, pivq_sizes_str(ndim, size, x, sizeof x),
                                  pivq_shape_str(a, y, sizeof y));
        }
    }
    /* a copy when b overlaps a differently (a:add_(a:t())): a would be read after written */
    pivq_tensor *cb = pivq_may_alias(a, b) ? pivq_to_dtype_nograd(b, a->scalar_type)
                                           : as_dtype(b, a->scalar_type);
    if (!cb) return -1;
    const pivq_tensor *in[2] = {a, cb};
    run_broadcast(a, in, 2, -1, binary_runs[a->scalar_type], &op);
    pivq_tensor_release(cb);
    return 0;
}

int pivq_binary_scalar_nograd_(pivq_tensor *a, double s, int op)
{
    if (pivq_check_tensor("binary_", "destination", a)) return -1;
    if (a->scalar_type != PIVQ_FLOAT32 && !pivq_fits_int64(s))
        return pivq_set_error("%s_: cannot apply the non-integral scalar %g to a %s tensor in "
                              "place",
                              pivq_binary_name(op), s, pivq_dtype_name(a->scalar_type));
    stack_scalar ss;
    return pivq_binary_nograd_(a, scalar_tensor(&ss, s, a->scalar_type), op);
}

/* ---- binary: recorded and guarded forms, backward -------------------------------------------- */

/* g (the output's shape) broadcast back to each input shape. */
static pivq_tensor *to_input(pivq_node *n, int i, pivq_tensor *full)
{
    if (!full) return NULL;
    pivq_tensor *r = pivq_sum_to_shape(full, n->in[i].ndim, n->in[i].shape);
    pivq_tensor_release(full);
    return r;
}

pivq_tensor *pivq_binary(const pivq_tensor *a, const pivq_tensor *b, int op)
{
    pivq_tensor *y = pivq_binary_nograd(a, b, op);
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
        (t[2] = pivq_to_dtype_nograd(t[0], PIVQ_FLOAT32)) &&
        (t[3] = pivq_binary_scalar_nograd(t[1], 0.5, PIVQ_MUL, 0)))
        r = pivq_binary_nograd(t[2], t[3], PIVQ_ADD);
    pivq_drop(4, t);
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
            gb = op == PIVQ_ADD ? pivq_tensor_retain((pivq_tensor *)g)
                                : pivq_unary_nograd(g, PIVQ_NEG);
        break;
    case PIVQ_MUL:
        if (na) ga = pivq_binary_nograd(g, b, PIVQ_MUL);
        if (nb) gb = pivq_binary_nograd(g, a, PIVQ_MUL);
        break;
    case PIVQ_DIV: /* d(a/b)/db = -a/b^2 */
        if (na) ga = pivq_binary_nograd(g, b, PIVQ_DIV);
        if (nb && (t[0] = pivq_binary_nograd(b, b, PIVQ_MUL)) &&
            (t[1] = pivq_binary_nograd(a, t[0], PIVQ_DIV)) &&
            (t[2] = pivq_binary_nograd(g, t[1], PIVQ_MUL)))
            gb = pivq_unary_nograd(t[2], PIVQ_NEG);
        break;
    case PIVQ_MAX:
    case PIVQ_MIN:
        if ((t[0] = winner_share(a, b, op == PIVQ_MAX ? PIVQ_GT : PIVQ_LT))) {
            if (na) ga = pivq_binary_nograd(g, t[0], PIVQ_MUL);
            if (nb && (t[1] = pivq_binary_scalar_nograd(t[0], 1.0, PIVQ_SUB, 1)))
                gb = pivq_binary_nograd(g, t[1], PIVQ_MUL);
        }
        break;
    case PIVQ_POW: /* d(a^b)/da = b a^(b-1); d/db = a^b ln a (0 where a^b == 0) */
        if (na && (t[0] = pivq_binary_scalar_nograd(b, 1.0, PIVQ_SUB, 0)) &&
            (t[1] = pivq_binary_nograd(a, t[0], PIVQ_POW)) &&
            (t[2] = pivq_binary_nograd(t[1], b, PIVQ_MUL)))
            ga = pivq_binary_nograd(g, t[2], PIVQ_MUL);
        if (nb && (t[3] = pivq_unary_nograd(a, PIVQ_LOG)) &&
            (t[4] = pivq_binary_nograd(y, t[3], PIVQ_MUL)) &&
            (t[5] = pivq_compare_scalar(y, 0.0, PIVQ_EQ))) {
            pivq_tensor *m = pivq_masked_fill_nograd(t[4], t[5], 0.0);
            if (m) gb = pivq_binary_nograd(g, m, PIVQ_MUL);
            pivq_tensor_release(m);
        }
        break;
    default: pivq_set_error("backward: binary op %d has no derivative", op);
    }
    pivq_drop(6, t);
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

pivq_tensor *pivq_binary_scalar(const pivq_tensor *a, double s, int op, int scalar_first)
{
    pivq_tensor *y = pivq_binary_scalar_nograd(a, s, op, scalar_first);
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
        r = first ? pivq_unary_nograd(g, PIVQ_NEG) : pivq_tensor_retain((pivq_tensor *)g);
        break;
    case PIVQ_MUL: r = pivq_binary_scalar_nograd(g, s, PIVQ_MUL, 0); break;
    case PIVQ_DIV:
        if (!first) {
            r = pivq_binary_scalar_nograd(g, s, PIVQ_DIV, 0);
        } else if ((t[0] = pivq_binary_nograd(y, a, PIVQ_DIV)) &&
                   (t[1] = pivq_binary_nograd(g, t[0], PIVQ_MUL))) {
            r = pivq_unary_nograd(t[1], PIVQ_NEG); /* d(s/a)/da = -s/a^2 = -y/a */
        }
        break;
    case PIVQ_MAX:
    case PIVQ_MIN:
        if ((t[0] = pivq_compare_scalar(a, s, op == PIVQ_MAX ? PIVQ_GT : PIVQ_LT)) &&
            (t[1] = pivq_compare_scalar(a, s, PIVQ_EQ)) &&
            (t[2] = pivq_binary_scalar_nograd(t[1], 0.5, PIVQ_MUL, 0))) {
            pivq_tensor *share = pivq_binary_nograd(t[2], t[0], PIVQ_ADD);
            if (share) r = pivq_binary_nograd(g, share, PIVQ_MUL);
            pivq_tensor_release(share);
        }
        break;
    case PIVQ_POW:
        if (!first) { /* d(a^s)/da = s a^(s-1) */
            if ((t[0] = pivq_binary_scalar_nograd(a, s - 1.0, PIVQ_POW, 0)) &&
                (t[1] = pivq_binary_scalar_nograd(t[0], s, PIVQ_MUL, 0)))
                r = pivq_binary_nograd(g, t[1], PIVQ_MUL);
        } else if ((t[0] = pivq_binary_scalar_nograd(y, log(s), PIVQ_MUL, 0))) { /* d(s^a)/da */
            r = pivq_binary_nograd(g, t[0], PIVQ_MUL);
        }
        break;
    default: pivq_set_error("backward: binary op %d has no derivative", op);
    }
    pivq_drop(3, t);
    if (!r) return -1;
    gin[0] = r;
    return 0;
}

/* The in-place forms refuse a tensor that is part of a graph (pivq_check_inplace). */
int pivq_binary_(pivq_tensor *a, const pivq_tensor *b, int op)
{
    char name[32];
    snprintf(name, sizeof name, "%s_", pivq_binary_name(op));
    if (pivq_check_tensor(name, "tensor", a) || pivq_check_inplace(a, name)) return -1;
    return pivq_binary_nograd_(a, b, op);
}

int pivq_binary_scalar_(pivq_tensor *a, double s, int op)
{
    char name[32];
    snprintf(name, sizeof name, "%s_", pivq_binary_name(op));
    if (pivq_check_tensor(name, "tensor", a) || pivq_check_inplace(a, name)) return -1;
    return pivq_binary_scalar_nograd_(a, s, op);
}

/* ---- comparisons and where ------------------------------------------------------------ */

/* A contiguous loop against a number (x:gt(0), the common mask), else generic strides. */
#define COMPARE_LOOP(T, EXPR)                                                                      \
    if (st[0] == 1 && st[1] == (int64_t)sizeof(T) && st[2] == 0) {                                 \
        uint8_t *o = (uint8_t *)p[0];                                                              \
        const T *xa = (const T *)p[1];                                                             \
        const T b = *(const T *)p[2];                                                              \
        for (int64_t j = 0; j < n; j++) {                                                          \
            T a = xa[j];                                                                           \
            o[j] = (uint8_t)(EXPR);                                                                \
        }                                                                                          \
    } else {                                                                                       \
        for (int64_t j = 0; j < n; j++) {                                                          \
            T a = AT(T, p[1], st[1], j), b = AT(T, p[2], st[2], j);                                \
            AT(uint8_t, p[0], st[0], j) = (uint8_t)(EXPR);                                         \
        }                                                                                          \
    }

#define COMPARE_CASES(T)                                                                           \
    switch (*(const int *)ctx) {                                                                   \
    case PIVQ_EQ: COMPARE_LOOP(T, a == b) break;                                                   \
    case PIVQ_NE: COMPARE_LOOP(T, a != b) break;                                                   \
    case PIVQ_LT: COMPARE_LOOP(T, a < b) break;                                                    \
    case PIVQ_LE: COMPARE_LOOP(T, a <= b) break;                                                   \
    case PIVQ_GT: COMPARE_LOOP(T, a > b) break;                                                    \
    case PIVQ_GE: COMPARE_LOOP(T, a >= b) break;                                                   \
    }

static void compare_f32_run(char **p, const int64_t *st, int64_t n, void *ctx)
{
    COMPARE_CASES(float)
}
static void compare_i32_run(char **p, const int64_t *st, int64_t n, void *ctx)
{
    COMPARE_CASES(int32_t)
}
static void compare_i64_run(char **p, const int64_t *st, int64_t n, void *ctx)
{
    COMPARE_CASES(int64_t)
}
static void compare_u8_run(char **p, const int64_t *st, int64_t n, void *ctx)
{
    COMPARE_CASES(uint8_t)
}

static const pivq_run_fn compare_runs[4] = {compare_f32_run, compare_i32_run, compare_i64_run,
                                            compare_u8_run};

pivq_tensor *pivq_compare(const pivq_tensor *a, const pivq_tensor *b, int op)
{
    if (op < 0 || op >= PIVQ_COMPARE_COUNT) {
        pivq_set_error("compare: unknown op %d", op);
        return NULL;
    }
    const char *fname = compare_names[op];
    if (pivq_check_tensor(fname, "first operand", a) ||
        pivq_check_tensor(fname, "second operand", b))
        return NULL;
    int ndim;
    int64_t size[PIVQ_MAX_DIMS];
    if (pivq_broadcast_shapes(fname, a, b, &ndim, size)) return NULL;
    int dtype = pivq_promote_dtype(a->scalar_type, b->scalar_type);
    pivq_tensor *ca = as_dtype(a, dtype), *cb = ca ? as_dtype(b, dtype) : NULL;
    pivq_tensor *out = cb ? pivq_empty(PIVQ_UINT8, ndim, size) : NULL;
    if (out) {
        const pivq_tensor *in[2] = {ca, cb};
        run_broadcast(out, in, 2, -1, compare_runs[dtype], &op);
    }
    pivq_tensor_release(ca);
    pivq_tensor_release(cb);
    return out;
}

pivq_tensor *pivq_compare_scalar(const pivq_tensor *a, double s, int op)
{
    if (pivq_check_tensor(pivq_compare_name(op), "tensor operand", a)) return NULL;
    int dtype = (a->scalar_type == PIVQ_FLOAT32 || !pivq_fits_int64(s)) ? PIVQ_FLOAT32 : PIVQ_INT64;
    stack_scalar ss;
    return pivq_compare(a, scalar_tensor(&ss, s, dtype), op);
}

#define WHERE_LOOP(T)                                                                              \
    for (int64_t j = 0; j < n; j++)                                                                \
        AT(T, p[0], st[0], j) =                                                                    \
            AT(uint8_t, p[1], st[1], j) ? AT(T, p[2], st[2], j) : AT(T, p[3], st[3], j);

static void where_run(char **p, const int64_t *st, int64_t n, void *ctx)
{
    switch (*(const int *)ctx) {
    case PIVQ_FLOAT32: WHERE_LOOP(float) break;
    case PIVQ_INT32: WHERE_LOOP(int32_t) break;
    case PIVQ_INT64: WHERE_LOOP(int64_t) break;
    default: WHERE_LOOP(uint8_t) break;
    }
}

pivq_tensor *pivq_where_nograd(const pivq_tensor *cond, const pivq_tensor *a, const pivq_tensor *b)
{
    if (pivq_check_tensor("where", "condition", cond) || pivq_check_tensor("where", "a", a) ||
        pivq_check_tensor("where", "b", b))
        return NULL;
    int nd1, nd2;
    int64_t s1[PIVQ_MAX_DIMS], s2[PIVQ_MAX_DIMS];
    if (pivq_broadcast_shapes("where", a, b, &nd1, s1)) return NULL;
    pivq_tensor shape_ab = *a; /* a shape-only stand-in for broadcasting */
    shape_ab.ndim = nd1;
    for (int i = 0; i < nd1; i++)
        shape_ab.shape[i] = s1[i];
    if (pivq_broadcast_shapes("where", cond, &shape_ab, &nd2, s2)) return NULL;
    int dtype = pivq_promote_dtype(a->scalar_type, b->scalar_type);
    /* Any nonzero condition is true (NaN too). Converting a float or wide integer condition
       to uint8 would truncate 0.5 to 0 and wrap 256 to 0, so other dtypes compare with 0. */
    pivq_tensor *cc = cond->scalar_type == PIVQ_UINT8 ? pivq_tensor_retain((pivq_tensor *)cond)
                                                      : pivq_compare_scalar(cond, 0.0, PIVQ_NE);
    pivq_tensor *ca = cc ? as_dtype(a, dtype) : NULL;
    pivq_tensor *cb = ca ? as_dtype(b, dtype) : NULL;
    pivq_tensor *out = cb ? pivq_empty(dtype, nd2, s2) : NULL;
    if (out) {
        const pivq_tensor *in[3] = {cc, ca, cb};
        run_broadcast(out, in, 3, -1, where_run, &dtype);
    }
    pivq_tensor_release(cc);
    pivq_tensor_release(ca);
    pivq_tensor_release(cb);
    return out;
}

/* ---- where: recorded form and backward ------------------------------------------------------- */

pivq_tensor *pivq_where(const pivq_tensor *cond, const pivq_tensor *a, const pivq_tensor *b)
{
    pivq_tensor *y = pivq_where_nograd(cond, a, b);
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
        pivq_tensor *full = i == 1 ? pivq_where_nograd(n->saved[0], g, zero)
                                   : pivq_where_nograd(n->saved[0], zero, g);
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
