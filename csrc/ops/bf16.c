/* ops/bf16.c — the precision switch and bf16 GEMM through oneDNN's matmul.
 *
 * Under PIVQ_PRECISION_BF16 (pivq_set_precision), the products that carry a model's arithmetic
 * run with bf16 operands and fp32 accumulation and output: matmul and linear here (ops/matmul.c
 * and ops/nn.c call pivq_gemm, forward and backward), convolution in ops/conv_dnnl.c. Everything
 * else stays fp32: reductions, norms, softmax and its statistics, losses, the quantizer's
 * distances and assignment (quant/ calls pivq_sgemm_mt directly), the optimizers' state and the
 * parameters (the master weights are the fp32 tensors themselves: operands are rounded to bf16
 * per call, into scratch buffers, so nothing a user holds changes type). Attention's per-head
 * products (49-80 tokens, head dim 32 in the default model) stay on the fp32 register-tiled
 * kernels of ops/gemm_small.c: at that size a oneDNN call costs more than the arithmetic.
 *
 * bf16 is used only when oneDNN reports an ISA with bf16 dot products (AVX512-BF16 or AMX:
 * dnnl_get_effective_cpu_isa) and it has not been turned off (PIVQ_BF16=off in the environment,
 * or pivq_set_bf16_allowed(0)); otherwise pivq_set_precision(BF16) fails with a message naming
 * the ISA and the precision stays fp32. Under valgrind, which decodes no AVX-512, the ISA query
 * reports less and everything runs fp32.
 *
 * The matmul primitives are cached (LRU, keyed by shape, transposition, leading dim of C, alpha,
 * beta and the thread count), as conv_dnnl.c does for convolutions. One mutex covers lookup,
 * the operand conversion into the shared scratch buffers and execution.
 */
#include "core/core.h"
#include "ops/conv_dnnl.h"
#include "ops/ops.h"
#include "pivq.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static int precision = PIVQ_PRECISION_FP32;
static int allowed = -1; /* -1: PIVQ_BF16 not read yet */

static int bf16_allowed(void)
{
    if (allowed < 0) {
        const char *e = getenv("PIVQ_BF16");
        allowed = !(e && (strcmp(e, "off") == 0 || strcmp(e, "0") == 0));
    }
    return allowed;
}

int pivq_set_bf16_allowed(int on)
{
    if (on != 0 && on != 1)
        return pivq_set_error("set_bf16_allowed: on must be 0 or 1, got %d", on);
    allowed = on;
    if (!on) precision = PIVQ_PRECISION_FP32;
    return 0;
}

int pivq_get_precision(void)
{
    return precision;
}

#ifndef PIVQ_HAVE_DNNL

const char *pivq_cpu_isa(void)
{
    return "unknown (pivq was built without oneDNN)";
}

int pivq_bf16_available(void)
{
    return 0;
}

int pivq_gemm_bf16(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)B,
        (void)ldb, (void)beta, (void)C, (void)ldc;
    return 0;
}

#else

#include <dnnl.h>
#include <dnnl_debug.h>

const char *pivq_cpu_isa(void)
{
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    default: return isa == dnnl_cpu_isa_all ? "all" : "other";
    }
}

int pivq_bf16_available(void)
{
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return bf16_allowed() && (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
}

#define CACHE_SIZE 32

typedef struct gkey {
    int ta, tb, threads;
    int64_t M, N, K, ldc;
    float alpha, beta;
} gkey;

typedef struct gentry {
    gkey key;
    uint64_t used; /* 0: free slot */
    dnnl_primitive_t prim;
    dnnl_memory_desc_t a, b, c;
} gentry;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static dnnl_engine_t eng;
static dnnl_stream_t stream;
static int eng_state; /* 0: not tried, 1: ready, -1: unusable */
static gentry cache[CACHE_SIZE];
static uint64_t clock_;
/* the bf16 copies of the operands: grown as needed, kept for the next call */
static uint16_t *abuf, *bbuf;
static size_t acap, bcap;

static int grow(uint16_t **buf, size_t *cap, size_t n)
{
    if (n <= *cap) return 0;
    void *p = NULL;
    if (posix_memalign(&p, 64, n * sizeof(uint16_t) + 64)) return -1;
    free(*buf);
    *buf = p;
    *cap = n;
    return 0;
}

/* f32 -> bf16, rounding to nearest even; NaN stays a (quiet) NaN */
static inline uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* rows x cols of src (leading dim ld) into dst, packed (leading dim cols) */
typedef struct conv_job {
    const float *src;
    uint16_t *dst;
    int64_t cols, ld;
} conv_job;

static void convert_rows(int64_t r0, int64_t r1, void *ctx)
{
    const conv_job *j = ctx;
    for (int64_t r = r0; r < r1; r++) {
        const float *s = j->src + r * j->ld;
        uint16_t *d = j->dst + r * j->cols;
        for (int64_t c = 0; c < j->cols; c++)
            d[c] = to_bf16(s[c]);
    }
}

static void convert(const float *src, int64_t rows, int64_t cols, int64_t ld, uint16_t *dst)
{
    conv_job j = {src, dst, cols, ld};
    pivq_parallel_range(rows, rows * cols, convert_rows, &j);
}

static int create(gentry *e)
{
    const gkey *k = &e->key;
    /* A as stored: (M, K) row-major, or (K, M) when transposed: packed, so ld = its columns */
    dnnl_dims_t ad = {k->M, k->K}, bd = {k->K, k->N}, cd = {k->M, k->N};
    dnnl_dims_t as = {k->ta ? 1 : k->K, k->ta ? k->M : 1};
    dnnl_dims_t bs = {k->tb ? 1 : k->N, k->tb ? k->K : 1};
    dnnl_dims_t cs = {k->ldc, 1};
    dnnl_status_t s = dnnl_memory_desc_init_by_strides(&e->a, 2, ad, dnnl_bf16, as);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_strides(&e->b, 2, bd, dnnl_bf16, bs);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_strides(&e->c, 2, cd, dnnl_f32, cs);
    dnnl_matmul_desc_t md;
    if (s == dnnl_success) s = dnnl_matmul_desc_init(&md, &e->a, &e->b, NULL, &e->c);
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    if (s == dnnl_success) s = dnnl_primitive_attr_create(&attr);
    if (s == dnnl_success && k->alpha != 1.0f)
        s = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &k->alpha);
    if (s == dnnl_success && k->beta != 0.0f) {
        s = dnnl_post_ops_create(&po);
        if (s == dnnl_success) s = dnnl_post_ops_append_sum(po, k->beta);
        if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(attr, po);
    }
    dnnl_primitive_desc_t pd = NULL;
    if (s == dnnl_success) s = dnnl_primitive_desc_create(&pd, &md, attr, eng, NULL);
    if (s == dnnl_success) s = dnnl_primitive_create(&e->prim, pd);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return s == dnnl_success ? 0 : -1;
}

