/* io/image.c — image files in and out (dispatch to io/png.c / io/jpeg.c), resizing, cropping,
 * grids, and the image-folder dataset (scan + parallel decode into one uint8 tensor).
 */
#include "io/io.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* ---- decoding ---------------------------------------------------------------------------- */

static int64_t pixel_cap = (int64_t)1 << 28;

int64_t pivq_image_max_pixels(int64_t n)
{
    int64_t old = __atomic_load_n(&pixel_cap, __ATOMIC_RELAXED);
    if (n > 0) __atomic_store_n(&pixel_cap, n, __ATOMIC_RELAXED);
    return old;
}

int64_t pivq_image_pixel_cap(void)
{
    return __atomic_load_n(&pixel_cap, __ATOMIC_RELAXED);
}

pivq_tensor *pivq_image_decode(const void *data, size_t len, const char *name)
{
    if (!name) name = "<memory>";
    if (!data && len) {
        pivq_set_error("image: %s: data is NULL", name);
        return NULL;
    }
    const unsigned char *p = data;
    if (pivq_is_png(p, len)) return pivq_png_decode(p, len, name);
    if (pivq_is_jpeg(p, len)) return pivq_jpeg_decode(p, len, name);
    pivq_set_error("image: %s: not a PNG or JPEG file (unknown signature)", name);
    return NULL;
}

/* Compressed images beyond 1 GiB are not photos we can use. */
#define IMAGE_FILE_MAX ((int64_t)1 << 30)

pivq_tensor *pivq_image_read(const char *path)
{
    unsigned char *buf;
    size_t len;
    if (pivq_read_file("image", path, IMAGE_FILE_MAX, &buf, &len)) return NULL;
    pivq_tensor *t = pivq_image_decode(buf, len, path);
    free(buf);
    return t;
}

/* ---- encoding helpers -------------------------------------------------------------------- */

static inline unsigned char to_u8(float v)
{
    if (!(v > 0)) return 0; /* also NaN */
    if (v >= 1) return 255;
    return (unsigned char)lrintf(v * 255.0f);
}

unsigned char *pivq_image_to_interleaved_u8(const char *fname, const pivq_tensor *img,
                                            int *channels, int64_t *height, int64_t *width)
{
    if (pivq_check_tensor(fname, "image", img)) return NULL;
    char buf[160];
    if ((img->ndim != 2 && img->ndim != 3) ||
        (img->scalar_type != PIVQ_FLOAT32 && img->scalar_type != PIVQ_UINT8) ||
        (img->ndim == 3 && (img->shape[0] < 1 || img->shape[0] > 4))) {
        pivq_set_error("%s: image must be float32 or uint8, C x H x W with C in 1..4 or H x W; "
                       "got %s %s",
                       fname, pivq_dtype_name(img->scalar_type),
                       pivq_shape_str(img, buf, sizeof buf));
        return NULL;
    }
    int ch = img->ndim == 3 ? (int)img->shape[0] : 1;
    int64_t h = img->shape[img->ndim - 2], w = img->shape[img->ndim - 1];
    pivq_tensor *c = pivq_contiguous_nograd(img);
    if (!c) return NULL;
    unsigned char *out = malloc((size_t)(h * w * ch) + 1);
    if (!out) {
        pivq_tensor_release(c);
        pivq_set_error("%s: out of memory", fname);
        return NULL;
    }
    int64_t plane = h * w;
    if (c->scalar_type == PIVQ_FLOAT32) {
        const float *src = pivq_data(c);
        for (int64_t i = 0; i < plane; i++)
            for (int k = 0; k < ch; k++)
                out[i * ch + k] = to_u8(src[k * plane + i]);
    } else {
        const unsigned char *src = pivq_data(c);
        for (int64_t i = 0; i < plane; i++)
            for (int k = 0; k < ch; k++)
                out[i * ch + k] = src[k * plane + i];
    }
    pivq_tensor_release(c);
    *channels = ch;
    *height = h;
    *width = w;
    return out;
}

