/* quant/metrics.c — image-quality metrics computed in C (evaluation only, no gradients).
 *
 * SSIM: the five local statistics (means of x and y, variances, covariance) are Gaussian-
 * weighted sums over each 11x11 window; the Gaussian is separable, so each statistic is a
 * horizontal 11-tap pass followed by a vertical one (about 44 multiply-adds per pixel instead
 * of 605). Sums are in double: SSIM subtracts nearly equal quantities.
 */
#include "core/core.h"

#include <math.h>
#include <stdlib.h>

#define WIN 11
#define SIGMA 1.5

pivq_tensor *pivq_ssim(const pivq_tensor *x, const pivq_tensor *y, double data_range)
{
    if (pivq_check_tensor("ssim", "x", x) || pivq_check_tensor("ssim", "y", y)) return NULL;
    char a[160], b[160];
    if (x->ndim != 4 || y->ndim != 4 || x->scalar_type != PIVQ_FLOAT32 ||
        y->scalar_type != PIVQ_FLOAT32) {
        pivq_set_error("ssim: need N x C x H x W float32 images, got %s %s and %s %s",
                       pivq_shape_str(x, a, sizeof a), pivq_dtype_name(x->scalar_type),
                       pivq_shape_str(y, b, sizeof b), pivq_dtype_name(y->scalar_type));
        return NULL;
    }
    for (int i = 0; i < 4; i++)
        if (x->shape[i] != y->shape[i]) {
            pivq_set_error("ssim: shapes differ: %s and %s", pivq_shape_str(x, a, sizeof a),
                           pivq_shape_str(y, b, sizeof b));
            return NULL;
        }
    int64_t N = x->shape[0], Cn = x->shape[1], H = x->shape[2], W = x->shape[3];
    if (H < WIN || W < WIN) {
        pivq_set_error("ssim: images must be at least %dx%d, got %lldx%lld", WIN, WIN, (long long)H,
                       (long long)W);
        return NULL;
    }
    if (!(data_range > 0) || !isfinite(data_range)) {
        pivq_set_error("ssim: data_range must be positive, got %g", data_range);
        return NULL;
    }
    double g[WIN], gs = 0;
    for (int i = 0; i < WIN; i++) {
        double t = i - (WIN - 1) / 2.0;
        g[i] = exp(-t * t / (2 * SIGMA * SIGMA));
        gs += g[i];
    }
    for (int i = 0; i < WIN; i++)
        g[i] /= gs;
    const double C1 = (0.01 * data_range) * (0.01 * data_range);
    const double C2 = (0.03 * data_range) * (0.03 * data_range);
    pivq_tensor *xc = pivq_contiguous_nograd(x), *yc = xc ? pivq_contiguous_nograd(y) : NULL;
    pivq_tensor *out = yc ? pivq_empty(PIVQ_FLOAT32, 1, &N) : NULL;
    if (!out) goto done;
    const float *X = pivq_data(xc), *Y = pivq_data(yc);
    float *O = pivq_data(out);
    int64_t Wo = W - WIN + 1, Ho = H - WIN + 1;
    int fail = 0;
#pragma omp parallel for num_threads(pivq_threads_for(N *Cn *H *W * 50)) schedule(dynamic)
    for (int64_t n = 0; n < N; n++) {
        /* horizontal pass: 5 statistics x H rows x Wo columns */
        double *hp = malloc(sizeof(double) * (size_t)(5 * H * Wo));
        if (!hp) {
            fail = 1;
            continue;
        }
        double total = 0;
        for (int64_t c = 0; c < Cn; c++) {
            const float *xp = X + (n * Cn + c) * H * W, *yp = Y + (n * Cn + c) * H * W;
            for (int64_t r = 0; r < H; r++)
                for (int64_t j = 0; j < Wo; j++) {
                    double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
                    for (int t = 0; t < WIN; t++) {
                        double u = xp[r * W + j + t], v = yp[r * W + j + t];
                        sx += g[t] * u;
                        sy += g[t] * v;
                        sxx += g[t] * u * u;
                        syy += g[t] * v * v;
                        sxy += g[t] * u * v;
                    }
                    double *h = hp + (r * Wo + j) * 5;
                    h[0] = sx;
                    h[1] = sy;
                    h[2] = sxx;
                    h[3] = syy;
                    h[4] = sxy;
                }
            /* vertical pass and the SSIM map */
            double acc = 0;
            for (int64_t i = 0; i < Ho; i++)
                for (int64_t j = 0; j < Wo; j++) {
                    double s[5] = {0, 0, 0, 0, 0};
                    for (int t = 0; t < WIN; t++) {
                        const double *h = hp + ((i + t) * Wo + j) * 5;
                        for (int k = 0; k < 5; k++)
                            s[k] += g[t] * h[k];
                    }
                    double mx = s[0], my = s[1];
                    double vx = s[2] - mx * mx, vy = s[3] - my * my, cxy = s[4] - mx * my;
                    acc += ((2 * mx * my + C1) * (2 * cxy + C2)) /
                           ((mx * mx + my * my + C1) * (vx + vy + C2));
                }
            total += acc / (double)(Ho * Wo);
        }
        O[n] = (float)(total / (double)Cn);
        free(hp);
    }
    if (fail) {
        pivq_set_error("ssim: out of memory");
        pivq_tensor_release(out);
        out = NULL;
    }
done:
    pivq_tensor_release(xc);
    pivq_tensor_release(yc);
    return out;
}
