/* core/tensor.c — storage, tensor objects, views, copy/fill, and the strided iterator.
 *
 * A tensor is a small refcounted header (shape, strides, offset) over a refcounted storage.
 * Views share the storage and never copy. The iterator at the bottom coalesces dims so that
 * elementwise kernels run tight inner loops whatever the layout.
 */
#include "core/core.h"

/* Frees a tensor's autograd state; installed by the autograd layer (core/core.h says why). */
static pivq_ag_release_fn ag_release;

void pivq_core_set_ag_release(pivq_ag_release_fn fn)
{
    __atomic_store_n(&ag_release, fn, __ATOMIC_RELEASE); /* any thread may attach state first */
}

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- dtypes --------------------------------------------------------------------------- */

int pivq_dtype_size(int dtype)
{
    switch (dtype) {
    case PIVQ_FLOAT32: return 4;
    case PIVQ_INT32: return 4;
    case PIVQ_INT64: return 8;
    case PIVQ_UINT8: return 1;
    default: return 0;
    }
}

const char *pivq_dtype_name(int dtype)
{
    switch (dtype) {
    case PIVQ_FLOAT32: return "float32";
    case PIVQ_INT32: return "int32";
    case PIVQ_INT64: return "int64";
    case PIVQ_UINT8: return "uint8";
    default: return "?";
    }
}

int pivq_promote_dtype(int a, int b)
{
    if (a == b) return a;
    if (a == PIVQ_FLOAT32 || b == PIVQ_FLOAT32) return PIVQ_FLOAT32;
    if (a == PIVQ_INT64 || b == PIVQ_INT64) return PIVQ_INT64;
    if (a == PIVQ_INT32 || b == PIVQ_INT32) return PIVQ_INT32;
    return PIVQ_UINT8;
}

int pivq_check_tensor(const char *fname, const char *argname, const pivq_tensor *t)
{
    if (!t) return pivq_set_error("%s: %s is NULL", fname, argname);
    if (pivq_dtype_size(t->scalar_type) == 0)
        return pivq_set_error("%s: %s has unknown dtype %d", fname, argname, t->scalar_type);
    return 0;
}

/* ---- shapes --------------------------------------------------------------------------- */

const char *pivq_sizes_str(int ndim, const int64_t *size, char *buf, size_t len)
{
    if (ndim == 0) {
        snprintf(buf, len, "scalar");
        return buf;
    }
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, i ? "x%lld" : "%lld", (long long)size[i]);
    return buf;
}

const char *pivq_shape_str(const pivq_tensor *t, char *buf, size_t len)
{
    return pivq_sizes_str(t->ndim, t->shape, buf, len);
}

int64_t pivq_sizes_numel(int ndim, const int64_t *size)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (size[i] < 0) return -1;
        if (size[i] != 0 && n > INT64_MAX / size[i]) return -1;
        n *= size[i];
    }
    return n;
}

void pivq_contiguous_strides(int ndim, const int64_t *size, int64_t *stride)
{
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= size[i] > 0 ? size[i] : 1;
    }
}

int64_t pivq_numel(const pivq_tensor *t)
{
    return pivq_sizes_numel(t->ndim, t->shape);
}

void *pivq_data(const pivq_tensor *t)
{
    return (char *)t->storage->data + t->offset * pivq_dtype_size(t->scalar_type);
}

int pivq_is_contiguous(const pivq_tensor *t)
{
    /* no elements, no layout (pivq_contiguous_strides gives a size-0 dim the stride of size 1) */
    if (pivq_numel(t) == 0) return 1;
    int64_t expected = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 1) continue; /* the stride of a size-1 dim never matters */
        if (t->strides[i] != expected) return 0;
        expected *= t->shape[i];
    }
    return 1;
}

/* ---- storage and lifetime ------------------------------------------------------------- */

/* Storages of at least this many bytes are "large": their blocks go through the cache below.
   (Transparent huge pages were tried and dropped: on this project's VMs a fresh 80 MB result
   faulting in 2 MB pages took 300 ms instead of 60.) */
#define PIVQ_LARGE_BYTES ((int64_t)64 << 10)

/* Block size of a storage of nbytes: header (64 bytes) + data rounded up to 64 bytes, which
   aligned_alloc needs. */
static size_t storage_block_size(int64_t nbytes)
{
    return (size_t)((nbytes + 63) / 64 * 64 + 64);
}

/* A few recently freed large blocks, reused by the next storage of the same block size. A
   loop computing `y = a + b` on large tensors otherwise returns every result to the kernel
   and gets fresh pages back, which the kernel must fault in and zero: measured here, 60-90 ms
   for an 80 MB result whose add itself takes 12 ms.
   Bounded: PIVQ_CACHE_SLOTS blocks, PIVQ_CACHE_MAX_BYTES in all. */
#define PIVQ_CACHE_SLOTS 16
#define PIVQ_CACHE_MAX_BYTES ((size_t)512 << 20)
/* Under AddressSanitizer a cached block is poisoned until reused, so a use after its tensor
   was freed is still reported. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

static struct {
    char *block;
    size_t size;
} block_cache[PIVQ_CACHE_SLOTS];
static size_t block_cache_bytes;
static int block_cache_lock; /* a spin lock: held for a few loads and stores */

static void cache_lock(void)
{
    while (__atomic_exchange_n(&block_cache_lock, 1, __ATOMIC_ACQUIRE)) {
    }
}
static void cache_unlock(void)
{
    __atomic_store_n(&block_cache_lock, 0, __ATOMIC_RELEASE);
}

