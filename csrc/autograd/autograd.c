/* autograd/autograd.c — the reverse-mode engine: tensor autograd state, graph nodes and
 * pivq_backward. The op table it runs (pivq_grad_ops: names, backward functions) is generated
 * from PIVQ_GRAD_OPS (autograd/autograd.h) in ops/grad_table.c, beside the functions it names.
 *
 * Backward runs with grad mode off, so nothing it computes joins a graph: the accumulation
 * below calls the public pivq_binary and pivq_binary_ (ops/elementwise.c, a layer up, reached
 * through pivq.h), which then neither record nor refuse.
 *
 * Ownership (why there are no cycles): a result owns its node (ag->grad_fn); a node owns the
 * nodes of its inputs and its leaf inputs, never its result. Tensors a node saves are fresh
 * headers over the same storage without autograd state, so saving the result (sigmoid, exp,
 * softmax keep their output) does not point back at the node. A graph is freed when the last
 * result referring to it is released.
 */
#include "autograd/autograd.h"

#include <stdlib.h>
#include <string.h>

/* ---- grad mode ------------------------------------------------------------------------------ */

static _Thread_local int grad_disabled = 0; /* inverted so that the zero default means "on" */

int pivq_set_grad_enabled(int enabled)
{
    int prev = !grad_disabled;
    grad_disabled = !enabled;
    return prev;
}

int pivq_is_grad_enabled(void)
{
    return !grad_disabled;
}

/* ---- nodes ------------------------------------------------------------------------------------
 */

static int64_t live_nodes = 0;

int64_t pivq_graph_node_count(void)
{
    return __atomic_load_n(&live_nodes, __ATOMIC_RELAXED);
}

static void node_free_saved(pivq_node *n)
{
    for (int i = 0; i < PIVQ_NODE_MAX_SAVED; i++) {
        pivq_tensor_release(n->saved[i]);
        n->saved[i] = NULL;
    }
}

/* Drop one reference; frees chains of nodes iteratively (a long recurrent graph would
   overflow the C stack if this recursed). */
static void node_release(pivq_node *n)
{
    pivq_node *stack_small[64];
    pivq_node **stack = stack_small;
    int64_t cap = 64, top = 0;
    if (n) stack[top++] = n;
    while (top > 0) {
        pivq_node *x = stack[--top];
        if (__atomic_sub_fetch(&x->refcount, 1, __ATOMIC_ACQ_REL) != 0) continue;
        node_free_saved(x);
        pivq_tensor_release(x->grad);
        for (int i = 0; i < x->n_in; i++) {
            pivq_tensor_release(x->in[i].leaf);
            if (!x->in[i].fn) continue;
            if (top == cap) {
                pivq_node **bigger = malloc((size_t)(cap * 2) * sizeof *bigger);
                if (!bigger) { /* cannot grow: fall back to recursion for this edge */
                    node_release(x->in[i].fn);
                    continue;
                }
                memcpy(bigger, stack, (size_t)top * sizeof *stack);
                if (stack != stack_small) free(stack);
                stack = bigger;
                cap *= 2;
            }
            stack[top++] = x->in[i].fn;
        }
        free(x->in);
        free(x);
        __atomic_sub_fetch(&live_nodes, 1, __ATOMIC_RELAXED);
    }
    if (stack != stack_small) free(stack);
}

static void pivq_autograd_free(struct pivq_autograd *ag)
{
    if (!ag) return;
    pivq_tensor_release(ag->grad);
    node_release(ag->grad_fn);
    free(ag);
}

static struct pivq_autograd *ag_state(pivq_tensor *t)
{
    if (!t->ag) {
        pivq_core_set_ag_release(pivq_autograd_free);
        t->ag = calloc(1, sizeof *t->ag);
        if (!t->ag) pivq_set_error("autograd: out of memory");
    }
    return t->ag;
}

int pivq_requires_grad(const pivq_tensor *t)
{
    return t && t->ag && (t->ag->requires_grad || t->ag->grad_fn) ? 1 : 0;
}

int pivq_ag_wants(int n, const pivq_tensor *const *in)
{
    if (grad_disabled) return 0;
    for (int i = 0; i < n; i++)
        if (pivq_requires_grad(in[i])) return 1;
    return 0;
}

