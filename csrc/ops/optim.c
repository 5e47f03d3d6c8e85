/* ops/optim.c — fused optimizer steps over a list of parameters, gradient clipping, and the
 * exponential moving average of weights.
 *
 * One call updates every parameter: per parameter one pass over (p, grad, state...), the
 * update of one element fully in registers. Parameters are leaves (contiguous float32);
 * their gradients are read from the autograd state. A parameter without a gradient is
 * skipped, as in PyTorch. Nothing here is recorded in the graph.
 */
#include "ops/ops.h"

#include <math.h>
#include <string.h>

static int same_shape(const pivq_tensor *a, const pivq_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

/* Validate parameter k and its state buffers; returns the gradient (borrowed) or NULL if it
   has none (*err set on a real error). */
static const pivq_tensor *param_grad(const char *F, pivq_tensor *p, int k,
                                     pivq_tensor *const *states, int nstates, int *err)
{
    *err = 0;
    char s[160], t[160];
    if (pivq_check_tensor(F, "parameter", p)) goto bad;
    if (p->scalar_type != PIVQ_FLOAT32 || !pivq_is_contiguous(p)) {
        pivq_set_error("%s: parameter %d (%s) must be contiguous float32", F, k + 1,
                       pivq_shape_str(p, s, sizeof s));
        goto bad;
    }
    for (int j = 0; j < nstates; j++) {
        const pivq_tensor *st = states[j];
        if (!st || st->scalar_type != PIVQ_FLOAT32 || !pivq_is_contiguous(st) ||
            !same_shape(st, p)) {
            pivq_set_error("%s: state %d of parameter %d must be a contiguous float32 tensor of "
                           "shape %s, got %s",
                           F, j + 1, k + 1, pivq_shape_str(p, s, sizeof s),
                           st ? pivq_shape_str(st, t, sizeof t) : "none");
            goto bad;
        }
    }
    if (!p->ag || !p->ag->grad) return NULL;
    const pivq_tensor *g = p->ag->grad;
    if (!pivq_is_contiguous(g) || !same_shape(g, p)) {
        pivq_set_error("%s: gradient of parameter %d is not contiguous of shape %s", F, k + 1,
                       pivq_shape_str(p, s, sizeof s));
        goto bad;
    }
    return g;
bad:
    *err = 1;
    return NULL;
}

int pivq_sgd_step(pivq_tensor *const *params, pivq_tensor *const *momentum_bufs, int n, double lr,
                  double momentum, double dampening, double weight_decay, int nesterov,
                  int64_t step)
{
    const char *F = "sgd_step";
    if (n < 0 || (n > 0 && !params)) return pivq_set_error("%s: bad parameter list", F);
    if (!(lr >= 0) || !(momentum >= 0) || !(weight_decay >= 0))
        return pivq_set_error("%s: need lr, momentum and weight_decay >= 0 (got %g, %g, %g)", F, lr,
                              momentum, weight_decay);
    if (nesterov && (momentum <= 0 || dampening != 0))
        return pivq_set_error("%s: nesterov needs momentum > 0 and dampening 0", F);
    if (momentum > 0 && !momentum_bufs)
        return pivq_set_error("%s: momentum needs momentum buffers", F);
    for (int k = 0; k < n; k++) {
        int err;
        const pivq_tensor *g = param_grad(F, params[k], k, momentum > 0 ? momentum_bufs + k : NULL,
                                          momentum > 0 ? 1 : 0, &err);
        if (err) return -1;
        if (!g) continue;
        float *p = pivq_data(params[k]);
        const float *gp = pivq_data(g);
        float *buf = momentum > 0 ? pivq_data(momentum_bufs[k]) : NULL;
        int64_t N = pivq_numel(params[k]);
        float flr = (float)lr, wd = (float)weight_decay, mu = (float)momentum;
        float damp = step <= 1 ? 0.0f : (float)dampening; /* the first step copies the grad */
        int nt = pivq_threads_for(N * 2);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int64_t i = 0; i < N; i++) {
            float d = gp[i] + wd * p[i];
            if (buf) {
                buf[i] = step <= 1 ? d : mu * buf[i] + (1.0f - damp) * d;
                d = nesterov ? d + mu * buf[i] : buf[i];
            }
            p[i] -= flr * d;
        }
    }
    return 0;
}