static char *cache_take(size_t size)
{
    char *block = NULL;
    cache_lock();
    for (int i = 0; i < PIVQ_CACHE_SLOTS; i++)
        if (block_cache[i].block && block_cache[i].size == size) {
            block = block_cache[i].block;
            block_cache[i].block = NULL;
            block_cache_bytes -= size;
            UNPOISON(block, size);
            break;
        }
    cache_unlock();
    return block;
}

/* Keep a freed block, evicting older ones (round robin) to make room: the newest garbage is
   the likeliest to match the next allocation. Returns false if the block cannot be kept. */
static bool cache_put(char *block, size_t size)
{
    static int next_victim;
    if (size > PIVQ_CACHE_MAX_BYTES) return false;
    char *evicted[PIVQ_CACHE_SLOTS];
    int nevicted = 0, slot = -1;
    cache_lock();
    for (int i = 0; i < PIVQ_CACHE_SLOTS && slot < 0; i++)
        if (!block_cache[i].block) slot = i;
    while (slot < 0 || block_cache_bytes + size > PIVQ_CACHE_MAX_BYTES) {
        int v = next_victim;
        next_victim = (next_victim + 1) % PIVQ_CACHE_SLOTS;
        if (!block_cache[v].block) continue;
        block_cache_bytes -= block_cache[v].size;
        UNPOISON(block_cache[v].block, block_cache[v].size);
        evicted[nevicted++] = block_cache[v].block;
        block_cache[v].block = NULL;
        if (slot < 0) slot = v;
    }
    POISON(block, size);
    block_cache[slot].block = block;
    block_cache[slot].size = size;
    block_cache_bytes += size;
    cache_unlock();
    for (int i = 0; i < nevicted; i++)
        free(evicted[i]); /* outside the lock */
    return true;
}

/* Per-thread free lists of small blocks (storages up to 1 KiB of data) and tensor headers.
   The small tensors of an interpreted loop otherwise spend ~40% of an op in malloc/free
   (aligned allocations split and coalesce chunks); a pop or a push is a few instructions.
   Thread-local, so no lock; bounded depth. */
#define SMALL_CLASSES 17 /* blocks of 128, 192, ..., 1152 bytes */
#define SMALL_DEPTH 64

typedef struct small_stack {
    void *items[SMALL_DEPTH];
    int n;
} small_stack;

static _Thread_local small_stack small_blocks[SMALL_CLASSES];
static _Thread_local small_stack free_headers;

/* The free-list class of a block size, or -1 if it is not kept. */
static int small_class(size_t total)
{
    size_t c = total / 64;
    return total % 64 == 0 && c >= 2 && c < 2 + SMALL_CLASSES ? (int)(c - 2) : -1;
}

/* A thread that exits (a loader worker, an image-folder worker) must hand its free lists
   back, or their blocks leak. A pthread key whose destructor empties the lists is armed the
   first time a thread keeps a block; glibc runs key destructors while the thread's
   _Thread_local variables are still valid. */
static pthread_key_t small_cache_key;
static pthread_once_t small_cache_once = PTHREAD_ONCE_INIT;
static _Thread_local bool small_cache_armed;

static void small_cache_drain(void *unused)
{
    (void)unused;
    for (int c = 0; c < SMALL_CLASSES; c++)
        while (small_blocks[c].n > 0) {
            void *p = small_blocks[c].items[--small_blocks[c].n];
            UNPOISON(p, (size_t)(c + 2) * 64);
            free(p);
        }
    while (free_headers.n > 0) {
        void *p = free_headers.items[--free_headers.n];
        UNPOISON(p, sizeof(pivq_tensor));
        free(p);
    }
}

static void small_cache_make_key(void)
{
    pthread_key_create(&small_cache_key, small_cache_drain);
}

static void small_cache_arm(void)
{
    if (small_cache_armed) return;
    small_cache_armed = true;
    pthread_once(&small_cache_once, small_cache_make_key);
    pthread_setspecific(small_cache_key, &small_cache_armed); /* non-NULL: run the destructor */
}

static void *stack_pop(small_stack *st, size_t size)
{
    if (st->n == 0) return NULL;
    void *p = st->items[--st->n];
    UNPOISON(p, size);
    return p;
}

static bool stack_push(small_stack *st, void *p, size_t size)
{
    if (st->n == SMALL_DEPTH) return false;
    small_cache_arm();
    POISON(p, size);
    st->items[st->n++] = p;
    return true;
}

static pivq_tensor *header_alloc(void)
{
    pivq_tensor *t = stack_pop(&free_headers, sizeof *t);
    if (!t) t = malloc(sizeof *t);
    if (t) memset(t, 0, sizeof *t);
    return t;
}

static void header_free(pivq_tensor *t)
{
    if (!stack_push(&free_headers, t, sizeof *t)) free(t);
}

/* One allocation holds the storage header and the data (the data 64 bytes in): a tensor costs
   two mallocs, not three, which matters for the small tensors of an interpreted loop. */
