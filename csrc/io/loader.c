/* io/loader.c — a batch loader whose worker threads gather rows of in-memory source tensors
 * (shuffled, converted, flipped) into batches while the consumer trains on earlier ones.
 *
 * Determinism: the order and the flips of epoch e are drawn up front on the caller's thread
 * from pivq_generator{seed, offset = e * 2^40} (the counter-based generator, so nothing
 * depends on thread timing), and batches are delivered strictly in order through a ring of
 * `prefetch` slots: batch b goes to slot b % prefetch, and a worker may claim batch b only
 * once batch b - prefetch has been taken. The sequence is thus a function of the seed alone,
 * whatever the number of workers.
 */
#include "io/io.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define LOADER_MAX_SOURCES 8
#define LOADER_MAX_WORKERS 64

typedef struct loader_slot {
    int64_t index; /* batch number held, -1 if empty */
    int failed;
    pivq_tensor *out[LOADER_MAX_SOURCES];
    char error[512];
} loader_slot;

struct pivq_loader {
    int nsrc; /* in-memory sources */
    pivq_tensor *src[LOADER_MAX_SOURCES];
    int flags[LOADER_MAX_SOURCES];
    int nout;     /* outputs per batch: the decoded files (if any), then the sources */
    char **files; /* full paths, or NULL: images decoded by the workers as output 0 */
    int size, channels, crop;
    float background[3];
    int64_t n, batch, nbatches;
    int shuffle, drop_last, hflip, workers, prefetch;
    uint64_t seed;

    /* the running epoch; all fields below are guarded by `lock` */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int running, stop;
    int64_t next_claim, next_deliver;
    pivq_tensor *order; /* int64 N: source row of each position */
    pivq_tensor *flip;  /* uint8 N: flip the image at that position */
    loader_slot *slots;
    pthread_t threads[LOADER_MAX_WORKERS];
    int nthreads;
};

int64_t pivq_loader_num_batches(const pivq_loader *l)
{
    return l ? l->nbatches : 0;
}

static void slot_clear(pivq_loader *l, loader_slot *s)
{
    for (int k = 0; k < l->nout; k++) {
        pivq_tensor_release(s->out[k]);
        s->out[k] = NULL;
    }
    s->index = -1;
    s->failed = 0;
    s->error[0] = '\0';
}

/* Decode the files of batch positions start..start+count-1 into a float32 count x C x S x S
   tensor, flipping where asked. */
static pivq_tensor *build_file_images(pivq_loader *l, int64_t start, int64_t count,
                                      const int64_t *order, const uint8_t *flip)
{
    int64_t S = l->size, C = l->channels, per = C * S * S;
    int64_t size[4] = {count, C, S, S};
    pivq_tensor *out = pivq_empty(PIVQ_FLOAT32, 4, size);
    unsigned char *pix = out ? malloc((size_t)per) : NULL;
    if (!pix) {
        if (out) pivq_set_error("loader: out of memory");
        pivq_tensor_release(out);
        return NULL;
    }
    float *o = pivq_data(out);
    for (int64_t i = 0; i < count; i++) {
        if (pivq_image_load_square_u8(l->files[order[start + i]], l->size, l->channels, l->crop,
                                      l->background, pix)) {
            free(pix);
            pivq_tensor_release(out);
            return NULL;
        }
        int flipped = flip && flip[start + i];
        float *dst = o + i * per;
        for (int64_t j = 0; j < per; j += S)
            for (int64_t x = 0; x < S; x++)
                dst[j + x] = pix[j + (flipped ? S - 1 - x : x)] * (1.0f / 255.0f);
    }
    free(pix);
    return out;
}

