/*
 * pivq.h — the whole public C API of libpivq, and its documentation.
 *
 * libpivq is a Lua-free C11 library. The Lua side binds it through the LuaJIT FFI with a
 * cdef generated from this file at build time (`cc -E -P -DPIVQ_CDEF`), so everything
 * between the include guards must stay plain C declarations: no function-like macros, no
 * attributes, no inline functions outside `#ifndef PIVQ_CDEF`.
 *
 * Conventions
 *  - Indices and dims are 0-based here; the Lua layer converts from its 1-based API in one
 *    place (lua/pivq/core/index.lua).
 *  - Every function that creates a tensor returns a NEW reference (refcount 1 owned by the
 *    caller, released with pivq_tensor_release), or NULL on error.
 *  - Functions returning int return 0 on success and -1 on error.
 *  - On error the message is left in a thread-local buffer read by pivq_last_error(); it
 *    names the function and the offending shapes/values. Nothing here exits, aborts or
 *    longjmps on a user-reachable path.
 *  - Arguments named `x`, `a`, `b` are inputs and are never modified unless the function
 *    name ends in `_` (in-place, as in PyTorch).
 */
#ifndef PIVQ_H
#define PIVQ_H

#ifndef PIVQ_CDEF
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
#endif
/* =======================================================================================
 * Layer 1: core (csrc/core/)
 * What everything else stands on: the error context, threads and heap accounting, the
 * allocator's statistics, tensors (refcounted storage under strided views) and the random
 * generator. Nothing in this layer knows about graphs, files or codes.
 * ===================================================================================== */

/* ---------------------------------------------------------------------------------------
 * Context: errors, threads, heap accounting, version
 * ------------------------------------------------------------------------------------- */

/* Message of the last error on this thread ("" if none). Valid until the next error. */
const char *pivq_last_error(void);
/* Forget the last error on this thread. */
void pivq_clear_error(void);
/* Record an error (printf-style) and return -1; used by every module of the library. */
int pivq_set_error(const char *fmt, ...);
/* Library version string, e.g. "0.1.0". */
const char *pivq_version(void);
/* Set the number of threads used by OpenMP loops and OpenBLAS (n >= 1). */
int pivq_set_num_threads(int n);
/* Current number of threads. */
int pivq_get_num_threads(void);
/* Floating-point operations of the matrix products run since the process started, a
   multiply-add counting 2: every GEMM (matmul, linear, im2col convolution, the quantizer's and
   PRDC's distances), attention's per-head products and oneDNN's convolutions, forward and
   backward, from their shapes. Elementwise ops, norms, softmax and the assignment are not
   counted (the convention of model FLOP utilisation). Read it before and after some work. */
int64_t pivq_flop_count(void);
/* Bytes of tensor storages and tensor headers alive now; the Lua GC policy reads this. */
int64_t pivq_heap_bytes(void);
/* Number of live storages (a leak check for the specs). */
int64_t pivq_heap_count(void);
/* The most pivq_heap_bytes has been since the last call (or since the start); each call
   starts a new period at the present value. The GC policy sizes a training step with it. */
int64_t pivq_heap_peak_reset(void);

/* ---- Allocator ---- */

/* The C allocator's own view of the process heap (glibc's mallinfo2; all zero elsewhere), in
   bytes: `arena` the main heap's size, `in_use` the bytes handed out by malloc (tensor storages,
   the block cache and every other C allocation), `free` the free bytes inside the heap (which
   stay resident until reused or trimmed), `mmapped` the blocks mapped on their own. */
typedef struct pivq_malloc_stats {
    int64_t arena;
    int64_t in_use;
    int64_t free;
    int64_t mmapped;
} pivq_malloc_stats;
/* Fill *out; returns 0, or -1 where the allocator gives no statistics (all fields 0): not
   glibc, or libpivq built with AddressSanitizer (whose malloc keeps no such figures). */
int pivq_malloc_stats_get(pivq_malloc_stats *out);

/* ---------------------------------------------------------------------------------------
 * Tensors: refcounted 64-byte-aligned storage, strided views
 * ------------------------------------------------------------------------------------- */

typedef enum pivq_dtype {
    PIVQ_FLOAT32 = 0,
    PIVQ_INT32 = 1,
    PIVQ_INT64 = 2,
    PIVQ_UINT8 = 3
} pivq_dtype;

enum { PIVQ_MAX_DIMS = 8 };

/* A block of memory shared by views. `data` is 64-byte aligned; `nbytes` its size. */
typedef struct pivq_storage {
    void *data;
    int64_t nbytes;
    int32_t refcount;
    int32_t reserved;
} pivq_storage;

/* A strided view of a storage. Element (i0..in) lives at
   data + (offset + sum_k i_k * strides[k]) * elem_size.
   A 0-dim tensor (ndim == 0) holds one element (a scalar). */
typedef struct pivq_tensor {
    int32_t refcount;
    int32_t scalar_type; /* pivq_dtype (named so to leave t:dtype() to the Lua method) */
    int32_t ndim;
    int32_t reserved;
    int64_t shape[PIVQ_MAX_DIMS];   /* sizes (the Lua method is t:size()) */
    int64_t strides[PIVQ_MAX_DIMS]; /* in elements */
    int64_t offset;                 /* in elements, from storage->data */
    pivq_storage *storage;
    struct pivq_autograd *ag; /* autograd state (autograd/autograd.c); NULL for plain tensors */
} pivq_tensor;

/* Bytes per element of a dtype (0 for an unknown dtype). */
int pivq_dtype_size(int dtype);
/* Name of a dtype ("float32", ...; "?" if unknown). */
const char *pivq_dtype_name(int dtype);

/* New uninitialised contiguous tensor of the given shape (ndim 0..8, sizes >= 0). */
pivq_tensor *pivq_empty(int dtype, int ndim, const int64_t *size);
/* New zero-filled contiguous tensor. */
pivq_tensor *pivq_zeros(int dtype, int ndim, const int64_t *size);
/* New contiguous tensor holding a copy of `data` (numel * elem_size bytes, row-major). */
pivq_tensor *pivq_from_data(int dtype, int ndim, const int64_t *size, const void *data);
/* Take one more reference to t; returns t. */
pivq_tensor *pivq_tensor_retain(pivq_tensor *t);
/* Drop one reference; frees the view (and the storage when its last view goes). NULL ok. */
void pivq_tensor_release(pivq_tensor *t);

/* Number of elements (product of sizes; 1 for a 0-dim tensor). */
int64_t pivq_numel(const pivq_tensor *t);
/* Pointer to the first element of the view. */
void *pivq_data(const pivq_tensor *t);
/* 1 if the view is row-major contiguous, else 0. */
int pivq_is_contiguous(const pivq_tensor *t);

/* Views (share storage; new reference). Dims are 0-based; negative dims are errors. These,
   contiguous, clone, to_dtype, copy_ and fill_ are differentiable (see Autograd below): their
   kernels are core's, their recorded forms ops/shape.c's. */