int pivq_adam_step(pivq_tensor *const *params, pivq_tensor *const *exp_avg,
                   pivq_tensor *const *exp_avg_sq, int n, double lr, double beta1, double beta2,
                   double eps, double weight_decay, int decoupled, int64_t step)
{
    const char *F = decoupled ? "adamw_step" : "adam_step";
    if (n < 0 || (n > 0 && (!params || !exp_avg || !exp_avg_sq)))
        return pivq_set_error("%s: bad parameter or state lists", F);
    if (!(lr >= 0) || !(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1) || !(eps >= 0) ||
        !(weight_decay >= 0) || step < 1)
        return pivq_set_error("%s: need lr >= 0, 0 <= betas < 1, eps >= 0, weight_decay >= 0, "
                              "step >= 1 (got %g, %g, %g, %g, %g, %lld)",
                              F, lr, beta1, beta2, eps, weight_decay, (long long)step);
    /* bias corrections folded into the step size and the denominator (PyTorch's form) */
    double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    float step_size = (float)(lr / bc1), inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    float b1 = (float)beta1, b2 = (float)beta2, fe = (float)eps, wd = (float)weight_decay;
    float decay = decoupled ? (float)(1.0 - lr * weight_decay) : 1.0f;
    for (int k = 0; k < n; k++) {
        pivq_tensor *states[2] = {exp_avg[k], exp_avg_sq[k]};
        int err;
        const pivq_tensor *g = param_grad(F, params[k], k, states, 2, &err);
        if (err) return -1;
        if (!g) continue;
        float *p = pivq_data(params[k]), *m = pivq_data(exp_avg[k]), *v = pivq_data(exp_avg_sq[k]);
        const float *gp = pivq_data(g);
        int64_t N = pivq_numel(params[k]);
        int nt = pivq_threads_for(N * 4);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int64_t i = 0; i < N; i++) {
            float gi = decoupled ? gp[i] : gp[i] + wd * p[i];
            m[i] = b1 * m[i] + (1.0f - b1) * gi;
            v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
            float denom = sqrtf(v[i]) * inv_sqrt_bc2 + fe;
            p[i] = p[i] * decay - step_size * m[i] / denom;
        }
    }
    return 0;
}

int pivq_grad_norm(pivq_tensor *const *params, int n, double norm_type, double *total)
{
    if (!total) return pivq_set_error("grad_norm: total is NULL");
    *total = 0;
    if (!(norm_type > 0))
        return pivq_set_error("grad_norm: norm_type must be > 0, got %g", norm_type);
    double acc = 0.0;
    int inf = isinf(norm_type);
    for (int k = 0; k < n; k++) {
        int err;
        const pivq_tensor *g = param_grad("grad_norm", params[k], k, NULL, 0, &err);
        if (err) return -1;
        if (!g) continue;
        const float *gp = pivq_data(g);
        int64_t N = pivq_numel(g);
        for (int64_t i = 0; i < N; i++) {
            double a = fabs((double)gp[i]);
            if (inf)
                acc = a > acc ? a : acc;
            else
                acc += norm_type == 2 ? a * a : pow(a, norm_type);
        }
    }
    *total = inf ? acc : (norm_type == 2 ? sqrt(acc) : pow(acc, 1.0 / norm_type));
    return 0;
}

int pivq_clip_grad_norm(pivq_tensor *const *params, int n, double max_norm, double norm_type,
                        double *total)
{
    if (!(max_norm >= 0))
        return pivq_set_error("clip_grad_norm: max_norm must be >= 0, got %g", max_norm);
    if (pivq_grad_norm(params, n, norm_type, total)) return -1;
    double coef = max_norm / (*total + 1e-6); /* PyTorch's epsilon */
    if (coef >= 1.0) return 0;
    for (int k = 0; k < n; k++) {
        if (!params[k]->ag || !params[k]->ag->grad) continue;
        float *gp = pivq_data(params[k]->ag->grad);
        int64_t N = pivq_numel(params[k]);
        for (int64_t i = 0; i < N; i++)
            gp[i] *= (float)coef;
    }
    return 0;
}

int pivq_ema_update(pivq_tensor *const *shadow, pivq_tensor *const *params, int n, double decay)
{
    if (!(decay >= 0 && decay <= 1))
        return pivq_set_error("ema_update: decay must be in [0, 1], got %g", decay);
    for (int k = 0; k < n; k++) {
        pivq_tensor *s = shadow[k], *p = params[k];
        char a[160], b[160];
        if (!s || !p || s->scalar_type != PIVQ_FLOAT32 || p->scalar_type != PIVQ_FLOAT32 ||
            !same_shape(s, p) || !pivq_is_contiguous(s) || !pivq_is_contiguous(p))
            return pivq_set_error("ema_update: entry %d: shadow %s and parameter %s must be "
                                  "contiguous float32 of one shape",
                                  k + 1, s ? pivq_shape_str(s, a, sizeof a) : "none",
                                  p ? pivq_shape_str(p, b, sizeof b) : "none");
        float *sp = pivq_data(s);
        const float *pp = pivq_data(p);
        float d = (float)decay;
        int64_t N = pivq_numel(p);
        for (int64_t i = 0; i < N; i++)
            sp[i] = d * sp[i] + (1.0f - d) * pp[i];
    }
    return 0;
}
