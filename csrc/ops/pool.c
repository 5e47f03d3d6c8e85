/* ops/pool.c — 2-D max and average pooling, nearest and bilinear upsampling, on (N, C, H, W).
 * Every (image, channel) plane is independent: the kernels run planes in parallel, and each
 * backward writes only its own plane (so the scatter-adds need no atomics).
 */
#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int check_input(const char *F, const pivq_tensor *x)
{
    if (pivq_check_tensor(F, "input", x)) return -1;
    char s[160];
    if (x->scalar_type != PIVQ_FLOAT32 || x->ndim != 4)
        return pivq_set_error("%s: input must be float32 (N, C, H, W), got %s %s", F,
                              pivq_dtype_name(x->scalar_type), pivq_shape_str(x, s, sizeof s));
    return 0;
}

/* Output size of a pooling window sweep; -1 with an error if invalid. */
static int pool_geom(const char *F, const pivq_tensor *x, const int64_t *k, const int64_t *s,
                     const int64_t *p, int64_t *Ho, int64_t *Wo)
{
    for (int i = 0; i < 2; i++)
        if (k[i] < 1 || s[i] < 1 || p[i] < 0 || 2 * p[i] > k[i])
            return pivq_set_error("%s: need kernel >= 1, stride >= 1 and 0 <= padding <= kernel/2 "
                                  "(got %lld, %lld, %lld)",
                                  F, (long long)k[i], (long long)s[i], (long long)p[i]);
    int64_t H = x->shape[2], W = x->shape[3];
    if (H + 2 * p[0] < k[0] || W + 2 * p[1] < k[1])
        return pivq_set_error("%s: kernel %lldx%lld larger than the padded input %lldx%lld", F,
                              (long long)k[0], (long long)k[1], (long long)(H + 2 * p[0]),
                              (long long)(W + 2 * p[1]));
    *Ho = (H + 2 * p[0] - k[0]) / s[0] + 1;
    *Wo = (W + 2 * p[1] - k[1]) / s[1] + 1;
    return 0;
}

/* ---- max pooling ------------------------------------------------------------------------- */

pivq_tensor *pivq_max_pool2d(const pivq_tensor *x, const int64_t *kernel, const int64_t *stride,
                             const int64_t *padding)
{
    const char *F = "max_pool2d";
    int64_t Ho, Wo;
    if (check_input(F, x) || pool_geom(F, x, kernel, stride, padding, &Ho, &Wo)) return NULL;
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t osz[4] = {N, C, Ho, Wo};
    pivq_tensor *xc = pivq_contiguous_nograd(x);
    pivq_tensor *y = pivq_empty(PIVQ_FLOAT32, 4, osz); /* y (N, C, Ho, Wo) */
    pivq_tensor *arg = pivq_empty(PIVQ_INT32, 4, osz); /* position of the max in its plane */
    if (!xc || !y || !arg) goto fail;
    if (H * W > INT32_MAX) {
        pivq_set_error("%s: planes of %lld elements are too large", F, (long long)(H * W));
        goto fail;
    }
    const float *xp = pivq_data(xc);
    float *yp = pivq_data(y);
    int32_t *ap = pivq_data(arg);
    int nt = pivq_threads_for(N * C * Ho * Wo * kernel[0] * kernel[1]);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t pl = 0; pl < N * C; pl++) {
        const float *src = xp + pl * H * W;
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++) {
                float m = -INFINITY;
                int32_t am = -1;
                for (int64_t i = 0; i < kernel[0]; i++) {
                    int64_t iy = oy * stride[0] - padding[0] + i;
                    if (iy < 0 || iy >= H) continue;
                    for (int64_t j = 0; j < kernel[1]; j++) {
                        int64_t ix = ox * stride[1] - padding[1] + j;
                        if (ix < 0 || ix >= W) continue;
                        float v = src[iy * W + ix];
                        if (v > m || am < 0 || isnan(v)) { /* NaN propagates, as PyTorch */
                            m = v;
                            am = (int32_t)(iy * W + ix);
                        }
                    }
                }
                yp[(pl * Ho + oy) * Wo + ox] = m;
                ap[(pl * Ho + oy) * Wo + ox] = am;
            }
    }
    if (pivq_ag_wants(1, &x)) {
        pivq_node *nd = pivq_ag_record(PIVQ_GOP_MAX_POOL2D, y, 1, &x);
        y = pivq_ag_finish(y, nd, nd ? pivq_ag_save(nd, 0, arg) : -1);
    }
    pivq_tensor_release(xc);
    pivq_tensor_release(arg);
    return y;
