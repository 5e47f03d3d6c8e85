/* ops/bf16.c — the precision switch and bf16 GEMM through oneDNN's matmul.
 *
 * Under PIVQ_PRECISION_BF16 (pivq_set_precision), the products that carry a model's arithmetic
 * run with bf16 operands and fp32 accumulation and output: matmul and linear here (ops/matmul.c
 * and ops/nn.c call pivq_gemm, forward and backward), convolution in ops/conv_dnnl.c. Everything
 * else stays fp32: reductions, norms, softmax and its statistics, losses, the quantizer's
 * distances and assignment (quant/ calls pivq_sgemm_mt directly), the optimizers' state and the
 * parameters (the master weights are the fp32 tensors themselves: operands are rounded to bf16
 * per call, into scratch buffers, so nothing a user holds changes type). Attention's per-head
 * products (49-80 tokens, head dim 32 in the default model), where a oneDNN call would cost more
 * than the arithmetic, run on pivq's own bf16 register-tiled kernels (ops/gemm_small_bf16.c),
 * which also do the rounding here (pivq_to_bf16, vectorised).
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

static int gemm_bf16(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const uint16_t *a16, const float *B, int64_t ldb,
                     const uint16_t *b16, const float *bias, float beta, float *C, int64_t ldc)
{
    (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)a16,
        (void)B, (void)ldb, (void)b16, (void)bias, (void)beta, (void)C, (void)ldc;
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
    int ta, tb, threads, bias;
    int64_t M, N, K, ldc;
    float alpha, beta;
} gkey;

typedef struct gentry {
    gkey key;
    uint64_t used; /* 0: free slot */
    dnnl_primitive_t prim;
    dnnl_memory_desc_t a, b, c, bias;
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
    dnnl_dims_t biasd = {1, k->N};
    if (s == dnnl_success && k->bias) /* fp32, one per column of C, added by the kernel */
        s = dnnl_memory_desc_init_by_tag(&e->bias, 2, biasd, dnnl_f32, dnnl_ab);
    dnnl_matmul_desc_t md;
    if (s == dnnl_success)
        s = dnnl_matmul_desc_init(&md, &e->a, &e->b, k->bias ? &e->bias : NULL, &e->c);
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

/* C = alpha op(A) op(B) (+ bias, one per column) + beta C with bf16 operands: A and B rounded
   here, or a16 / b16 when given (A / B already rounded, packed as stored). 1 when done, 0 when
   fp32 must do it (nothing written), -1 on a oneDNN failure. */
static int gemm_bf16(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const uint16_t *a16, const float *B, int64_t ldb,
                     const uint16_t *b16, const float *bias, float beta, float *C, int64_t ldc)
{
    pthread_mutex_lock(&lock);
    pivq_dnnl_start(&eng_state, &eng, &stream);
    gkey key;
    memset(&key, 0, sizeof key); /* padding too: the key is compared with memcmp */
    key.ta = ta, key.tb = tb, key.threads = pivq_get_num_threads(), key.bias = bias != NULL;
    key.M = M, key.N = N, key.K = K, key.ldc = ldc, key.alpha = alpha, key.beta = beta;
    gentry *e = eng_state > 0 ? lookup(&key) : NULL;
    if (!e || (!a16 && grow(&abuf, &acap, (size_t)(M * K))) ||
        (!b16 && grow(&bbuf, &bcap, (size_t)(K * N)))) {
        pthread_mutex_unlock(&lock);
        return 0; /* fp32 does it */
    }
    /* the operands as stored: A is (M, K), or (K, M) when transposed; B is (K, N) or (N, K) */
    int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    if (!a16 && !b16) /* both in one pass */
        pivq_to_bf16_pair(A, ar, ac, lda, abuf, B, br, bc, ldb, bbuf);
    else if (!a16)
        pivq_to_bf16(A, ar, ac, lda, abuf);
    else if (!b16)
        pivq_to_bf16(B, br, bc, ldb, bbuf);
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL, mbias = NULL;
    dnnl_status_t s = dnnl_memory_create(&ma, &e->a, eng, a16 ? (void *)a16 : abuf);
    if (s == dnnl_success) s = dnnl_memory_create(&mb, &e->b, eng, b16 ? (void *)b16 : bbuf);
    if (s == dnnl_success) s = dnnl_memory_create(&mc, &e->c, eng, C);
    if (s == dnnl_success && bias) s = dnnl_memory_create(&mbias, &e->bias, eng, (void *)bias);
    if (s == dnnl_success) {
        dnnl_exec_arg_t args[4] = {
            {DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}, {DNNL_ARG_BIAS, mbias}};
        s = dnnl_primitive_execute(e->prim, stream, bias ? 4 : 3, args);
    }
    if (s == dnnl_success) s = dnnl_stream_wait(stream);
    if (ma) dnnl_memory_destroy(ma);
    if (mb) dnnl_memory_destroy(mb);
    if (mc) dnnl_memory_destroy(mc);
    if (mbias) dnnl_memory_destroy(mbias);
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

int pivq_gemm_uses_bf16(int64_t M, int64_t N, int64_t K)
{
    return precision == PIVQ_PRECISION_BF16 && M > 0 && N > 0 && K > 0 &&
           M * N * K >= BF16_MIN_WORK;
}

uint16_t *pivq_bf16_copy(const float *src, int64_t rows, int64_t cols, int64_t ld)
{
    void *p = NULL;
    if (rows <= 0 || cols <= 0 || posix_memalign(&p, 64, (size_t)(rows * cols) * 2 + 64))
        return NULL;
    pivq_to_bf16(src, rows, cols, ld, p);
    return p;
}

void pivq_gemm_ex(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, const uint16_t *a16, const float *B, int64_t ldb, float beta,
                  float *C, int64_t ldc)
{
    if (pivq_gemm_uses_bf16(M, N, K) &&
        gemm_bf16(ta, tb, M, N, K, alpha, A, lda, a16, B, ldb, NULL, NULL, beta, C, ldc) == 1)
        return;
    pivq_sgemm_mt(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void pivq_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
               int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    pivq_gemm_ex(ta, tb, M, N, K, alpha, A, lda, NULL, B, ldb, beta, C, ldc);
}

void pivq_gemm_bias(int64_t M, int64_t N, int64_t K, const float *x, const float *w, const float *b,
                    float *y)
{
    /* bf16: oneDNN adds the bias in its kernel (no pass filling y, no read of it back) */
    if (b && pivq_gemm_uses_bf16(M, N, K) &&
        gemm_bf16(0, 1, M, N, K, 1.0f, x, K, NULL, w, K, NULL, b, 0.0f, y, N) == 1)
        return;
    /* fp32: rows of y start as b, then one sgemm adds */
    if (b) {
        for (int64_t i = 0; i < M; i++)
            memcpy(y + i * N, b, (size_t)N * sizeof *y);
    }
    if (K == 0) {
        if (!b) memset(y, 0, (size_t)(M * N) * sizeof *y);
        return;
    }
    pivq_gemm(0, 1, M, N, K, 1.0f, x, K, w, K, b ? 1.0f : 0.0f, y, N);
}
