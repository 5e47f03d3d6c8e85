/* ops/conv.c — 2-D convolution and transposed convolution: oneDNN, or im2col + sgemm.
 *
 * Each entry point first offers the work to oneDNN (ops/conv_dnnl.c: the engine PyTorch uses, its
 * JIT direct convolution ran the benchmark's stack faster than this file's path with the sgemm
 * at the machine's peak). The im2col path below runs when pivq is built without oneDNN, when
 * oneDNN has no implementation for a shape, and when the engine is set to PIVQ_CONV_IM2COL
 * (pivq_conv_set_engine, PIVQ_CONV=im2col): the specs check both against the direct reference.
 *
 * Layouts (PyTorch's): x (N, C, H, W); conv weight (O, C/groups, kH, kW); transposed-conv
 * weight (C, O/groups, kH, kW); bias (O).
 *
 * Images are processed in chunks of nb: im2col lays the chunk's patches side by side as
 * columns, cols (C kH kW, nb Ho Wo), so each group is ONE sgemm with a wide right-hand side
 * (per-image products of late layers have only Ho Wo = 49 columns, which BLAS runs far below
 * its peak). The product comes out channel-major (O, nb Ho Wo) and is scattered back to
 * (nb, O, Ho Wo) with the bias. conv2d builds a chunk's columns a slice of input channels at
 * a time, so that they stay in cache (see CHUNK_COLUMNS); conv_transpose2d sizes chunks so
 * cols stays near 2 MB. With several threads and enough chunks, each thread takes whole chunks
 * (image-parallel mode, no barrier between the steps); otherwise the steps of one chunk use all
 * threads. With AVX-512 and rows of at most 32 pixels, im2col and col2im move whole rows through
 * in-register permutes (see rowperm); otherwise they go through a table of each kernel tap's source
 * offsets (see tap_table). col2im overwrites its images, so dx and y need no zero fill.
 * The backward recomputes the columns rather than keeping them from the forward.
 *
 *   conv forward:      Y_g = W_g (Og, Cg k k) @ cols_g            (summed over channel slices)
 *   conv backward:     dW_g += dY_g (Og, nb P) @ cols_g^T
 *                      dcols_g = W_g^T @ dY_g -> col2im -> dx
 *                      (per channel slice: its columns of dW_g, rows of dcols, planes of dx)
 *   conv_t forward:    cols_g = W_g^T (Og k k, Cg) @ X_g (Cg, nb P) -> col2im -> y
 *   conv_t backward:   cols = im2col(dy);  dX_g = W_g @ cols_g;  dW_g += X_g @ cols_g^T
 * pivq_conv2d_reference beside it is the direct 7-loop definition the specs compare with.
 *
 * Measured and left alone (the benchmark's stack, 1 thread, perf samples per symbol over the
 * same steps): skipping the kernel taps that lie wholly in the padding. With 4x4 taps, stride 2,
 * padding 1, a border output row or column sees 3 of the 4 kernel rows or columns, so 7%
 * (14x14 outputs) and 14% (7x7) of those sgemms multiply zeros, 9% of the stack's work. Split
 * into regions with only their taps (a smaller K per sgemm), the sgemm time fell by 13% (border
 * rows and one-column strips) or 5% (rows only), but im2col and col2im on the regions cost
 * more than that: a one-column strip spends a permute and a masked store on every element
 * (im2col x2.5, col2im x3: the stack 25% slower); border-row regions run in their own pass
 * re-read a few lines of every input plane, a miss each (im2col +30%, col2im +40%: even);
 * built inside the chunk loop instead, their all-image column buffers leave the cache
 * (im2col +50%, col2im +100%: 3% slower). Other orientations of the 7x7 layer's forward
 * (cols^T W^T; one sgemm over the whole batch and all of K) run slower than these chunks
 * (86-93 against 104 GFLOP/s alone). PyTorch's CPU convolution here is oneDNN's JIT direct
 * convolution, which needs neither im2col nor packed copies and skips the padded taps.
 */
#include "ops/ops.h"
#include "ops/conv_dnnl.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

/* Geometry of one convolution: an "image" side (C, H, W) and a "patch grid" side (Ho, Wo). */
typedef struct geom {
    int64_t C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo;
    int64_t Cs; /* channels between one image and the next: C, or more for a channel slice */
} geom;

/* conv_transpose2d's chunks: the largest cols buffer we aim for, in floats (2 MB), small
   enough to stay near the core between the step that writes it and the one that reads it,
   wide enough for sgemm to run at speed. */
#define COLS_BUDGET ((int64_t)1 << 19)

/* conv2d goes further: a chunk of nb images gives its sgemms up to CHUNK_COLUMNS columns
   (nb Ho Wo; at least one image), and its columns are built a slice of cs input channels at a
   time (cs kh kw rows, at most SLICE_FLOATS floats, 512 KB), each slice multiplied (forward:
   its share of Y, added; backward: its share of dW, and its rows of dcols folded back into its
   channels of dx) before the next is built. The columns then stay in the core's own cache
   between the step that writes them and the sgemm that reads them, while the sgemm still sees
   a wide matrix. On the benchmark's stack this is 3-4% faster than whole 2 MB chunks; 768 to
   1024 columns and 256 to 512 KB slices measured alike (loaded machine). */
#define CHUNK_COLUMNS 1024
#define SLICE_FLOATS ((int64_t)1 << 17)

static int64_t chunk_for_columns(int64_t N, int64_t P)
{
    int64_t nb = P > 0 ? CHUNK_COLUMNS / P : N;
    if (nb < 1) nb = 1;
    return nb < N ? nb : N;
}

/* channels per slice of a group of Cg channels, for chunks of ncol columns */
static int64_t slice_channels(int64_t Cg, int64_t KK, int64_t ncol)
{
    int64_t cs = KK * ncol > 0 ? SLICE_FLOATS / (KK * ncol) : Cg;
    if (cs < 1) cs = 1;
    return cs < Cg ? cs : Cg;
}

static int64_t chunk_images(int64_t N, int64_t floats_per_image)
{
    int64_t nb = floats_per_image > 0 ? COLS_BUDGET / floats_per_image : N;
    if (nb < 1) nb = 1;
    return nb < N ? nb : N;
}

/* Output columns ox whose input column ox * sw + x0 lies inside [0, W): [*lo, *hi). Computing
   the range once per kernel column keeps bounds checks out of the inner loops. */