/* Build batch b into out[] (new tensors). Runs on a worker thread. */
static int build_batch(pivq_loader *l, int64_t b, pivq_tensor **out)
{
    int64_t start = b * l->batch, count = l->n - start < l->batch ? l->n - start : l->batch;
    const int64_t *order = pivq_data(l->order);
    const uint8_t *flip = l->flip ? pivq_data(l->flip) : NULL;
    if (l->files) {
        out[0] = build_file_images(l, start, count, order, flip);
        if (!out[0]) return -1;
        out++;
    }
    for (int k = 0; k < l->nsrc; k++) {
        const pivq_tensor *s = l->src[k];
        int image = l->flags[k] & PIVQ_LOADER_IMAGE;
        int to_float = image && s->scalar_type == PIVQ_UINT8;
        int64_t size[PIVQ_MAX_DIMS];
        for (int d = 0; d < s->ndim; d++)
            size[d] = s->shape[d];
        size[0] = count;
        out[k] = pivq_empty(to_float ? PIVQ_FLOAT32 : s->scalar_type, s->ndim, size);
        if (!out[k]) return -1;
        int64_t row = s->ndim > 1 ? pivq_numel(s) / (s->shape[0] ? s->shape[0] : 1) : 1;
        int64_t W = s->ndim > 1 ? s->shape[s->ndim - 1] : 1;
        int es = pivq_dtype_size(s->scalar_type);
        const char *sp = pivq_data(s);
        char *op = pivq_data(out[k]);
        for (int64_t i = 0; i < count; i++) {
            int64_t r = order[start + i];
            int flipped = image && flip && flip[start + i] && s->ndim >= 2;
            if (to_float) {
                const uint8_t *src = (const uint8_t *)sp + r * row;
                float *dst = (float *)op + i * row;
                for (int64_t j = 0; j < row; j += W)
                    for (int64_t x = 0; x < W; x++)
                        dst[j + x] = src[j + (flipped ? W - 1 - x : x)] * (1.0f / 255.0f);
            } else if (!flipped) {
                memcpy(op + i * row * es, sp + r * row * es, (size_t)(row * es));
            } else if (es == 4) { /* float32/int32 images: a typed loop, not memcpy per pixel */
                const uint32_t *src = (const uint32_t *)(sp + r * row * es);
                uint32_t *dst = (uint32_t *)(op + i * row * es);
                for (int64_t j = 0; j < row; j += W)
                    for (int64_t x = 0; x < W; x++)
                        dst[j + x] = src[j + W - 1 - x];
            } else {
                const char *src = sp + r * row * es;
                char *dst = op + i * row * es;
                for (int64_t j = 0; j < row; j += W)
                    for (int64_t x = 0; x < W; x++)
                        memcpy(dst + (j + x) * es, src + (j + W - 1 - x) * es, (size_t)es);
            }
        }
    }
    return 0;
}

static void *worker_main(void *arg)
{
    pivq_loader *l = arg;
    pthread_mutex_lock(&l->lock);
    for (;;) {
        while (!l->stop && l->next_claim < l->nbatches &&
               l->next_claim - l->next_deliver >= l->prefetch)
            pthread_cond_wait(&l->changed, &l->lock);
        if (l->stop || l->next_claim >= l->nbatches) break;
        int64_t b = l->next_claim++;
        pthread_mutex_unlock(&l->lock);

        pivq_tensor *out[LOADER_MAX_SOURCES] = {0};
        int rc = build_batch(l, b, out);

        pthread_mutex_lock(&l->lock);
        loader_slot *s = &l->slots[b % l->prefetch];
        s->index = b;
        s->failed = rc != 0;
        if (rc)
            snprintf(s->error, sizeof s->error, "loader: batch %lld: %s", (long long)b,
                     pivq_last_error());
        for (int k = 0; k < l->nout; k++)
            s->out[k] = out[k];
        pthread_cond_broadcast(&l->changed);
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

static void stop_epoch(pivq_loader *l)
{
    pthread_mutex_lock(&l->lock);
    l->stop = 1;
    pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->lock);
    for (int t = 0; t < l->nthreads; t++)
        pthread_join(l->threads[t], NULL);
    l->nthreads = 0;
    for (int i = 0; i < l->prefetch; i++)
        slot_clear(l, &l->slots[i]);
    pivq_tensor_release(l->order);
    pivq_tensor_release(l->flip);
    l->order = l->flip = NULL;
    l->running = 0;
    l->stop = 0;
}

void pivq_loader_free(pivq_loader *l)
{
    if (!l) return;
    stop_epoch(l);
    for (int k = 0; k < l->nsrc; k++)
        pivq_tensor_release(l->src[k]);
    if (l->files)
        for (int64_t i = 0; i < l->n; i++)
            free(l->files[i]);
    free(l->files);
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->changed);
    free(l->slots);
    free(l);
}

/* Common part of the constructors: validates the options and the in-memory sources (whose
   first dim must be n; n < 0 takes it from the first source). */