static pivq_storage *storage_new(const char *fname, int64_t nbytes)
{
    size_t total = storage_block_size(nbytes);
    int cls = small_class(total);
    char *block = NULL;
    if (nbytes >= PIVQ_LARGE_BYTES)
        block = cache_take(total);
    else if (cls >= 0)
        block = stack_pop(&small_blocks[cls], total);
    if (!block) block = aligned_alloc(64, total);
    if (!block) {
        pivq_set_error("%s: out of memory allocating %lld bytes", fname, (long long)nbytes);
        return NULL;
    }
    pivq_storage *s = (pivq_storage *)block;
    s->data = block + 64;
    s->nbytes = nbytes;
    s->refcount = 1;
    s->reserved = 0;
    pivq_heap_note_alloc(nbytes);
    return s;
}

static void storage_release(pivq_storage *s)
{
    if (__atomic_sub_fetch(&s->refcount, 1, __ATOMIC_ACQ_REL) == 0) {
        pivq_heap_note_free(s->nbytes);
        size_t total = storage_block_size(s->nbytes);
        if (s->nbytes >= PIVQ_LARGE_BYTES && cache_put((char *)s, total)) return;
        int cls = small_class(total);
        if (cls >= 0 && stack_push(&small_blocks[cls], s, total)) return;
        free(s); /* the header and the data are one block */
    }
}

static int check_shape(const char *fname, int ndim, const int64_t *size)
{
    if (ndim < 0 || ndim > PIVQ_MAX_DIMS)
        return pivq_set_error("%s: ndim must be in 0..%d, got %d", fname, PIVQ_MAX_DIMS, ndim);
    if (ndim > 0 && !size) return pivq_set_error("%s: size is NULL", fname);
    for (int i = 0; i < ndim; i++)
        if (size[i] < 0)
            return pivq_set_error("%s: size %lld of dim %d is negative", fname, (long long)size[i],
                                  i);
    return 0;
}

static pivq_tensor *tensor_new(const char *fname, int dtype, int ndim, const int64_t *size)
{
    if (pivq_dtype_size(dtype) == 0) {
        pivq_set_error("%s: unknown dtype %d", fname, dtype);
        return NULL;
    }
    if (check_shape(fname, ndim, size)) return NULL;
    int64_t n = pivq_sizes_numel(ndim, size);
    char buf[160];
    if (n < 0 || n > PIVQ_MAX_STORAGE_BYTES / pivq_dtype_size(dtype)) {
        pivq_set_error("%s: shape %s is too large", fname,
                       pivq_sizes_str(ndim, size, buf, sizeof buf));
        return NULL;
    }
    pivq_tensor *t = header_alloc();
    if (!t) {
        pivq_set_error("%s: out of memory", fname);
        return NULL;
    }
    pivq_heap_note_header(1);
    t->storage = storage_new(fname, n * pivq_dtype_size(dtype));
    if (!t->storage) {
        pivq_heap_note_header(-1);
        header_free(t);
        return NULL;
    }
    t->refcount = 1;
    t->scalar_type = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = size[i];
    pivq_contiguous_strides(ndim, size, t->strides);
    return t;
}

pivq_tensor *pivq_empty(int dtype, int ndim, const int64_t *size)
{
    return tensor_new("empty", dtype, ndim, size);
}

pivq_tensor *pivq_zeros(int dtype, int ndim, const int64_t *size)
{
    pivq_tensor *t = tensor_new("zeros", dtype, ndim, size);
    if (t) memset(t->storage->data, 0, (size_t)t->storage->nbytes);
    return t;
}

pivq_tensor *pivq_from_data(int dtype, int ndim, const int64_t *size, const void *data)
{
    pivq_tensor *t = tensor_new("from_data", dtype, ndim, size);
    if (!t) return NULL;
    if (t->storage->nbytes > 0) {
        if (!data) {
            pivq_tensor_release(t);
            pivq_set_error("from_data: data is NULL");
            return NULL;
        }
        memcpy(t->storage->data, data, (size_t)t->storage->nbytes);
    }
    return t;
}

pivq_tensor *pivq_tensor_retain(pivq_tensor *t)
{
    if (t) __atomic_add_fetch(&t->refcount, 1, __ATOMIC_RELAXED);
    return t;
}

void pivq_tensor_release(pivq_tensor *t)
{
    if (!t) return;
    if (__atomic_sub_fetch(&t->refcount, 1, __ATOMIC_ACQ_REL) == 0) {
        /* its grad and graph node, freed by the function the autograd layer installed */
        if (t->ag) __atomic_load_n(&ag_release, __ATOMIC_ACQUIRE)(t->ag);
        storage_release(t->storage);
        pivq_heap_note_header(-1);
        header_free(t);
    }
}

pivq_tensor *pivq_view_alloc(const pivq_tensor *t)
{
    pivq_tensor *v = header_alloc();
    if (!v) {
        pivq_set_error("view: out of memory");
        return NULL;
    }
    *v = *t;
    v->refcount = 1;
    v->ag = NULL; /* a new view starts outside the graph; autograd records it if needed */
    pivq_heap_note_header(1);
    __atomic_add_fetch(&v->storage->refcount, 1, __ATOMIC_RELAXED);
    return v;
}

/* ---- views ---------------------------------------------------------------------------- */

static int check_dim(const char *fname, const pivq_tensor *t, int dim, int extra)
{
    if (pivq_check_tensor(fname, "tensor", t)) return -1;
    if (dim < 0 || dim >= t->ndim + extra) {
        char buf[160];
        return pivq_set_error("%s: dim %d out of range for a %d-dim tensor of shape %s", fname, dim,
                              t->ndim, pivq_shape_str(t, buf, sizeof buf));
    }
    return 0;
}