static void valid_range(int64_t x0, int64_t sw, int64_t W, int64_t Wo, int64_t *lo, int64_t *hi)
{
    int64_t l = x0 < 0 ? (-x0 + sw - 1) / sw : 0;
    int64_t h = W - x0 > 0 ? (W - x0 + sw - 1) / sw : 0;
    if (h > Wo) h = Wo;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* The tap table of a geometry: tab[t P + q] = offset inside an input plane of the pixel that
   output position q reads through kernel tap t = (i, j), or -1 where that falls in the padding.
   With it im2col is one gather per column row (no per-row bounds logic; AVX-512 gathers it)
   and col2im one scatter-add; the table (kh kw Ho Wo ints) stays in cache. NULL if the plane
   is too large for int32 offsets or memory is short (the callers then use the row loops). */
static int32_t *tap_table(const geom *g)
{
    int64_t P = g->Ho * g->Wo, KK = g->kh * g->kw;
    if (g->H * g->W >= INT32_MAX) return NULL;
    int32_t *tab = malloc((size_t)(KK * P > 0 ? KK * P : 1) * sizeof *tab);
    if (!tab) return NULL;
    for (int64_t i = 0; i < g->kh; i++)
        for (int64_t j = 0; j < g->kw; j++) {
            int32_t *t = tab + (i * g->kw + j) * P;
            for (int64_t oy = 0; oy < g->Ho; oy++) {
                int64_t iy = oy * g->sh - g->ph + i * g->dh;
                for (int64_t ox = 0; ox < g->Wo; ox++) {
                    int64_t ix = ox * g->sw - g->pw + j * g->dw;
                    int ok = iy >= 0 && iy < g->H && ix >= 0 && ix < g->W;
                    t[oy * g->Wo + ox] = ok ? (int32_t)(iy * g->W + ix) : -1;
                }
            }
        }
    return tab;
}

/* cols (C kh kw, nb Ho Wo) <- patches of img (nb, C, H, W); zero where the patch leaves the
   image (padding). Rows (c, i, j) and images are independent: parallel over both. */
static void im2col_rows(const float *img, float *cols, int64_t nb, const geom *g, int nt)
{
    int64_t P = g->Ho * g->Wo, R = g->C * g->kh * g->kw, ncol = nb * P;
#pragma omp parallel for collapse(2) num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t r = 0; r < R; r++)
        for (int64_t b = 0; b < nb; b++) {
            int64_t c = r / (g->kh * g->kw), i = (r / g->kw) % g->kh, j = r % g->kw;
            const float *src = img + (b * g->Cs + c) * g->H * g->W;
            float *dst = cols + r * ncol + b * P;
            int64_t x0 = j * g->dw - g->pw, lo, hi; /* ix = ox * sw + x0 */
            valid_range(x0, g->sw, g->W, g->Wo, &lo, &hi);
            for (int64_t oy = 0; oy < g->Ho; oy++) {
                int64_t iy = oy * g->sh - g->ph + i * g->dh;
                float *d = dst + oy * g->Wo;
                if (iy < 0 || iy >= g->H) {
                    memset(d, 0, (size_t)g->Wo * sizeof *d);
                    continue;
                }
                const float *s = src + iy * g->W; /* input row; column ox * sw + x0 */
                for (int64_t ox = 0; ox < lo; ox++)
                    d[ox] = 0.0f;
                if (g->sw == 1) {
                    if (hi > lo) memcpy(d + lo, s + lo + x0, (size_t)(hi - lo) * sizeof *d);
                } else if (g->sw == 2) {
                    for (int64_t ox = lo; ox < hi; ox++)
                        d[ox] = s[2 * ox + x0];
                } else {
                    for (int64_t ox = lo; ox < hi; ox++)
                        d[ox] = s[ox * g->sw + x0];
                }
                for (int64_t ox = hi; ox < g->Wo; ox++)
                    d[ox] = 0.0f;
            }
        }
}

/* img (nb, C, H, W) += the columns folded back (the adjoint of im2col). Parallel over
   (image, channel) planes: each plane is written by its own rows only. */
static void col2im_rows(const float *cols, float *img, int64_t nb, const geom *g, int nt)
{
    int64_t P = g->Ho * g->Wo, ncol = nb * P;
#pragma omp parallel for collapse(2) num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t b = 0; b < nb; b++)
        for (int64_t c = 0; c < g->C; c++) {
            float *dst = img + (b * g->Cs + c) * g->H * g->W;
            for (int64_t i = 0; i < g->kh; i++)
                for (int64_t j = 0; j < g->kw; j++) {
                    const float *src = cols + ((c * g->kh + i) * g->kw + j) * ncol + b * P;
                    int64_t x0 = j * g->dw - g->pw, lo, hi;
                    valid_range(x0, g->sw, g->W, g->Wo, &lo, &hi);
                    if (g->sw == 2 && g->dw == 1 && j + 1 < g->kw) {
                        /* taps j and j+1 of a stride-2 kernel fill the even and odd columns of
                           one contiguous run: add both rows interleaved (vectorises, where one
                           tap at a time is a stride-2 scatter) */
                        const float *src1 = src + ncol;
                        int64_t lo1, hi1;
                        valid_range(x0 + 1, 2, g->W, g->Wo, &lo1, &hi1);
                        int64_t a = lo > lo1 ? lo : lo1, z = hi < hi1 ? hi : hi1;
                        for (int64_t oy = 0; oy < g->Ho; oy++) {
                            int64_t iy = oy * g->sh - g->ph + i * g->dh;
                            if (iy < 0 || iy >= g->H) continue;
                            float *d = dst + iy * g->W;
                            const float *s0 = src + oy * g->Wo, *s1 = src1 + oy * g->Wo;
                            for (int64_t ox = a; ox < z; ox++) {
                                d[2 * ox + x0] += s0[ox];
                                d[2 * ox + x0 + 1] += s1[ox];
                            }
                            /* the edges where only one tap of the pair is inside */
                            for (int64_t ox = lo; ox < (a < hi ? a : hi); ox++)
                                d[2 * ox + x0] += s0[ox];
                            for (int64_t ox = z > lo ? z : lo; ox < hi; ox++)
                                d[2 * ox + x0] += s0[ox];
                            for (int64_t ox = lo1; ox < (a < hi1 ? a : hi1); ox++)
                                d[2 * ox + x0 + 1] += s1[ox];
                            for (int64_t ox = z > lo1 ? z : lo1; ox < hi1; ox++)
                                d[2 * ox + x0 + 1] += s1[ox];
                        }
                        j++; /* the pair is done */
                        continue;
                    }
                    for (int64_t oy = 0; oy < g->Ho; oy++) {
                        int64_t iy = oy * g->sh - g->ph + i * g->dh;
                        if (iy < 0 || iy >= g->H) continue;
                        float *d = dst + iy * g->W; /* image row; column ox * sw + x0 */
                        const float *s = src + oy * g->Wo;
                        if (g->sw == 1) {
                            for (int64_t ox = lo; ox < hi; ox++)
                                d[ox + x0] += s[ox];
                        } else if (g->sw == 2) {
                            for (int64_t ox = lo; ox < hi; ox++)
                                d[2 * ox + x0] += s[ox];
                        } else {
                            for (int64_t ox = lo; ox < hi; ox++)
                                d[ox * g->sw + x0] += s[ox];
                        }
                    }
                }
        }
}

#if defined(__AVX512F__)
/* ---- rows of at most 32 pixels: im2col and col2im as in-register permutes ----------------------

   On the benchmark's layers (rows of 7 to 28 pixels) the tap table's gathers dominate im2col:
   AVX-512 gathers are slow on this CPU (the store after each one waits ~25 cycles). When an
   input row and an output row each fit in two vectors (W, Wo <= 32), one masked load brings
   an input row into registers and one vpermt2ps per kernel column j builds the output row
   d[ox] = s[ox sw + j dw - pw] (zero in the padding), so each input row is read once for all
   kw taps. col2im is the inverse permute: each image row gathers its sum over every (i, j)
   tap in registers and is stored once, which also makes zero-filling dx unnecessary. */
#define ROW_MAX 32
#define KW_MAX 16

typedef struct rowperm {
    __m512i idx[KW_MAX][2];    /* per kernel column j: source lane of each of 32 output lanes */
    __mmask16 take[KW_MAX][2]; /* lanes with a source inside the row (others become 0) */
    __mmask16 in[2], out[2];   /* the lanes of a source row and of a destination row */
} rowperm;

static int rowperm_fits(const geom *g)
{
    return g->W <= ROW_MAX && g->Wo <= ROW_MAX && g->kw <= KW_MAX;
}

static __mmask16 lanes(int64_t n, int half) /* the first n of 32 lanes, in vector `half` */
{
    int64_t k = n - 16 * half;
    return k <= 0 ? 0 : k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << k) - 1);
}

/* forward (im2col): out lane ox of tap j reads in lane ox sw + x0 (x0 = j dw - pw), for
   ox < Wo; inverse (col2im): out lane ix reads in lane (ix - x0) / sw when that divides and
   is < Wo, for ix < W. */
