/* ops/conv_dnnl.c — conv2d forward, backward-data and backward-weights through oneDNN's C API
 * (conv_transpose2d too: ops/conv.c maps it onto the same three directions).
 *
 * Why: PyTorch's CPU convolutions (Debian's torch 1.13) run on oneDNN's JIT direct convolution,
 * which needs no im2col and no packed copies and skips the kernel taps that fall in the
 * padding; im2col + sgemm (ops/conv.c) was 0.8-0.9x its speed on the benchmark's stack with
 * the sgemm already at the machine's peak. Using the same library is simpler than chasing it.
 *
 * Our tensors are plain NCHW / OIHW. The primitives are created with dnnl_format_tag_any, so
 * that oneDNN picks its blocked layouts (nChw16c, OIhw16i16o, ...), and each argument whose
 * chosen layout differs from ours is reordered into a scratch buffer on the way in (or out of
 * it on the way back), as PyTorch does. Measured on the benchmark's stack (1 thread, the same
 * run as PyTorch): 1.15x PyTorch this way, 0.77x with the primitives held to our plain layouts,
 * for which oneDNN has no direct kernel and falls back to its own im2col + gemm.
 *
 * Primitives are cached: creating one (choosing the implementation, JIT-compiling it) costs
 * milliseconds, so a small LRU keeps the last CACHE_SIZE, keyed by every convolution
 * parameter, the direction and the thread count (oneDNN sizes its work split at creation, and
 * with OpenMP it runs on our libgomp pool, whose size pivq_set_num_threads sets). A shape that
 * oneDNN does not implement is cached as declined, and ops/conv.c runs it on im2col.
 *
 * Calls hold one mutex from lookup to the end of execution: the stream and the cache are
 * shared, and pivq's convolutions come from one thread anyway.
 */
#include "ops/conv_dnnl.h"
#include "core/core.h"
#include "pivq.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* The engine: PIVQ_CONV=im2col in the environment, read once, starts on im2col. */
static int engine = -1; /* -1: not read yet */
static int64_t dnnl_steps = 0;

static int current_engine(void)
{
    if (engine < 0) {
        const char *e = getenv("PIVQ_CONV");
        engine = e && strcmp(e, "im2col") == 0 ? PIVQ_CONV_IM2COL : PIVQ_CONV_AUTO;
    }
    return engine;
}

int pivq_conv_set_engine(int e)
{
    if (e != PIVQ_CONV_AUTO && e != PIVQ_CONV_IM2COL)
        return pivq_set_error("conv_set_engine: engine must be PIVQ_CONV_AUTO (0) or "
                              "PIVQ_CONV_IM2COL (1), got %d",
                              e);
    engine = e;
    return 0;
}

int pivq_conv_get_engine(void)
{
    return current_engine();
}

int64_t pivq_conv_dnnl_steps(void)
{
    return __atomic_load_n(&dnnl_steps, __ATOMIC_RELAXED);
}

#ifndef PIVQ_HAVE_DNNL

int pivq_conv_dnnl_available(void)
{
    return 0;
}

int pivq_dnnl_conv_forward(const char *F, const pivq_dnnl_conv *c, const float *x, const float *w,
                           const float *b, float *y)
{
    return 0;
}

int pivq_dnnl_conv_backward(const char *F, const pivq_dnnl_conv *c, const float *x, const float *w,
                            const float *dy, float *dx, float *dw)
{
    return 0;
}

#else

#include <dnnl.h>
#include <dnnl_debug.h>

int pivq_conv_dnnl_available(void)
{
    return 1;
}

enum { FORWARD, FORWARD_BIAS, BACKWARD_DATA, BACKWARD_WEIGHTS, NDIRECTIONS };
#define CACHE_SIZE 32
#define MAX_ARGS 4

/* One argument of a primitive: our plain layout, the primitive's, and the reorder between
   them (ours -> its for an input, its -> ours for an output; NULL when they are the same). */
typedef struct arg {
    int id; /* DNNL_ARG_SRC, ... */
    int out;
    dnnl_memory_desc_t ours, inner;
    dnnl_primitive_t reorder;
} arg;

