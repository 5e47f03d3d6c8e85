/* core/core.h — the core layer's helpers (errors, heap counters, shapes, iterators, threads),
 * shared by every layer above it; not part of the public API. */
#ifndef PIVQ_CORE_CORE_H
#define PIVQ_CORE_CORE_H

#include "pivq.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* pivq.h must stay attribute-free for the FFI cdef; redeclared here so that the compiler
   checks every message's format string against its arguments. */
int pivq_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Add n to the FLOP count (pivq_flop_count): the product kernels call it, once per call. */
void pivq_flops_add(int64_t n);

/* Loops shorter than this run on one thread: spawning costs more than it saves. */
#define PIVQ_PARALLEL_GRAIN 32768

/* Largest storage we agree to allocate (64 GiB): a guard against sizes from corrupt input. */
#define PIVQ_MAX_STORAGE_BYTES ((int64_t)1 << 36)

/* Heap counters kept by core/ctx.c, updated by every storage allocation and free. */
void pivq_heap_note_alloc(int64_t nbytes);
void pivq_heap_note_free(int64_t nbytes);
/* A tensor header was created (+1) or freed (-1); counted in pivq_heap_bytes. */
void pivq_heap_note_header(int delta);

/* Format a tensor's shape as "2x3x4" ("scalar" for 0-dim) into buf; returns buf. */
const char *pivq_shape_str(const pivq_tensor *t, char *buf, size_t len);
/* Format an explicit shape likewise. */
const char *pivq_sizes_str(int ndim, const int64_t *size, char *buf, size_t len);

/* Product of sizes, or -1 if a size is negative or the product overflows. */
int64_t pivq_sizes_numel(int ndim, const int64_t *size);

/* New view object sharing t's storage, shape and strides copied (refcount 1). */
pivq_tensor *pivq_view_alloc(const pivq_tensor *t);

/* The views, copies and fills of the tensor core, without autograd. pivq.h's pivq_narrow,
   pivq_copy_, ... (ops/shape.c) are these plus the graph: they record a node (views, copies) or
   refuse a tensor that is part of a graph (in-place writes). Code inside the library calls
   these forms (the `_nograd` convention, also in ops/ops.h): kernels, backward functions and
   ops built from other ops must not record nodes of their own. Arguments, results and error
   messages as documented for the public forms in pivq.h. */
pivq_tensor *pivq_narrow_nograd(const pivq_tensor *t, int dim, int64_t start, int64_t length);
pivq_tensor *pivq_select_nograd(const pivq_tensor *t, int dim, int64_t index);
pivq_tensor *pivq_transpose_nograd(const pivq_tensor *t, int dim0, int dim1);
pivq_tensor *pivq_permute_nograd(const pivq_tensor *t, const int *perm);
pivq_tensor *pivq_view_nograd(const pivq_tensor *t, int ndim, const int64_t *size);
pivq_tensor *pivq_reshape_nograd(const pivq_tensor *t, int ndim, const int64_t *size);
pivq_tensor *pivq_expand_nograd(const pivq_tensor *t, int ndim, const int64_t *size);
pivq_tensor *pivq_squeeze_nograd(const pivq_tensor *t, int dim);
pivq_tensor *pivq_unsqueeze_nograd(const pivq_tensor *t, int dim);
pivq_tensor *pivq_contiguous_nograd(const pivq_tensor *t);
pivq_tensor *pivq_clone_nograd(const pivq_tensor *t);
pivq_tensor *pivq_to_dtype_nograd(const pivq_tensor *t, int dtype);
int pivq_copy_nograd_(pivq_tensor *dst, const pivq_tensor *src);
int pivq_fill_nograd_(pivq_tensor *t, double value);

/* Contiguous strides for a shape. */
void pivq_contiguous_strides(int ndim, const int64_t *size, int64_t *stride);

/* Broadcast the shapes of a and b (NumPy rules) into out_size/out_ndim; -1 with an error
   naming `fname` if incompatible. */
int pivq_broadcast_shapes(const char *fname, const pivq_tensor *a, const pivq_tensor *b,
                          int *out_ndim, int64_t *out_size);

/* Dtype both operands convert to (int op float -> float32, narrower int -> wider int). */
int pivq_promote_dtype(int a, int b);

/* Validate a tensor argument: non-NULL with a known dtype. */
int pivq_check_tensor(const char *fname, const char *argname, const pivq_tensor *t);

/* Read/write element i of a contiguous buffer of the given dtype as double. */
static inline double pivq_load_f64(const void *p, int dtype, int64_t i)
{
    switch (dtype) {
    case PIVQ_FLOAT32: return ((const float *)p)[i];
    case PIVQ_INT32: return ((const int32_t *)p)[i];
    case PIVQ_INT64: return (double)((const int64_t *)p)[i];
    default: return ((const uint8_t *)p)[i];
    }
}

/* True if x is an integer that int64 holds exactly (converting anything else is undefined). */
static inline bool pivq_fits_int64(double x)
{
    return x >= -9223372036854775808.0 && x < 9223372036854775808.0 && x == __builtin_floor(x);
}