static void rowperm_init(rowperm *rp, const geom *g, int inverse)
{
    int64_t nin = inverse ? g->Wo : g->W, nout = inverse ? g->W : g->Wo;
    for (int h = 0; h < 2; h++) {
        rp->in[h] = lanes(nin, h);
        rp->out[h] = lanes(nout, h);
    }
    for (int64_t j = 0; j < g->kw; j++) {
        int32_t ix[ROW_MAX];
        uint32_t ok = 0;
        int64_t x0 = j * g->dw - g->pw;
        for (int64_t o = 0; o < ROW_MAX; o++) {
            int64_t src = -1;
            if (o < nout) {
                if (!inverse)
                    src = o * g->sw + x0;
                else if (o - x0 >= 0 && (o - x0) % g->sw == 0)
                    src = (o - x0) / g->sw;
            }
            int valid = src >= 0 && src < nin;
            ix[o] = valid ? (int32_t)src : 0;
            if (valid) ok |= 1u << o;
        }
        for (int h = 0; h < 2; h++) {
            rp->idx[j][h] = _mm512_loadu_si512((const void *)(ix + 16 * h));
            rp->take[j][h] = (__mmask16)(ok >> (16 * h));
        }
    }
}

/* One (channel, image) plane into its kh kw column rows (dst: row (c, 0, 0) at this image,
   rows ncol apart). A row is stored 16 lanes wide (cheaper than a masked store) when at least
   16 floats of its segment remain from it: the extra lanes fall on the later rows oy + 1, ..
   of the same segment, which are stored after it (oy is the outer loop). */
static void im2col_plane(const float *restrict src, float *restrict dst, const rowperm *restrict rp,
                         const geom *gp, int64_t ncol)
{
    const geom g = *gp; /* locals: the stores below cannot change them */
    for (int64_t i = 0; i < g.kh; i++)
        for (int64_t oy = 0; oy < g.Ho; oy++) {
            int64_t iy = oy * g.sh - g.ph + i * g.dh;
            __m512 s0 = _mm512_setzero_ps(), s1 = s0;
            if (iy >= 0 && iy < g.H) {
                s0 = _mm512_maskz_loadu_ps(rp->in[0], src + iy * g.W);
                if (rp->in[1]) s1 = _mm512_maskz_loadu_ps(rp->in[1], src + iy * g.W + 16);
            }
            float *d = dst + i * g.kw * ncol + oy * g.Wo;
            int64_t left = (g.Ho - oy) * g.Wo; /* floats of the segment from this row on */
            __mmask16 m0 = left >= 16 ? (__mmask16)0xffff : rp->out[0];
            __mmask16 m1 = left >= 32 ? (__mmask16)0xffff : rp->out[1];
            for (int64_t j = 0; j < g.kw; j++, d += ncol) {
                _mm512_mask_storeu_ps(
                    d, m0, _mm512_maskz_permutex2var_ps(rp->take[j][0], s0, rp->idx[j][0], s1));
                if (rp->out[1])
                    _mm512_mask_storeu_ps(
                        d + 16, m1,
                        _mm512_maskz_permutex2var_ps(rp->take[j][1], s0, rp->idx[j][1], s1));
            }
        }
}

/* cols (C kh kw, nb Ho Wo) <- patches of img (nb, C, H, W), by (channel, image) planes */
static void im2col_perm(const float *img, float *cols, int64_t nb, const geom *g, int nt)
{
    rowperm rp;
    rowperm_init(&rp, g, 0);
    int64_t P = g->Ho * g->Wo, ncol = nb * P, KK = g->kh * g->kw;
#pragma omp parallel for collapse(2) num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t c = 0; c < g->C; c++)
        for (int64_t b = 0; b < nb; b++)
            im2col_plane(img + (b * g->Cs + c) * g->H * g->W, cols + c * KK * ncol + b * P, &rp, g,
                         ncol);
}

/* One (image, channel) plane from its kh kw column rows (src: row (c, 0, 0) at this image):
   each image row sums its taps in registers and is stored once. */
static void col2im_plane(const float *restrict src, float *restrict dst, const rowperm *restrict rp,
                         const geom *gp, int64_t ncol)
{
    const geom g = *gp;
    for (int64_t iy = 0; iy < g.H; iy++) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, z = a0;
        for (int64_t i = 0; i < g.kh; i++) {
            int64_t t = iy + g.ph - i * g.dh; /* = oy sh */
            if (t < 0 || t % g.sh || t / g.sh >= g.Ho) continue;
            const float *s = src + i * g.kw * ncol + (t / g.sh) * g.Wo;
            for (int64_t j = 0; j < g.kw; j++, s += ncol) {
                __m512 s0 = _mm512_maskz_loadu_ps(rp->in[0], s),
                       s1 = rp->in[1] ? _mm512_maskz_loadu_ps(rp->in[1], s + 16) : z;
                a0 = _mm512_add_ps(
                    a0, _mm512_maskz_permutex2var_ps(rp->take[j][0], s0, rp->idx[j][0], s1));
                if (rp->out[1])
                    a1 = _mm512_add_ps(
                        a1, _mm512_maskz_permutex2var_ps(rp->take[j][1], s0, rp->idx[j][1], s1));
            }
        }
        _mm512_mask_storeu_ps(dst + iy * g.W, rp->out[0], a0);
        if (rp->out[1]) _mm512_mask_storeu_ps(dst + iy * g.W + 16, rp->out[1], a1);
    }
}

/* img (nb, C, H, W) = the columns folded back (overwritten, not added to), by planes; channel
   outer, so that consecutive planes read on along the same kh kw column rows */
static void col2im_perm(const float *cols, float *img, int64_t nb, const geom *g, int nt)
{
    rowperm rp;
    rowperm_init(&rp, g, 1);
    int64_t P = g->Ho * g->Wo, ncol = nb * P, KK = g->kh * g->kw;
#pragma omp parallel for collapse(2) num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t c = 0; c < g->C; c++)
        for (int64_t b = 0; b < nb; b++)
            col2im_plane(cols + c * KK * ncol + b * P, img + (b * g->Cs + c) * g->H * g->W, &rp, g,
                         ncol);
}
#endif

/* im2col through the tap table (see tap_table); the padding reads offset 0 and is masked. */
static void im2col(const float *img, float *cols, int64_t nb, const geom *g, int nt)
{
#if defined(__AVX512F__)
    if (rowperm_fits(g)) {
        im2col_perm(img, cols, nb, g, nt);
        return;
    }
#endif
    int32_t *tab = tap_table(g);
    if (!tab) {
        im2col_rows(img, cols, nb, g, nt);
        return;
    }
    int64_t P = g->Ho * g->Wo, KK = g->kh * g->kw, R = g->C * KK, ncol = nb * P;
#pragma omp parallel for collapse(2) num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t r = 0; r < R; r++)
        for (int64_t b = 0; b < nb; b++) {
            const float *restrict src = img + (b * g->Cs + r / KK) * g->H * g->W;
            const int32_t *restrict t = tab + (r % KK) * P;
            float *restrict d = cols + r * ncol + b * P;
            int64_t q = 0;
#if defined(__AVX512F__)
            /* 16 lanes per masked gather (the compiler does not vectorise the loop below) */
            for (; q + 16 <= P; q += 16) {
                __m512i ix = _mm512_loadu_si512((const void *)(t + q));
                __mmask16 in = _mm512_cmpge_epi32_mask(ix, _mm512_setzero_si512());
                _mm512_storeu_ps(d + q,
                                 _mm512_mask_i32gather_ps(_mm512_setzero_ps(), in, ix, src, 4));
            }
#elif defined(__AVX2__)
            for (; q + 8 <= P; q += 8) {
                __m256i ix = _mm256_loadu_si256((const __m256i *)(t + q));
                __m256 in = _mm256_castsi256_ps(_mm256_cmpgt_epi32(ix, _mm256_set1_epi32(-1)));
                _mm256_storeu_ps(d + q,
                                 _mm256_mask_i32gather_ps(_mm256_setzero_ps(), src, ix, in, 4));
            }
#endif
            for (; q < P; q++)
                d[q] = t[q] < 0 ? 0.0f : src[t[q]];
        }
    free(tab);
}