pivq_tensor *pivq_image_u8_to_float(const pivq_tensor *x)
{
    if (pivq_check_tensor("image_u8_to_float", "x", x)) return NULL;
    if (x->scalar_type != PIVQ_UINT8) {
        pivq_set_error("image_u8_to_float: x must be uint8, got %s",
                       pivq_dtype_name(x->scalar_type));
        return NULL;
    }
    pivq_tensor *c = pivq_contiguous_nograd(x);
    pivq_tensor *out = c ? pivq_empty(PIVQ_FLOAT32, x->ndim, x->shape) : NULL;
    if (out) {
        const uint8_t *s = pivq_data(c);
        float *o = pivq_data(out);
        int64_t n = pivq_numel(out);
        int nth = pivq_threads_for(n);
#pragma omp parallel for num_threads(nth) if (nth > 1)
        for (int64_t i = 0; i < n; i++)
            o[i] = s[i] * (1.0f / 255.0f);
    }
    pivq_tensor_release(c);
    return out;
}

/* ---- resize -------------------------------------------------------------------------------- */

/* One axis of a separable resampling: output i reads `count[i]` source pixels from
   `first[i]` with weights `weight[i * span ..]`. */
typedef struct axis_plan {
    int64_t out, span;
    int64_t *first, *count;
    float *weight;
} axis_plan;

static void plan_free(axis_plan *p)
{
    free(p->first);
    free(p->count);
    free(p->weight);
}

static int plan_axis(axis_plan *p, int64_t in, int64_t out, int mode)
{
    double scale = (double)in / (double)out;
    p->out = out;
    p->span = mode == PIVQ_RESIZE_AREA ? (int64_t)ceil(scale) + 1 : 2;
    p->first = calloc((size_t)out, sizeof(int64_t));
    p->count = calloc((size_t)out, sizeof(int64_t));
    p->weight = calloc((size_t)(out * p->span), sizeof(float));
    if (!p->first || !p->count || !p->weight) return -1;
    for (int64_t i = 0; i < out; i++) {
        float *wt = p->weight + i * p->span;
        if (mode == PIVQ_RESIZE_AREA) {
            /* output i covers source [lo, hi); each source pixel weighs its overlap */
            double lo = i * scale, hi = (i + 1) * scale;
            int64_t j0 = (int64_t)floor(lo), j1 = (int64_t)ceil(hi);
            if (j1 > in) j1 = in;
            if (j1 - j0 > p->span) j1 = j0 + p->span;
            p->first[i] = j0;
            p->count[i] = j1 - j0;
            for (int64_t j = j0; j < j1; j++) {
                double a = j > lo ? j : lo, b = j + 1 < hi ? j + 1 : hi;
                wt[j - j0] = (float)((b - a) / scale);
            }
        } else {
            /* half-pixel centres: output centre i + 0.5 maps to source (i + 0.5) * scale */
            double cpos = (i + 0.5) * scale - 0.5;
            if (cpos < 0) cpos = 0;
            if (cpos > in - 1) cpos = (double)(in - 1);
            int64_t j0 = (int64_t)floor(cpos);
            double f = cpos - j0;
            p->first[i] = j0;
            p->count[i] = j0 + 1 < in ? 2 : 1;
            wt[0] = (float)(1 - f);
            if (p->count[i] == 2)
                wt[1] = (float)f;
            else
                wt[0] = 1;
        }
    }
    return 0;
}

