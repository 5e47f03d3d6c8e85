/* autograd/autograd.h — the graph node, the op table and the helpers every differentiable op
 * uses to record itself. Not part of the public API.
 *
 * Recording an op (the pattern of every differentiable public op, pivq_<op>):
 *     y = pivq_<op>_nograd(...);                            // the kernel, which never records
 *     if (!pivq_ag_wants(n, inputs)) return y;              // grad off or nothing requires it
 *     pivq_node *nd = pivq_ag_record(OP, y, n, inputs);     // attaches nd to y
 *     if (!nd || pivq_ag_save(nd, 0, x) ...) { release y; return NULL; }
 *     nd->ip[0] = ...;                                      // the op's parameters
 * The backward function of OP (in the op's own file, beside its forward kernel) receives the
 * gradient of y (contiguous float32, y's shape) and returns new references to the gradients
 * of the inputs that need one (pivq_ag_needs), each of that input's shape.
 */
#ifndef PIVQ_AUTOGRAD_AUTOGRAD_H
#define PIVQ_AUTOGRAD_AUTOGRAD_H

#include "core/core.h"

/* The graph ops: the one list from which the op enum (PIVQ_GOP_<NAME>), the backward
 * declarations (int pivq_<name>_backward(...)) and the op table (ops/grad_table.c: the name in
 * messages and grad_fn_name, the backward, the flag) are all generated, so none can miss an
 * entry. X(NAME, name, strided), one per kind of node, with the public ops that record it and
 * the file holding their forward and backward. strided: the backward reads its gradient
 * through strides, so the engine hands it over as is rather than as a contiguous copy (views
 * pass a transposed gradient on for free). Adding an op: csrc/README.md, "Adding an op". */
/* clang-format off */
#define PIVQ_GRAD_OPS(X)                                                                       \
    X(UNARY, unary, 0)                   /* ops/elementwise.c: unary */                        \
    X(CLAMP, clamp, 0)                   /* ops/elementwise.c: clamp */                        \
    X(BINARY, binary, 0)                 /* ops/elementwise.c: binary */                       \
    X(BINARY_SCALAR, binary_scalar, 0)   /* ops/elementwise.c: binary_scalar */                \
    X(WHERE, where, 0)                   /* ops/elementwise.c: where */                        \
    X(REDUCE, reduce, 0)                 /* ops/reduce.c: reduce */                            \
    X(MATMUL, matmul, 0)                 /* ops/matmul.c: matmul */                            \
    X(NARROW, narrow, 0)                 /* ops/shape.c: narrow */                             \
    X(SELECT, select, 0)                 /* ops/shape.c: select */                             \
    X(PERMUTE, permute, 1)               /* ops/shape.c: permute, transpose */                 \
    X(RESHAPE, reshape, 1)               /* ops/shape.c: view, reshape, squeeze, unsqueeze */  \
    X(EXPAND, expand, 0)                 /* ops/shape.c: expand */                             \
    X(IDENTITY, identity, 0)             /* ops/shape.c: contiguous, clone, to_dtype */        \
    X(INDEX_SELECT, index_select, 0)     /* ops/index.c: index_select */                       \
    X(GATHER, gather, 0)                 /* ops/index.c: gather */                             \
    X(MASKED_FILL, masked_fill, 0)       /* ops/index.c: masked_fill */                        \
    X(CAT, cat, 0)                       /* ops/index.c: cat, stack */                         \
    X(SCATTER_ADD, scatter_add, 0)       /* ops/index.c: scatter_add */                        \
    X(LINEAR, linear, 0)                 /* ops/nn.c: linear */                                \
    X(ACTIVATION, activation, 0)         /* ops/nn.c: activation */                            \
    X(SOFTMAX, softmax, 0)               /* ops/nn.c: softmax, log_softmax */                  \
    X(EMBEDDING, embedding, 0)           /* ops/nn.c: embedding */                             \
    X(DROPOUT, dropout, 0)               /* ops/nn.c: dropout */                               \
    X(LAYER_NORM, layer_norm, 0)         /* ops/norm.c: layer_norm */                          \
    X(GROUP_NORM, group_norm, 0)         /* ops/norm.c: group_norm */                          \
    X(POINTWISE_LOSS, pointwise_loss, 0) /* ops/loss.c: pointwise_loss */                      \
    X(CROSS_ENTROPY, cross_entropy, 0)   /* ops/loss.c: cross_entropy */                       \
    X(ATTENTION, attention, 1)           /* ops/attention.c: attention */                      \
    X(CONV2D, conv2d, 0)                 /* ops/conv.c: conv2d */                              \
    X(CONV_TRANSPOSE2D, conv_transpose2d, 0) /* ops/conv.c: conv_transpose2d */                \
    X(MAX_POOL2D, max_pool2d, 0)         /* ops/pool.c: max_pool2d */                          \
    X(AVG_POOL2D, avg_pool2d, 0)         /* ops/pool.c: avg_pool2d */                          \
    X(UPSAMPLE2D, upsample2d, 0)         /* ops/pool.c: upsample2d */