typedef struct entry {
    pivq_dnnl_conv key;
    int dir, threads, bf16; /* bf16: bf16 inputs, fp32 output (PIVQ_PRECISION_BF16) */
    uint64_t used;          /* 0: free slot */
    int declined;           /* oneDNN has no implementation: im2col runs it */
    dnnl_primitive_t prim;
    int nargs;
    arg a[MAX_ARGS];
} entry;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static dnnl_engine_t eng;
static dnnl_stream_t stream;
static int eng_state; /* 0: not tried, 1: ready, -1: oneDNN unusable (im2col for everything) */
static entry cache[CACHE_SIZE];
static uint64_t clock_;

static const char *dir_name(int dir)
{
    return dir == BACKWARD_DATA      ? "backward-data"
           : dir == BACKWARD_WEIGHTS ? "backward-weights"
                                     : "forward";
}

static void entry_clear(entry *e)
{
    if (e->prim) dnnl_primitive_destroy(e->prim);
    for (int i = 0; i < e->nargs; i++)
        if (e->a[i].reorder) dnnl_primitive_destroy(e->a[i].reorder);
    memset(e, 0, sizeof *e);
}

/* Memory descriptors of the convolution's tensors: our plain layouts, or (any) left for oneDNN
   to choose, with the data types ts, tw, td. */
static void conv_mds_typed(const pivq_dnnl_conv *c, int any, dnnl_data_type_t ts,
                           dnnl_data_type_t tw, dnnl_data_type_t td, dnnl_memory_desc_t *src,
                           dnnl_memory_desc_t *wei, dnnl_memory_desc_t *dst)
{
    dnnl_dims_t sd = {c->N, c->C, c->H, c->W}, dd = {c->N, c->O, c->Ho, c->Wo};
    int64_t G = c->groups;
    /* with groups, goihw (G, O/G, C/G, kh, kw): the same bytes as OIHW */
    dnnl_dims_t wd = {c->O, c->C, c->kh, c->kw}, gwd = {G, c->O / G, c->C / G, c->kh, c->kw};
    dnnl_format_tag_t t = any ? dnnl_format_tag_any : dnnl_nchw;
    dnnl_memory_desc_init_by_tag(src, 4, sd, ts, t);
    dnnl_memory_desc_init_by_tag(dst, 4, dd, td, t);
    if (G == 1)
        dnnl_memory_desc_init_by_tag(wei, 4, wd, tw, any ? t : dnnl_oihw);
    else
        dnnl_memory_desc_init_by_tag(wei, 5, gwd, tw, any ? t : dnnl_goihw);
}

static void conv_mds(const pivq_dnnl_conv *c, int any, dnnl_memory_desc_t *src,
                     dnnl_memory_desc_t *wei, dnnl_memory_desc_t *dst)
{
    conv_mds_typed(c, any, dnnl_f32, dnnl_f32, dnnl_f32, src, wei, dst);
}

/* Statuses that mean "oneDNN cannot do this shape" (im2col then), not a failure. */
static int declines(dnnl_status_t s)
{
    return s == dnnl_unimplemented || s == dnnl_invalid_arguments;
}

/* Create e's primitive for direction dir. 0, or -1 with the error set (a declined shape is
   0 with e->declined set). */