pivq_tensor *pivq_narrow_nograd(const pivq_tensor *t, int dim, int64_t start, int64_t length)
{
    if (check_dim("narrow", t, dim, 0)) return NULL;
    if (start < 0 || length < 0 || start > t->shape[dim] - length) {
        pivq_set_error("narrow: start %lld length %lld out of range for dim %d of size %lld",
                       (long long)start, (long long)length, dim, (long long)t->shape[dim]);
        return NULL;
    }
    pivq_tensor *v = pivq_view_alloc(t);
    if (!v) return NULL;
    v->offset += start * t->strides[dim];
    v->shape[dim] = length;
    return v;
}

pivq_tensor *pivq_select_nograd(const pivq_tensor *t, int dim, int64_t index)
{
    if (check_dim("select", t, dim, 0)) return NULL;
    if (index < 0 || index >= t->shape[dim]) {
        pivq_set_error("select: index %lld out of range for dim %d of size %lld", (long long)index,
                       dim, (long long)t->shape[dim]);
        return NULL;
    }
    pivq_tensor *v = pivq_view_alloc(t);
    if (!v) return NULL;
    v->offset += index * t->strides[dim];
    for (int i = dim; i < t->ndim - 1; i++) {
        v->shape[i] = t->shape[i + 1];
        v->strides[i] = t->strides[i + 1];
    }
    v->ndim--;
    return v;
}

pivq_tensor *pivq_transpose_nograd(const pivq_tensor *t, int dim0, int dim1)
{
    if (check_dim("transpose", t, dim0, 0) || check_dim("transpose", t, dim1, 0)) return NULL;
    pivq_tensor *v = pivq_view_alloc(t);
    if (!v) return NULL;
    v->shape[dim0] = t->shape[dim1];
    v->strides[dim0] = t->strides[dim1];
    v->shape[dim1] = t->shape[dim0];
    v->strides[dim1] = t->strides[dim0];
    return v;
}

pivq_tensor *pivq_permute_nograd(const pivq_tensor *t, const int *perm)
{
    if (pivq_check_tensor("permute", "tensor", t)) return NULL;
    if (!perm && t->ndim > 0) {
        pivq_set_error("permute: perm is NULL");
        return NULL;
    }
    int seen[PIVQ_MAX_DIMS] = {0};
    for (int i = 0; i < t->ndim; i++) {
        if (perm[i] < 0 || perm[i] >= t->ndim || seen[perm[i]]) {
            pivq_set_error("permute: perm is not a permutation of the %d dims (entry %d is %d)",
                           t->ndim, i, perm[i]);
            return NULL;
        }
        seen[perm[i]] = 1;
    }
    pivq_tensor *v = pivq_view_alloc(t);
    if (!v) return NULL;
    for (int i = 0; i < t->ndim; i++) {
        v->shape[i] = t->shape[perm[i]];
        v->strides[i] = t->strides[perm[i]];
    }
    return v;
}

/* Resolve a requested shape with at most one -1 against numel; -1 on error. */
static int infer_shape(const char *fname, const pivq_tensor *t, int ndim, const int64_t *size,
                       int64_t *out)
{
    if (ndim < 0 || ndim > PIVQ_MAX_DIMS)
        return pivq_set_error("%s: ndim must be in 0..%d, got %d", fname, PIVQ_MAX_DIMS, ndim);
    if (ndim > 0 && !size) return pivq_set_error("%s: size is NULL", fname);
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        out[i] = size[i];
        if (size[i] == -1) {
            if (infer >= 0) return pivq_set_error("%s: only one size may be -1", fname);
            infer = i;
        } else if (size[i] < 0) {
            return pivq_set_error("%s: invalid size %lld at dim %d", fname, (long long)size[i], i);
        } else {
            if (size[i] != 0 && known > INT64_MAX / size[i])
                return pivq_set_error("%s: requested shape overflows", fname);
            known *= size[i];
        }
    }
    int64_t n = pivq_numel(t);
    char a[160], b[160];
    if (infer >= 0) {
        if (known == 0 || n % known != 0)
            return pivq_set_error("%s: cannot infer the -1 in shape %s for %lld elements", fname,
                                  pivq_sizes_str(ndim, size, a, sizeof a), (long long)n);
        out[infer] = n / known;
        known = n;
    }
    if (known != n)
        return pivq_set_error("%s: shape %s has %lld elements but the tensor (%s) has %lld", fname,
                              pivq_sizes_str(ndim, out, a, sizeof a), (long long)known,
                              pivq_shape_str(t, b, sizeof b), (long long)n);
    return 0;
}

/* Strides that present t's elements with a new shape without copying, if possible.
   Walk both shapes in chunks of equal element count; each chunk of t must be contiguous
   in itself (stride[i] == stride[i+1]*size[i+1]) so it can be re-split. */