static pivq_loader *loader_create(pivq_tensor *const *sources, const int *flags, int nsources,
                                  int64_t n, int max_sources, int64_t batch, int shuffle,
                                  uint64_t seed, int drop_last, int hflip, int workers,
                                  int prefetch)
{
    if (nsources < (n < 0 ? 1 : 0) || nsources > max_sources || (nsources > 0 && !sources)) {
        pivq_set_error("loader: need %d..%d sources, got %d", n < 0 ? 1 : 0, max_sources, nsources);
        return NULL;
    }
    if (batch < 1 || workers < 1 || workers > LOADER_MAX_WORKERS || prefetch < 1 ||
        prefetch > 1024) {
        pivq_set_error("loader: need batch >= 1, workers in 1..%d, prefetch in 1..1024; got "
                       "%lld, %d, %d",
                       LOADER_MAX_WORKERS, (long long)batch, workers, prefetch);
        return NULL;
    }
    char b1[160];
    for (int k = 0; k < nsources; k++) {
        if (pivq_check_tensor("loader", "source", sources[k])) return NULL;
        if (n < 0 && sources[0]->ndim >= 1) n = sources[0]->shape[0];
        if (sources[k]->ndim < 1 || sources[k]->shape[0] != n) {
            pivq_set_error("loader: every source needs first dim %lld (the number of samples), "
                           "got %s",
                           (long long)n, pivq_shape_str(sources[k], b1, sizeof b1));
            return NULL;
        }
    }
    pivq_loader *l = calloc(1, sizeof *l);
    if (!l) {
        pivq_set_error("loader: out of memory");
        return NULL;
    }
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->changed, NULL);
    l->n = n;
    l->batch = batch;
    l->shuffle = shuffle != 0;
    l->drop_last = drop_last != 0;
    l->hflip = hflip != 0;
    l->workers = workers;
    l->prefetch = prefetch;
    l->seed = seed;
    l->nbatches = drop_last ? l->n / batch : (l->n + batch - 1) / batch;
    l->slots = calloc((size_t)prefetch, sizeof *l->slots);
    if (!l->slots) {
        pivq_set_error("loader: out of memory");
        pivq_loader_free(l);
        return NULL;
    }
    for (int i = 0; i < prefetch; i++)
        l->slots[i].index = -1;
    for (int k = 0; k < nsources; k++) {
        /* contiguous copies so that workers can memcpy rows; the caller may drop its own */
        l->src[k] = pivq_contiguous_nograd(sources[k]);
        l->nsrc = k + 1;
        if (!l->src[k]) {
            pivq_loader_free(l);
            return NULL;
        }
        l->flags[k] = flags ? flags[k] : 0;
    }
    l->nout = l->nsrc;
    return l;
}

pivq_loader *pivq_loader_new(pivq_tensor *const *sources, const int *flags, int nsources,
                             int64_t batch, int shuffle, uint64_t seed, int drop_last, int hflip,
                             int workers, int prefetch)
{
    return loader_create(sources, flags, nsources, -1, LOADER_MAX_SOURCES, batch, shuffle, seed,
                         drop_last, hflip, workers, prefetch);
}

pivq_loader *pivq_loader_new_files(const char *dir, const char *const *files, int64_t n, int size,
                                   int channels, int crop, const float *background,
                                   pivq_tensor *const *sources, const int *flags, int nsources,
                                   int64_t batch, int shuffle, uint64_t seed, int drop_last,
                                   int hflip, int workers, int prefetch)
{
    if (n < 0 || (n > 0 && !files) || size < 1 || size > 65536 ||
        (channels != 1 && channels != 3) || crop < 0) {
        pivq_set_error("loader_new_files: bad arguments (n=%lld, size=%d, channels=%d, crop=%d)",
                       (long long)n, size, channels, crop);
        return NULL;
    }
    for (int k = 0; background && k < 3; k++)
        if (!(background[k] >= 0 && background[k] <= 1)) {
            pivq_set_error("loader_new_files: background[%d] = %g is outside [0, 1]", k,
                           (double)background[k]);
            return NULL;
        }
    pivq_loader *l = loader_create(sources, flags, nsources, n, LOADER_MAX_SOURCES - 1, batch,
                                   shuffle, seed, drop_last, hflip, workers, prefetch);
    if (!l) return NULL;
    l->files = calloc((size_t)n + 1, sizeof(char *));
    if (!l->files) {
        pivq_loader_free(l);
        pivq_set_error("loader_new_files: out of memory");
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        if (!files[i]) {
            pivq_loader_free(l);
            pivq_set_error("loader_new_files: file %lld is NULL", (long long)i);
            return NULL;
        }
        size_t len = (dir ? strlen(dir) + 1 : 0) + strlen(files[i]) + 1;
        l->files[i] = malloc(len);
        if (!l->files[i]) {
            pivq_loader_free(l);
            pivq_set_error("loader_new_files: out of memory");
            return NULL;
        }
        snprintf(l->files[i], len, "%s%s%s", dir ? dir : "", dir ? "/" : "", files[i]);
    }
    l->size = size;
    l->channels = channels;
    l->crop = crop;
    for (int k = 0; k < 3; k++)
        l->background[k] = background ? background[k] : 1.0f;
    l->nout = l->nsrc + 1;
    return l;
}