fail:
    pivq_tensor_release(xc);
    pivq_tensor_release(y);
    pivq_tensor_release(arg);
    return NULL;
}

int pivq_max_pool2d_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    const pivq_edge *ex = &n->in[0];
    pivq_tensor *dx = pivq_zeros_f32(4, ex->shape); /* dx (N, C, H, W) */
    if (!dx) return -1;
    int64_t planes = ex->shape[0] * ex->shape[1], HW = ex->shape[2] * ex->shape[3];
    int64_t P = g->shape[2] * g->shape[3];
    const int32_t *ap = pivq_data(n->saved[0]);
    const float *gp = pivq_data(g);
    float *d = pivq_data(dx);
    int nt = pivq_threads_for(planes * P);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t pl = 0; pl < planes; pl++)
        for (int64_t q = 0; q < P; q++)
            if (ap[pl * P + q] >= 0) d[pl * HW + ap[pl * P + q]] += gp[pl * P + q];
    gin[0] = dx;
    return 0;
}

/* ---- average pooling ------------------------------------------------------------------------- */

/* Divisor of window (oy, ox): its full size (count_include_pad) or its in-image part. */
static inline float window_count(int64_t oy, int64_t ox, const int64_t *k, const int64_t *s,
                                 const int64_t *p, int64_t H, int64_t W, int include_pad)
{
    if (include_pad) return (float)(k[0] * k[1]);
    int64_t y0 = oy * s[0] - p[0], x0 = ox * s[1] - p[1];
    int64_t y1 = y0 + k[0], x1 = x0 + k[1];
    y0 = y0 < 0 ? 0 : y0;
    x0 = x0 < 0 ? 0 : x0;
    y1 = y1 > H ? H : y1;
    x1 = x1 > W ? W : x1;
    return (float)((y1 - y0) * (x1 - x0));
}

pivq_tensor *pivq_avg_pool2d(const pivq_tensor *x, const int64_t *kernel, const int64_t *stride,
                             const int64_t *padding, int count_include_pad)
{
    const char *F = "avg_pool2d";
    int64_t Ho, Wo;
    if (check_input(F, x) || pool_geom(F, x, kernel, stride, padding, &Ho, &Wo)) return NULL;
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t osz[4] = {N, C, Ho, Wo};
    pivq_tensor *xc = pivq_contiguous_nograd(x);
    pivq_tensor *y = xc ? pivq_empty(PIVQ_FLOAT32, 4, osz) : NULL; /* y (N, C, Ho, Wo) */
    if (!y) {
        pivq_tensor_release(xc);
        return NULL;
    }
    const float *xp = pivq_data(xc);
    float *yp = pivq_data(y);
    int nt = pivq_threads_for(N * C * Ho * Wo * kernel[0] * kernel[1]);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t pl = 0; pl < N * C; pl++) {
        const float *src = xp + pl * H * W;
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++) {
                float s = 0.0f;
                for (int64_t i = 0; i < kernel[0]; i++) {
                    int64_t iy = oy * stride[0] - padding[0] + i;
                    if (iy < 0 || iy >= H) continue;
                    for (int64_t j = 0; j < kernel[1]; j++) {
                        int64_t ix = ox * stride[1] - padding[1] + j;
                        if (ix >= 0 && ix < W) s += src[iy * W + ix];
                    }
                }
                yp[(pl * Ho + oy) * Wo + ox] =
                    s / window_count(oy, ox, kernel, stride, padding, H, W, count_include_pad);
            }
    }
    pivq_tensor_release(xc);
    if (pivq_ag_wants(1, &x)) {
        pivq_node *nd = pivq_ag_record(PIVQ_GOP_AVG_POOL2D, y, 1, &x);
        if (nd) {
            for (int i = 0; i < 2; i++) {
                nd->ip[i] = kernel[i];
                nd->ip[2 + i] = stride[i];
                nd->ip[4 + i] = padding[i];
            }
            nd->ip[6] = count_include_pad;
        }
        y = pivq_ag_finish(y, nd, nd ? 0 : -1);
    }
    return y;
}