static int entry_create(const char *F, entry *e)
{
    const pivq_dnnl_conv *c = &e->key;
    dnnl_memory_desc_t src, wei, dst, bia, fsrc, fwei, fdst;
    conv_mds(c, 1, &src, &wei, &dst);
    conv_mds(c, 1, &fsrc, &fwei, &fdst); /* the forward (hint) descriptors */
    if (e->bf16) {
        /* the inputs of each direction in bf16, its output fp32; the forward hint of a
           backward direction is a bf16 forward (the layouts it would choose) */
        dnnl_data_type_t b = dnnl_bf16, f = dnnl_f32;
        int fw = e->dir == FORWARD || e->dir == FORWARD_BIAS;
        conv_mds_typed(c, 1, e->dir == BACKWARD_DATA ? f : b, e->dir == BACKWARD_WEIGHTS ? f : b,
                       fw ? f : b, &src, &wei, &dst);
        conv_mds_typed(c, 1, b, b, fw ? f : b, &fsrc, &fwei, &fdst);
    }
    dnnl_dims_t bd = {c->O};
    dnnl_memory_desc_init_by_tag(&bia, 1, bd, dnnl_f32, dnnl_x);
    /* oneDNN counts dilation from 0, and wants the right/bottom padding that gives (Ho, Wo) */
    dnnl_dims_t strides = {c->sh, c->sw}, dil = {c->dh - 1, c->dw - 1}, pl = {c->ph, c->pw};
    dnnl_dims_t pr = {(c->Ho - 1) * c->sh + (c->kh - 1) * c->dh + 1 - c->H - c->ph,
                      (c->Wo - 1) * c->sw + (c->kw - 1) * c->dw + 1 - c->W - c->pw};
    dnnl_convolution_desc_t fd, bd_;
    dnnl_primitive_desc_t fpd = NULL, pd = NULL;
    dnnl_status_t s = dnnl_dilated_convolution_forward_desc_init(
        &fd, dnnl_forward_training, dnnl_convolution_direct, &fsrc, &fwei,
        e->dir == FORWARD_BIAS ? &bia : NULL, &fdst, strides, dil, pl, pr);
    if (s == dnnl_success) s = dnnl_primitive_desc_create(&fpd, &fd, NULL, eng, NULL);
    if (s == dnnl_success && (e->dir == FORWARD || e->dir == FORWARD_BIAS)) {
        pd = fpd;
        fpd = NULL;
    } else if (s == dnnl_success) {
        s = e->dir == BACKWARD_DATA
                ? dnnl_dilated_convolution_backward_data_desc_init(
                      &bd_, dnnl_convolution_direct, &src, &wei, &dst, strides, dil, pl, pr)
                : dnnl_dilated_convolution_backward_weights_desc_init(
                      &bd_, dnnl_convolution_direct, &src, &wei, NULL, &dst, strides, dil, pl, pr);
        if (s == dnnl_success) s = dnnl_primitive_desc_create(&pd, &bd_, NULL, eng, fpd);
    }
    if (s == dnnl_success) s = dnnl_primitive_create(&e->prim, pd);
    /* the arguments: which of the convolution's tensors, and whether the primitive writes
     * it */
    static const struct {
        int id, out;
        dnnl_query_t q;
        char which; /* s(rc), w(eights), d(st), b(ias) */
    } roles[NDIRECTIONS][MAX_ARGS] = {
        [FORWARD] = {{DNNL_ARG_SRC, 0, dnnl_query_src_md, 's'},
                     {DNNL_ARG_WEIGHTS, 0, dnnl_query_weights_md, 'w'},
                     {DNNL_ARG_DST, 1, dnnl_query_dst_md, 'd'}},
        [FORWARD_BIAS] = {{DNNL_ARG_SRC, 0, dnnl_query_src_md, 's'},
                          {DNNL_ARG_WEIGHTS, 0, dnnl_query_weights_md, 'w'},
                          {DNNL_ARG_DST, 1, dnnl_query_dst_md, 'd'},
                          {DNNL_ARG_BIAS, 0, dnnl_query_weights_md, 'b'}},
        [BACKWARD_DATA] = {{DNNL_ARG_DIFF_DST, 0, dnnl_query_diff_dst_md, 'd'},
                           {DNNL_ARG_WEIGHTS, 0, dnnl_query_weights_md, 'w'},
                           {DNNL_ARG_DIFF_SRC, 1, dnnl_query_diff_src_md, 's'}},
        [BACKWARD_WEIGHTS] = {{DNNL_ARG_SRC, 0, dnnl_query_src_md, 's'},
                              {DNNL_ARG_DIFF_DST, 0, dnnl_query_diff_dst_md, 'd'},
                              {DNNL_ARG_DIFF_WEIGHTS, 1, dnnl_query_diff_weights_md, 'w'}},
    };
    dnnl_memory_desc_t psrc, pwei, pdst;
    conv_mds(c, 0, &psrc, &pwei, &pdst);
    for (int i = 0; i < MAX_ARGS && s == dnnl_success && roles[e->dir][i].id; i++) {
        arg *a = &e->a[e->nargs++];
        a->id = roles[e->dir][i].id;
        a->out = roles[e->dir][i].out;
        char which = roles[e->dir][i].which;
        a->ours = which == 's' ? psrc : which == 'w' ? pwei : which == 'd' ? pdst : bia;
        const dnnl_memory_desc_t *md =
            dnnl_primitive_desc_query_md(pd, roles[e->dir][i].q, which == 'b' ? 1 : 0);
        if (!md) {
            s = dnnl_runtime_error;
            break;
        }
        a->inner = *md;
        if (dnnl_memory_desc_equal(&a->ours, &a->inner)) continue;
        dnnl_primitive_desc_t rpd = NULL;
        s = a->out ? dnnl_reorder_primitive_desc_create(&rpd, &a->inner, eng, &a->ours, eng, NULL)
                   : dnnl_reorder_primitive_desc_create(&rpd, &a->ours, eng, &a->inner, eng, NULL);
        if (s == dnnl_success) s = dnnl_primitive_create(&a->reorder, rpd);
        if (rpd) dnnl_primitive_desc_destroy(rpd);
    }
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (s == dnnl_success) return 0;
    uint64_t used = e->used;
    pivq_dnnl_conv key = e->key;
    int dir = e->dir, threads = e->threads, bf16 = e->bf16;
    entry_clear(e);
    e->key = key;
    e->dir = dir;
    e->threads = threads;
    e->bf16 = bf16;
    e->used = used;
    if (declines(s)) {
        e->declined = 1;
        return 0;
    }
    e->used = 0; /* a failure is not cached: the next call tries again */
    return pivq_set_error("%s: oneDNN could not create its %s convolution (%s)", F, dir_name(dir),
                          dnnl_status2str(s));
}