static int view_strides(const pivq_tensor *t, int ndim, const int64_t *size, int64_t *stride)
{
    int64_t numel = pivq_numel(t);
    if (numel == 0 || t->ndim == 0) {
        pivq_contiguous_strides(ndim, size, stride);
        return 1;
    }
    int vi = ndim - 1;
    int64_t chunk_base_stride = t->strides[t->ndim - 1];
    int64_t tensor_numel = 1, view_numel = 1;
    for (int ti = t->ndim - 1; ti >= 0; ti--) {
        tensor_numel *= t->shape[ti];
        /* end of a chunk: the next dim up is not contiguous with this one */
        if (ti == 0 ||
            (t->shape[ti - 1] != 1 && t->strides[ti - 1] != tensor_numel * chunk_base_stride)) {
            while (vi >= 0 && (view_numel < tensor_numel || size[vi] == 1)) {
                stride[vi] = view_numel * chunk_base_stride;
                view_numel *= size[vi];
                vi--;
            }
            if (view_numel != tensor_numel) return 0;
            if (ti > 0) {
                chunk_base_stride = t->strides[ti - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    return vi == -1;
}

pivq_tensor *pivq_view_nograd(const pivq_tensor *t, int ndim, const int64_t *size)
{
    if (pivq_check_tensor("view", "tensor", t)) return NULL;
    int64_t shape[PIVQ_MAX_DIMS], stride[PIVQ_MAX_DIMS];
    if (infer_shape("view", t, ndim, size, shape)) return NULL;
    if (!view_strides(t, ndim, shape, stride)) {
        char a[160], b[160];
        pivq_set_error("view: a %s tensor with these strides cannot be viewed as %s without a "
                       "copy (use reshape or contiguous)",
                       pivq_shape_str(t, a, sizeof a), pivq_sizes_str(ndim, shape, b, sizeof b));
        return NULL;
    }
    pivq_tensor *v = pivq_view_alloc(t);
    if (!v) return NULL;
    v->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        v->shape[i] = shape[i];
        v->strides[i] = stride[i];
    }
    return v;
}

pivq_tensor *pivq_reshape_nograd(const pivq_tensor *t, int ndim, const int64_t *size)
{
    if (pivq_check_tensor("reshape", "tensor", t)) return NULL;
    int64_t shape[PIVQ_MAX_DIMS], stride[PIVQ_MAX_DIMS];
    if (infer_shape("reshape", t, ndim, size, shape)) return NULL;
    if (view_strides(t, ndim, shape, stride)) return pivq_view_nograd(t, ndim, shape);
    pivq_tensor *c = pivq_clone_nograd(t);
    if (!c) return NULL;
    pivq_tensor *v = pivq_view_nograd(c, ndim, shape);
    pivq_tensor_release(c);
    return v;
}

pivq_tensor *pivq_expand_nograd(const pivq_tensor *t, int ndim, const int64_t *size)
{
    if (pivq_check_tensor("expand", "tensor", t)) return NULL;
    char a[160], b[160];
    if (ndim < t->ndim || ndim > PIVQ_MAX_DIMS || (ndim > 0 && !size)) {
        pivq_set_error("expand: cannot expand a %d-dim tensor to %d dims", t->ndim, ndim);
        return NULL;
    }
    pivq_tensor *v = pivq_view_alloc(t);
    if (!v) return NULL;
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        int64_t want = size[i];
        int64_t have = i >= lead ? t->shape[i - lead] : 1;
        int64_t st = i >= lead ? t->strides[i - lead] : 0;
        if (want == -1) {
            if (i < lead) goto bad;
            want = have;
        }
        if (want < 0 || (have != want && have != 1)) goto bad;
        v->shape[i] = want;
        v->strides[i] = (have == want) ? st : 0;
    }
    v->ndim = ndim;
    /* stride-0 dims cost no memory, but every later loop counts elements in int64 */
    if (pivq_sizes_numel(ndim, v->shape) < 0) {
        pivq_tensor_release(v);
        pivq_set_error("expand: shape %s is too large", pivq_sizes_str(ndim, size, b, sizeof b));
        return NULL;
    }
    return v;
bad:
    pivq_tensor_release(v);
    pivq_set_error("expand: shape %s cannot be expanded to %s", pivq_shape_str(t, a, sizeof a),
                   pivq_sizes_str(ndim, size, b, sizeof b));
    return NULL;
}

pivq_tensor *pivq_squeeze_nograd(const pivq_tensor *t, int dim)
{
    if (pivq_check_tensor("squeeze", "tensor", t)) return NULL;
    if (dim != -1 && check_dim("squeeze", t, dim, 0)) return NULL;
    pivq_tensor *v = pivq_view_alloc(t);
    if (!v) return NULL;
    int n = 0;
    for (int i = 0; i < t->ndim; i++) {
        bool drop = t->shape[i] == 1 && (dim == -1 || dim == i);
        if (drop) continue;
        v->shape[n] = t->shape[i];
        v->strides[n] = t->strides[i];
        n++;
    }
    v->ndim = n;
    return v;
}

pivq_tensor *pivq_unsqueeze_nograd(const pivq_tensor *t, int dim)
{
    if (check_dim("unsqueeze", t, dim, 1)) return NULL;
    if (t->ndim == PIVQ_MAX_DIMS) {
        pivq_set_error("unsqueeze: tensor already has the maximum of %d dims", PIVQ_MAX_DIMS);
        return NULL;
    }
    pivq_tensor *v = pivq_view_alloc(t);
    if (!v) return NULL;
    for (int i = t->ndim; i > dim; i--) {
        v->shape[i] = t->shape[i - 1];
        v->strides[i] = t->strides[i - 1];
    }
    v->shape[dim] = 1;
    v->strides[dim] = dim < t->ndim ? t->shape[dim] * t->strides[dim] : 1;
    v->ndim = t->ndim + 1;
    return v;
}

/* ---- copies --------------------------------------------------------------------------- */

pivq_tensor *pivq_contiguous_nograd(const pivq_tensor *t)
{
    if (pivq_check_tensor("contiguous", "tensor", t)) return NULL;
    if (pivq_is_contiguous(t)) return pivq_tensor_retain((pivq_tensor *)t);
    return pivq_clone_nograd(t);
}

pivq_tensor *pivq_clone_nograd(const pivq_tensor *t)
{
    if (pivq_check_tensor("clone", "tensor", t)) return NULL;
    pivq_tensor *c = pivq_empty(t->scalar_type, t->ndim, t->shape);
    if (c && pivq_copy_nograd_(c, t)) {
        pivq_tensor_release(c);
        return NULL;
    }
    return c;
}

pivq_tensor *pivq_to_dtype_nograd(const pivq_tensor *t, int dtype)
{
    if (pivq_check_tensor("to_dtype", "tensor", t)) return NULL;
    pivq_tensor *c = tensor_new("to_dtype", dtype, t->ndim, t->shape);
    if (c && pivq_copy_nograd_(c, t)) {
        pivq_tensor_release(c);
        return NULL;
    }
    return c;
}

/* Convert n elements between dtypes with the given byte strides (the copy's inner loop). */
#define CONVERT_LOOP(DT, ST)                                                                       \
    for (int64_t j = 0; j < n; j++)                                                                \
        *(DT *)(d + j * ds) = (DT) * (const ST *)(s + j * ss);

#define CONVERT_FROM(ST)                                                                           \
    switch (dtype_dst) {                                                                           \
    case PIVQ_FLOAT32: CONVERT_LOOP(float, ST) break;                                              \
    case PIVQ_INT32: CONVERT_LOOP(int32_t, ST) break;                                              \
    case PIVQ_INT64: CONVERT_LOOP(int64_t, ST) break;                                              \
    default: CONVERT_LOOP(uint8_t, ST) break;                                                      \
    }

static void convert_run(char *d, int64_t ds, int dtype_dst, const char *s, int64_t ss,
                        int dtype_src, int64_t n)
{
    if (dtype_dst == dtype_src) {
        int es = pivq_dtype_size(dtype_dst);
        if (ds == es && ss == es) {
            memcpy(d, s, (size_t)(n * es));
            return;
        }
    }
    switch (dtype_src) {
    case PIVQ_FLOAT32: CONVERT_FROM(float) break;
    case PIVQ_INT32: CONVERT_FROM(int32_t) break;
    case PIVQ_INT64: CONVERT_FROM(int64_t) break;
    default: CONVERT_FROM(uint8_t) break;
    }
}

static void copy_run(char **ptr, const int64_t *stride, int64_t n, void *ctx)
{
    const int *dtypes = ctx;
    convert_run(ptr[0], stride[0], dtypes[0], ptr[1], stride[1], dtypes[1], n);
}

/* A transposing copy (x:t():contiguous()): the destination's rows are contiguous but the
   source walks them with a large stride, touching a new cache line per element. Copying
   TILE x TILE tiles instead reuses each source line TILE times while it is in cache. */
#define TILE 32

static bool copy_wants_tiles(const pivq_iter *it, const int *esize)
{
    int nd = it->ndim;
    return nd >= 2 && it->inner_stride[0] == esize[0] && it->inner_stride[1] != esize[1] &&
           it->stride[1][nd - 2] == esize[1] && it->size[nd - 2] >= TILE / 4 &&
           it->inner >= TILE / 4;
}

/* Copy row block u (TILE rows of one of the outer matrices) of a tiled copy. */
static void copy_tile_rows(const pivq_iter *it, const int *dtypes, int64_t u)
{
    int nd = it->ndim;
    int64_t rows = it->size[nd - 2], cols = it->inner, nrb = (rows + TILE - 1) / TILE;
    int64_t o = u / nrb, i0 = (u % nrb) * TILE, i1 = i0 + TILE < rows ? i0 + TILE : rows;
    char *d = it->base[0];
    const char *s = it->base[1];
    for (int k = nd - 3; k >= 0; k--) { /* the outer matrix o */
        int64_t idx = o % it->size[k];
        o /= it->size[k];
        d += idx * it->stride[0][k];
        s += idx * it->stride[1][k];
    }
    int64_t ds0 = it->stride[0][nd - 2], ds1 = it->inner_stride[0];
    int64_t ss0 = it->stride[1][nd - 2], ss1 = it->inner_stride[1];
    for (int64_t j0 = 0; j0 < cols; j0 += TILE) {
        int64_t n = cols - j0 < TILE ? cols - j0 : TILE;
        for (int64_t i = i0; i < i1; i++)
            convert_run(d + i * ds0 + j0 * ds1, ds1, dtypes[0], s + i * ss0 + j0 * ss1, ss1,
                        dtypes[1], n);
    }
}

static void copy_tiled(const pivq_iter *it, const int *dtypes)
{
    int64_t rows = it->size[it->ndim - 2];
    int64_t units = it->runs / rows * ((rows + TILE - 1) / TILE);
    int nth = pivq_threads_for(it->runs * it->inner);
    if (nth == 1) {
        for (int64_t u = 0; u < units; u++)
            copy_tile_rows(it, dtypes, u);
        return;
    }
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t u = 0; u < units; u++)
        copy_tile_rows(it, dtypes, u);
}

bool pivq_may_alias(const pivq_tensor *a, const pivq_tensor *b)
{
    if (a->storage != b->storage) return false;
    if (a->offset != b->offset || a->ndim != b->ndim) return true;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i] || (a->shape[i] > 1 && a->strides[i] != b->strides[i]))
            return true;
    return false; /* the same elements in the same order: elementwise in place is safe */
}