/* img (nb, C, H, W) = the columns folded back (overwritten). Through the tap table: per
   (image, channel) plane, zeroed, each tap's row is scatter-added (one tap never hits a pixel
   twice). */
static void col2im(const float *cols, float *img, int64_t nb, const geom *g, int nt)
{
#if defined(__AVX512F__)
    if (rowperm_fits(g)) {
        col2im_perm(cols, img, nb, g, nt);
        return;
    }
#endif
    int32_t *tab = tap_table(g);
    if (!tab) {
        for (int64_t b = 0; b < nb; b++)
            memset(img + b * g->Cs * g->H * g->W, 0, (size_t)(g->C * g->H * g->W) * sizeof *img);
        col2im_rows(cols, img, nb, g, nt);
        return;
    }
    int64_t P = g->Ho * g->Wo, KK = g->kh * g->kw, ncol = nb * P;
#pragma omp parallel for collapse(2) num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t b = 0; b < nb; b++)
        for (int64_t c = 0; c < g->C; c++) {
            float *restrict dst = img + (b * g->Cs + c) * g->H * g->W;
            memset(dst, 0, (size_t)(g->H * g->W) * sizeof *dst);
            for (int64_t k = 0; k < KK; k++) {
                const int32_t *restrict t = tab + k * P;
                const float *restrict s = cols + (c * KK + k) * ncol + b * P;
                for (int64_t q = 0; q < P; q++)
                    if (t[q] >= 0) dst[t[q]] += s[q];
            }
        }
    free(tab);
}

/* dst (C, nb P) <- src (nb, C, P): channel-major for the sgemm. */
static void to_channel_major(const float *src, float *dst, int64_t nb, int64_t C, int64_t P, int nt)
{
#pragma omp parallel for collapse(2) num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t c = 0; c < C; c++)
        for (int64_t b = 0; b < nb; b++)
            memcpy(dst + c * nb * P + b * P, src + (b * C + c) * P, (size_t)P * sizeof *dst);
}

/* dst (nb, C, P) <- src (C, nb P) (+ bias[c]) */
static void from_channel_major(const float *src, float *dst, const float *bias, int64_t nb,
                               int64_t C, int64_t P, int nt)
{
#pragma omp parallel for collapse(2) num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t b = 0; b < nb; b++)
        for (int64_t c = 0; c < C; c++) {
            const float *s = src + c * nb * P + b * P;
            float *d = dst + (b * C + c) * P;
            if (bias) {
                float bv = bias[c];
                for (int64_t p = 0; p < P; p++)
                    d[p] = s[p] + bv;
            } else {
                memcpy(d, s, (size_t)P * sizeof *d);
            }
        }
}

/* Weight gradient of one group when its patches are short (K <= SMALL_K, e.g. the first layer
   of an image model, C_in = 1: K = kh kw = 9): dW (Og, K) += sum over the chunk's m images of
   dY_b (Og, P) @ cols_b (K, P)^T, as one dot product per (o, k) read straight from dY's
   (m, O, P) layout. sgemm runs a 9-wide result far below speed and needs dY copied
   channel-major first; here each dY row is read from cache once per tap. dy: channel o0 of
   the chunk's first image; cols (K, m P); dw rows ldw apart. */
#define SMALL_K 16
static void wgrad_small_k(const float *dy, int64_t O, const float *cols, float *dw, int64_t ldw,
                          int64_t m, int64_t Og, int64_t K, int64_t P, int nt)
{
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t o = 0; o < Og; o++)
        for (int64_t k = 0; k < K; k++) {
            float s = 0.0f;
            for (int64_t b = 0; b < m; b++) {
                const float *restrict d = dy + (b * O + o) * P, *restrict c =
                                                                    cols + (k * m + b) * P;
#pragma omp simd reduction(+ : s)
                for (int64_t p = 0; p < P; p++)
                    s += d[p] * c[p];
            }
            dw[o * ldw + k] += s;
        }
}

/* Bias gradient: db[c] = sum over n and p of g (N, C, P). */
static void bias_grad(const float *g, float *db, int64_t N, int64_t C, int64_t P)
{
    int nt = pivq_threads_for(N * C * P);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t c = 0; c < C; c++) {
        double s = 0.0;
        for (int64_t n = 0; n < N; n++) {
            const float *r = g + (n * C + c) * P;
            float t = 0.0f;
            /* reassociating this short sum (one plane) lets it vectorise */
#pragma omp simd reduction(+ : t)
            for (int64_t p = 0; p < P; p++)
                t += r[p];
            s += t;
        }
        db[c] = (float)s;
    }
}

/* The helpers above take their thread count: 1 inside the image-parallel mode below (T > 1:
   each thread owns whole chunks), else as many as the step's work warrants. */
#define THREADS(work) (T > 1 ? 1 : pivq_threads_for(work))

/* GEMMs: serial inside the image-parallel mode, else split across the threads (ops/gemm_mt.c). */
typedef void (*sgemm_fn)(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                         float *C, int64_t ldc);
#define CHUNK_SGEMM (T > 1 ? pivq_sgemm_serial : pivq_sgemm_mt)

/* Image-parallel mode: with T > 1 threads and at least 2 T chunks, each thread takes whole
   chunks (im2col, single-threaded sgemm, scatter) with its own columns buffer: no barrier
   between the steps and no BLAS thread pool. Returns the thread count to use (1: off). */
/* Make the chunks equal (64 images in chunks of 9 would leave a last chunk of one image, whose
   sgemm runs far below speed) and, with T threads taking chunks, their count a multiple of T
   (chunks of 18 would leave one thread 36 images and the other 28). nb only shrinks. */
static void balance_chunks(int64_t N, int T, int64_t *nb, int64_t *nchunks)
{
    if (N <= 0) return;
    int64_t k = (*nchunks + T - 1) / T * T;
    *nb = (N + k - 1) / k;
    *nchunks = (N + *nb - 1) / *nb;
}

static int image_parallel_threads(int64_t nchunks)
{
    int nt = pivq_get_num_threads();
    return nt > 1 && nchunks >= 2 * nt ? nt : 1;
}

/* ---- argument checking ---------------------------------------------------------------------- */

static int check_params(const char *F, const pivq_conv_params *p)
{
    if (!p) return pivq_set_error("%s: params is NULL", F);
    for (int i = 0; i < 2; i++)
        if (p->stride[i] < 1 || p->padding[i] < 0 || p->dilation[i] < 1 || p->output_padding[i] < 0)
            return pivq_set_error("%s: need stride >= 1, padding >= 0, dilation >= 1, "
                                  "output_padding >= 0 (dim %d: %lld, %lld, %lld, %lld)",
                                  F, i, (long long)p->stride[i], (long long)p->padding[i],
                                  (long long)p->dilation[i], (long long)p->output_padding[i]);
    if (p->groups < 1)
        return pivq_set_error("%s: groups must be >= 1, got %lld", F, (long long)p->groups);
    return 0;
}

static int check_f32(const char *F, const char *arg, const pivq_tensor *t)
{
    if (pivq_check_tensor(F, arg, t)) return -1;
    if (t->scalar_type != PIVQ_FLOAT32)
        return pivq_set_error("%s: %s must be float32, got %s", F, arg,
                              pivq_dtype_name(t->scalar_type));
    return 0;
}