/* Elements start..start+length-1 along dim. */
pivq_tensor *pivq_narrow(const pivq_tensor *t, int dim, int64_t start, int64_t length);
/* Slice at index along dim; the result has one dim fewer. */
pivq_tensor *pivq_select(const pivq_tensor *t, int dim, int64_t index);
/* Swap two dims. */
pivq_tensor *pivq_transpose(const pivq_tensor *t, int dim0, int dim1);
/* Reorder all dims: result dim k is t's dim perm[k] (perm has t->ndim entries). */
pivq_tensor *pivq_permute(const pivq_tensor *t, const int *perm);
/* Same elements, new shape, no copy; fails if the strides do not allow it. One size may be -1. */
pivq_tensor *pivq_view(const pivq_tensor *t, int ndim, const int64_t *size);
/* Like pivq_view, but copies when a view is impossible. */
pivq_tensor *pivq_reshape(const pivq_tensor *t, int ndim, const int64_t *size);
/* Broadcast size-1 dims (stride 0) to `size`; new leading dims are added. -1 keeps a size. */
pivq_tensor *pivq_expand(const pivq_tensor *t, int ndim, const int64_t *size);
/* Remove dim `dim` if it has size 1 (dim == -1: remove every size-1 dim). */
pivq_tensor *pivq_squeeze(const pivq_tensor *t, int dim);
/* Insert a size-1 dim at position dim (0..ndim). */
pivq_tensor *pivq_unsqueeze(const pivq_tensor *t, int dim);
/* A contiguous tensor with t's values: t itself (new reference) if already contiguous. */
pivq_tensor *pivq_contiguous(const pivq_tensor *t);
/* A contiguous copy (never shares storage). */
pivq_tensor *pivq_clone(const pivq_tensor *t);
/* A contiguous copy converted to dtype (float->int truncates toward zero, as in C). */
pivq_tensor *pivq_to_dtype(const pivq_tensor *t, int dtype);

/* Copy src into dst (broadcasting src to dst's shape, converting dtype). dst may be a view;
   dst and src must not partially overlap. */
int pivq_copy_(pivq_tensor *dst, const pivq_tensor *src);
/* Set every element of t to value (converted to t's dtype). */
int pivq_fill_(pivq_tensor *t, double value);
/* 1-D tensor start, start+step, ... (< end for step > 0, > end for step < 0). */
pivq_tensor *pivq_arange(double start, double end, double step, int dtype);

/* ---------------------------------------------------------------------------------------
 * Random numbers (core/random.c). A counter-based generator (Philox-4x32-10): the value drawn for
 * element i depends only on (seed, offset + i), never on the thread count. Saving
 * {seed, offset} saves the whole state.
 * ------------------------------------------------------------------------------------- */

typedef struct pivq_generator {
    uint64_t seed;
    uint64_t offset; /* counter position: advanced by every draw */
} pivq_generator;

/* The process-wide default generator (used when a function is given NULL). */
pivq_generator *pivq_default_generator(void);
/* Reset a generator (NULL: the default) to seed, offset 0. */
void pivq_manual_seed(pivq_generator *g, uint64_t seed);
/* Fill t (float32) with uniform values in [lo, hi). */
int pivq_uniform_(pivq_tensor *t, double lo, double hi, pivq_generator *g);
/* Fill t (float32) with normal values of the given mean and std. */
int pivq_normal_(pivq_tensor *t, double mean, double std, pivq_generator *g);
/* Fill t (any dtype) with integers uniform in [lo, hi). */
int pivq_randint_(pivq_tensor *t, int64_t lo, int64_t hi, pivq_generator *g);
/* int64 random permutation of 0..n-1. */
pivq_tensor *pivq_randperm(int64_t n, pivq_generator *g);
/* int64 draws of n categories from each row of probs (1-D K or 2-D B x K, nonnegative,
   not necessarily normalised): result n or B x n. Without replacement needs n <= nonzeros. */
pivq_tensor *pivq_multinomial(const pivq_tensor *probs, int64_t n, int replacement,
                              pivq_generator *g);

/* =======================================================================================
 * Layer 2: autograd (csrc/autograd/)
 * Reverse-mode differentiation: grad mode, leaves, the graph that ops record, the backward
 * walk. The ops themselves (layer 3) record their nodes; this layer only keeps and walks them.
 * ===================================================================================== */

/* ---------------------------------------------------------------------------------------
 * Autograd (autograd/autograd.c). Reverse mode, graph recorded in C.
 *
 * A float32 tensor may require gradients. Every differentiable op (the views, copies and
 * dtype conversion above, and in layer 3 the elementwise ops, reductions, matmul, indexing and
 * joining, and the neural-network ops), when grad mode is on and some input requires grad,
 * records a graph node on its result. The in-place ops (pivq_copy_, pivq_fill_, pivq_binary_,
 * pivq_binary_scalar_) refuse, while grad mode is on, a tensor that is part of a graph
 * (pivq_check_inplace). Views and copies of the tensor core record from ops/shape.c, the
 * in-place writes are checked there too. `pivq_backward` walks the graph
 * from a result in reverse topological order and ADDS gradients into the leaves (tensors that
 * require grad and were not produced by a recorded op). Nodes hold references to their
 * inputs' nodes, to leaf inputs, and to the tensors they saved; results hold their node, so
 * a graph lives exactly as long as some result of it does. Saved tensors are released after a
 * backward unless retain_graph. Backward itself is not recorded (no double backward).
 * ------------------------------------------------------------------------------------- */

/* Turn grad mode on/off for this thread; returns the previous setting (1 on, 0 off). */
int pivq_set_grad_enabled(int enabled);
/* 1 if grad mode is on for this thread (the default), else 0. */
int pivq_is_grad_enabled(void);
/* Mark a leaf tensor as requiring grad (flag 1) or not (0). Only float32 leaves. */
int pivq_requires_grad_(pivq_tensor *t, int flag);
/* 1 if t requires grad (a marked leaf or the result of a recorded op), else 0. */
int pivq_requires_grad(const pivq_tensor *t);
/* 1 if t is a leaf (not produced by a recorded op), else 0. */
int pivq_is_leaf(const pivq_tensor *t);
/* Name of the op that produced t ("matmul", ...), or NULL for a leaf. */
const char *pivq_grad_fn_name(const pivq_tensor *t);
/* [OUT] *grad = a new reference to t's accumulated gradient, or NULL if none yet. */
int pivq_get_grad(const pivq_tensor *t, pivq_tensor **grad);
/* Replace t's gradient with g (retained; g must have t's shape and be float32), or drop it
   (g == NULL), as zero_grad does. */
int pivq_set_grad(pivq_tensor *t, pivq_tensor *g);
/* A new view of t's data outside the graph (shares storage; requires no grad). */
pivq_tensor *pivq_detach(const pivq_tensor *t);
/* Backpropagate from t. grad: the gradient of the loss with respect to t (t's shape), or
   NULL when t has one element (then 1). retain_graph: keep saved tensors for another
   backward through the same graph. */
int pivq_backward(pivq_tensor *t, const pivq_tensor *grad, int retain_graph);
/* Number of live graph nodes (a leak check for the specs). */
int64_t pivq_graph_node_count(void);
/* Fail (naming fname) if t may not be modified in place: while grad mode is on, a leaf that
   requires grad or a result of a recorded op. (Tensors that require no grad but were saved
   by a node are not tracked: modifying them before backward gives wrong gradients.) */
int pivq_check_inplace(const pivq_tensor *t, const char *fname);