pivq_tensor *pivq_image_resize(const pivq_tensor *x, int64_t h, int64_t w, int mode)
{
    if (pivq_check_tensor("image_resize", "x", x)) return NULL;
    char buf[160];
    if ((x->ndim != 3 && x->ndim != 4) || x->scalar_type != PIVQ_FLOAT32) {
        pivq_set_error("image_resize: x must be float32 C x H x W or N x C x H x W, got %s %s",
                       pivq_dtype_name(x->scalar_type), pivq_shape_str(x, buf, sizeof buf));
        return NULL;
    }
    if (mode != PIVQ_RESIZE_AREA && mode != PIVQ_RESIZE_BILINEAR) {
        pivq_set_error("image_resize: unknown mode %d (0 area, 1 bilinear)", mode);
        return NULL;
    }
    int64_t H = x->shape[x->ndim - 2], W = x->shape[x->ndim - 1];
    if (h < 1 || w < 1 || H < 1 || W < 1) {
        pivq_set_error("image_resize: cannot resize %s to %lldx%lld",
                       pivq_shape_str(x, buf, sizeof buf), (long long)h, (long long)w);
        return NULL;
    }
    int64_t size[4];
    for (int i = 0; i < x->ndim; i++)
        size[i] = x->shape[i];
    size[x->ndim - 2] = h;
    size[x->ndim - 1] = w;
    /* strided input is read in place (a centre crop is a view): copying it first cost more
       than the resize itself */
    const pivq_tensor *src = x;
    pivq_tensor *out = pivq_empty(PIVQ_FLOAT32, x->ndim, size);
    axis_plan py = {0}, px = {0};
    float *tmp = NULL;
    int64_t planes = out ? pivq_numel(x) / (H * W) : 0;
    if (!out) goto fail;
    if (plan_axis(&py, H, h, mode) || plan_axis(&px, W, w, mode) ||
        !(tmp = malloc(sizeof(float) * (size_t)(H * w) + 4))) {
        pivq_set_error("image_resize: out of memory");
        goto fail;
    }
    const float *s = pivq_data(src);
    float *o = pivq_data(out);
    int nd = x->ndim;
    int64_t rs = x->strides[nd - 2], cs = x->strides[nd - 1];
    for (int64_t p = 0; p < planes; p++) {
        /* plane p's leading indices (C, or N then C) through the strides */
        int64_t lead = nd == 4 ? x->shape[1] : 1;
        int64_t poff =
            nd == 4 ? (p / lead) * x->strides[0] + (p % lead) * x->strides[1] : p * x->strides[0];
        const float *sp = s + poff;
        float *op = o + p * h * w;
        /* step 1: rows, H x W -> H x w */
        for (int64_t y = 0; y < H; y++)
            for (int64_t i = 0; i < w; i++) {
                const float *wt = px.weight + i * px.span;
                const float *row = sp + y * rs + px.first[i] * cs;
                float acc = 0;
                for (int64_t k = 0; k < px.count[i]; k++)
                    acc += wt[k] * row[k * cs];
                tmp[y * w + i] = acc;
            }
        /* step 2: columns, H x w -> h x w */
        for (int64_t j = 0; j < h; j++) {
            const float *wt = py.weight + j * py.span;
            float *orow = op + j * w;
            for (int64_t i = 0; i < w; i++)
                orow[i] = 0;
            for (int64_t k = 0; k < py.count[j]; k++) {
                const float *trow = tmp + (py.first[j] + k) * w;
                for (int64_t i = 0; i < w; i++)
                    orow[i] += wt[k] * trow[i];
            }
        }
    }
    free(tmp);
    plan_free(&py);
    plan_free(&px);
    return out;
fail:
    free(tmp);
    plan_free(&py);
    plan_free(&px);
    pivq_tensor_release(out);
    return NULL;
}

pivq_tensor *pivq_image_center_crop(const pivq_tensor *x, int64_t h, int64_t w)
{
    if (pivq_check_tensor("image_center_crop", "x", x)) return NULL;
    char buf[160];
    if (x->ndim < 2) {
        pivq_set_error("image_center_crop: x needs at least 2 dims, got %s",
                       pivq_shape_str(x, buf, sizeof buf));
        return NULL;
    }
    int dh = x->ndim - 2, dw = x->ndim - 1;
    if (h < 1 || w < 1 || h > x->shape[dh] || w > x->shape[dw]) {
        pivq_set_error("image_center_crop: cannot crop %lldx%lld out of %s", (long long)h,
                       (long long)w, pivq_shape_str(x, buf, sizeof buf));
        return NULL;
    }
    pivq_tensor *a = pivq_narrow_nograd(x, dh, (x->shape[dh] - h) / 2, h);
    if (!a) return NULL;
    pivq_tensor *b = pivq_narrow_nograd(a, dw, (x->shape[dw] - w) / 2, w);
    pivq_tensor_release(a);
    return b;
}