/* Geometry of conv2d(x, w): image x (C, H, W), patch grid (Ho, Wo). -1 on a mismatch. */
static int conv_geom(const char *F, const pivq_tensor *x, const pivq_tensor *w,
                     const pivq_tensor *b, const pivq_conv_params *p, geom *g)
{
    char sx[160], sw[160];
    if (x->ndim != 4 || w->ndim != 4 || x->shape[1] != w->shape[1] * p->groups ||
        w->shape[0] % p->groups != 0 || (b && (b->ndim != 1 || b->shape[0] != w->shape[0])))
        return pivq_set_error("%s: input %s (N, C, H, W) and weight %s (O, C/groups, kH, kW) "
                              "do not match with groups = %lld%s",
                              F, pivq_shape_str(x, sx, sizeof sx), pivq_shape_str(w, sw, sizeof sw),
                              (long long)p->groups, b ? " (or the bias is not (O))" : "");
    g->C = g->Cs = x->shape[1];
    g->H = x->shape[2];
    g->W = x->shape[3];
    g->kh = w->shape[2];
    g->kw = w->shape[3];
    g->sh = p->stride[0];
    g->sw = p->stride[1];
    g->ph = p->padding[0];
    g->pw = p->padding[1];
    g->dh = p->dilation[0];
    g->dw = p->dilation[1];
    g->Ho = (g->H + 2 * g->ph - g->dh * (g->kh - 1) - 1) / g->sh + 1;
    g->Wo = (g->W + 2 * g->pw - g->dw * (g->kw - 1) - 1) / g->sw + 1;
    if (g->H + 2 * g->ph - g->dh * (g->kh - 1) - 1 < 0 ||
        g->W + 2 * g->pw - g->dw * (g->kw - 1) - 1 < 0)
        return pivq_set_error("%s: the (dilated) kernel %lldx%lld is larger than the padded "
                              "input %lldx%lld",
                              F, (long long)g->kh, (long long)g->kw, (long long)(g->H + 2 * g->ph),
                              (long long)(g->W + 2 * g->pw));
    return 0;
}

/* ---- conv2d ------------------------------------------------------------------------------- */

/* The im2col forward: y (N, O, Ho, Wo) = conv(x, w) + b (bp may be NULL). 0, or -1 when out
   of memory for the columns. */
static int conv2d_im2col(const float *xp, const float *wp, const float *bp, float *yp, int64_t N,
                         int64_t O, int64_t G, const geom *gp)
{
    const geom g = *gp;
    int64_t Og = O / G, K = (g.C / G) * g.kh * g.kw, P = g.Ho * g.Wo;
    /* The backward recomputes the columns rather than the forward keeping the whole batch's:
       writing them out to memory and reading them back cost more than a second im2col from
       the input (8% more on the benchmark's stack, measured with the machine loaded). */
    int64_t nb = chunk_for_columns(N, P), nchunks = N > 0 ? (N + nb - 1) / nb : 0;
    int T = image_parallel_threads(nchunks);
    balance_chunks(N, T, &nb, &nchunks);
    int64_t Cg = g.C / G, KK = g.kh * g.kw, cs = slice_channels(Cg, KK, nb * P);
    /* per thread: one slice's columns (cs KK, nb P) and the product (O, nb P) */
    int64_t scratch = (cs * KK + O) * nb * P;
    int failed = 0;
    /* image-parallel mode: each thread takes whole chunks with single-threaded steps (no
       barrier between them); otherwise one chunk at a time, each step using all threads */
#pragma omp parallel num_threads(T) if (T > 1)
    {
        float *buf = malloc((size_t)(scratch > 0 ? scratch : 1) * sizeof(float));
#pragma omp for schedule(dynamic, 1)
        for (int64_t ci = 0; ci < nchunks; ci++) {
            if (!buf) {
                failed = 1;
                continue;
            }
            int64_t n0 = ci * nb, m = N - n0 < nb ? N - n0 : nb;
            float *cols = buf, *Ycm = buf + cs * KK * nb * P;
            for (int64_t gi = 0; gi < G; gi++)
                for (int64_t c0 = 0; c0 < Cg; c0 += cs) { /* input channels gi Cg + c0 .. + cn */
                    int64_t cn = Cg - c0 < cs ? Cg - c0 : cs;
                    geom gs = g;
                    gs.C = cn;
                    im2col(xp + (n0 * g.C + gi * Cg + c0) * g.H * g.W, cols, m, &gs,
                           THREADS(cn * KK * m * P));
                    /* Y_g (Og, m P) += W_g[:, c0 KK ..] (Og, cn KK) @ cols (cn KK, m P) */
                    CHUNK_SGEMM(0, 0, Og, m * P, cn * KK, 1.0f, wp + gi * Og * K + c0 * KK, K, cols,
                                m * P, c0 ? 1.0f : 0.0f, Ycm + gi * Og * m * P, m * P);
                }
            from_channel_major(Ycm, yp + n0 * O * P, bp, m, O, P, THREADS(O * m * P));
        }
        free(buf);
    }
    return failed ? -1 : 0;
}

/* The convolution as ops/conv_dnnl.c takes it. */
static pivq_dnnl_conv dnnl_shape(int64_t N, int64_t O, int64_t G, const geom *g)
{
    return (pivq_dnnl_conv){.N = N,
                            .C = g->C,
                            .H = g->H,
                            .W = g->W,
                            .O = O,
                            .kh = g->kh,
                            .kw = g->kw,
                            .Ho = g->Ho,
                            .Wo = g->Wo,
                            .sh = g->sh,
                            .sw = g->sw,
                            .ph = g->ph,
                            .pw = g->pw,
                            .dh = g->dh,
                            .dw = g->dw,
                            .groups = G};
}

/* The common start of conv2d and its reference: checks, geometry, contiguous operands and the
   output y (N, O, Ho, Wo). Returns -1 (error set) when a check fails or memory runs out; the
   caller releases what conv_operands holds either way (conv_operands_release). */
typedef struct conv_operands {
    geom g;
    pivq_tensor *xc, *wc, *bc, *y;
} conv_operands;

static int conv_operands_get(const char *F, const pivq_tensor *x, const pivq_tensor *w,
                             const pivq_tensor *b, const pivq_conv_params *p, conv_operands *c)
{
    memset(c, 0, sizeof *c);
    if (check_f32(F, "input", x) || check_f32(F, "weight", w) || (b && check_f32(F, "bias", b)) ||
        check_params(F, p) || conv_geom(F, x, w, b, p, &c->g))
        return -1;
    int64_t osz[4] = {x->shape[0], w->shape[0], c->g.Ho, c->g.Wo};
    c->xc = pivq_contiguous_nograd(x);
    c->wc = pivq_contiguous_nograd(w);
    c->bc = b ? pivq_contiguous_nograd(b) : NULL;
    c->y = pivq_empty(PIVQ_FLOAT32, 4, osz);
    return c->xc && c->wc && (!b || c->bc) && c->y ? 0 : -1;
}

static void conv_operands_release(conv_operands *c)
{
    pivq_tensor_release(c->xc);
    pivq_tensor_release(c->wc);
    pivq_tensor_release(c->bc);
    pivq_tensor_release(c->y);
}