/* The cached primitive of (c, dir) at the current thread count; NULL with the error set. */
static entry *lookup(const char *F, const pivq_dnnl_conv *c, int dir)
{
    int threads = pivq_get_num_threads(), bf16 = pivq_get_precision() == PIVQ_PRECISION_BF16;
    entry *victim = &cache[0];
    for (int i = 0; i < CACHE_SIZE; i++) {
        entry *e = &cache[i];
        if (e->used && e->dir == dir && e->threads == threads && e->bf16 == bf16 &&
            !memcmp(&e->key, c, sizeof *c)) {
            e->used = ++clock_;
            return e;
        }
        if (e->used < victim->used) victim = e;
    }
    entry_clear(victim);
    victim->key = *c;
    victim->dir = dir;
    victim->threads = threads;
    victim->bf16 = bf16;
    victim->used = ++clock_;
    return entry_create(F, victim) ? NULL : victim;
}

/* An input already reordered into a primitive's layout during this call (the backward's two
   primitives may both want dy in the same blocked layout). */
typedef struct converted {
    const void *ours;
    dnnl_memory_desc_t inner;
    void *buf;
} converted;

typedef struct call {
    const char *F;
    converted done[4];
    int ndone;
    void *tmp[8]; /* scratch buffers to free at the end */
    int ntmp;
} call;

static dnnl_status_t wrap(const dnnl_memory_desc_t *md, void *p, dnnl_memory_t *m)
{
    return dnnl_memory_create(m, md, eng, p);
}

static void *scratch(call *k, const dnnl_memory_desc_t *md)
{
    size_t n = dnnl_memory_desc_get_size(md);
    void *p = NULL;
    if (k->ntmp == 8 || posix_memalign(&p, 64, n ? (n + 63) / 64 * 64 : 64)) return NULL;
    return k->tmp[k->ntmp++] = p;
}

/* Run e with our buffers ptr[i] for its arguments (in e->a's order). 0, or -1 with the error
   set. */