pivq_node *pivq_ag_record(int op, pivq_tensor *out, int n, const pivq_tensor *const *in)
{
    if (out->ag && (out->ag->grad_fn || out->ag->requires_grad)) {
        /* a bug guard: results are always fresh headers */
        pivq_set_error("autograd: result of %s already belongs to a graph", pivq_grad_ops[op].name);
        return NULL;
    }
    pivq_node *nd = calloc(1, sizeof *nd);
    pivq_edge *edges = calloc((size_t)(n > 0 ? n : 1), sizeof *edges);
    if (!nd || !edges || !ag_state(out)) {
        free(nd);
        free(edges);
        pivq_set_error("autograd: out of memory recording %s", pivq_grad_ops[op].name);
        return NULL;
    }
    __atomic_add_fetch(&live_nodes, 1, __ATOMIC_RELAXED);
    nd->refcount = 1;
    nd->op = op;
    nd->n_in = n;
    nd->in = edges;
    for (int i = 0; i < n; i++) {
        const pivq_tensor *x = in[i];
        if (!x) continue;
        edges[i].ndim = x->ndim;
        memcpy(edges[i].shape, x->shape, sizeof x->shape);
        if (!pivq_requires_grad(x)) continue;
        if (x->ag->grad_fn) {
            edges[i].fn = x->ag->grad_fn;
            __atomic_add_fetch(&edges[i].fn->refcount, 1, __ATOMIC_RELAXED);
        } else {
            edges[i].leaf = pivq_tensor_retain((pivq_tensor *)x);
        }
    }
    nd->out_ndim = out->ndim;
    memcpy(nd->out_shape, out->shape, sizeof out->shape);
    out->ag->requires_grad = 1;
    out->ag->grad_fn = nd;
    return nd;
}

int pivq_ag_save(pivq_node *n, int slot, const pivq_tensor *t)
{
    if (!t) return 0;
    pivq_tensor *v = pivq_view_alloc(t);
    if (!v) return -1;
    pivq_tensor_release(n->saved[slot]);
    n->saved[slot] = v;
    return 0;
}

pivq_tensor *pivq_ag_finish(pivq_tensor *out, pivq_node *nd, int rc)
{
    if (!nd || rc) {
        pivq_tensor_release(out);
        return NULL;
    }
    return out;
}

pivq_tensor *pivq_zeros_f32(int ndim, const int64_t *shape)
{
    return pivq_zeros(PIVQ_FLOAT32, ndim, shape);
}

/* ---- public state ------------------------------------------------------------------------- */

int pivq_requires_grad_(pivq_tensor *t, int flag)
{
    if (pivq_check_tensor("requires_grad", "tensor", t)) return -1;
    if (t->ag && t->ag->grad_fn) {
        if (flag) return 0; /* already does */
        return pivq_set_error("requires_grad: cannot turn off requires_grad of a non-leaf "
                              "tensor (produced by %s); use detach()",
                              pivq_grad_ops[t->ag->grad_fn->op].name);
    }
    if (flag && t->scalar_type != PIVQ_FLOAT32)
        return pivq_set_error("requires_grad: only float32 tensors can require grad, got %s",
                              pivq_dtype_name(t->scalar_type));
    if (!flag && !t->ag) return 0;
    if (!ag_state(t)) return -1;
    t->ag->requires_grad = flag ? 1 : 0;
    return 0;
}

int pivq_is_leaf(const pivq_tensor *t)
{
    return !(t && t->ag && t->ag->grad_fn);
}

const char *pivq_grad_fn_name(const pivq_tensor *t)
{
    return t && t->ag && t->ag->grad_fn ? pivq_grad_ops[t->ag->grad_fn->op].name : NULL;
}

int pivq_get_grad(const pivq_tensor *t, pivq_tensor **grad)
{
    if (!grad) return pivq_set_error("grad: output pointer is NULL");
    *grad = NULL;
    if (pivq_check_tensor("grad", "tensor", t)) return -1;
    if (t->ag && t->ag->grad) *grad = pivq_tensor_retain(t->ag->grad);
    return 0;
}

static int same_shape(int nd, const int64_t *a, const pivq_tensor *b)
{
    if (nd != b->ndim) return 0;
    for (int i = 0; i < nd; i++)
        if (a[i] != b->shape[i]) return 0;
    return 1;
}

int pivq_set_grad(pivq_tensor *t, pivq_tensor *g)
{
    if (pivq_check_tensor("set_grad", "tensor", t)) return -1;
    if (g) {
        char a[160], b[160];
        if (g->scalar_type != PIVQ_FLOAT32 || !same_shape(t->ndim, t->shape, g))
            return pivq_set_error("set_grad: gradient %s %s does not match tensor %s",
                                  pivq_shape_str(g, a, sizeof a), pivq_dtype_name(g->scalar_type),
                                  pivq_shape_str(t, b, sizeof b));
    } else if (!t->ag) {
        return 0;
    }
    if (!ag_state(t)) return -1;
    pivq_tensor *old = t->ag->grad;
    t->ag->grad = g ? pivq_tensor_retain(g) : NULL;
    pivq_tensor_release(old);
    return 0;
}