pivq_tensor *pivq_conv2d(const pivq_tensor *x, const pivq_tensor *w, const pivq_tensor *b,
                         const pivq_conv_params *p)
{
    const char *F = "conv2d";
    conv_operands c;
    pivq_tensor *y = NULL;
    if (conv_operands_get(F, x, w, b, p, &c) == 0) {
        int64_t N = x->shape[0], O = w->shape[0];
        const float *xp = pivq_data(c.xc), *wp = pivq_data(c.wc);
        const float *bp = c.bc ? pivq_data(c.bc) : NULL;
        pivq_dnnl_conv dc = dnnl_shape(N, O, p->groups, &c.g);
        int rc = pivq_dnnl_conv_forward(F, &dc, xp, wp, bp, pivq_data(c.y)); /* 0: not oneDNN's */
        if (rc == 0 && conv2d_im2col(xp, wp, bp, pivq_data(c.y), N, O, p->groups, &c.g))
            rc = pivq_set_error("%s: out of memory for the columns", F);
        if (rc >= 0) y = pivq_tensor_retain(c.y); /* y (N, O, Ho, Wo) */
    }
    const pivq_tensor *in[3] = {x, w, b};
    if (y && pivq_ag_wants(3, in)) {
        pivq_node *nd = pivq_ag_record(PIVQ_GOP_CONV2D, y, 3, in);
        int save_rc = nd ? (pivq_ag_save(nd, 0, c.xc) || pivq_ag_save(nd, 1, c.wc)) : -1;
        if (nd) {
            nd->ip[0] = p->stride[0];
            nd->ip[1] = p->stride[1];
            nd->ip[2] = p->padding[0];
            nd->ip[3] = p->padding[1];
            nd->ip[4] = p->dilation[0];
            nd->ip[5] = p->dilation[1];
            nd->ip[6] = p->groups;
        }
        y = pivq_ag_finish(y, nd, save_rc);
    }
    conv_operands_release(&c);
    return y;
}

static void params_from_node(const pivq_node *n, pivq_conv_params *p)
{
    memset(p, 0, sizeof *p);
    p->stride[0] = n->ip[0];
    p->stride[1] = n->ip[1];
    p->padding[0] = n->ip[2];
    p->padding[1] = n->ip[3];
    p->dilation[0] = n->ip[4];
    p->dilation[1] = n->ip[5];
    p->groups = n->ip[6];
    p->output_padding[0] = n->fp[0];
    p->output_padding[1] = n->fp[1];
}

/* The im2col backward: dx (if dxp) and dw (if dwp) of y = conv(x, w), both overwritten, from
   gp = dy (N, O, Ho, Wo). 0, or -1 when out of memory. */
static int conv2d_backward_im2col(const float *xp, const float *wp, const float *gp, float *dxp,
                                  float *dwp, int64_t N, int64_t O, int64_t G, const geom *gg)
{
    const geom g = *gg;
    int64_t Og = O / G, K = (g.C / G) * g.kh * g.kw, P = g.Ho * g.Wo;
    int need_x = dxp != NULL, need_w = dwp != NULL;
    /* dx: each chunk's images are written by col2im (no zero fill); the chunks' products
       accumulate into dw with beta 1 */
    if (need_w) memset(dwp, 0, (size_t)(O * K) * sizeof(float));
    int64_t nb = chunk_for_columns(N, P);
    int64_t nchunks = N > 0 && (need_x || need_w) ? (N + nb - 1) / nb : 0;
    int T = image_parallel_threads(nchunks);
    balance_chunks(N, T, &nb, &nchunks);
    int64_t Cg = g.C / G, KK = g.kh * g.kw, cs = slice_channels(Cg, KK, nb * P);
    /* per thread: one slice's columns (cs KK, nb P) and dY channel-major (O, nb P); with
       T > 1 also its own partial dW (O, K), summed into dw at the end */
    int64_t scratch = (cs * KK + O) * nb * P;
    int failed = 0;
#pragma omp parallel num_threads(T) if (T > 1)
    {
        sgemm_fn gemm = CHUNK_SGEMM;
        float *buf = nchunks ? malloc((size_t)(scratch > 0 ? scratch : 1) * sizeof(float)) : NULL;
        float *pdw = !need_w || !nchunks ? NULL
                     : T > 1             ? calloc((size_t)(O * K > 0 ? O * K : 1), sizeof(float))
                                         : dwp;
#pragma omp for schedule(dynamic, 1)
        for (int64_t ci = 0; ci < nchunks; ci++) {
            if (!buf || (need_w && !pdw)) {
                failed = 1;
                continue;
            }
            int64_t n0 = ci * nb, m = N - n0 < nb ? N - n0 : nb;
            float *cols = buf, *Gcm = buf + cs * KK * nb * P; /* dY channel-major (O, m P) */
            if (need_x || K > SMALL_K)
                to_channel_major(gp + n0 * O * P, Gcm, m, O, P, THREADS(O * m * P));
            for (int64_t gi = 0; gi < G; gi++)
                for (int64_t c0 = 0; c0 < Cg; c0 += cs) { /* input channels gi Cg + c0 .. + cn */
                    int64_t cn = Cg - c0 < cs ? Cg - c0 : cs, Ks = cn * KK;
                    geom gs = g;
                    gs.C = cn;
                    int64_t at = (n0 * g.C + gi * Cg + c0) * g.H * g.W; /* the slice's planes */
                    float *dws = pdw ? pdw + gi * Og * K + c0 * KK : NULL;
                    if (need_w) { /* dW_g[:, c0 KK ..] (Og, Ks) += dY_g (Og, mP) @ cols^T */
                        im2col(xp + at, cols, m, &gs, THREADS(Ks * m * P));
                        if (K <= SMALL_K)
                            wgrad_small_k(gp + (n0 * O + gi * Og) * P, O, cols, dws, K, m, Og, Ks,
                                          P, THREADS(Og * Ks * m * P));
                        else
                            gemm(0, 1, Og, Ks, m * P, 1.0f, Gcm + gi * Og * m * P, m * P, cols,
                                 m * P, 1.0f, dws, K);
                    }
                    if (need_x) { /* dcols (Ks, mP) = W_g[:, c0 KK ..]^T @ dY_g -> dx slice */
                        gemm(1, 0, Ks, m * P, Og, 1.0f, wp + gi * Og * K + c0 * KK, K,
                             Gcm + gi * Og * m * P, m * P, 0.0f, cols, m * P);
                        col2im(cols, dxp + at, m, &gs, THREADS(Ks * m * P));
                    }
                }
        }
        if (T > 1 && pdw) {
#pragma omp critical(pivq_conv_dw)
            {
                for (int64_t i = 0; i < O * K; i++)
                    dwp[i] += pdw[i];
            }
            free(pdw);
        }
        free(buf);
    }
    return failed ? -1 : 0;
}

int pivq_conv2d_backward(pivq_node *n, const pivq_tensor *gy, pivq_tensor **gin)
{
    const char *F = "conv2d backward";
    const pivq_tensor *x = n->saved[0], *w = n->saved[1];
    pivq_conv_params p;
    params_from_node(n, &p);
    geom g;
    if (conv_geom(F, x, w, NULL, &p, &g)) return -1;
    int64_t N = x->shape[0], O = w->shape[0], P = g.Ho * g.Wo;
    int need_x = pivq_ag_needs(n, 0), need_w = pivq_ag_needs(n, 1), need_b = pivq_ag_needs(n, 2);
    pivq_tensor *dx = need_x ? pivq_empty(PIVQ_FLOAT32, 4, x->shape) : NULL; /* (N, C, H, W) */
    pivq_tensor *dw = need_w ? pivq_empty(PIVQ_FLOAT32, 4, w->shape) : NULL; /* (O, C/G, kh, kw) */
    pivq_tensor *db = need_b ? pivq_empty(PIVQ_FLOAT32, 1, &O) : NULL;       /* (O) */
    const float *xp = pivq_data(x), *wp = pivq_data(w), *gp = pivq_data(gy);
    float *dxp = dx ? pivq_data(dx) : NULL, *dwp = dw ? pivq_data(dw) : NULL;
    int rc = 0;
    if ((need_x && !dx) || (need_w && !dw) || (need_b && !db)) {
        rc = pivq_set_error("%s: out of memory", F);
    } else if (dx || dw) {
        pivq_dnnl_conv dc = dnnl_shape(N, O, p.groups, &g);
        rc = pivq_dnnl_conv_backward(F, &dc, xp, wp, gp, dxp, dwp); /* 0: not oneDNN's */
        if (rc == 0 && conv2d_backward_im2col(xp, wp, gp, dxp, dwp, N, O, p.groups, &g))
            rc = pivq_set_error("%s: out of memory for the columns", F);
    }
    if (rc < 0) {
        pivq_tensor_release(dx);
        pivq_tensor_release(dw);
        pivq_tensor_release(db);
        return -1;
    }
    if (need_b) bias_grad(gp, pivq_data(db), N, O, P);
    gin[0] = dx;
    gin[1] = dw;
    if (n->n_in > 2)
        gin[2] = db;
    else
        pivq_tensor_release(db);
    return 0;
}