/* clang-format on */

typedef enum pivq_grad_op {
#define PIVQ_GOP_ENUM(NAME, name, strided) PIVQ_GOP_##NAME,
    PIVQ_GRAD_OPS(PIVQ_GOP_ENUM)
#undef PIVQ_GOP_ENUM
        PIVQ_GOP_COUNT
} pivq_grad_op;

enum { PIVQ_NODE_MAX_SAVED = 6, PIVQ_NODE_MAX_PARAMS = 8 };

/* Where the gradient of one input goes. */
typedef struct pivq_edge {
    struct pivq_node *fn; /* the input's producer (a reference), or NULL */
    pivq_tensor *leaf;    /* the input itself if it is a leaf requiring grad (a ref) */
    int ndim;             /* the input's shape: the shape its gradient must have */
    int64_t shape[PIVQ_MAX_DIMS];
} pivq_edge;

typedef struct pivq_node {
    int32_t refcount; /* held by the result's autograd state and by consumers */
    int32_t op;       /* pivq_grad_op */
    int32_t n_in;
    int32_t freed; /* saved tensors dropped by a backward (no retain_graph) */
    pivq_edge *in; /* n_in edges */
    pivq_tensor *saved[PIVQ_NODE_MAX_SAVED]; /* headers without autograd state (no cycles) */
    int64_t ip[PIVQ_NODE_MAX_PARAMS];        /* integer parameters of the op */
    double fp[PIVQ_NODE_MAX_PARAMS];         /* real parameters of the op */
    int out_ndim;
    int64_t out_shape[PIVQ_MAX_DIMS];
    /* scratch of a running backward */
    pivq_tensor *grad; /* accumulated gradient of the result */
    int32_t deps;      /* consumers not yet processed */
    int32_t mark;      /* visited */
} pivq_node;

struct pivq_autograd {
    int requires_grad;  /* a leaf marked by the user, or any recorded result */
    pivq_tensor *grad;  /* accumulated gradient (leaves), or NULL */
    pivq_node *grad_fn; /* the producer (a reference), NULL for leaves */
};

typedef int (*pivq_backward_fn)(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);

/* 1 if grad mode is on and any of the n inputs (NULLs skipped) requires grad. */
int pivq_ag_wants(int n, const pivq_tensor *const *in);
/* Create the node of `out` (which must be a fresh result) over n inputs (NULL allowed, for
   optional inputs) and attach it. NULL on out-of-memory, with the error set. */
pivq_node *pivq_ag_record(int op, pivq_tensor *out, int n, const pivq_tensor *const *in);
/* Keep t's data for the backward in slot i (a new header sharing t's storage). */
int pivq_ag_save(pivq_node *n, int slot, const pivq_tensor *t);
/* 1 if input i needs a gradient. */
static inline int pivq_ag_needs(const pivq_node *n, int i)
{
    return n->in[i].fn != NULL || n->in[i].leaf != NULL;
}
/* Record-or-release helper: if nd is NULL or rc != 0, release out and return NULL. */
pivq_tensor *pivq_ag_finish(pivq_tensor *out, pivq_node *nd, int rc);
/* A contiguous float32 tensor of the given shape, zero-filled. */
pivq_tensor *pivq_zeros_f32(int ndim, const int64_t *shape);

/* The backward functions, one per entry of PIVQ_GRAD_OPS, each defined beside its forward. */
#define PIVQ_GOP_DECLARE(NAME, name, strided)                                                      \
    int pivq_##name##_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
PIVQ_GRAD_OPS(PIVQ_GOP_DECLARE)
#undef PIVQ_GOP_DECLARE

/* The op table, indexed by pivq_grad_op. It names the backward functions of the ops layer, so
   it is defined there (ops/grad_table.c, generated from PIVQ_GRAD_OPS); the engine reaches it
   through this declaration, and includes still go downward only. A missing backward function
   fails the link. */
typedef struct pivq_grad_op_info {
    const char *name; /* in messages and pivq_grad_fn_name */
    pivq_backward_fn backward;
    int strided;
} pivq_grad_op_info;
extern const pivq_grad_op_info pivq_grad_ops[PIVQ_GOP_COUNT];

#endif
