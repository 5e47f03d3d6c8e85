/* ops/conv_dnnl.h — conv2d's oneDNN engine (ops/conv_dnnl.c), called by ops/conv.c (and its
 * engine start, by ops/bf16.c). Not public API.
 *
 * Each call returns 1 when oneDNN computed the result, 0 when the im2col path must (the engine
 * is set to im2col, pivq was built without oneDNN, or oneDNN has no implementation for this
 * shape: nothing was written then), or -1 after pivq_set_error (a oneDNN failure, named after F).
 */
#ifndef PIVQ_CONV_DNNL_H
#define PIVQ_CONV_DNNL_H

#include <stdint.h>

/* One convolution, in PyTorch's layouts: x (N, C, H, W), w (O, C/groups, kh, kw),
   y (N, O, Ho, Wo), all contiguous float32. Padding is symmetric; Ho and Wo are the caller's
   (floor) output size. */
typedef struct pivq_dnnl_conv {
    int64_t N, C, H, W, O, kh, kw, Ho, Wo;
    int64_t sh, sw, ph, pw, dh, dw, groups;
} pivq_dnnl_conv;

/* y = conv(x, w) + b (b may be NULL) */
int pivq_dnnl_conv_forward(const char *F, const pivq_dnnl_conv *c, const float *x, const float *w,
                           const float *b, float *y);
/* dx = the input gradient (if dx), dw = the weight gradient (if dw), both overwritten */
int pivq_dnnl_conv_backward(const char *F, const pivq_dnnl_conv *c, const float *x, const float *w,
                            const float *dy, float *dx, float *dw);

#ifdef PIVQ_HAVE_DNNL
#include <dnnl.h>
/* Create a oneDNN CPU engine and stream the first time (*state 0 -> 1 ready, or -1 unusable:
   the caller falls back to its fp32 / im2col path); later calls return *state. The caller
   holds its own lock. Shared by this file and ops/bf16.c, each with its own engine and stream. */
int pivq_dnnl_start(int *state, dnnl_engine_t *eng, dnnl_stream_t *stream);
#endif

#endif
