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
 *    place (lua/pivq/tensor.lua).
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
/* Bytes of tensor storages and tensor headers alive now; the Lua GC policy reads this. */
int64_t pivq_heap_bytes(void);
/* Number of live storages (a leak check for the specs). */
int64_t pivq_heap_count(void);

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

/* Views (share storage; new reference). Dims are 0-based; negative dims are errors. */
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
 * Elementwise ops (ops_elementwise.c). NumPy broadcasting. Integer inputs are promoted:
 * int op float -> float32, narrower int op wider int -> wider int. Float-only unary ops
 * (exp, log, ...) convert integer input to float32.
 * ------------------------------------------------------------------------------------- */

typedef enum pivq_unary_op {
    PIVQ_NEG = 0, PIVQ_ABS, PIVQ_EXP, PIVQ_LOG, PIVQ_SQRT, PIVQ_RSQRT, PIVQ_SIN, PIVQ_COS,
    PIVQ_TANH, PIVQ_SIGMOID, PIVQ_RELU, PIVQ_SIGN, PIVQ_FLOOR, PIVQ_CEIL, PIVQ_ROUND,
    PIVQ_UNARY_COUNT
} pivq_unary_op;

typedef enum pivq_binary_op {
    PIVQ_ADD = 0, PIVQ_SUB, PIVQ_MUL, PIVQ_DIV, PIVQ_MAX, PIVQ_MIN, PIVQ_POW,
    PIVQ_BINARY_COUNT
} pivq_binary_op;

typedef enum pivq_compare_op {
    PIVQ_EQ = 0, PIVQ_NE, PIVQ_LT, PIVQ_LE, PIVQ_GT, PIVQ_GE,
    PIVQ_COMPARE_COUNT
} pivq_compare_op;

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
 * Reductions (ops_reduce.c) over one dim (0..ndim-1) or all dims (dim == -1).
 * ------------------------------------------------------------------------------------- */

typedef enum pivq_reduce_op {
    PIVQ_SUM = 0, PIVQ_MEAN, PIVQ_VAR, PIVQ_RMAX, PIVQ_RMIN, PIVQ_ARGMAX, PIVQ_ARGMIN,
    PIVQ_NORM, PIVQ_PROD, PIVQ_REDUCE_COUNT
} pivq_reduce_op;

/* Name of a reduction ("sum", ..., "max", "argmax", "norm"). */
const char *pivq_reduce_name(int op);
/* Reduce x along dim (-1: all). keepdim keeps the reduced dim with size 1.
   param: the correction for var (1 = unbiased), p for norm; ignored otherwise.
   sum/prod keep integer dtypes as int64; mean/var/norm give float32; max/min keep the
   dtype; argmax/argmin give int64 0-based indices (first occurrence on ties; over all dims
   the flat row-major index). Float sums accumulate in double. */
pivq_tensor *pivq_reduce(const pivq_tensor *x, int op, int dim, int keepdim, double param);

/* ---------------------------------------------------------------------------------------
 * Matrix products (ops_matmul.c), float32, through OpenBLAS sgemm. Operands whose last two
 * dims are row-major or transposed (column-major) are passed without copies.
 * ------------------------------------------------------------------------------------- */

/* a @ b following numpy.matmul: 1-D x 1-D dot, 2-D x 2-D, and batched N-D with broadcast
   batch dims; a 1-D operand is promoted and the added dim removed from the result. */
pivq_tensor *pivq_matmul(const pivq_tensor *a, const pivq_tensor *b);
/* out = alpha * op(a) @ op(b) + beta * out for 2-D a, b, out (op = transpose if trans_*). */
int pivq_gemm_(pivq_tensor *out, const pivq_tensor *a, const pivq_tensor *b,
               int trans_a, int trans_b, float alpha, float beta);

/* ---------------------------------------------------------------------------------------
 * Indexing and joining (ops_index.c). Index tensors are int64 (int32 accepted), 0-based.
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
 * Random numbers (random.c). A counter-based generator (Philox-4x32-10): the value drawn for
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

/* ---------------------------------------------------------------------------------------
 * Data and files (io_file.c, io_idx.c, io_safetensors.c, io_png.c, io_jpeg.c, image.c,
 * loader.c). Readers take untrusted bytes: every declared size is checked against what the
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
/* Write img as an 8-bit PNG: C x H x W (C = 1, 2, 3 or 4) or H x W; float32 values are
   clamped to [0, 1] and rounded to /255 steps, uint8 values written as they are. Atomic. */
int pivq_image_write_png(const char *path, const pivq_tensor *img);
/* Write img (C = 1 or 3, as for PNG) as a baseline JPEG of quality 1..100. Atomic. */
int pivq_image_write_jpeg(const char *path, const pivq_tensor *img, int quality);

/* uint8 pixels (any shape) as float32 in [0, 1] (x / 255), in one pass. */
pivq_tensor *pivq_image_u8_to_float(const pivq_tensor *x);

typedef enum pivq_resize_mode {
    PIVQ_RESIZE_AREA = 0,     /* average of the covered source area (for shrinking) */
    PIVQ_RESIZE_BILINEAR = 1  /* half-pixel centres, edge clamped (align_corners=False) */
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
/* Load n files (paths relative to dir, or absolute when dir is NULL): decode, centre-crop to
   a square, area-resize to size x size, convert to `channels` (1 or 3; gray is repeated,
   alpha dropped, colour to BT.601 luma). JPEGs much larger than size are decoded at 1/2, 1/4
   or 1/8 scale first (libjpeg's DCT scaling). Result N x channels x size x size uint8.
   threads >= 1 decode in parallel. */
pivq_tensor *pivq_image_folder_load(const char *dir, const char *const *files, int64_t n,
                                    int size, int channels, int threads);

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
                             int64_t batch, int shuffle, uint64_t seed, int drop_last,
                             int hflip, int workers, int prefetch);
/* Like pivq_loader_new, but the images are decoded from n files by the workers as batches are
   built (for folders too large to preload): each file (relative to dir, or absolute when dir
   is NULL) is centre-cropped, area-resized to size x size with `channels` (1 or 3) channels,
   and arrives as float32 in [0, 1] (batch output 0). The nsources extra sources (0..7, first
   dim n: labels, attributes) follow as outputs 1..nsources. A file that fails to decode makes
   pivq_loader_next fail with its name. */
pivq_loader *pivq_loader_new_files(const char *dir, const char *const *files, int64_t n,
                                   int size, int channels, pivq_tensor *const *sources,
                                   const int *flags, int nsources, int64_t batch, int shuffle,
                                   uint64_t seed, int drop_last, int hflip, int workers,
                                   int prefetch);
/* Batches per epoch. */
int64_t pivq_loader_num_batches(const pivq_loader *l);
/* Start epoch `epoch` (>= 0): stops any running one, draws the order, starts the workers. */
int pivq_loader_start_epoch(pivq_loader *l, int64_t epoch);
/* Next batch of the epoch: out[k] receives a NEW reference per source. Returns 1, 0 at the
   end of the epoch, -1 on error. */
int pivq_loader_next(pivq_loader *l, pivq_tensor **out);
/* Stop the workers and free the loader (NULL ok). */
void pivq_loader_free(pivq_loader *l);

#ifndef PIVQ_CDEF
#ifdef __cplusplus
}
#endif
#endif

#endif /* PIVQ_H */