/* =======================================================================================
 * Layer 3: ops (csrc/ops/)
 * The math: elementwise, reductions, matrix products, indexing, the neural-network ops
 * (linear, attention, convolution and its engine, norms, pooling, losses) and the fused
 * optimizer steps. Each op's forward and backward sit side by side in its file.
 * ===================================================================================== */

/* ---------------------------------------------------------------------------------------
 * Elementwise ops (ops/elementwise.c). NumPy broadcasting. Integer inputs are promoted:
 * int op float -> float32, narrower int op wider int -> wider int. Float-only unary ops
 * (exp, log, ...) convert integer input to float32.
 * ------------------------------------------------------------------------------------- */

/* clang-format off */
typedef enum pivq_unary_op {
    PIVQ_NEG = 0, PIVQ_ABS, PIVQ_EXP, PIVQ_LOG, PIVQ_SQRT, PIVQ_RSQRT, PIVQ_SIN, PIVQ_COS,
    PIVQ_TANH, PIVQ_SIGMOID, PIVQ_RELU, PIVQ_SIGN, PIVQ_FLOOR, PIVQ_CEIL, PIVQ_ROUND,
    PIVQ_UNARY_COUNT
} pivq_unary_op;
/* clang-format on */

/* clang-format off */
typedef enum pivq_binary_op {
    PIVQ_ADD = 0, PIVQ_SUB, PIVQ_MUL, PIVQ_DIV, PIVQ_MAX, PIVQ_MIN, PIVQ_POW,
    PIVQ_BINARY_COUNT
} pivq_binary_op;
/* clang-format on */

/* clang-format off */
typedef enum pivq_compare_op {
    PIVQ_EQ = 0, PIVQ_NE, PIVQ_LT, PIVQ_LE, PIVQ_GT, PIVQ_GE,
    PIVQ_COMPARE_COUNT
} pivq_compare_op;
/* clang-format on */

/* Name of an op ("exp", "add", "lt", ...), for messages. */
const char *pivq_unary_name(int op);
const char *pivq_binary_name(int op);
const char *pivq_compare_name(int op);

/* y = op(x). */
pivq_tensor *pivq_unary(const pivq_tensor *x, int op);
/* y = min(max(x, lo), hi). */
pivq_tensor *pivq_clamp(const pivq_tensor *x, double lo, double hi);
/* y = op(a, b), broadcasting. */
pivq_tensor *pivq_binary(const pivq_tensor *a, const pivq_tensor *b, int op);
/* y = op(a, s) (scalar_first == 0) or op(s, a) (scalar_first == 1). The scalar takes a's
   dtype unless a is integer and s is not integral, in which case the result is float32. */
pivq_tensor *pivq_binary_scalar(const pivq_tensor *a, double s, int op, int scalar_first);
/* a = op(a, b) in place, b broadcast to a's shape and converted to a's dtype. */
int pivq_binary_(pivq_tensor *a, const pivq_tensor *b, int op);
/* a = op(a, s) in place. */
int pivq_binary_scalar_(pivq_tensor *a, double s, int op);
/* uint8 mask = a op b (broadcasting; compared after promotion). */
pivq_tensor *pivq_compare(const pivq_tensor *a, const pivq_tensor *b, int op);
/* uint8 mask = a op s. */
pivq_tensor *pivq_compare_scalar(const pivq_tensor *a, double s, int op);
/* y = cond ? a : b elementwise (cond uint8, nonzero = true; all three broadcast). */
pivq_tensor *pivq_where(const pivq_tensor *cond, const pivq_tensor *a, const pivq_tensor *b);

/* ---------------------------------------------------------------------------------------
 * Reductions (ops/reduce.c) over one dim (0..ndim-1) or all dims (dim == -1).
 * ------------------------------------------------------------------------------------- */

/* clang-format off */
typedef enum pivq_reduce_op {
    PIVQ_SUM = 0, PIVQ_MEAN, PIVQ_VAR, PIVQ_RMAX, PIVQ_RMIN, PIVQ_ARGMAX, PIVQ_ARGMIN,
    PIVQ_NORM, PIVQ_PROD, PIVQ_REDUCE_COUNT
} pivq_reduce_op;
/* clang-format on */

/* Name of a reduction ("sum", ..., "max", "argmax", "norm"). */
const char *pivq_reduce_name(int op);
/* Reduce x along dim (-1: all). keepdim keeps the reduced dim with size 1.
   param: the correction for var (1 = unbiased), p for norm; ignored otherwise.
   sum/prod keep integer dtypes as int64; mean/var/norm give float32; max/min keep the
   dtype; argmax/argmin give int64 0-based indices (first occurrence on ties; over all dims
   the flat row-major index). Float sums accumulate in double. */
pivq_tensor *pivq_reduce(const pivq_tensor *x, int op, int dim, int keepdim, double param);

/* ---------------------------------------------------------------------------------------
 * Matrix products (ops/matmul.c), float32, through OpenBLAS sgemm. Operands whose last two
 * dims are row-major or transposed (column-major) are passed without copies.
 * ------------------------------------------------------------------------------------- */

/* a @ b following numpy.matmul: 1-D x 1-D dot, 2-D x 2-D, and batched N-D with broadcast
   batch dims; a 1-D operand is promoted and the added dim removed from the result. */
pivq_tensor *pivq_matmul(const pivq_tensor *a, const pivq_tensor *b);
/* out = alpha * op(a) @ op(b) + beta * out for 2-D a, b, out (op = transpose if trans_*). */
int pivq_gemm_(pivq_tensor *out, const pivq_tensor *a, const pivq_tensor *b, int trans_a,
               int trans_b, float alpha, float beta);

/* ---------------------------------------------------------------------------------------
 * Indexing and joining (ops/index.c). Index tensors are int64 (int32 accepted), 0-based.
 * ------------------------------------------------------------------------------------- */

/* Rows of x along dim picked by the 1-D index. */
pivq_tensor *pivq_index_select(const pivq_tensor *x, int dim, const pivq_tensor *index);
/* out[i][j] = x[index[i][j]][j] (dim 0), etc.; index has x's ndim, result index's shape. */
pivq_tensor *pivq_gather(const pivq_tensor *x, int dim, const pivq_tensor *index);
/* A copy of x where src's values are added at index along dim (the scatter of gather). */
pivq_tensor *pivq_scatter_add(const pivq_tensor *x, int dim, const pivq_tensor *index,
                              const pivq_tensor *src);
/* A copy of x with value where mask (uint8, broadcast to x) is nonzero. */
pivq_tensor *pivq_masked_fill(const pivq_tensor *x, const pivq_tensor *mask, double value);
/* Concatenate n tensors along dim (same dtype; equal sizes elsewhere). */
pivq_tensor *pivq_cat(pivq_tensor *const *ts, int n, int dim);
/* Stack n tensors of equal shape along a new dim. */
pivq_tensor *pivq_stack(pivq_tensor *const *ts, int n, int dim);

/* ---------------------------------------------------------------------------------------
 * Neural-network ops (ops/nn.c, ops/norm.c, ops/loss.c). Float32. Each records a graph node
 * when grad mode is on and an input requires grad. Layouts are PyTorch's. Optional tensor
 * arguments may be NULL.
 * ------------------------------------------------------------------------------------- */

/* y (..., out) = x (..., in) @ w^T + b; w (out, in), b (out) or NULL. */
pivq_tensor *pivq_linear(const pivq_tensor *x, const pivq_tensor *w, const pivq_tensor *b);