int pivq_copy_nograd_(pivq_tensor *dst, const pivq_tensor *src)
{
    if (pivq_check_tensor("copy", "dst", dst) || pivq_check_tensor("copy", "src", src)) return -1;
    int64_t sstride[PIVQ_MAX_DIMS];
    /* broadcasting src to dst: every src dim must be 1 or match */
    int lead = dst->ndim - src->ndim;
    for (int i = 0; i < src->ndim; i++) {
        if (lead < 0 || (src->shape[i] != 1 && src->shape[i] != dst->shape[i + lead])) {
            char a[160], b[160];
            return pivq_set_error("copy: source of shape %s cannot be broadcast to %s",
                                  pivq_shape_str(src, a, sizeof a),
                                  pivq_shape_str(dst, b, sizeof b));
        }
    }
    if (pivq_numel(dst) == 0) return 0;
    if (pivq_may_alias(dst, src)) { /* overlapping source: copy through a temporary */
        pivq_tensor *tmp = pivq_clone_nograd(src);
        if (!tmp) return -1;
        int rc = pivq_copy_nograd_(dst, tmp);
        pivq_tensor_release(tmp);
        return rc;
    }
    pivq_broadcast_strides(src, dst->ndim, dst->shape, sstride);
    const int64_t *strides[2] = {dst->strides, sstride};
    char *base[2] = {pivq_data(dst), pivq_data(src)};
    int esize[2] = {pivq_dtype_size(dst->scalar_type), pivq_dtype_size(src->scalar_type)};
    pivq_iter it;
    pivq_iter_init(&it, 2, dst->ndim, dst->shape, strides, base, esize);
    int dtypes[2] = {dst->scalar_type, src->scalar_type};
    if (copy_wants_tiles(&it, esize))
        copy_tiled(&it, dtypes);
    else
        pivq_iter_parallel(&it, copy_run, dtypes);
    return 0;
}