int pivq_avg_pool2d_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    const pivq_edge *ex = &n->in[0];
    const int64_t *k = n->ip, *s = n->ip + 2, *p = n->ip + 4;
    int include_pad = (int)n->ip[6];
    int64_t H = ex->shape[2], W = ex->shape[3], Ho = g->shape[2], Wo = g->shape[3];
    int64_t planes = ex->shape[0] * ex->shape[1];
    pivq_tensor *dx = pivq_zeros_f32(4, ex->shape);
    if (!dx) return -1;
    const float *gp = pivq_data(g);
    float *d = pivq_data(dx);
    int nt = pivq_threads_for(planes * Ho * Wo * k[0] * k[1]);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t pl = 0; pl < planes; pl++)
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++) {
                float v =
                    gp[(pl * Ho + oy) * Wo + ox] / window_count(oy, ox, k, s, p, H, W, include_pad);
                for (int64_t i = 0; i < k[0]; i++) {
                    int64_t iy = oy * s[0] - p[0] + i;
                    if (iy < 0 || iy >= H) continue;
                    for (int64_t j = 0; j < k[1]; j++) {
                        int64_t ix = ox * s[1] - p[1] + j;
                        if (ix >= 0 && ix < W) d[(pl * H + iy) * W + ix] += v;
                    }
                }
            }
    gin[0] = dx;
    return 0;
}

/* ---- upsampling ------------------------------------------------------------------------------ */

/* Source coordinate of output index o for bilinear interpolation (PyTorch's conventions). */
static inline float bilinear_src(int64_t o, int64_t in, int64_t out, int align_corners)
{
    if (align_corners) return out > 1 ? (float)o * (float)(in - 1) / (float)(out - 1) : 0.0f;
    float v = ((float)o + 0.5f) * (float)in / (float)out - 0.5f;
    return v < 0 ? 0.0f : v;
}

/* For each output row/col: the two source indices and the weight of the second. */
typedef struct lerp {
    int64_t i0, i1;
    float w1;
} lerp;

static lerp *lerp_table(int64_t in, int64_t out, int align_corners)
{
    lerp *t = malloc((size_t)(out > 0 ? out : 1) * sizeof *t);
    if (!t) return NULL;
    for (int64_t o = 0; o < out; o++) {
        float s = bilinear_src(o, in, out, align_corners);
        int64_t i0 = (int64_t)s;
        if (i0 > in - 1) i0 = in - 1;
        t[o].i0 = i0;
        t[o].i1 = i0 + 1 < in ? i0 + 1 : in - 1;
        t[o].w1 = s - (float)i0;
    }
    return t;
}

/* For nearest: each output row/col's source index, floor(o * in / out) as PyTorch. A table made
 * once per call: the division per output pixel it replaces made 2x upsampling in the colour
 * model's conv head cost as much as a tenth of a training step. */
static int64_t *nearest_table(int64_t in, int64_t out)
{
    int64_t *t = malloc((size_t)(out > 0 ? out : 1) * sizeof *t);
    if (!t) return NULL;
    for (int64_t o = 0; o < out; o++)
        t[o] = o * in / out;
    return t;
}