typedef enum pivq_activation_kind {
    PIVQ_ACT_RELU = 0,
    PIVQ_ACT_GELU,       /* exact: x Phi(x) (PyTorch's default) */
    PIVQ_ACT_GELU_TANH,  /* the tanh approximation */
    PIVQ_ACT_SILU,       /* x sigmoid(x) */
    PIVQ_ACT_LEAKY_RELU, /* param: the negative slope */
    PIVQ_ACT_ELU,        /* param: alpha */
    PIVQ_ACT_COUNT
} pivq_activation_kind;

/* y = act(x) elementwise; param as documented per kind (ignored otherwise). */
pivq_tensor *pivq_activation(const pivq_tensor *x, int kind, double param);
/* Softmax along dim (0-based). */
pivq_tensor *pivq_softmax(const pivq_tensor *x, int dim);
/* Log of the softmax along dim, computed stably. */
pivq_tensor *pivq_log_softmax(const pivq_tensor *x, int dim);
/* Rows of weight (num, dim) picked by a 0-based integer index of any shape: (index..., dim). */
pivq_tensor *pivq_embedding(const pivq_tensor *index, const pivq_tensor *weight);
/* Zero each element with probability p and scale the rest by 1/(1-p) (training != 0); the
   identity (a copy) otherwise. Draws from gen (NULL: the default generator). */
pivq_tensor *pivq_dropout(const pivq_tensor *x, double p, int training, pivq_generator *gen);
/* Normalise over the last norm_ndim dims, then y = xhat * w + b (w, b: those dims' numel). */
pivq_tensor *pivq_layer_norm(const pivq_tensor *x, int norm_ndim, const pivq_tensor *w,
                             const pivq_tensor *b, double eps);
/* x (N, C, ...): normalise each of `groups` channel groups per sample, then per-channel
   y = xhat * w[c] + b[c] (w, b of size C). */
pivq_tensor *pivq_group_norm(const pivq_tensor *x, int groups, const pivq_tensor *w,
                             const pivq_tensor *b, double eps);

typedef enum pivq_reduction {
    PIVQ_REDUCTION_NONE = 0,
    PIVQ_REDUCTION_MEAN = 1,
    PIVQ_REDUCTION_SUM = 2
} pivq_reduction;

typedef enum pivq_loss_kind {
    PIVQ_LOSS_MSE = 0,    /* (x - t)^2 */
    PIVQ_LOSS_L1,         /* |x - t| */
    PIVQ_LOSS_BCE_LOGITS, /* binary cross-entropy of sigmoid(x) against t in [0, 1] */
    PIVQ_LOSS_HINGE       /* max(0, margin - t x), t in {-1, 1} */
} pivq_loss_kind;

/* Elementwise loss of x against a target of the same shape, reduced (pivq_reduction):
   a 0-dim result for mean/sum. margin: for the hinge loss. */
pivq_tensor *pivq_pointwise_loss(const pivq_tensor *x, const pivq_tensor *target, int kind,
                                 int reduction, double margin);
/* Cross-entropy of logits (N, C) or (N, C, d...) against 0-based class indices (N) or
   (N, d...); targets equal to ignore_index are skipped (and not counted by the mean). */
pivq_tensor *pivq_cross_entropy(const pivq_tensor *logits, const pivq_tensor *target, int reduction,
                                int64_t ignore_index);

/* Scaled dot-product attention, fused (ops/attention.c): q (..., Lq, D), k (..., Lk, D),
   v (..., Lk, Dv) with equal batch dims (e.g. batch, heads); mask additive, broadcastable to
   (..., Lq, Lk) (e.g. -inf to hide a key), or NULL; scale <= 0 means 1/sqrt(D).
   Result (..., Lq, Dv) = softmax(scale q k^T + mask) v. Lq != Lk is cross-attention. */
pivq_tensor *pivq_attention(const pivq_tensor *q, const pivq_tensor *k, const pivq_tensor *v,
                            const pivq_tensor *mask, double scale);

/* Convolution hyper-parameters, per spatial dim (height, width). output_padding is for the
   transposed convolution only (extra rows/cols on one side of its output). */
typedef struct pivq_conv_params {
    int64_t stride[2];
    int64_t padding[2];
    int64_t dilation[2];
    int64_t output_padding[2];
    int64_t groups;
} pivq_conv_params;

/* 2-D convolution (cross-correlation, as PyTorch): x (N, C, H, W), w (O, C/groups, kH, kW),
   b (O) or NULL -> (N, O, Ho, Wo), Ho = (H + 2 pad - dil (kH - 1) - 1) / stride + 1. */
pivq_tensor *pivq_conv2d(const pivq_tensor *x, const pivq_tensor *w, const pivq_tensor *b,
                         const pivq_conv_params *p);
/* The direct 7-loop convolution (no autograd, slow): the reference the specs compare with. */
pivq_tensor *pivq_conv2d_reference(const pivq_tensor *x, const pivq_tensor *w, const pivq_tensor *b,
                                   const pivq_conv_params *p);
/* Transposed convolution (the adjoint of conv2d): x (N, C, H, W), w (C, O/groups, kH, kW),
   b (O) or NULL -> (N, O, Ho, Wo), Ho = (H - 1) stride - 2 pad + dil (kH - 1) + out_pad + 1. */
pivq_tensor *pivq_conv_transpose2d(const pivq_tensor *x, const pivq_tensor *w, const pivq_tensor *b,
                                   const pivq_conv_params *p);

/* Pooling (ops/pool.c) over (N, C, H, W); kernel, stride, padding: 2 values (H, W) each.
   Max pooling pads with -inf; average pooling divides by the window size
   (count_include_pad != 0) or by its part inside the image. */
pivq_tensor *pivq_max_pool2d(const pivq_tensor *x, const int64_t *kernel, const int64_t *stride,
                             const int64_t *padding);
pivq_tensor *pivq_avg_pool2d(const pivq_tensor *x, const int64_t *kernel, const int64_t *stride,
                             const int64_t *padding, int count_include_pad);

typedef enum pivq_upsample_mode {
    PIVQ_UPSAMPLE_NEAREST = 0,
    PIVQ_UPSAMPLE_BILINEAR = 1
} pivq_upsample_mode;

/* Resize (N, C, H, W) to (N, C, Ho, Wo): nearest (source floor(o in / out)) or bilinear
   (align_corners as in PyTorch; ignored for nearest). */
pivq_tensor *pivq_upsample2d(const pivq_tensor *x, int64_t Ho, int64_t Wo, int mode,
                             int align_corners);

/* ---- Convolution engine ---- */
/* conv2d and conv_transpose2d (forward, input and weight gradients) run on oneDNN, the library
 * PyTorch's CPU convolutions use (JIT direct convolution: no im2col), when libpivq was built
 * with it (CMake option PIVQ_DNNL, on when libdnnl-dev is found) and oneDNN implements the
 * shape; otherwise on im2col + sgemm (ops/conv.c). The environment variable PIVQ_CONV=im2col,
 * read at the first convolution, starts on the im2col engine. */