static gentry *lookup(const gkey *k)
{
    gentry *victim = &cache[0];
    for (int i = 0; i < CACHE_SIZE; i++) {
        gentry *e = &cache[i];
        if (e->used && !memcmp(&e->key, k, sizeof *k)) {
            e->used = ++clock_;
            return e;
        }
        if (e->used < victim->used) victim = e;
    }
    if (victim->prim) dnnl_primitive_destroy(victim->prim);
    memset(victim, 0, sizeof *victim);
    victim->key = *k;
    if (create(victim)) {
        if (victim->prim) dnnl_primitive_destroy(victim->prim);
        memset(victim, 0, sizeof *victim);
        return NULL;
    }
    victim->used = ++clock_;
    return victim;
}

int pivq_gemm_bf16(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    pthread_mutex_lock(&lock);
    pivq_dnnl_start(&eng_state, &eng, &stream);
    gkey key;
    memset(&key, 0, sizeof key); /* padding too: the key is compared with memcmp */
    key.ta = ta, key.tb = tb, key.threads = pivq_get_num_threads();
    key.M = M, key.N = N, key.K = K, key.ldc = ldc, key.alpha = alpha, key.beta = beta;
    gentry *e = eng_state > 0 ? lookup(&key) : NULL;
    if (!e || grow(&abuf, &acap, (size_t)(M * K)) || grow(&bbuf, &bcap, (size_t)(K * N))) {
        pthread_mutex_unlock(&lock);
        return 0; /* fp32 does it */
    }
    /* the operands as stored: A is (M, K), or (K, M) when transposed; B is (K, N) or (N, K) */
    convert(A, ta ? K : M, ta ? M : K, lda, abuf);
    convert(B, tb ? N : K, tb ? K : N, ldb, bbuf);
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL;
    dnnl_status_t s = dnnl_memory_create(&ma, &e->a, eng, abuf);
    if (s == dnnl_success) s = dnnl_memory_create(&mb, &e->b, eng, bbuf);
    if (s == dnnl_success) s = dnnl_memory_create(&mc, &e->c, eng, C);
    if (s == dnnl_success) {
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
        s = dnnl_primitive_execute(e->prim, stream, 3, args);
    }
    if (s == dnnl_success) s = dnnl_stream_wait(stream);
    if (ma) dnnl_memory_destroy(ma);
    if (mb) dnnl_memory_destroy(mb);
    if (mc) dnnl_memory_destroy(mc);
    pthread_mutex_unlock(&lock);
    if (s == dnnl_success) pivq_flops_add(2 * M * N * K);
    return s == dnnl_success ? 1 : -1;
}

#endif

int pivq_set_precision(int p)
{
    if (p != PIVQ_PRECISION_FP32 && p != PIVQ_PRECISION_BF16)
        return pivq_set_error("set_precision: precision must be PIVQ_PRECISION_FP32 (0) or "
                              "PIVQ_PRECISION_BF16 (1), got %d",
                              p);
    if (p == PIVQ_PRECISION_BF16 && !pivq_bf16_available())
        return bf16_allowed()
                   ? pivq_set_error("set_precision: bf16 is not available: oneDNN's ISA is %s, "
                                    "and bf16 needs avx512_core_bf16 or avx512_core_amx",
                                    pivq_cpu_isa())
                   : pivq_set_error("set_precision: bf16 is not available: turned off "
                                    "(PIVQ_BF16=off or pivq_set_bf16_allowed(0))");
    precision = p;
    return 0;
}

/* Products of fewer multiply-adds than this stay fp32: a oneDNN call and the conversions cost
   more than they save. */
#define BF16_MIN_WORK ((int64_t)1 << 18)

void pivq_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
               int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    if (precision == PIVQ_PRECISION_BF16 && M > 0 && N > 0 && K > 0 && M * N * K >= BF16_MIN_WORK &&
        pivq_gemm_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) == 1)
        return;
    pivq_sgemm_mt(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