/* exp(x) for float32, branch-free so that loops over it vectorise (libm's expf is a call per
   element). Range reduction x = n ln2 + r, |r| <= ln2/2, then a degree-6 Taylor polynomial of
   e^r (relative error ~2e-7 over the float range), scaled by 2^n through the exponent bits. */
static inline float pivq_fast_expf(float x)
{
    float x_in = x;
    x = x < -87.0f ? -87.0f : x; /* two selects: fminf/fmaxf calls would not vectorise */
    x = x > 88.0f ? 88.0f : x;
    /* a NaN passes the selects and reaches the result through r; the exponent n takes 0 in its
       place, as (int32_t)NaN and the shift of its negative value below are undefined */
    float xn = x == x ? x : 0.0f;
    /* round to nearest with the 1.5 * 2^23 trick: floorf/rintf calls block vectorisation */
    float n = (xn * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f; /* ln2 split hi + lo */
    float p =
        1.0f +
        r * (1.0f + r * (0.5f + r * (0.16666667f + r * (0.041666668f +
                                                        r * (0.0083333338f + r * 0.0013888889f)))));
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    /* below -87 the true value is subnormal (< 1.7e-38) or 0: give 0, so that a -inf score
       (a masked attention key) weighs exactly nothing */
    return x_in < -87.0f ? 0.0f : p * scale;
}

/* Number of threads to use for a loop of n elementary steps. */
static inline int pivq_threads_for(int64_t n)
{
#ifdef _OPENMP
    if (n < PIVQ_PARALLEL_GRAIN) return 1;
    return omp_get_max_threads();
#else
    (void)n;
    return 1;
#endif
}

/* Strided N-d iteration, coalesced. An iterator walks `n` operands sharing one shape;
   the innermost dim is exposed as a run so kernels write tight loops over it:
     for (pivq_iter_begin(&it); !it.done; pivq_iter_next(&it))
         for (j = 0; j < it.inner; j++) ... p[k] + j*it.inner_stride[k] ...
   Element pointers are in bytes. */
#define PIVQ_ITER_MAX_OPS 4
typedef struct pivq_iter {
    int nops;
    int ndim; /* after coalescing, >= 1 */
    int64_t size[PIVQ_MAX_DIMS];
    int64_t stride[PIVQ_ITER_MAX_OPS][PIVQ_MAX_DIMS]; /* in bytes */
    char *base[PIVQ_ITER_MAX_OPS];
    int64_t index[PIVQ_MAX_DIMS];
    char *ptr[PIVQ_ITER_MAX_OPS];            /* start of the current inner run */
    int64_t inner;                           /* length of the inner run */
    int64_t inner_stride[PIVQ_ITER_MAX_OPS]; /* in bytes */
    int64_t runs;                            /* number of inner runs in total */
    bool done;
} pivq_iter;

/* Set up an iterator over `nops` tensors already broadcast to one shape (ndim, size) with
   per-operand element strides `strides[k]` and byte element sizes `esize[k]`. */
void pivq_iter_init(pivq_iter *it, int nops, int ndim, const int64_t *size,
                    const int64_t *const *strides, char *const *base, const int *esize);
/* Position at inner run number r (0 <= r < it->runs); used to split runs among threads. */
void pivq_iter_seek(pivq_iter *it, int64_t r);
void pivq_iter_next(pivq_iter *it);

/* Run fn over every inner run of an iterator, splitting the element range evenly among the
   OpenMP threads when it is large (a run may be cut in two). ptr/stride have it->nops
   entries, strides in bytes; n is the run length. */
typedef void (*pivq_run_fn)(char **ptr, const int64_t *stride, int64_t n, void *ctx);
void pivq_iter_parallel(const pivq_iter *it, pivq_run_fn fn, void *ctx);

/* True if a and b share a storage but are not the very same view: an in-place op writing a
   while reading b must then read from a copy of b (a:add_(a:t()), x[2..4] = x[1..3]). */
bool pivq_may_alias(const pivq_tensor *a, const pivq_tensor *b);

/* Run fn(i0, i1, ctx) over [0, n) split evenly among the OpenMP threads when `work` (the
   number of elementary steps) is large; below the grain it is one direct call, with no
   OpenMP region (whose set-up alone costs more than a small op). */
typedef void (*pivq_range_fn)(int64_t i0, int64_t i1, void *ctx);
void pivq_parallel_range(int64_t n, int64_t work, pivq_range_fn fn, void *ctx);

/* Strides of t broadcast to (ndim, size): 0 where t's dim is 1 or missing. */
void pivq_broadcast_strides(const pivq_tensor *t, int ndim, const int64_t *size, int64_t *stride);

/* A tensor may carry autograd state (t->ag), which only the autograd layer above understands.
   That layer installs the function that frees the state (its grad and its reference to the
   graph) before it first attaches state to a tensor; core calls it when the tensor's last
   reference goes. Core thereby never calls upward. */
typedef void (*pivq_ag_release_fn)(struct pivq_autograd *ag);
void pivq_core_set_ag_release(pivq_ag_release_fn fn);

/* One uniform double in [0, 1) from g (NULL: the default generator); advances it by one. */
double pivq_random_uniform(pivq_generator *g);

#endif