typedef enum pivq_conv_engine {
    PIVQ_CONV_AUTO = 0,  /* oneDNN where it can, else im2col (the default) */
    PIVQ_CONV_IM2COL = 1 /* always im2col + sgemm: the reference path the specs compare with */
} pivq_conv_engine;
/* Choose the engine for the following convolutions. Returns 0, or -1 on an unknown value. */
int pivq_conv_set_engine(int engine);
/* The current engine (PIVQ_CONV_AUTO or PIVQ_CONV_IM2COL). */
int pivq_conv_get_engine(void);
/* 1 if libpivq was built with oneDNN, else 0. */
int pivq_conv_dnnl_available(void);
/* How many convolution steps (forwards and backwards) oneDNN has run in this process: tells a
   caller which engine ran. */
int64_t pivq_conv_dnnl_steps(void);

/* ---- Precision (ops/bf16.c) ----
 * Under PIVQ_PRECISION_BF16, matmul and linear (forward and backward, through oneDNN's matmul)
 * and convolutions (oneDNN) take bf16 operands, rounded per call from the fp32 tensors, and
 * accumulate and write fp32; so do attention's per-head products (heads up to 256 x 256, head
 * dim <= 128, on pivq's register-tiled bf16 kernels; the probabilities and the softmax gradient
 * are rounded to bf16 for the products that take them). Everything else stays fp32: reductions,
 * norms, softmax and its statistics, losses, the quantizer's distances and assignment, optimizer
 * state and the parameters. The precision in force when a kernel runs decides, for backward too.
 * matmul / linear products of fewer than 2^18 multiply-adds stay fp32. The setting is
 * process-wide. */
typedef enum pivq_precision {
    PIVQ_PRECISION_FP32 = 0, /* the default */
    PIVQ_PRECISION_BF16 = 1  /* bf16 products with fp32 accumulation */
} pivq_precision;
/* Set the precision. BF16 fails (-1, the message naming oneDNN's ISA) unless
   pivq_bf16_available(); the precision is then unchanged. */
int pivq_set_precision(int precision);
/* The precision in force (PIVQ_PRECISION_FP32 or PIVQ_PRECISION_BF16). */
int pivq_get_precision(void);
/* 1 if bf16 can be used: oneDNN's ISA (dnnl_get_effective_cpu_isa, which DNNL_MAX_CPU_ISA caps)
   has bf16 dot products (avx512_core_bf16 or avx512_core_amx) and it is not turned off. */
int pivq_bf16_available(void);
/* Allow (1, the default) or forbid (0) bf16, as if the CPU lacked it: the fallback the specs
   test. Forbidding also sets the precision to fp32. PIVQ_BF16=off in the environment starts
   forbidden. Returns 0, or -1 on a value other than 0 and 1. */
int pivq_set_bf16_allowed(int on);
/* oneDNN's name for the instruction set it dispatches to ("avx512_core_bf16", "avx2", ...). */
const char *pivq_cpu_isa(void);
/* The measured arithmetic peak in GFLOP/s of `threads` threads running register-only
   multiply-adds for about `seconds`: fp32 FMA (AVX-512, else AVX2) or bf16 dot products
   (AVX512-BF16). 0 when the CPU has no such instructions; -1 on a bad argument. The denominator
   of model FLOP utilisation; on a busy machine it measures the share the process got. */
double pivq_peak_gflops(int precision, int threads, double seconds);

/* ---------------------------------------------------------------------------------------
 * Optimizers (ops/optim.c): one fused step over n parameters (contiguous float32 leaves; their
 * accumulated gradients are read; parameters without one are skipped). State buffers are
 * zero-initialised tensors of each parameter's shape, owned by the caller. step counts from 1.
 * ------------------------------------------------------------------------------------- */

/* SGD with momentum (buffers needed when momentum > 0), dampening, Nesterov, L2 weight decay:
   PyTorch's torch.optim.SGD. */
int pivq_sgd_step(pivq_tensor *const *params, pivq_tensor *const *momentum_bufs, int n, double lr,
                  double momentum, double dampening, double weight_decay, int nesterov,
                  int64_t step);
/* Adam (decoupled == 0: weight decay added to the gradient) or AdamW (decoupled != 0:
   p *= 1 - lr wd), with bias correction, as PyTorch's Adam/AdamW (amsgrad off). */
int pivq_adam_step(pivq_tensor *const *params, pivq_tensor *const *exp_avg,
                   pivq_tensor *const *exp_avg_sq, int n, double lr, double beta1, double beta2,
                   double eps, double weight_decay, int decoupled, int64_t step);
/* [OUT] *total = the norm_type-norm of all gradients together (inf allowed). */
int pivq_grad_norm(pivq_tensor *const *params, int n, double norm_type, double *total);
/* Scale all gradients by max_norm / (total + 1e-6) when the total norm exceeds max_norm;
   [OUT] *total = the norm before clipping. */
int pivq_clip_grad_norm(pivq_tensor *const *params, int n, double max_norm, double norm_type,
                        double *total);
/* shadow = decay shadow + (1 - decay) param, for each of n pairs. */
int pivq_ema_update(pivq_tensor *const *shadow, pivq_tensor *const *params, int n, double decay);

/* =======================================================================================
 * Layer 4: io (csrc/io/)
 * Data in and out: atomic file writes, IDX, safetensors checkpoints, PNG and JPEG images,
 * image folders, and the threaded batch loader.
 * ===================================================================================== */

/* ---------------------------------------------------------------------------------------
 * Data and files (io/file.c, io/idx.c, io/safetensors.c, io/png.c, io/jpeg.c, io/image.c,
 * io/loader.c). Readers take untrusted bytes: every declared size is checked against what the
 * input can hold before anything is allocated, and a bad file gives NULL/-1 with a message
 * naming the file and the problem. The *_decode functions read from memory (they are what
 * the fuzz targets in csrc/fuzz/ exercise); `name` is only used in messages.
 * ------------------------------------------------------------------------------------- */

/* A list of strings owned by the library (file names found by a scan). */
typedef struct pivq_strings pivq_strings;
/* Number of strings. */
int64_t pivq_strings_count(const pivq_strings *s);
/* String i (0-based); NULL if out of range. Valid until pivq_strings_free. */
const char *pivq_strings_get(const pivq_strings *s, int64_t i);
/* Free the list (NULL ok). */
void pivq_strings_free(pivq_strings *s);

/* Read an IDX file (MNIST family), gzip-compressed or raw (detected from the bytes). The
   tensor has the file's shape; dtypes map u8 -> uint8, i8/i16/i32 -> int32, f32 -> float32,
   f64 -> float32 (rounded). */
pivq_tensor *pivq_idx_read(const char *path);
/* The same from `len` bytes at `data`. */
pivq_tensor *pivq_idx_decode(const void *data, size_t len, const char *name);

/* Named tensors and string metadata read from a safetensors file. */
typedef struct pivq_tensor_set pivq_tensor_set;
/* Read a safetensors file. Dtypes F32, I32, I64, U8 load as such; F64, F16, BF16 convert to
   float32, I8, I16, U16 to int32, U32 to int64, BOOL to uint8. */