/* ---- conv_transpose2d --------------------------------------------------------------------------
 */

/* Geometry: the image side is the OUTPUT y (O, Ho, Wo), the patch grid the input x (H, W). */
static int convt_geom(const char *F, const pivq_tensor *x, const pivq_tensor *w,
                      const pivq_tensor *b, const pivq_conv_params *p, geom *g, int64_t *O)
{
    char sx[160], sw[160];
    if (x->ndim != 4 || w->ndim != 4 || x->shape[1] != w->shape[0] || w->shape[0] % p->groups ||
        (b && (b->ndim != 1 || b->shape[0] != w->shape[1] * p->groups)))
        return pivq_set_error("%s: input %s (N, C, H, W) and weight %s (C, O/groups, kH, kW) "
                              "do not match with groups = %lld%s",
                              F, pivq_shape_str(x, sx, sizeof sx), pivq_shape_str(w, sw, sizeof sw),
                              (long long)p->groups, b ? " (or the bias is not (O))" : "");
    for (int i = 0; i < 2; i++)
        if (p->output_padding[i] >= p->stride[i] && p->output_padding[i] >= p->dilation[i])
            return pivq_set_error("%s: output_padding %lld must be smaller than stride or dilation",
                                  F, (long long)p->output_padding[i]);
    *O = w->shape[1] * p->groups;
    g->C = g->Cs = *O;
    g->kh = w->shape[2];
    g->kw = w->shape[3];
    g->sh = p->stride[0];
    g->sw = p->stride[1];
    g->ph = p->padding[0];
    g->pw = p->padding[1];
    g->dh = p->dilation[0];
    g->dw = p->dilation[1];
    g->Ho = x->shape[2];
    g->Wo = x->shape[3];
    g->H = (g->Ho - 1) * g->sh - 2 * g->ph + g->dh * (g->kh - 1) + p->output_padding[0] + 1;
    g->W = (g->Wo - 1) * g->sw - 2 * g->pw + g->dw * (g->kw - 1) + p->output_padding[1] + 1;
    if (g->H <= 0 || g->W <= 0)
        return pivq_set_error("%s: the output would be %lldx%lld", F, (long long)g->H,
                              (long long)g->W);
    return 0;
}

/* The im2col transposed convolution: y (N, O, Hout, Wout) = conv_t(x, w), without the bias.
   0, or -1 when out of memory for the columns. */
static int convt_im2col(const float *xp, const float *wp, float *yp, int64_t N, int64_t Cin,
                        int64_t O, int64_t G, const geom *gp)
{
    const geom g = *gp;
    int64_t Cg = Cin / G, Og = O / G;
    int64_t K = Og * g.kh * g.kw, P = g.Ho * g.Wo, R = O * g.kh * g.kw;
    int64_t nb = chunk_images(N, (R + Cin) * P);
    float *cols = malloc((size_t)((R + Cin) * nb * P > 0 ? (R + Cin) * nb * P : 1) * sizeof(float));
    if (!cols) return -1;
    const int T = 1; /* one chunk at a time, each step on all threads (see THREADS) */
    float *Xcm = cols + R * nb * P; /* x channel-major (Cin, nb P) */
    for (int64_t n0 = 0; n0 < N; n0 += nb) {
        int64_t m = N - n0 < nb ? N - n0 : nb;
        to_channel_major(xp + n0 * Cin * P, Xcm, m, Cin, P, THREADS(Cin * m * P));
        for (int64_t gi = 0; gi < G; gi++) /* cols_g (K, mP) = W_g^T (K, Cg) @ X_g (Cg, mP) */
            pivq_sgemm_mt(1, 0, K, m * P, Cg, 1.0f, wp + gi * Cg * K, K, Xcm + gi * Cg * m * P,
                          m * P, 0.0f, cols + gi * K * m * P, m * P);
        col2im(cols, yp + n0 * O * g.H * g.W, m, &g, THREADS(R * m * P));
    }
    free(cols);
    return 0;
}

pivq_tensor *pivq_conv_transpose2d(const pivq_tensor *x, const pivq_tensor *w, const pivq_tensor *b,
                                   const pivq_conv_params *p)
{
    const char *F = "conv_transpose2d";
    if (check_f32(F, "input", x) || check_f32(F, "weight", w) || (b && check_f32(F, "bias", b)) ||
        check_params(F, p))
        return NULL;
    geom g;
    int64_t O;
    if (convt_geom(F, x, w, b, p, &g, &O)) return NULL;
    int64_t N = x->shape[0], Cin = x->shape[1], G = p->groups;
    int64_t osz[4] = {N, O, g.H, g.W};
    pivq_tensor *xc = pivq_contiguous_nograd(x), *wc = pivq_contiguous_nograd(w);
    pivq_tensor *bc = b ? pivq_contiguous_nograd(b) : NULL;
    pivq_tensor *y = pivq_empty(PIVQ_FLOAT32, 4, osz); /* y (N, O, Hout, Wout) = fold(cols) */
    int rc = -1;
    if (xc && wc && (!b || bc) && y) {
        const float *xp = pivq_data(xc), *wp = pivq_data(wc);
        /* conv_t(x, w) is the input gradient of the conv2d from y (N, O, Hout, Wout) to x
           (N, Cin, H, W) with the same weight: g's image side is y, its patch grid x */
        pivq_dnnl_conv dc = dnnl_shape(N, Cin, G, &g);
        rc = pivq_dnnl_conv_backward(F, &dc, NULL, wp, xp, pivq_data(y), NULL); /* 0: im2col's */
        if (rc == 0 && convt_im2col(xp, wp, pivq_data(y), N, Cin, O, G, &g))
            rc = pivq_set_error("%s: out of memory for the columns", F);
    }
    if (rc < 0) {
        pivq_tensor_release(y);
        y = NULL;
        goto done;
    }
    if (bc) { /* + bias per output channel */
        const float *bp = pivq_data(bc);
        float *yp = pivq_data(y);
        int64_t HW = g.H * g.W;
        for (int64_t i = 0; i < N * O; i++) {
            float bv = bp[i % O];
            for (int64_t j = 0; j < HW; j++)
                yp[i * HW + j] += bv;
        }
    }
    const pivq_tensor *in[3] = {x, w, b};
    if (pivq_ag_wants(3, in)) {
        pivq_node *nd = pivq_ag_record(PIVQ_GOP_CONV_TRANSPOSE2D, y, 3, in);
        int save_rc = nd ? (pivq_ag_save(nd, 0, xc) || pivq_ag_save(nd, 1, wc)) : -1;
        if (nd) {
            nd->ip[0] = p->stride[0];
            nd->ip[1] = p->stride[1];
            nd->ip[2] = p->padding[0];
            nd->ip[3] = p->padding[1];
            nd->ip[4] = p->dilation[0];
            nd->ip[5] = p->dilation[1];
            nd->ip[6] = p->groups;
            nd->fp[0] = (double)p->output_padding[0];
            nd->fp[1] = (double)p->output_padding[1];
        }
        y = pivq_ag_finish(y, nd, save_rc);
    }
done:
    pivq_tensor_release(xc);
    pivq_tensor_release(wc);
    pivq_tensor_release(bc);
    return y;
}