/* ---- grid ---------------------------------------------------------------------------------- */

pivq_tensor *pivq_image_grid(const pivq_tensor *batch, int nrow, int padding, int scale,
                             double pad_value)
{
    if (pivq_check_tensor("image_grid", "batch", batch)) return NULL;
    char buf[160];
    if (batch->ndim != 4 || batch->scalar_type != PIVQ_FLOAT32 || batch->shape[0] < 1) {
        pivq_set_error("image_grid: batch must be a non-empty float32 N x C x H x W, got %s %s",
                       pivq_dtype_name(batch->scalar_type), pivq_shape_str(batch, buf, sizeof buf));
        return NULL;
    }
    if (nrow < 1 || padding < 0 || scale < 1 || padding > 4096 || scale > 64) {
        pivq_set_error("image_grid: need nrow >= 1, padding in 0..4096, scale in 1..64; got "
                       "%d, %d, %d",
                       nrow, padding, scale);
        return NULL;
    }
    int64_t N = batch->shape[0], C = batch->shape[1], H = batch->shape[2], W = batch->shape[3];
    int64_t cols = N < nrow ? N : nrow, rows = (N + cols - 1) / cols;
    int64_t Hs = H * scale, Ws = W * scale;
    int64_t size[3] = {C, rows * (Hs + padding) + padding, cols * (Ws + padding) + padding};
    pivq_tensor *src = pivq_contiguous_nograd(batch);
    pivq_tensor *out = src ? pivq_empty(PIVQ_FLOAT32, 3, size) : NULL;
    if (!out) {
        pivq_tensor_release(src);
        return NULL;
    }
    if (pivq_fill_nograd_(out, pad_value)) {
        pivq_tensor_release(src);
        pivq_tensor_release(out);
        return NULL;
    }
    const float *s = pivq_data(src);
    float *o = pivq_data(out);
    int64_t OH = size[1], OW = size[2];
    for (int64_t n = 0; n < N; n++) {
        int64_t top = (n / cols) * (Hs + padding) + padding;
        int64_t left = (n % cols) * (Ws + padding) + padding;
        for (int64_t c = 0; c < C; c++)
            for (int64_t y = 0; y < Hs; y++) {
                const float *srow = s + ((n * C + c) * H + y / scale) * W;
                float *orow = o + (c * OH + top + y) * OW + left;
                for (int64_t x = 0; x < Ws; x++)
                    orow[x] = srow[x / scale];
            }
    }
    pivq_tensor_release(src);
    return out;
}

/* ---- image folders ------------------------------------------------------------------------- */

typedef struct name_list {
    char **items;
    int64_t n, cap;
} name_list;

static int list_push(name_list *l, const char *s)
{
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 256;
        char **items = realloc(l->items, sizeof(char *) * (size_t)cap);
        if (!items) return -1;
        l->items = items;
        l->cap = cap;
    }
    size_t len = strlen(s) + 1;
    char *d = malloc(len);
    if (!d) return -1;
    memcpy(d, s, len);
    l->items[l->n++] = d;
    return 0;
}

static int is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".png") == 0 || strcasecmp(dot, ".jpg") == 0 ||
                   strcasecmp(dot, ".jpeg") == 0);
}

/* Depth-first scan; `rel` is the path below the root ("" at the top). Symbolic links to
   folders are followed, so the depth is bounded to stop a link cycle. */