pivq_tensor *pivq_detach(const pivq_tensor *t)
{
    if (pivq_check_tensor("detach", "tensor", t)) return NULL;
    return pivq_view_alloc(t);
}

int pivq_check_inplace(const pivq_tensor *t, const char *fname)
{
    if (grad_disabled || !pivq_requires_grad(t)) return 0;
    if (t->ag->grad_fn)
        return pivq_set_error("%s: in-place update of a tensor produced by %s that is part of a "
                              "graph; use the out-of-place form",
                              fname, pivq_grad_ops[t->ag->grad_fn->op].name);
    return pivq_set_error("%s: in-place update of a leaf that requires grad; wrap it in "
                          "no_grad (as optimizers do) or detach it",
                          fname);
}

/* ---- backward --------------------------------------------------------------------------- */

/* The tensor owns its memory alone: safe to add into in place. */
static int exclusive(const pivq_tensor *t)
{
    return t->refcount == 1 && t->storage->refcount == 1 && pivq_is_contiguous(t);
}

/* *slot += g; g borrowed. A shared buffer is never modified (it may be someone's data). */
static int accumulate(pivq_tensor **slot, pivq_tensor *g)
{
    if (!*slot) {
        *slot = pivq_tensor_retain(g);
        return 0;
    }
    if (exclusive(*slot)) return pivq_binary_(*slot, g, PIVQ_ADD);
    pivq_tensor *s = pivq_binary(*slot, g, PIVQ_ADD);
    if (!s) return -1;
    pivq_tensor_release(*slot);
    *slot = s;
    return 0;
}

/* A leaf's gradient is handed to the user and updated in place by optimizers: it must not
   alias any other buffer, so a shared incoming gradient is copied first. */
static int accumulate_leaf(pivq_tensor *leaf, pivq_tensor *g)
{
    struct pivq_autograd *ag = leaf->ag;
    if (ag->grad) return pivq_binary_(ag->grad, g, PIVQ_ADD);
    if (exclusive(g) && !g->ag) {
        ag->grad = pivq_tensor_retain(g);
        return 0;
    }
    ag->grad = pivq_clone_nograd(g);
    return ag->grad ? 0 : -1;
}

typedef struct node_list {
    pivq_node **v;
    int64_t n, cap;
} node_list;

static int list_push(node_list *l, pivq_node *x)
{
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 64;
        pivq_node **v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return pivq_set_error("backward: out of memory");
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return 0;
}

/* A narrow's gradient is a slice of its input's. When the input's gradient already holds other
   contributions (in a buffer of its own, or a leaf's, which is accumulated in place anyway),
   add into that slice: the generic route builds a zero tensor of the full shape and adds all
   of it, two passes over the whole. Returns 1 when the generic route must run instead. */
static int narrow_into_slice(pivq_node *nd, const pivq_tensor *g)
{
    pivq_edge *e = &nd->in[0];
    if (!pivq_ag_needs(nd, 0)) return 1;
    pivq_tensor *slot = e->fn ? e->fn->grad : e->leaf->ag->grad;
    if (!slot || (e->fn && !exclusive(slot)) || !same_shape(e->ndim, e->shape, slot)) return 1;
    int dim = (int)nd->ip[0];
    pivq_tensor *v = pivq_narrow_nograd(slot, dim, nd->ip[1], g->shape[dim]);
    int rc = v ? pivq_binary_(v, g, PIVQ_ADD) : -1;
    pivq_tensor_release(v);
    return rc;
}

/* Run the backward of one node with its accumulated gradient and route the results. */
static int run_node(pivq_node *nd, int retain_graph)
{
    if (nd->op == PIVQ_GOP_NARROW) {
        int rc = narrow_into_slice(nd, nd->grad);
        if (rc <= 0) return rc; /* narrow saves nothing: no saved tensors to free */
    }
    pivq_tensor *g = pivq_grad_ops[nd->op].strided ? pivq_tensor_retain(nd->grad)
                                                   : pivq_contiguous_nograd(nd->grad);
    if (!g) return -1;
    pivq_tensor *gin_small[8] = {0};
    pivq_tensor **gin = nd->n_in <= 8 ? gin_small : calloc((size_t)nd->n_in, sizeof *gin);
    if (!gin) {
        pivq_tensor_release(g);
        return pivq_set_error("backward: out of memory");
    }
    int rc = pivq_grad_ops[nd->op].backward(nd, g, gin);
    pivq_tensor_release(g);
    for (int i = 0; i < nd->n_in; i++) {
        if (rc == 0 && gin[i] && pivq_ag_needs(nd, i)) {
            pivq_edge *e = &nd->in[i];
            if (!same_shape(e->ndim, e->shape, gin[i])) {
                char a[160], b[160];
                rc = pivq_set_error("backward: %s produced a gradient of shape %s for an input "
                                    "of shape %s",
                                    pivq_grad_ops[nd->op].name, pivq_shape_str(gin[i], a, sizeof a),
                                    pivq_sizes_str(e->ndim, e->shape, b, sizeof b));
            } else if (e->fn) {
                rc = accumulate(&e->fn->grad, gin[i]);
            } else {
                rc = accumulate_leaf(e->leaf, gin[i]);
            }
        }
        pivq_tensor_release(gin[i]);
    }
    if (gin != gin_small) free(gin);
    if (rc == 0 && !retain_graph) {
        for (int i = 0; i < PIVQ_NODE_MAX_SAVED; i++)
            if (nd->saved[i]) nd->freed = 1;
        node_free_saved(nd);
    }
    return rc;
}

