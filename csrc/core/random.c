/* core/random.c — a counter-based random generator (Philox-4x32-10, Salmon et al. 2011).
 *
 * Draw number i of a call uses the block at counter (offset + i) under the key `seed`, so a
 * value depends only on (seed, offset + i): results are identical for any thread count, and
 * the pair {seed, offset} is the whole state (saved in checkpoints for exact resume).
 */
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    uint32_t v[4];
} philox_block;

/* Philox-4x32 with 10 rounds; constants from the paper. */
static philox_block philox(uint64_t counter, uint64_t key)
{
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1, n3 = (uint32_t)p0;
        c0 = n0;
        c1 = n1;
        c2 = n2;
        c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    philox_block b = {{c0, c1, c2, c3}};
    return b;
}

static pivq_generator default_generator = {0x853c49e6748fea9bULL, 0};

pivq_generator *pivq_default_generator(void)
{
    return &default_generator;
}

void pivq_manual_seed(pivq_generator *g, uint64_t seed)
{
    if (!g) g = &default_generator;
    g->seed = seed;
    g->offset = 0;
}

/* Uniform in [0, 1) with 24 random bits (every value exactly representable in float). */
static inline float u01(uint32_t x)
{
    return (float)(x >> 8) * (1.0f / 16777216.0f);
}

static int check_fill_target(const char *fname, const pivq_tensor *t, int need_float)
{
    if (pivq_check_tensor(fname, "tensor", t)) return -1;
    if (need_float && t->scalar_type != PIVQ_FLOAT32)
        return pivq_set_error("%s: tensor must be float32, got %s", fname,
                              pivq_dtype_name(t->scalar_type));
    if (!pivq_is_contiguous(t)) return pivq_set_error("%s: tensor must be contiguous", fname);
    return 0;
}

/* Element i of a draw uses counter base + i: any split of [0, n) gives the same values. */
typedef struct fill_ctx {
    float *p;
    uint64_t base, seed;
    float a, b; /* lo and width, or mean and std */
} fill_ctx;

static void uniform_range(int64_t i0, int64_t i1, void *vctx)
{
    const fill_ctx *c = vctx;
    for (int64_t i = i0; i < i1; i++)
        c->p[i] = c->a + c->b * u01(philox(c->base + (uint64_t)i, c->seed).v[0]);
}

static void normal_range(int64_t i0, int64_t i1, void *vctx)
{
    const fill_ctx *c = vctx;
    for (int64_t i = i0; i < i1; i++) {
        philox_block b = philox(c->base + (uint64_t)i, c->seed);
        /* Box–Muller; u1 in (0, 1] so the log is finite */
        double u1 = ((double)b.v[0] + 1.0) * (1.0 / 4294967296.0);
        double u2 = (double)b.v[1] * (1.0 / 4294967296.0);
        c->p[i] = (float)(c->a + c->b * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
}

int pivq_uniform_(pivq_tensor *t, double lo, double hi, pivq_generator *g)
{
    if (check_fill_target("uniform", t, 1)) return -1;
    if (!isfinite(lo) || !isfinite(hi) || lo > hi)
        return pivq_set_error("uniform: need finite lo <= hi, got %g and %g", lo, hi);
    if (!g) g = &default_generator;
    float *p = pivq_data(t);
    int64_t n = pivq_numel(t);
    uint64_t base = g->offset, seed = g->seed;
    fill_ctx c = {p, base, seed, (float)lo, (float)(hi - lo)};
    pivq_parallel_range(n, n * 8, uniform_range, &c);
    g->offset += (uint64_t)n;
    return 0;
}

int pivq_normal_(pivq_tensor *t, double mean, double std, pivq_generator *g)
{
    if (check_fill_target("normal", t, 1)) return -1;
    if (!isfinite(mean) || !isfinite(std) || std < 0)
        return pivq_set_error("normal: need finite mean and std >= 0, got %g and %g", mean, std);
    if (!g) g = &default_generator;
    float *p = pivq_data(t);
    int64_t n = pivq_numel(t);
    uint64_t base = g->offset, seed = g->seed;
    fill_ctx c = {p, base, seed, (float)mean, (float)std};
    pivq_parallel_range(n, n * 8, normal_range, &c);
    g->offset += (uint64_t)n;
    return 0;
}

/* Integer uniform in [0, range) from 64 random bits (bias < range / 2^64). */
static inline uint64_t below(philox_block b, uint64_t range)
{
    return (((uint64_t)b.v[1] << 32) | b.v[0]) % range;
}

int pivq_randint_(pivq_tensor *t, int64_t lo, int64_t hi, pivq_generator *g)
{
    if (check_fill_target("randint", t, 0)) return -1;
    if (hi <= lo)
        return pivq_set_error("randint: need lo < hi, got %lld and %lld", (long long)lo,
                              (long long)hi);
    if (!g) g = &default_generator;
    int64_t n = pivq_numel(t);
    uint64_t range = (uint64_t)hi - (uint64_t)lo, base = g->offset, seed = g->seed;
    void *p = pivq_data(t);
    int dtype = t->scalar_type;
    for (int64_t i = 0; i < n; i++) {
        int64_t v = lo + (int64_t)below(philox(base + (uint64_t)i, seed), range);
        switch (dtype) {
        case PIVQ_FLOAT32: ((float *)p)[i] = (float)v; break;
        case PIVQ_INT32: ((int32_t *)p)[i] = (int32_t)v; break;
        case PIVQ_INT64: ((int64_t *)p)[i] = v; break;
        default: ((uint8_t *)p)[i] = (uint8_t)v; break;
        }
    }
    g->offset += (uint64_t)n;
    return 0;
}

pivq_tensor *pivq_randperm(int64_t n, pivq_generator *g)
{
    if (n < 0) {
        pivq_set_error("randperm: n must be >= 0, got %lld", (long long)n);
        return NULL;
    }
    if (!g) g = &default_generator;
    pivq_tensor *t = pivq_empty(PIVQ_INT64, 1, &n);
    if (!t) return NULL;
    int64_t *p = pivq_data(t);
    for (int64_t i = 0; i < n; i++)
        p[i] = i;
    /* Fisher–Yates from the top: step i swaps p[i] with p[j], j uniform in [0, i] */
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)below(philox(g->offset + (uint64_t)i, g->seed), (uint64_t)i + 1);
        int64_t tmp = p[i];
        p[i] = p[j];
        p[j] = tmp;
    }
    g->offset += (uint64_t)n;
    return t;
}