static int scan_dir(const char *root, const char *rel, int depth, name_list *out)
{
    if (depth > 32)
        return pivq_set_error("image_list: %s/%s: folders nested deeper than 32 "
                              "(a symbolic link cycle?)",
                              root, rel);
    size_t need = strlen(root) + strlen(rel) + 2;
    char *path = malloc(need);
    if (!path) return pivq_set_error("image_list: out of memory");
    snprintf(path, need, "%s%s%s", root, *rel ? "/" : "", rel);
    DIR *d = opendir(path);
    if (!d) {
        int e = errno;
        pivq_set_error("image_list: cannot open folder %s: %s", path, strerror(e));
        free(path);
        return -1;
    }
    int rc = 0;
    struct dirent *ent;
    while (rc == 0 && (ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.') continue; /* ".", "..", and hidden files such as caches */
        size_t rlen = strlen(rel) + strlen(ent->d_name) + 2;
        size_t flen = strlen(path) + strlen(ent->d_name) + 2;
        char *child_rel = malloc(rlen), *full = malloc(flen);
        if (!child_rel || !full) {
            free(child_rel);
            free(full);
            rc = pivq_set_error("image_list: out of memory");
            break;
        }
        snprintf(child_rel, rlen, "%s%s%s", rel, *rel ? "/" : "", ent->d_name);
        snprintf(full, flen, "%s/%s", path, ent->d_name);
        struct stat st;
        if (stat(full, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                rc = scan_dir(root, child_rel, depth + 1, out);
            else if (S_ISREG(st.st_mode) && is_image_name(ent->d_name) && list_push(out, child_rel))
                rc = pivq_set_error("image_list: out of memory");
        }
        free(child_rel);
        free(full);
    }
    closedir(d);
    free(path);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

pivq_strings *pivq_image_list(const char *dir)
{
    if (!dir) {
        pivq_set_error("image_list: dir is NULL");
        return NULL;
    }
    name_list l = {0};
    if (scan_dir(dir, "", 0, &l)) {
        for (int64_t i = 0; i < l.n; i++)
            free(l.items[i]);
        free(l.items);
        return NULL;
    }
    if (l.n > 0) qsort(l.items, (size_t)l.n, sizeof(char *), cmp_str);
    return pivq_strings_new(l.items, l.n);
}

/* ---- alpha --------------------------------------------------------------------------------- */

static const float white[3] = {1, 1, 1};

pivq_tensor *pivq_image_composite(const pivq_tensor *img, const float *background)
{
    if (pivq_check_tensor("image_composite", "img", img)) return NULL;
    char buf[160];
    if (img->ndim != 3 || img->scalar_type != PIVQ_FLOAT32 || img->shape[0] < 1 ||
        img->shape[0] > 4) {
        pivq_set_error("image_composite: img must be float32 C x H x W with C in 1..4, got %s %s",
                       pivq_dtype_name(img->scalar_type), pivq_shape_str(img, buf, sizeof buf));
        return NULL;
    }
    const float *bg = background ? background : white;
    for (int k = 0; k < 3; k++)
        if (!(bg[k] >= 0 && bg[k] <= 1)) {
            pivq_set_error("image_composite: background[%d] = %g is outside [0, 1]", k,
                           (double)bg[k]);
            return NULL;
        }
    int64_t C = img->shape[0], H = img->shape[1], W = img->shape[2];
    if (C == 1 || C == 3) return pivq_contiguous_nograd(img);
    /* gray+alpha over a gray background stays gray; over a colour it becomes RGB */
    int gray_bg = bg[0] == bg[1] && bg[1] == bg[2];
    int64_t oc = C == 4 ? 3 : (gray_bg ? 1 : 3);
    pivq_tensor *c = pivq_contiguous_nograd(img);
    int64_t shape[3] = {oc, H, W};
    pivq_tensor *out = c ? pivq_empty(PIVQ_FLOAT32, 3, shape) : NULL;
    if (out) {
        const float *s = pivq_data(c);
        float *o = pivq_data(out);
        int64_t plane = H * W;
        const float *alpha = s + (C - 1) * plane;
        for (int64_t k = 0; k < oc; k++) {
            const float *src = s + (C == 4 ? k : 0) * plane;
            float b = bg[k];
            for (int64_t i = 0; i < plane; i++) /* straight (unassociated) alpha, as PNG stores */
                o[k * plane + i] = alpha[i] * src[i] + (1.0f - alpha[i]) * b;
        }
    }
    pivq_tensor_release(c);
    return out;
}

int pivq_image_load_square_u8(const char *path, int size, int channels, int crop,
                              const float *background, unsigned char *out)
{
    unsigned char *buf;
    size_t len;
    if (pivq_read_file("image", path, IMAGE_FILE_MAX, &buf, &len)) return -1;
    /* a crop is in the file's pixels: decode JPEGs at full size then */
    pivq_tensor *dec = pivq_is_jpeg(buf, len) && crop <= 0
                           ? pivq_jpeg_decode_scaled(buf, len, path, size)
                           : pivq_image_decode(buf, len, path);
    free(buf);
    if (!dec) return -1;
    pivq_tensor *img = pivq_image_composite(dec, background);
    pivq_tensor_release(dec);
    if (!img) return -1;
    int64_t H = img->shape[1], W = img->shape[2], side = H < W ? H : W;
    if (crop > 0) {
        if (crop > side) {
            pivq_tensor_release(img);
            return pivq_set_error("image: %s: crop %d is larger than the image (%lldx%lld)", path,
                                  crop, (long long)W, (long long)H);
        }
        side = crop;
    }
    pivq_tensor *sq = pivq_image_center_crop(img, side, side);
    /* already the right size (a prepared dataset): read the crop in place, no resize */
    pivq_tensor *small = !sq            ? NULL
                         : side == size ? pivq_tensor_retain(sq)
                                        : pivq_image_resize(sq, size, size, PIVQ_RESIZE_AREA);
    pivq_tensor_release(img);
    pivq_tensor_release(sq);
    if (!small) return -1;
    int C = (int)small->shape[0];
    const float *s = pivq_data(small);
    int64_t cst = small->strides[0], rs = small->strides[1], xs = small->strides[2];
    int64_t plane = (int64_t)size * size;
    for (int k = 0; k < channels; k++) {
        for (int64_t y = 0; y < size; y++) {
            unsigned char *orow = out + k * plane + y * size;
            const float *r0 = s + y * rs;
            if (channels == 1 && C == 3) {
                /* colour to gray: ITU-R BT.601 luma, as libjpeg and PIL do */
                for (int64_t x = 0; x < size; x++)
                    orow[x] = to_u8(0.299f * r0[x * xs] + 0.587f * r0[cst + x * xs] +
                                    0.114f * r0[2 * cst + x * xs]);
                continue;
            }
            /* gray repeats channel 0 (alpha was composited away above) */
            const float *src = r0 + (C == 3 ? k : 0) * cst;
            for (int64_t x = 0; x < size; x++)
                orow[x] = to_u8(src[x * xs]);
        }
    }
    pivq_tensor_release(small);
    return 0;
}

typedef struct folder_job {
    const char *dir;
    const char *const *files;
    int64_t n;
    int size, channels, crop;
    const float *background;
    unsigned char *out;
    int64_t next; /* atomic: next file index to take */
    int failed;   /* atomic: stop early after the first error */
    pthread_mutex_t lock;
    char error[1024];
} folder_job;

static void *folder_worker(void *arg)
{
    folder_job *job = arg;
    int64_t per = (int64_t)job->channels * job->size * job->size;
    for (;;) {
        int64_t i = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (i >= job->n || __atomic_load_n(&job->failed, __ATOMIC_RELAXED)) break;
        const char *f = job->files[i];
        char *path = NULL;
        if (job->dir) {
            size_t len = strlen(job->dir) + strlen(f) + 2;
            path = malloc(len);
            if (path) snprintf(path, len, "%s/%s", job->dir, f);
        }
        int rc = (job->dir && !path)
                     ? pivq_set_error("image_folder_load: out of memory")
                     : pivq_image_load_square_u8(path ? path : f, job->size, job->channels,
                                                 job->crop, job->background, job->out + i * per);
        free(path);
        if (rc) {
            /* the message is in this thread's error buffer: hand it to the caller's thread */
            pthread_mutex_lock(&job->lock);
            if (!job->failed) snprintf(job->error, sizeof job->error, "%s", pivq_last_error());
            __atomic_store_n(&job->failed, 1, __ATOMIC_RELAXED);
            pthread_mutex_unlock(&job->lock);
            break;
        }
    }
    return NULL;
}

pivq_tensor *pivq_image_folder_load(const char *dir, const char *const *files, int64_t n, int size,
                                    int channels, int crop, const float *background, int threads)
{
    if (n < 0 || (n > 0 && !files) || size < 1 || size > 65536 ||
        (channels != 1 && channels != 3) || crop < 0 || threads < 1) {
        pivq_set_error("image_folder_load: bad arguments (n=%lld, size=%d, channels=%d, "
                       "crop=%d, threads=%d)",
                       (long long)n, size, channels, crop, threads);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++)
        if (!files[i]) {
            pivq_set_error("image_folder_load: file %lld is NULL", (long long)i);
            return NULL;
        }
    int64_t shape[4] = {n, channels, size, size};
    pivq_tensor *out = pivq_empty(PIVQ_UINT8, 4, shape);
    if (!out) return NULL;
    folder_job job;
    memset(&job, 0, sizeof job);
    job.dir = dir;
    job.files = files;
    job.n = n;
    job.size = size;
    job.channels = channels;
    job.crop = crop;
    job.background = background;
    job.out = pivq_data(out);
    pthread_mutex_init(&job.lock, NULL);
    if (threads > n) threads = n > 0 ? (int)n : 1;
    if (threads > 256) threads = 256;
    pthread_t tid[256];
    int started = 0;
    for (int t = 1; t < threads; t++) {
        if (pthread_create(&tid[started], NULL, folder_worker, &job) != 0) break;
        started++;
    }
    folder_worker(&job); /* the calling thread works too */
    for (int t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
    pthread_mutex_destroy(&job.lock);
    if (job.failed) {
        pivq_tensor_release(out);
        pivq_set_error("%s", job.error);
        return NULL;
    }
    return out;
}

/* FNV-1a, 64-bit: a cache-validity check, not a security measure. */
static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t pivq_files_fingerprint(const char *dir, const char *const *files, int64_t n)
{
    if (n < 0 || (n > 0 && !files)) {
        pivq_set_error("files_fingerprint: bad arguments (n=%lld)", (long long)n);
        return 0;
    }
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int64_t i = 0; i < n; i++) {
        if (!files[i]) {
            pivq_set_error("files_fingerprint: file %lld is NULL", (long long)i);
            return 0;
        }
        size_t len = (dir ? strlen(dir) + 1 : 0) + strlen(files[i]) + 1;
        char *path = malloc(len);
        if (!path) {
            pivq_set_error("files_fingerprint: out of memory");
            return 0;
        }
        snprintf(path, len, "%s%s%s", dir ? dir : "", dir ? "/" : "", files[i]);
        struct stat st;
        if (stat(path, &st) != 0) {
            int e = errno;
            pivq_set_error("files_fingerprint: cannot stat %s: %s", path, strerror(e));
            free(path);
            return 0;
        }
        free(path);
        int64_t meta[3] = {(int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec,
                           (int64_t)st.st_mtim.tv_nsec};
        h = fnv1a(h, files[i], strlen(files[i]) + 1);
        h = fnv1a(h, meta, sizeof meta);
    }
    return h ? h : 1; /* 0 means error */
}