int pivq_backward(pivq_tensor *t, const pivq_tensor *grad, int retain_graph)
{
    if (pivq_check_tensor("backward", "tensor", t)) return -1;
    char a[160], b[160];
    if (!pivq_requires_grad(t))
        return pivq_set_error("backward: the tensor (%s) does not require grad: nothing in its "
                              "computation required grad, or it ran under no_grad",
                              pivq_shape_str(t, a, sizeof a));
    pivq_tensor *seed;
    if (grad) {
        if (grad->scalar_type != PIVQ_FLOAT32 || !same_shape(t->ndim, t->shape, grad))
            return pivq_set_error("backward: gradient %s %s does not match the tensor %s",
                                  pivq_shape_str(grad, a, sizeof a),
                                  pivq_dtype_name(grad->scalar_type),
                                  pivq_shape_str(t, b, sizeof b));
        seed = pivq_contiguous_nograd(grad);
    } else {
        if (pivq_numel(t) != 1)
            return pivq_set_error("backward: the tensor has shape %s; backward without a "
                                  "gradient needs a single element (a loss)",
                                  pivq_shape_str(t, a, sizeof a));
        seed = pivq_empty(PIVQ_FLOAT32, t->ndim, t->shape);
        if (seed) pivq_fill_nograd_(seed, 1.0);
    }
    if (!seed) return -1;
    int prev_mode = pivq_set_grad_enabled(0); /* backward is not recorded */
    int rc = 0;
    if (!t->ag->grad_fn) {
        rc = accumulate_leaf(t, seed);
        pivq_tensor_release(seed);
        pivq_set_grad_enabled(prev_mode);
        return rc;
    }
    /* 1. Collect the graph and count, for each node, the consumers inside it. */
    node_list all = {0}, ready = {0};
    pivq_node *root = t->ag->grad_fn;
    rc = list_push(&all, root);
    root->mark = 1;
    for (int64_t k = 0; rc == 0 && k < all.n; k++) {
        pivq_node *x = all.v[k];
        for (int i = 0; i < x->n_in && rc == 0; i++) {
            pivq_node *y = x->in[i].fn;
            if (!y) continue;
            y->deps++;
            if (!y->mark) {
                y->mark = 1;
                rc = list_push(&all, y);
            }
        }
    }
    /* 2. Kahn's order: a node runs once every consumer has added its gradient. */
    if (rc == 0) {
        root->grad = seed;
        seed = NULL;
        rc = list_push(&ready, root);
    }
    while (rc == 0 && ready.n > 0) {
        pivq_node *x = ready.v[--ready.n];
        if (x->grad) {
            if (x->freed) {
                rc = pivq_set_error("backward: trying to go through the graph a second time "
                                    "(at %s) but its saved tensors were freed; pass "
                                    "retain_graph=true to the first backward",
                                    pivq_grad_ops[x->op].name);
                break;
            }
            rc = run_node(x, retain_graph);
            pivq_tensor_release(x->grad);
            x->grad = NULL;
        }
        for (int i = 0; i < x->n_in && rc == 0; i++) {
            pivq_node *y = x->in[i].fn;
            if (y && --y->deps == 0) rc = list_push(&ready, y);
        }
    }
    /* 3. Reset the scratch (also after an error). */
    for (int64_t k = 0; k < all.n; k++) {
        pivq_node *x = all.v[k];
        x->mark = 0;
        x->deps = 0;
        pivq_tensor_release(x->grad);
        x->grad = NULL;
    }
    pivq_tensor_release(seed);
    free(all.v);
    free(ready.v);
    pivq_set_grad_enabled(prev_mode);
    return rc;
}