pivq_tensor *pivq_multinomial(const pivq_tensor *probs, int64_t n, int replacement,
                              pivq_generator *g)
{
    if (pivq_check_tensor("multinomial", "probs", probs)) return NULL;
    if ((probs->ndim != 1 && probs->ndim != 2) || probs->scalar_type != PIVQ_FLOAT32) {
        char buf[160];
        pivq_set_error("multinomial: probs must be a 1-D or 2-D float32 tensor, got %s %s",
                       pivq_shape_str(probs, buf, sizeof buf), pivq_dtype_name(probs->scalar_type));
        return NULL;
    }
    int64_t rows = probs->ndim == 2 ? probs->shape[0] : 1, K = probs->shape[probs->ndim - 1];
    if (n < 0 || K < 1) {
        pivq_set_error("multinomial: need n >= 0 draws from K >= 1 categories, got n=%lld K=%lld",
                       (long long)n, (long long)K);
        return NULL;
    }
    if (!g) g = &default_generator;
    pivq_tensor *pc = pivq_contiguous_nograd(probs);
    if (!pc) return NULL;
    int64_t osize[2] = {rows, n};
    pivq_tensor *out = pivq_empty(PIVQ_INT64, probs->ndim, probs->ndim == 2 ? osize : &n);
    double *w = out ? malloc(sizeof(double) * (size_t)K) : NULL;
    if (!w) {
        if (out) pivq_set_error("multinomial: out of memory");
        pivq_tensor_release(pc);
        pivq_tensor_release(out);
        return NULL;
    }
    const float *pr = pivq_data(pc);
    int64_t *o = pivq_data(out);
    for (int64_t r = 0; r < rows; r++) {
        int64_t nonzero = 0;
        for (int64_t k = 0; k < K; k++) {
            float v = pr[r * K + k];
            if (!(v >= 0) || isinf(v)) {
                pivq_set_error("multinomial: probs[%lld,%lld] = %g is not a finite nonnegative "
                               "weight",
                               (long long)r, (long long)k, (double)v);
                goto fail;
            }
            w[k] = v;
            nonzero += v > 0;
        }
        if (nonzero == 0 || (!replacement && n > nonzero)) {
            pivq_set_error("multinomial: row %lld has %lld nonzero weights; cannot draw %lld %s",
                           (long long)r, (long long)nonzero, (long long)n,
                           replacement ? "samples" : "without replacement");
            goto fail;
        }
        for (int64_t j = 0; j < n; j++) {
            double total = 0;
            for (int64_t k = 0; k < K; k++)
                total += w[k];
            philox_block b = philox(g->offset + (uint64_t)(r * n + j), g->seed);
            double u = ((((uint64_t)b.v[1] << 32) | b.v[0]) >> 11) * (1.0 / 9007199254740992.0);
            double target = u * total, run = 0;
            int64_t pick = -1;
            for (int64_t k = 0; k < K; k++) {
                if (w[k] <= 0) continue;
                pick = k; /* the last positive weight absorbs rounding at the top end */
                run += w[k];
                if (target < run) break;
            }
            o[r * n + j] = pick;
            if (!replacement) w[pick] = 0;
        }
    }
    g->offset += (uint64_t)(rows * n);
    free(w);
    pivq_tensor_release(pc);
    return out;
fail:
    free(w);
    pivq_tensor_release(pc);
    pivq_tensor_release(out);
    return NULL;
}

double pivq_random_uniform(pivq_generator *g)
{
    if (!g) g = &default_generator;
    philox_block b = philox(g->offset++, g->seed);
    return ((((uint64_t)b.v[1] << 32) | b.v[0]) >> 11) * (1.0 / 9007199254740992.0);
}