pivq_tensor *pivq_upsample2d(const pivq_tensor *x, int64_t Ho, int64_t Wo, int mode,
                             int align_corners)
{
    const char *F = "upsample2d";
    if (check_input(F, x)) return NULL;
    if (Ho < 1 || Wo < 1 || (mode != PIVQ_UPSAMPLE_NEAREST && mode != PIVQ_UPSAMPLE_BILINEAR)) {
        pivq_set_error("%s: need an output size >= 1 and mode nearest (0) or bilinear (1), got "
                       "%lldx%lld mode %d",
                       F, (long long)Ho, (long long)Wo, mode);
        return NULL;
    }
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t osz[4] = {N, C, Ho, Wo};
    pivq_tensor *xc = pivq_contiguous_nograd(x);
    pivq_tensor *y = xc ? pivq_empty(PIVQ_FLOAT32, 4, osz) : NULL; /* y (N, C, Ho, Wo) */
    /* only once y exists, so Ho and Wo passed the size check: Ho * sizeof(lerp) cannot wrap */
    lerp *ty = y && mode ? lerp_table(H, Ho, align_corners) : NULL;
    lerp *tx = y && mode ? lerp_table(W, Wo, align_corners) : NULL;
    int64_t *ny = y && !mode ? nearest_table(H, Ho) : NULL;
    int64_t *nx = y && !mode ? nearest_table(W, Wo) : NULL;
    if (!y || (mode ? (!ty || !tx) : (!ny || !nx)) || H == 0 || W == 0) {
        if (y && (H == 0 || W == 0))
            pivq_set_error("%s: empty input planes", F);
        else if (y)
            pivq_set_error("%s: out of memory", F);
        pivq_tensor_release(y);
        y = NULL;
        goto done;
    }
    const float *xp = pivq_data(xc);
    float *yp = pivq_data(y);
    int nt = pivq_threads_for(N * C * Ho * Wo * 4);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t pl = 0; pl < N * C; pl++) {
        const float *src = xp + pl * H * W;
        float *dst = yp + pl * Ho * Wo;
        for (int64_t oy = 0; oy < Ho; oy++) {
            float *row = dst + oy * Wo;
            if (mode == PIVQ_UPSAMPLE_NEAREST) {
                if (oy > 0 && ny[oy] == ny[oy - 1]) { /* the same source row: copy the last one */
                    memcpy(row, row - Wo, (size_t)Wo * sizeof *row);
                    continue;
                }
                const float *srow = src + ny[oy] * W;
                for (int64_t ox = 0; ox < Wo; ox++)
                    row[ox] = srow[nx[ox]];
                continue;
            }
            for (int64_t ox = 0; ox < Wo; ox++) {
                lerp a = ty[oy], b = tx[ox];
                float top = src[a.i0 * W + b.i0] * (1 - b.w1) + src[a.i0 * W + b.i1] * b.w1;
                float bot = src[a.i1 * W + b.i0] * (1 - b.w1) + src[a.i1 * W + b.i1] * b.w1;
                row[ox] = top * (1 - a.w1) + bot * a.w1;
            }
        }
    }
    if (pivq_ag_wants(1, &x)) {
        pivq_node *nd = pivq_ag_record(PIVQ_GOP_UPSAMPLE2D, y, 1, &x);
        if (nd) {
            nd->ip[0] = mode;
            nd->ip[1] = align_corners;
        }
        y = pivq_ag_finish(y, nd, nd ? 0 : -1);
    }
done:
    free(ty);
    free(tx);
    free(ny);
    free(nx);
    pivq_tensor_release(xc);
    return y;
}

int pivq_upsample2d_backward(pivq_node *n, const pivq_tensor *g, pivq_tensor **gin)
{
    const pivq_edge *ex = &n->in[0];
    int mode = (int)n->ip[0], align = (int)n->ip[1];
    int64_t H = ex->shape[2], W = ex->shape[3], Ho = g->shape[2], Wo = g->shape[3];
    int64_t planes = ex->shape[0] * ex->shape[1];
    pivq_tensor *dx = pivq_zeros_f32(4, ex->shape);
    lerp *ty = mode ? lerp_table(H, Ho, align) : NULL, *tx = mode ? lerp_table(W, Wo, align) : NULL;
    int64_t *ny = mode ? NULL : nearest_table(H, Ho), *nx = mode ? NULL : nearest_table(W, Wo);
    if (!dx || (mode ? (!ty || !tx) : (!ny || !nx))) {
        free(ty);
        free(tx);
        free(ny);
        free(nx);
        pivq_tensor_release(dx);
        return pivq_set_error("upsample2d backward: out of memory");
    }
    const float *gp = pivq_data(g);
    float *d = pivq_data(dx);
    int nt = pivq_threads_for(planes * Ho * Wo * 4);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *src = gp + pl * Ho * Wo;
        float *dst = d + pl * H * W;
        for (int64_t oy = 0; oy < Ho; oy++) {
            const float *grow = src + oy * Wo;
            if (mode == PIVQ_UPSAMPLE_NEAREST) {
                float *drow = dst + ny[oy] * W;
                for (int64_t ox = 0; ox < Wo; ox++)
                    drow[nx[ox]] += grow[ox];
                continue;
            }
            for (int64_t ox = 0; ox < Wo; ox++) {
                float v = grow[ox];
                lerp a = ty[oy], b = tx[ox];
                dst[a.i0 * W + b.i0] += v * (1 - a.w1) * (1 - b.w1);
                dst[a.i0 * W + b.i1] += v * (1 - a.w1) * b.w1;
                dst[a.i1 * W + b.i0] += v * a.w1 * (1 - b.w1);
                dst[a.i1 * W + b.i1] += v * a.w1 * b.w1;
            }
        }
    }
    free(ty);
    free(tx);
    free(ny);
    free(nx);
    gin[0] = dx;
    return 0;
}