pivq_tensor_set *pivq_safetensors_read(const char *path);
/* The same from `len` bytes at `data`. */
pivq_tensor_set *pivq_safetensors_decode(const void *data, size_t len, const char *name);
/* Number of tensors in the set (in the file's data order). */
int pivq_tensor_set_count(const pivq_tensor_set *s);
/* Name of tensor i (0-based). */
const char *pivq_tensor_set_name(const pivq_tensor_set *s, int i);
/* Tensor i: a NEW reference. */
pivq_tensor *pivq_tensor_set_tensor(const pivq_tensor_set *s, int i);
/* Number of `__metadata__` entries. */
int pivq_tensor_set_metadata_count(const pivq_tensor_set *s);
/* Key and value of metadata entry i. */
const char *pivq_tensor_set_metadata_key(const pivq_tensor_set *s, int i);
const char *pivq_tensor_set_metadata_value(const pivq_tensor_set *s, int i);
/* Free the set and drop its tensor references (NULL ok). */
void pivq_tensor_set_free(pivq_tensor_set *s);
/* Write n named tensors (any layout; names unique, non-empty) and nmeta string pairs to
   `path` atomically: a temporary file in the same folder, flushed and fsynced, renamed. */
int pivq_safetensors_write(const char *path, int n, const char *const *names,
                           pivq_tensor *const *tensors, int nmeta, const char *const *keys,
                           const char *const *values);

/* Largest image (width * height) a decoder accepts; default 2^28. Returns the old value.
   n <= 0 only queries. PNGs are further bounded by what their compressed size can hold. */
int64_t pivq_image_max_pixels(int64_t n);
/* Decode a PNG (8/16-bit; gray, gray+alpha, RGB, RGBA, palette) or a JPEG (gray or colour),
   detected from the bytes, into C x H x W float32 in [0, 1]. C is 1 (gray), 2 (gray+alpha),
   3 (RGB) or 4 (RGBA); palette images give 3 or 4 (with transparency). */
pivq_tensor *pivq_image_read(const char *path);
/* The same from `len` bytes at `data`. */
pivq_tensor *pivq_image_decode(const void *data, size_t len, const char *name);
/* Composite an image with alpha over an opaque background (r, g, b in [0, 1]; NULL: white):
   out = a * colour + (1 - a) * background, PNG's straight alpha. img is float32 C x H x W:
   RGBA gives RGB; gray+alpha gives gray over a gray background (r = g = b), RGB otherwise;
   gray and RGB come back unchanged (a contiguous copy or the same storage). */
pivq_tensor *pivq_image_composite(const pivq_tensor *img, const float *background);
/* Write img as an 8-bit PNG: C x H x W (C = 1, 2, 3 or 4) or H x W; float32 values are
   clamped to [0, 1] and rounded to /255 steps, uint8 values written as they are. Atomic. */
int pivq_image_write_png(const char *path, const pivq_tensor *img);
/* Write img (C = 1 or 3, as for PNG) as a baseline JPEG of quality 1..100. Atomic. */
int pivq_image_write_jpeg(const char *path, const pivq_tensor *img, int quality);

/* uint8 pixels (any shape) as float32 in [0, 1] (x / 255), in one pass. */
pivq_tensor *pivq_image_u8_to_float(const pivq_tensor *x);

typedef enum pivq_resize_mode {
    PIVQ_RESIZE_AREA = 0,    /* average of the covered source area (for shrinking) */
    PIVQ_RESIZE_BILINEAR = 1 /* half-pixel centres, edge clamped (align_corners=False) */
} pivq_resize_mode;

/* Resize the last two dims of a float32 C x H x W or N x C x H x W tensor to h x w. */
pivq_tensor *pivq_image_resize(const pivq_tensor *x, int64_t h, int64_t w, int mode);
/* The centred h x w window of the last two dims (a view; odd margins leave the extra row or
   column at the bottom/right). */
pivq_tensor *pivq_image_center_crop(const pivq_tensor *x, int64_t h, int64_t w);
/* Tile a float32 N x C x H x W batch into one C x H' x W' image: nrow images per row,
   `padding` pixels of pad_value around every image, each pixel repeated scale x scale. */
pivq_tensor *pivq_image_grid(const pivq_tensor *batch, int nrow, int padding, int scale,
                             double pad_value);

/* Image files under dir (recursively; *.png, *.jpg, *.jpeg in any case; hidden entries
   skipped) as paths relative to dir, sorted bytewise. */
pivq_strings *pivq_image_list(const char *dir);
/* A 64-bit fingerprint of n files (relative to dir, or absolute when dir is NULL): names,
   sizes and modification times. A cache keyed by it goes stale when any file changes.
   Returns 0 and sets the error if a file cannot be stat'ed. */
uint64_t pivq_files_fingerprint(const char *dir, const char *const *files, int64_t n);
/* Load n files (paths relative to dir, or absolute when dir is NULL): decode, composite
   alpha over `background` (pivq_image_composite; NULL: white), centre-crop to a square
   (crop x crop source pixels, e.g. 148 for CelebA's 178x218; 0: the largest square),
   area-resize to size x size, convert to `channels` (1 or 3; gray is repeated, colour to
   BT.601 luma). Without a crop, JPEGs much larger than size are decoded at 1/2, 1/4 or 1/8
   scale first (libjpeg's DCT scaling). Result N x channels x size x size uint8.
   threads >= 1 decode in parallel. */
pivq_tensor *pivq_image_folder_load(const char *dir, const char *const *files, int64_t n, int size,
                                    int channels, int crop, const float *background, int threads);

/* A batch loader: worker threads gather shuffled rows of the source tensors into batches
   ahead of the consumer, delivered in order so that a seed fixes the whole sequence. */
typedef struct pivq_loader pivq_loader;
enum {
    PIVQ_LOADER_IMAGE = 1 /* source flag: uint8 converts to float32 / 255; hflip applies */
};
/* nsources tensors (1..8) with one first dim N; flags[k] as above (NULL: none). batch >= 1;
   shuffle with `seed` (epoch e draws from counter e * 2^40 of pivq_generator{seed}); hflip
   flips each image sample with probability 1/2; workers >= 1 threads; prefetch >= 1
   batches ready ahead. The sources are retained (contiguous copies when needed). */
pivq_loader *pivq_loader_new(pivq_tensor *const *sources, const int *flags, int nsources,
                             int64_t batch, int shuffle, uint64_t seed, int drop_last, int hflip,
                             int workers, int prefetch);
/* Like pivq_loader_new, but the images are decoded from n files by the workers as batches are
   built (for folders too large to preload): each file (relative to dir, or absolute when dir
   is NULL) is composited, centre-cropped and area-resized to size x size with `channels`
   (1 or 3) channels, as pivq_image_folder_load does with crop and background,
   and arrives as float32 in [0, 1] (batch output 0). The nsources extra sources (0..7, first
   dim n: labels, attributes) follow as outputs 1..nsources. A file that fails to decode makes
   pivq_loader_next fail with its name. */
pivq_loader *pivq_loader_new_files(const char *dir, const char *const *files, int64_t n, int size,
                                   int channels, int crop, const float *background,
                                   pivq_tensor *const *sources, const int *flags, int nsources,
                                   int64_t batch, int shuffle, uint64_t seed, int drop_last,
                                   int hflip, int workers, int prefetch);
/* Batches per epoch. */
int64_t pivq_loader_num_batches(const pivq_loader *l);
/* Start epoch `epoch` (>= 0): stops any running one, draws the order, starts the workers. */
int pivq_loader_start_epoch(pivq_loader *l, int64_t epoch);
/* Next batch of the epoch: out[k] receives a NEW reference per source. Returns 1, 0 at the
   end of the epoch, -1 on error. */
