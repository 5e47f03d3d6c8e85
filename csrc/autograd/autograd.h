/* autograd/autograd.h — the graph node, the op table and the helpers every differentiable op
 * uses to record itself. Not part of the public API.
 *
 * Recording an op (the pattern of every autograd-aware entry point):
 *     y = plain_forward(...);
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

/* Graph ops: one backward function each, in the table of autograd/autograd.c. */
typedef enum pivq_grad_op {
    PIVQ_GOP_UNARY = 0,
    PIVQ_GOP_CLAMP,
    PIVQ_GOP_BINARY,
    PIVQ_GOP_BINARY_SCALAR,
    PIVQ_GOP_WHERE,
    PIVQ_GOP_REDUCE,
    PIVQ_GOP_MATMUL,
    PIVQ_GOP_NARROW,
    PIVQ_GOP_SELECT,
    PIVQ_GOP_PERMUTE,
    PIVQ_GOP_RESHAPE,
    PIVQ_GOP_EXPAND,
    PIVQ_GOP_IDENTITY,
    PIVQ_GOP_INDEX_SELECT,
    PIVQ_GOP_GATHER,
    PIVQ_GOP_MASKED_FILL,
    PIVQ_GOP_CAT,
    PIVQ_GOP_SCATTER_ADD,
    PIVQ_GOP_LINEAR,
    PIVQ_GOP_ACTIVATION,
    PIVQ_GOP_SOFTMAX,
    PIVQ_GOP_EMBEDDING,
    PIVQ_GOP_DROPOUT,
    PIVQ_GOP_LAYER_NORM,
    PIVQ_GOP_GROUP_NORM,
    PIVQ_GOP_POINTWISE_LOSS,
    PIVQ_GOP_CROSS_ENTROPY,
    PIVQ_GOP_ATTENTION,
    PIVQ_GOP_CONV2D,
    PIVQ_GOP_CONV_TRANSPOSE2D,
    PIVQ_GOP_MAX_POOL2D,
    PIVQ_GOP_AVG_POOL2D,
    PIVQ_GOP_UPSAMPLE2D,
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
/* Sum g down to a broadcast-compatible shape (the gradient of a broadcast). New reference. */
pivq_tensor *pivq_sum_to_shape(const pivq_tensor *g, int ndim, const int64_t *shape);
/* Record-or-release helper: if nd is NULL or rc != 0, release out and return NULL. */
pivq_tensor *pivq_ag_finish(pivq_tensor *out, pivq_node *nd, int rc);
/* A contiguous float32 tensor of the given shape, zero-filled. */
pivq_tensor *pivq_zeros_f32(int ndim, const int64_t *shape);

/* The backward functions, by file. */
/* ops/grad_core.c */
int pivq_unary_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_clamp_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_binary_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_binary_scalar_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_where_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_reduce_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_matmul_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_narrow_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_select_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_permute_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_reshape_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_expand_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_identity_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_index_select_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_gather_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_masked_fill_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_cat_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_scatter_add_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
/* ops/nn.c */
int pivq_linear_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_activation_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_softmax_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_embedding_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_dropout_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
/* ops/norm.c */
int pivq_layer_norm_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_group_norm_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
/* ops/loss.c */
int pivq_pointwise_loss_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_cross_entropy_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
/* ops/attention.c */
int pivq_attention_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
/* ops/conv.c */
int pivq_conv2d_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_conv_transpose2d_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
/* ops/pool.c */
int pivq_max_pool2d_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_avg_pool2d_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);
int pivq_upsample2d_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin);

#endif