/* The im2col backward of conv_transpose2d: dx (if dxp) and dw (if dwp), both overwritten, from
   gp = dy (N, O, Hout, Wout). 0, or -1 when out of memory. */
static int convt_backward_im2col(const float *xp, const float *wp, const float *gp, float *dxp,
                                 float *dwp, int64_t N, int64_t Cin, int64_t O, int64_t G,
                                 const geom *gg)
{
    const geom g = *gg;
    int64_t Cg = Cin / G, Og = O / G;
    int64_t K = Og * g.kh * g.kw, P = g.Ho * g.Wo, R = O * g.kh * g.kw;
    int64_t nb = chunk_images(N, (R + Cin) * P);
    float *cols = malloc((size_t)((R + Cin) * nb * P > 0 ? (R + Cin) * nb * P : 1) * sizeof(float));
    if (!cols) return -1;
    if (dwp) memset(dwp, 0, (size_t)(Cin * K) * sizeof(float)); /* the chunks add into it */
    const int T = 1; /* one chunk at a time, each step on all threads (see THREADS) */
    float *Xcm = cols + R * nb * P; /* x, then dx, channel-major (Cin, nb P) */
    for (int64_t n0 = 0; n0 < N && (dxp || dwp); n0 += nb) {
        int64_t m = N - n0 < nb ? N - n0 : nb;
        im2col(gp + n0 * O * g.H * g.W, cols, m, &g, THREADS(R * m * P)); /* cols (R, mP) of dy */
        if (dwp) {
            to_channel_major(xp + n0 * Cin * P, Xcm, m, Cin, P, THREADS(Cin * m * P));
            for (int64_t gi = 0; gi < G; gi++) /* dW_g (Cg, K) += X_g (Cg, mP) @ cols_g^T */
                pivq_sgemm_mt(0, 1, Cg, K, m * P, 1.0f, Xcm + gi * Cg * m * P, m * P,
                              cols + gi * K * m * P, m * P, 1.0f, dwp + gi * Cg * K, K);
        }
        if (dxp) {
            for (int64_t gi = 0; gi < G; gi++) /* dX_g (Cg, mP) = W_g (Cg, K) @ cols_g (K, mP) */
                pivq_sgemm_mt(0, 0, Cg, m * P, K, 1.0f, wp + gi * Cg * K, K, cols + gi * K * m * P,
                              m * P, 0.0f, Xcm + gi * Cg * m * P, m * P);
            from_channel_major(Xcm, dxp + n0 * Cin * P, NULL, m, Cin, P, THREADS(Cin * m * P));
        }
    }
    free(cols);
    return 0;
}

int pivq_conv_transpose2d_backward(pivq_node *n, const pivq_tensor *gy, pivq_tensor **gin)
{
    const char *F = "conv_transpose2d backward";
    const pivq_tensor *x = n->saved[0], *w = n->saved[1];
    pivq_conv_params p;
    params_from_node(n, &p);
    geom g;
    int64_t O;
    if (convt_geom(F, x, w, NULL, &p, &g, &O)) return -1;
    int64_t N = x->shape[0], Cin = x->shape[1], G = p.groups;
    int need_x = pivq_ag_needs(n, 0), need_w = pivq_ag_needs(n, 1), need_b = pivq_ag_needs(n, 2);
    pivq_tensor *dx = need_x ? pivq_empty(PIVQ_FLOAT32, 4, x->shape) : NULL;
    pivq_tensor *dw = need_w ? pivq_empty(PIVQ_FLOAT32, 4, w->shape) : NULL;
    pivq_tensor *db = need_b ? pivq_empty(PIVQ_FLOAT32, 1, &O) : NULL;
    const float *xp = pivq_data(x), *wp = pivq_data(w), *gp = pivq_data(gy);
    float *dxp = dx ? pivq_data(dx) : NULL, *dwp = dw ? pivq_data(dw) : NULL;
    int rc = 0;
    if ((need_x && !dx) || (need_w && !dw) || (need_b && !db)) {
        rc = pivq_set_error("%s: out of memory", F);
    } else if (dx || dw) {
        /* of the conv2d from y to x (see the forward): dx is its forward of dy, dw its weight
           gradient with dy as the input and x as the output's gradient. 1: done; 0: im2col's */
        pivq_dnnl_conv dc = dnnl_shape(N, Cin, G, &g);
        int rx = dx ? pivq_dnnl_conv_forward(F, &dc, gp, wp, NULL, dxp) : 1;
        int rw = dw && rx >= 0 ? pivq_dnnl_conv_backward(F, &dc, gp, NULL, xp, NULL, dwp) : 1;
        rc = rx < 0 || rw < 0 ? -1 : 0;
        if (rc == 0 && (!rx || !rw) &&
            convt_backward_im2col(xp, wp, gp, rx ? NULL : dxp, rw ? NULL : dwp, N, Cin, O, G, &g))
            rc = pivq_set_error("%s: out of memory for the columns", F);
    }
    if (rc < 0) {
        pivq_tensor_release(dx);
        pivq_tensor_release(dw);
        pivq_tensor_release(db);
        return -1;
    }
    if (need_b) bias_grad(gp, pivq_data(db), N, O, g.H * g.W);
    gin[0] = dx;
    gin[1] = dw;
    if (n->n_in > 2)
        gin[2] = db;
    else
        pivq_tensor_release(db);
    return 0;
}

/* ---- the naive reference ----------------------------------------------------------------------
 */

pivq_tensor *pivq_conv2d_reference(const pivq_tensor *x, const pivq_tensor *w, const pivq_tensor *b,
                                   const pivq_conv_params *p)
{
    conv_operands c;
    pivq_tensor *y = NULL;
    if (conv_operands_get("conv2d_reference", x, w, b, p, &c) == 0) {
        const geom g = c.g;
        int64_t N = x->shape[0], O = w->shape[0], G = p->groups, Og = O / G, Cg = g.C / G;
        const float *xp = pivq_data(c.xc), *wp = pivq_data(c.wc);
        const float *bp = c.bc ? pivq_data(c.bc) : NULL;
        float *yp = pivq_data(c.y);
        for (int64_t n = 0; n < N; n++)
            for (int64_t o = 0; o < O; o++)
                for (int64_t oy = 0; oy < g.Ho; oy++)
                    for (int64_t ox = 0; ox < g.Wo; ox++) {
                        double s = bp ? bp[o] : 0.0;
                        int64_t c0 = (o / Og) * Cg;
                        for (int64_t ci = 0; ci < Cg; ci++)
                            for (int64_t i = 0; i < g.kh; i++)
                                for (int64_t j = 0; j < g.kw; j++) {
                                    int64_t iy = oy * g.sh - g.ph + i * g.dh;
                                    int64_t ix = ox * g.sw - g.pw + j * g.dw;
                                    if (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W) continue;
                                    s += (double)xp[((n * g.C + c0 + ci) * g.H + iy) * g.W + ix] *
                                         wp[((o * Cg + ci) * g.kh + i) * g.kw + j];
                                }
                        yp[((n * O + o) * g.Ho + oy) * g.Wo + ox] = (float)s;
                    }
        y = pivq_tensor_retain(c.y);
    }
    conv_operands_release(&c);
    return y;
}