int pivq_loader_next(pivq_loader *l, pivq_tensor **out);
/* Stop the workers and free the loader (NULL ok). */
void pivq_loader_free(pivq_loader *l);

/* ---- Atomic files ---- */
/* Every writer here (safetensors, PNG, JPEG, the function below) replaces its target
   atomically: it writes `path.tmp-XXXXXX` in the same folder, fsyncs it, renames it over
   `path` and fsyncs the folder, so a reader sees the old file or the new one, never a mix,
   even after a crash or a full disk. A failed write removes its temporary file. */
/* Write len bytes to path atomically. Returns 0, or -1 with the error set. */
int pivq_write_file_atomic(const char *path, const void *data, size_t len);
/* Remove the temporary files that writes of `path` killed before their rename (SIGKILL,
   power loss) left beside it. Returns how many were removed, or -1 with the error set. Only
   call it when no other process is writing `path`: it would remove that write's file. */
int pivq_atomic_remove_stale(const char *path);
/* Create the folder path and its missing parents (mkdir -p, no shell). Existing folders are
   fine; a file in the way or a permission error returns -1 with the error naming the folder. */
int pivq_mkdir_p(const char *path);
/* Take an exclusive flock on path (created if missing) and write this process's PID into it.
   Returns the descriptor (hold it for the lock's life), or -1 with the error set; when another
   process holds it, *holder (may be NULL) gets the PID written in the file. The kernel drops
   the lock when its holder exits or is killed, so a stale file never blocks. */
int pivq_lock_acquire(const char *path, int64_t *holder);
/* Release a lock from pivq_lock_acquire (close its descriptor; -1 ok). */
void pivq_lock_release(int fd);
/* Run a program without a shell (io/proc.c): argv (NULL-terminated; argv[0] looked up in PATH)
   is passed to execvp unparsed. Its stdout and stderr go to out (at most out_cap bytes kept,
   the rest read and dropped; *out_len gets the count; out may be NULL when out_cap is 0), its
   stdin is /dev/null. Returns its exit status, 128 + the signal that ended it, 127 when it
   cannot be executed, or -1 with the error set (no pipe, no fork). */
int pivq_run(const char *const *argv, char *out, size_t out_cap, size_t *out_len);

/* =======================================================================================
 * Layer 5: quant (csrc/quant/)
 * The method's own kernels: vector quantization (distances, k-means++, EMA upkeep), the
 * exact assignment solver behind matching quantization, nearest neighbours for PRDC, and
 * image-quality metrics.
 * ===================================================================================== */

/* ---------------------------------------------------------------------------------------
 * Vector quantization kernels (quant/vq.c): distances, k-means++, EMA codebook upkeep, code
 * statistics. Codes are 0-based int64 here. Latents and codebooks are float32 rows.
 * ------------------------------------------------------------------------------------- */

/* out[i][k] = ||x_i - e_k||^2 for x N x c and e K x c: an N x K float32 tensor computed as
   ||x||^2 - 2 x e^T + ||e||^2 with one sgemm, clamped at 0 (rounding can go slightly below). */
pivq_tensor *pivq_sq_distances(const pivq_tensor *x, const pivq_tensor *e);
/* K centroids (K x c) of the rows of x (N x c, N >= K) by k-means: k-means++ seeding (each
   next seed drawn with probability proportional to the squared distance to the nearest seed
   so far), then `iters` Lloyd iterations; an emptied cluster is re-seeded with the point
   farthest from its centroid. Draws come from g (NULL: the default generator). */
pivq_tensor *pivq_kmeans(const pivq_tensor *x, int64_t K, int iters, pivq_generator *g);
/* EMA codebook update (van den Oord et al. 2017, with Laplace smoothing):
     count_k <- decay*count_k + (1-decay)*n_k,  sum_k <- decay*sum_k + (1-decay)*sum_{i: code_i=k}
   x_i, e_k <- sum_k / ((count_k + eps) / (n + K*eps) * n)  with n = sum_k count_k. codebook K x c,
   ema_count K, ema_sum K x c (all float32, contiguous, updated in place); latents N x c; codes N
   int64 in [0, K). */
int pivq_vq_ema_update_(pivq_tensor *codebook, pivq_tensor *ema_count, pivq_tensor *ema_sum,
                        const pivq_tensor *latents, const pivq_tensor *codes, double decay,
                        double eps);
/* The two halves of pivq_vq_ema_update_, for data-parallel training where the batch statistics
   are summed over the ranks in between. Statistics of one batch: counts[k] = how many codes
   (N int64 in [0, K)) equal k, sums[k] = the sum of the latents (N x c) with code k; counts
   float32 K and sums float32 K x c, contiguous, overwritten. */
int pivq_vq_ema_stats(const pivq_tensor *latents, const pivq_tensor *codes, pivq_tensor *counts,
                      pivq_tensor *sums);
/* The EMA update of pivq_vq_ema_update_ with n_k = counts[k] and the per-code sums = sums[k]
   given (e.g. pivq_vq_ema_stats summed over ranks). */
int pivq_vq_ema_apply_(pivq_tensor *codebook, pivq_tensor *ema_count, pivq_tensor *ema_sum,
                       const pivq_tensor *counts, const pivq_tensor *sums, double decay,
                       double eps);
/* Per-code usage counts (int64, length K) of codes (any shape, int64 in [0, K)). */
pivq_tensor *pivq_code_counts(const pivq_tensor *codes, int64_t K);
/* Mean number of distinct codes per row of codes (B x L int64 in [0, K)): K_img. */
int pivq_distinct_per_row(const pivq_tensor *codes, int64_t K, double *out_mean);

/* ---- Matching quantization from latents ---- */

/* The matching quantizer's codes: for each image b of z (float32 B x L x c, L <= K), the
   minimum-cost injective assignment of its L latents to rows of codebook (K x c) under squared
   Euclidean distance -- pivq_assign of pivq_sq_distances, computed a block of images at a time
   so that only about 1 MB of distances exists at once. NEW int64 B x L tensor, 0-based rows. */
pivq_tensor *pivq_vq_match(const pivq_tensor *z, const pivq_tensor *codebook);
/* pivq_vq_match, and in *out_differ (when not NULL; untouched on error) how many of the B*L
   latents were matched to a code strictly farther than their nearest one: the rate at which
   matching's choice differs from nearest's, counted from the distances the assignment already
   has (a latent whose matched code ties with its nearest counts as agreeing). */
pivq_tensor *pivq_vq_match_differ(const pivq_tensor *z, const pivq_tensor *codebook,
                                  int64_t *out_differ);

/* ---------------------------------------------------------------------------------------
 * Exact linear assignment (quant/assign.c): the solver of the matching quantizer. Exact means
 * optimal, not greedy: shortest augmenting paths with potentials over each row's cheapest
 * columns (notebooks/METHOD.md's two speed-ups), no padding to a square. Indices are 0-based.
 * ------------------------------------------------------------------------------------- */