#define FILL_RUN(T, V)                                                                             \
    do {                                                                                           \
        T val = (T)(V);                                                                            \
        for (int64_t j = 0; j < it.inner; j++)                                                     \
            *(T *)(it.ptr[0] + j * it.inner_stride[0]) = val;                                      \
    } while (0)

int pivq_fill_nograd_(pivq_tensor *t, double value)
{
    if (pivq_check_tensor("fill", "tensor", t)) return -1;
    if (t->scalar_type != PIVQ_FLOAT32 && !pivq_fits_int64(value))
        return pivq_set_error("fill: cannot store %g in a %s tensor", value,
                              pivq_dtype_name(t->scalar_type));
    /* integers go through int64 and wrap (300 in uint8 is 44), as integer arithmetic does;
       converting a double straight to a narrower type is undefined when out of range */
    int64_t ivalue = t->scalar_type == PIVQ_FLOAT32 ? 0 : (int64_t)value;
    if (pivq_numel(t) == 0) return 0;
    const int64_t *strides[1] = {t->strides};
    char *base[1] = {pivq_data(t)};
    int esize[1] = {pivq_dtype_size(t->scalar_type)};
    pivq_iter it;
    pivq_iter_init(&it, 1, t->ndim, t->shape, strides, base, esize);
    for (; !it.done; pivq_iter_next(&it)) {
        switch (t->scalar_type) {
        case PIVQ_FLOAT32: FILL_RUN(float, value); break;
        case PIVQ_INT32: FILL_RUN(int32_t, ivalue); break;
        case PIVQ_INT64: FILL_RUN(int64_t, ivalue); break;
        default: FILL_RUN(uint8_t, ivalue); break;
        }
    }
    return 0;
}

pivq_tensor *pivq_arange(double start, double end, double step, int dtype)
{
    if (!isfinite(start) || !isfinite(end) || !isfinite(step) || step == 0) {
        pivq_set_error("arange: need finite start, end and a nonzero step (got %g, %g, %g)", start,
                       end, step);
        return NULL;
    }
    double count = ceil((end - start) / step);
    if (count < 0) count = 0;
    if (count > (double)(PIVQ_MAX_STORAGE_BYTES / 8)) {
        pivq_set_error("arange: %g elements is too many", count);
        return NULL;
    }
    if (dtype != PIVQ_FLOAT32 &&
        (!pivq_fits_int64(floor(start)) || !pivq_fits_int64(floor(start + (count - 1) * step)))) {
        pivq_set_error("arange: values from %g to %g do not fit a %s tensor", start, end,
                       pivq_dtype_name(dtype));
        return NULL;
    }
    int64_t n = (int64_t)count;
    pivq_tensor *t = tensor_new("arange", dtype, 1, &n);
    if (!t) return NULL;
    void *p = pivq_data(t);
    for (int64_t i = 0; i < n; i++) {
        double v = start + (double)i * step;
        switch (dtype) {
        case PIVQ_FLOAT32: ((float *)p)[i] = (float)v; break;
        case PIVQ_INT32: ((int32_t *)p)[i] = (int32_t)(int64_t)v; break; /* wraps */
        case PIVQ_INT64: ((int64_t *)p)[i] = (int64_t)v; break;
        default: ((uint8_t *)p)[i] = (uint8_t)(int64_t)v; break;
        }
    }
    return t;
}

/* ---- broadcasting and iteration ------------------------------------------------------- */