int pivq_loader_start_epoch(pivq_loader *l, int64_t epoch)
{
    if (!l) return pivq_set_error("loader_start_epoch: loader is NULL");
    if (epoch < 0 || epoch >= ((int64_t)1 << 23))
        return pivq_set_error("loader_start_epoch: epoch must be in 0..2^23-1, got %lld",
                              (long long)epoch);
    stop_epoch(l);
    pivq_generator g = {l->seed, (uint64_t)epoch << 40};
    if (l->shuffle) {
        l->order = pivq_randperm(l->n, &g);
    } else {
        l->order = pivq_arange(0, (double)l->n, 1, PIVQ_INT64);
        if (!l->order) return -1;
        if (l->order->shape[0] != l->n) { /* arange of 0 elements may still be fine */
            pivq_tensor_release(l->order);
            l->order = NULL;
            return pivq_set_error("loader_start_epoch: internal error building the order");
        }
    }
    if (!l->order) return -1;
    if (l->hflip) {
        int64_t n = l->n;
        l->flip = pivq_empty(PIVQ_UINT8, 1, &n);
        if (!l->flip || pivq_randint_(l->flip, 0, 2, &g)) {
            pivq_tensor_release(l->order);
            pivq_tensor_release(l->flip);
            l->order = l->flip = NULL;
            return -1;
        }
    }
    l->next_claim = l->next_deliver = 0;
    l->running = 1;
    int want = l->workers;
    if (want > l->nbatches) want = (int)(l->nbatches > 0 ? l->nbatches : 0);
    for (int t = 0; t < want; t++) {
        if (pthread_create(&l->threads[t], NULL, worker_main, l) != 0) {
            int started = l->nthreads;
            stop_epoch(l);
            return pivq_set_error("loader_start_epoch: cannot start worker thread %d", started);
        }
        l->nthreads++;
    }
    return 0;
}

int pivq_loader_next(pivq_loader *l, pivq_tensor **out)
{
    if (!l || !out) return pivq_set_error("loader_next: loader or out is NULL");
    if (!l->running) return pivq_set_error("loader_next: no epoch started (start_epoch first)");
    pthread_mutex_lock(&l->lock);
    if (l->next_deliver >= l->nbatches) {
        pthread_mutex_unlock(&l->lock);
        /* every batch was claimed, so the workers are returning: join them now rather than
           at the next epoch, so that no thread is left running library code (a process that
           unloads libpivq at exit, as LuaJIT's ffi.load does, would crash under it) */
        for (int t = 0; t < l->nthreads; t++)
            pthread_join(l->threads[t], NULL);
        l->nthreads = 0;
        return 0;
    }
    loader_slot *s = &l->slots[l->next_deliver % l->prefetch];
    while (s->index != l->next_deliver)
        pthread_cond_wait(&l->changed, &l->lock);
    int failed = s->failed;
    char error[512];
    if (failed) snprintf(error, sizeof error, "%s", s->error);
    for (int k = 0; k < l->nout; k++) {
        out[k] = s->out[k];
        s->out[k] = NULL;
    }
    slot_clear(l, s);
    l->next_deliver++;
    pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->lock);
    if (failed) {
        for (int k = 0; k < l->nout; k++) {
            pivq_tensor_release(out[k]);
            out[k] = NULL;
        }
        return pivq_set_error("%s", error);
    }
    return 1;
}