static int run(call *k, const entry *e, void *const *ptr)
{
    dnnl_memory_t ours[MAX_ARGS] = {0}, inner[MAX_ARGS] = {0};
    dnnl_exec_arg_t args[MAX_ARGS];
    dnnl_status_t s = dnnl_success;
    const char *what = "memory";
    for (int i = 0; i < e->nargs && s == dnnl_success; i++) {
        const arg *a = &e->a[i];
        args[i].arg = a->id;
        s = wrap(&a->ours, ptr[i], &ours[i]);
        if (s != dnnl_success || !a->reorder) {
            args[i].memory = ours[i];
            continue;
        }
        void *buf = NULL;
        for (int j = 0; j < k->ndone && !a->out; j++)
            if (k->done[j].ours == ptr[i] && dnnl_memory_desc_equal(&k->done[j].inner, &a->inner))
                buf = k->done[j].buf;
        int fresh = !buf;
        if (fresh && !(buf = scratch(k, &a->inner))) s = dnnl_out_of_memory;
        if (s == dnnl_success) s = wrap(&a->inner, buf, &inner[i]);
        args[i].memory = inner[i];
        if (s == dnnl_success && !a->out && fresh) {
            dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, ours[i]}, {DNNL_ARG_TO, inner[i]}};
            what = "reorder";
            s = dnnl_primitive_execute(a->reorder, stream, 2, r);
            if (k->ndone < 4) k->done[k->ndone++] = (converted){ptr[i], a->inner, buf};
        }
    }
    if (s == dnnl_success) {
        what = dir_name(e->dir);
        s = dnnl_primitive_execute(e->prim, stream, e->nargs, args);
        const pivq_dnnl_conv *c = &e->key; /* each direction: one multiply-add per tap */
        if (s == dnnl_success)
            pivq_flops_add(2 * c->N * c->O * c->Ho * c->Wo * (c->C / c->groups) * c->kh * c->kw);
    }
    for (int i = 0; i < e->nargs && s == dnnl_success; i++)
        if (e->a[i].out && e->a[i].reorder) {
            dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, inner[i]}, {DNNL_ARG_TO, ours[i]}};
            what = "reorder";
            s = dnnl_primitive_execute(e->a[i].reorder, stream, 2, r);
        }
    if (s == dnnl_success) s = dnnl_stream_wait(stream);
    for (int i = 0; i < e->nargs; i++) {
        if (ours[i]) dnnl_memory_destroy(ours[i]);
        if (inner[i]) dnnl_memory_destroy(inner[i]);
    }
    if (s == dnnl_success) return 0;
    return pivq_set_error("%s: oneDNN %s failed (%s)", k->F, what, dnnl_status2str(s));
}

static void call_end(call *k)
{
    for (int i = 0; i < k->ntmp; i++)
        free(k->tmp[i]);
}

int pivq_dnnl_start(int *state, dnnl_engine_t *e, dnnl_stream_t *st)
{
    if (*state == 0) {
        *state = dnnl_engine_create(e, dnnl_cpu, 0) == dnnl_success ? 1 : -1;
        if (*state > 0 && dnnl_stream_create(st, *e, dnnl_stream_default_flags) != dnnl_success) {
            dnnl_engine_destroy(*e);
            *state = -1;
        }
    }
    return *state;
}

/* Take the lock and make sure the engine exists. 1: go; 0: im2col (lock not held). */
static int begin(void)
{
    if (current_engine() == PIVQ_CONV_IM2COL) return 0;
    pthread_mutex_lock(&lock);
    if (pivq_dnnl_start(&eng_state, &eng, &stream) < 0) {
        pthread_mutex_unlock(&lock);
        return 0;
    }
    return 1;
}

/* Release the call's buffers and the lock; count oneDNN's steps. Returns rc. */
static int finish(call *k, int rc)
{
    call_end(k);
    pthread_mutex_unlock(&lock);
    if (rc > 0) __atomic_add_fetch(&dnnl_steps, 1, __ATOMIC_RELAXED);
    return rc;
}

int pivq_dnnl_conv_forward(const char *F, const pivq_dnnl_conv *c, const float *x, const float *w,
                           const float *b, float *y)
{
    if (!begin()) return 0;
    call k = {.F = F};
    entry *e = lookup(F, c, b ? FORWARD_BIAS : FORWARD);
    if (!e) return finish(&k, -1);
    if (e->declined) return finish(&k, 0);
    void *ptr[MAX_ARGS] = {(void *)x, (void *)w, y, (void *)b};
    return finish(&k, run(&k, e, ptr) ? -1 : 1);
}

int pivq_dnnl_conv_backward(const char *F, const pivq_dnnl_conv *c, const float *x, const float *w,
                            const float *dy, float *dx, float *dw)
{
    if (!begin()) return 0;
    call k = {.F = F};
    /* both primitives first: if either direction is declined, im2col does the whole step */
    entry *ed = dx ? lookup(F, c, BACKWARD_DATA) : NULL;
    if (dx && !ed) return finish(&k, -1);
    entry *ew = dw ? lookup(F, c, BACKWARD_WEIGHTS) : NULL;
    if (dw && !ew) return finish(&k, -1);
    if ((ed && ed->declined) || (ew && ew->declined)) return finish(&k, 0);
    void *pd[MAX_ARGS] = {(void *)dy, (void *)w, dx}, *pw[MAX_ARGS] = {(void *)x, (void *)dy, dw};
    if ((ed && run(&k, ed, pd)) || (ew && run(&k, ew, pw))) return finish(&k, -1);
    return finish(&k, 1);
}

#endif