int pivq_broadcast_shapes(const char *fname, const pivq_tensor *a, const pivq_tensor *b,
                          int *out_ndim, int64_t *out_size)
{
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            char x[160], y[160];
            return pivq_set_error("%s: shapes %s and %s cannot broadcast", fname,
                                  pivq_shape_str(a, x, sizeof x), pivq_shape_str(b, y, sizeof y));
        }
        out_size[i] = sa == 1 ? sb : sa;
    }
    *out_ndim = nd;
    return 0;
}

void pivq_broadcast_strides(const pivq_tensor *t, int ndim, const int64_t *size, int64_t *stride)
{
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        int k = i - lead;
        stride[i] = (k >= 0 && t->shape[k] == size[i] && size[i] != 1) ? t->strides[k] : 0;
    }
}

void pivq_iter_init(pivq_iter *it, int nops, int ndim, const int64_t *size,
                    const int64_t *const *strides, char *const *base, const int *esize)
{
    it->nops = nops;
    /* Coalesce: drop size-1 dims, merge dim i into i+1 when every operand is contiguous
       across the pair. Work from the innermost dim outwards. */
    int n = 0;
    int64_t sz[PIVQ_MAX_DIMS], st[PIVQ_ITER_MAX_OPS][PIVQ_MAX_DIMS];
    for (int i = ndim - 1; i >= 0; i--) {
        if (size[i] == 1) continue;
        if (n > 0) {
            bool merge = true;
            for (int k = 0; k < nops; k++)
                if (strides[k][i] != st[k][n - 1] * sz[n - 1]) merge = false;
            if (merge) {
                sz[n - 1] *= size[i];
                continue;
            }
        }
        sz[n] = size[i];
        for (int k = 0; k < nops; k++)
            st[k][n] = strides[k][i];
        n++;
    }
    if (n == 0) { /* a single element */
        sz[0] = 1;
        for (int k = 0; k < nops; k++)
            st[k][0] = 0;
        n = 1;
    }
    /* store outermost first, strides in bytes */
    it->ndim = n;
    it->runs = 1;
    for (int i = 0; i < n; i++) {
        it->size[i] = sz[n - 1 - i];
        if (i < n - 1) it->runs *= it->size[i];
        for (int k = 0; k < nops; k++)
            it->stride[k][i] = st[k][n - 1 - i] * esize[k];
    }
    for (int k = 0; k < nops; k++) {
        it->base[k] = base[k];
        it->inner_stride[k] = it->stride[k][n - 1];
    }
    it->inner = it->size[n - 1];
    pivq_iter_seek(it, 0);
}

void pivq_iter_seek(pivq_iter *it, int64_t r)
{
    it->done = r >= it->runs;
    int64_t rem = r;
    for (int i = it->ndim - 2; i >= 0; i--) {
        it->index[i] = rem % it->size[i];
        rem /= it->size[i];
    }
    for (int k = 0; k < it->nops; k++) {
        char *p = it->base[k];
        for (int i = 0; i < it->ndim - 1; i++)
            p += it->index[i] * it->stride[k][i];
        it->ptr[k] = p;
    }
}

void pivq_iter_next(pivq_iter *it)
{
    for (int i = it->ndim - 2; i >= 0; i--) {
        it->index[i]++;
        for (int k = 0; k < it->nops; k++)
            it->ptr[k] += it->stride[k][i];
        if (it->index[i] < it->size[i]) return;
        for (int k = 0; k < it->nops; k++)
            it->ptr[k] -= it->stride[k][i] * it->size[i];
        it->index[i] = 0;
    }
    it->done = true;
}

void pivq_iter_parallel(const pivq_iter *it0, pivq_run_fn fn, void *ctx)
{
    int64_t total = it0->runs * it0->inner;
    if (total == 0) return;
    int nth = pivq_threads_for(total);
    if (nth == 1) {
        /* Small tensors never enter an OpenMP region: even a serialised `parallel if(0)`
           costs libgomp a team set-up, several times the work of a tiny op. */
        pivq_iter it = *it0;
        for (; !it.done; pivq_iter_next(&it))
            fn(it.ptr, it.inner_stride, it.inner, ctx);
        return;
    }
#pragma omp parallel num_threads(nth)
    {
        int tid = 0, nt = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        int64_t e0 = total * tid / nt, e1 = total * (tid + 1) / nt;
        if (e0 < e1) {
            pivq_iter it = *it0;
            int64_t r = e0 / it.inner, j = e0 % it.inner;
            pivq_iter_seek(&it, r);
            while (e0 < e1) {
                char *p[PIVQ_ITER_MAX_OPS];
                for (int k = 0; k < it.nops; k++)
                    p[k] = it.ptr[k] + j * it.inner_stride[k];
                int64_t n = it.inner - j;
                if (n > e1 - e0) n = e1 - e0;
                fn(p, it.inner_stride, n, ctx);
                e0 += n;
                j = 0;
                pivq_iter_next(&it);
            }
        }
    }
}

void pivq_parallel_range(int64_t n, int64_t work, pivq_range_fn fn, void *ctx)
{
    if (n <= 0) return;
    int nth = pivq_threads_for(work);
    if (nth == 1 || n == 1) {
        fn(0, n, ctx);
        return;
    }
#pragma omp parallel num_threads(nth)
    {
        int tid = 0, nt = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        int64_t i0 = n * tid / nt, i1 = n * (tid + 1) / nt;
        if (i0 < i1) fn(i0, i1, ctx);
    }
}