/* Minimum-cost injective assignment of the L rows of a row-major L x K float32 cost matrix
   (L <= K) to distinct columns: minimises sum_i cost[i, out_cols[i]] exactly.
   Returns 0, or -1 after pivq_set_error on bad input (L < 1, L > K, row_stride < K,
   NULL pointer, NaN or +-Inf in cost, out of memory).
     cost        L x K costs; row i starts at cost + i*row_stride (any sign, must be finite)
     L           number of rows to assign (1 <= L <= K)
     K           number of columns (K <= INT32_MAX)
     row_stride  elements between the starts of consecutive rows (>= K)
     out_cols    [OUT] L entries: out_cols[i] = 0-based column given to row i, all distinct */
int pivq_assign_one(const float *cost, int64_t L, int64_t K, int64_t row_stride, int64_t *out_cols);

/* B independent assignment problems, solved in parallel over B with OpenMP (one scratch
   buffer per thread). Returns 0, or -1 after pivq_set_error naming the first (lowest-index)
   failing problem.
     cost      B x L x K contiguous float32 costs (problem b at cost + b*L*K)
     B         number of problems (>= 0; B == 0 does nothing)
     L         rows per problem (1 <= L <= K)
     K         columns per problem
     out_cols  [OUT] B x L contiguous: out_cols[b*L + i] = column given to row i of problem b */
int pivq_assign_batch(const float *cost, int64_t B, int64_t L, int64_t K, int64_t *out_cols);

/* Total cost sum_i cost[i, cols[i]] of an assignment, accumulated in double (for tests).
   Does not validate anything.
     cost  L x K contiguous float32 costs
     L     number of rows
     K     number of columns
     cols  L column indices, 0-based, each in [0, K) */
double pivq_assign_total_cost(const float *cost, int64_t L, int64_t K, const int64_t *cols);
/* Tensor form: cost L x K -> L int64 columns, or B x L x K -> B x L (problems in parallel).
   cost is float32 (any strides; copied to contiguous if needed). */
pivq_tensor *pivq_assign(const pivq_tensor *cost);

/* ---------------------------------------------------------------------------------------
 * Nearest neighbours for PRDC (quant/knn.c). Euclidean distances by blocked sgemm: memory grows
 * with a block of query rows times the reference rows, never with N x N. Decisions near a
 * threshold are re-checked with distances recomputed exactly in double, so a point lying on
 * a radius is classified the same whichever role it plays.
 * ------------------------------------------------------------------------------------- */

/* For each row of x (N x d float32), the distance to its k-th nearest OTHER row of x
   (1 <= k < N). Result: N float32 radii. */
pivq_tensor *pivq_knn_radii(const pivq_tensor *x, int k);
/* Ball membership between a reference set with radii and a query set:
   [OUT] query_counts (M int64): for each query row j, the number of reference rows i with
         dist(q_j, r_i) < radius_i (inclusive == 0) or <= radius_i (inclusive == 1);
   [OUT] ref_nearest (N float32): for each reference row i, the distance to its nearest
         query row (coverage compares it with radius_i).
   ref N x d, radii N, query M x d; the outputs are new tensors stored in *query_counts and
   *ref_nearest. */
int pivq_ball_counts(const pivq_tensor *ref, const pivq_tensor *radii, const pivq_tensor *query,
                     int inclusive, pivq_tensor **query_counts, pivq_tensor **ref_nearest);
/* Exact nearest reference row of each query row (the memorisation check's search):
   [OUT] dist  (M float32): the Euclidean distance from query row j to its nearest ref row;
   [OUT] index (M int64): that row's index, 0-based (ties: the lowest index).
   ref N x d, query M x d float32, N, M >= 1, finite. Float32 distances from blocked sgemm are
   re-checked in double wherever the rounding could change the winner, so the neighbour is the
   exact one. Memory: a fixed 256 x 4096 tile plus N + M values, never N x M. */
int pivq_knn_nearest(const pivq_tensor *ref, const pivq_tensor *query, pivq_tensor **dist,
                     pivq_tensor **index);

/* ---------------------------------------------------------------------------------------
 * Image-quality metrics (quant/metrics.c).
 * ------------------------------------------------------------------------------------- */

/* Mean SSIM of each image pair (Wang et al. 2004): Gaussian window 11x11, sigma 1.5, over the
   window positions that fit inside the image (no padding), C1 = (0.01 R)^2, C2 = (0.03 R)^2
   with R = data_range, averaged over channels. x, y: N x C x H x W float32 with H, W >= 11.
   Result: N float32. */
pivq_tensor *pivq_ssim(const pivq_tensor *x, const pivq_tensor *y, double data_range);

/* =======================================================================================
 * Layer 6: dist (csrc/dist/)
 * Data-parallel training across processes over MPI.
 * ===================================================================================== */

/* ---- Distributed (MPI) ---- */
/* dist/dist.c: data-parallel communication over MPI between the processes that `mpirun` starts
 * (ranks). Optional at build time (CMake option PIVQ_MPI): without MPI,
 * pivq_dist_available() is 0 and the other functions fail with "pivq was built without MPI".
 * Errors never abort: MPI's error handler returns codes, which become pivq errors, and every
 * wait gives up after the timeout given to pivq_dist_init (a dead or hung rank). Call them from
 * one thread only: the one that called pivq_dist_init. */

/* 1 if libpivq was built with MPI, else 0. */
int pivq_dist_available(void);
/* Initialise MPI once per process (later calls only set the timeout). timeout_seconds > 0:
   a collective that waits longer than that fails; <= 0 waits forever. Fails after
   pivq_dist_finalize (MPI cannot restart in a process). */
int pivq_dist_init(double timeout_seconds);
/* 1 between a successful pivq_dist_init and pivq_dist_finalize. */
int pivq_dist_initialized(void);
/* This process's rank (0-based), or -1 if not initialised. */
int pivq_dist_rank(void);
/* Number of ranks, or 0 if not initialised. */
int pivq_dist_size(void);
/* Number of ranks on this machine (sharing its memory and cores), or 0 if not initialised. */
int pivq_dist_local_size(void);
/* Seconds this process has spent inside the collectives below (packing included). */
double pivq_dist_comm_seconds(void);
/* Finalize MPI (if pivq_dist_init started it). 0 if MPI was not initialised. */
int pivq_dist_finalize(void);
/* End every rank of the job now with exit code `code` (MPI_Abort). No-op without MPI, before
   MPI is initialised and after it is finalized. */
void pivq_dist_abort(int code);
/* In place over all ranks: each of the n float32 contiguous tensors becomes the elementwise sum
   of its copies on every rank (mean = 1: divided by the number of ranks). The tensors are
   packed into one flat buffer split into buckets of bucket_bytes (0: one bucket), and each
   bucket's reduction starts as soon as it is packed. Every rank passes the same shapes. */
int pivq_dist_allreduce_(pivq_tensor *const *ts, int n, int mean, int64_t bucket_bytes);
/* In place: the n contiguous tensors (any dtype) of rank `root` are copied into every rank's
   tensors of the same shapes. */
int pivq_dist_broadcast_(pivq_tensor *const *ts, int n, int root);
/* x (contiguous, any dtype, the same shape on every rank) of every rank: a NEW tensor
   size x x.shape on root (rank r's x at [r]); a NEW empty 0 x x.shape tensor on the others. */
pivq_tensor *pivq_dist_gather(const pivq_tensor *x, int root);
/* Wait until every rank has arrived. */
int pivq_dist_barrier(void);

#ifndef PIVQ_CDEF
#ifdef __cplusplus
}
#endif
#endif

#endif /* PIVQ_H */
