/* io/jpeg.c — JPEG decoding and encoding through libjpeg-turbo (Debian's libjpeg62-turbo).
 *
 * libjpeg's default error handler calls exit(). Ours formats the message and longjmps back
 * to the setjmp in the same C function (never further), which frees everything and returns
 * NULL/-1. Warnings ("premature end of data", "corrupt data") are treated as errors: a
 * truncated or damaged photo in a dataset should be reported, not silently filled with grey
 * (libjpeg-turbo's own TJFLAG_STOPONWARNING does the same).
 */
#include "io/io.h"

#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

typedef struct jpeg_ctx {
    struct jpeg_error_mgr pub; /* first: libjpeg hands us a pointer to it */
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
    unsigned char *row;
    pivq_tensor *t;
} jpeg_ctx;

static void on_error_exit(j_common_ptr cinfo)
{
    jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, c->msg);
    longjmp(c->jump, 1);
}

static void on_emit_message(j_common_ptr cinfo, int level)
{
    if (level >= 0) return; /* trace messages */
    jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, c->msg);
    longjmp(c->jump, 1);
}

static void silent(j_common_ptr cinfo)
{
    (void)cinfo;
}

int pivq_is_jpeg(const unsigned char *data, size_t len)
{
    return len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
}

pivq_tensor *pivq_jpeg_decode(const unsigned char *data, size_t len, const char *name)
{
    return pivq_jpeg_decode_scaled(data, len, name, 0);
}

pivq_tensor *pivq_jpeg_decode_scaled(const unsigned char *data, size_t len, const char *name,
                                     int64_t min_side)
{
    jpeg_ctx *c = calloc(1, sizeof *c);
    struct jpeg_decompress_struct *cinfo = calloc(1, sizeof *cinfo);
    if (!c || !cinfo) {
        free(c);
        free(cinfo);
        pivq_set_error("jpeg: %s: out of memory", name);
        return NULL;
    }
    cinfo->err = jpeg_std_error(&c->pub);
    c->pub.error_exit = on_error_exit;
    c->pub.emit_message = on_emit_message;
    c->pub.output_message = silent;
    if (setjmp(c->jump)) {
        pivq_set_error("jpeg: %s: %s", name, c->msg[0] ? c->msg : "decoding failed");
        goto fail;
    }
    jpeg_create_decompress(cinfo);
    /* progressive images keep whole coefficient planes; bound them (no backing store) */
    cinfo->mem->max_memory_to_use = 1L << 30;
    jpeg_mem_src(cinfo, data, (unsigned long)len);
    jpeg_read_header(cinfo, TRUE);
    int64_t w = cinfo->image_width, h = cinfo->image_height;
    if (w * h > pivq_image_pixel_cap()) {
        pivq_set_error("jpeg: %s: declared size %lldx%lld exceeds the limit of %lld pixels "
                       "(pivq_image_max_pixels)",
                       name, (long long)w, (long long)h, (long long)pivq_image_pixel_cap());
        goto fail;
    }
    /* Huffman coding spends at least one code per 8x8 block of the first component: a DC and
       an EOB code (2 bits) in a sequential scan, a DC code (1 bit) in a progressive DC scan
       (EOB runs only shorten AC scans). So a file of len bytes holds at most 256 * len
       (sequential) or 512 * len (progressive) pixels, and a header declaring more is corrupt
       -- refused before libjpeg allocates coefficient buffers or we allocate the output.
       Arithmetic-coded files (rare) can do better and are bounded by the pixel cap only. */
    int64_t per_byte = cinfo->progressive_mode ? 512 : 256;
    if (!cinfo->arith_code && w * h > per_byte * (int64_t)len + 65536) {
        pivq_set_error("jpeg: %s: declared size %lldx%lld is more than a %zu-byte %s JPEG can "
                       "hold",
                       name, (long long)w, (long long)h, len,
                       cinfo->progressive_mode ? "progressive" : "baseline");
        goto fail;
    }
    cinfo->out_color_space = cinfo->num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    /* libjpeg can decode at 1/2, 1/4 or 1/8 scale inside its inverse DCT, skipping most of
       the work when the caller shrinks the image anyway (CelebA's 178x218 faces to 64x64) */
    int64_t side = w < h ? w : h;
    for (int d = 8; min_side > 0 && d > 1; d /= 2)
        if ((side + d - 1) / d >= min_side) {
            cinfo->scale_num = 1;
            cinfo->scale_denom = (unsigned)d;
            break;
        }
    jpeg_start_decompress(cinfo);
    int ch = cinfo->output_components;
    w = cinfo->output_width;
    h = cinfo->output_height;
    if (ch != 1 && ch != 3) {
        pivq_set_error("jpeg: %s: unsupported %d output components", name, ch);
        goto fail;
    }
    int64_t size[3] = {ch, h, w};
    c->t = pivq_empty(PIVQ_FLOAT32, 3, size);
    c->row = malloc((size_t)(w * ch) + 1);
    if (!c->t || !c->row) {
        if (c->t) pivq_set_error("jpeg: %s: out of memory", name);
        goto fail;
    }
    float *out = pivq_data(c->t);
    int64_t plane = w * h;
    while (cinfo->output_scanline < cinfo->output_height) {
        int64_t y = cinfo->output_scanline;
        JSAMPROW rows[1] = {c->row};
        if (jpeg_read_scanlines(cinfo, rows, 1) != 1) {
            pivq_set_error("jpeg: %s: no progress at row %lld", name, (long long)y);
            goto fail;
        }
        for (int64_t x = 0; x < w; x++)
            for (int k = 0; k < ch; k++)
                out[k * plane + y * w + x] = c->row[x * ch + k] * (1.0f / 255.0f);
    }
    jpeg_finish_decompress(cinfo);
    jpeg_destroy_decompress(cinfo);
    pivq_tensor *t = c->t;
    free(c->row);
    free(c);
    free(cinfo);
    return t;
fail:
    jpeg_destroy_decompress(cinfo); /* safe on a partly created object */
    pivq_tensor_release(c->t);
    free(c->row);
    free(c);
    free(cinfo);
    return NULL;
}

int pivq_image_write_jpeg(const char *path, const pivq_tensor *img, int quality)
{
    if (quality < 1 || quality > 100)
        return pivq_set_error("write_jpeg: quality must be in 1..100, got %d", quality);
    int ch;
    int64_t h, w;
    unsigned char *pixels = pivq_image_to_interleaved_u8("write_jpeg", img, &ch, &h, &w);
    if (!pixels) return -1;
    if (ch != 1 && ch != 3) {
        free(pixels);
        return pivq_set_error("write_jpeg: %s: a JPEG holds 1 or 3 channels, got %d",
                              path ? path : "(null)", ch);
    }
    if (h < 1 || w < 1 || h > JPEG_MAX_DIMENSION || w > JPEG_MAX_DIMENSION) {
        free(pixels);
        return pivq_set_error("write_jpeg: %s: a JPEG needs 1..%ld rows and columns, got "
                              "%lldx%lld",
                              path ? path : "(null)", (long)JPEG_MAX_DIMENSION, (long long)h,
                              (long long)w);
    }
    jpeg_ctx *c = calloc(1, sizeof *c);
    struct jpeg_compress_struct *cinfo = calloc(1, sizeof *cinfo);
    pivq_atomic_file *af = calloc(1, sizeof *af);
    if (!c || !cinfo || !af) {
        free(c);
        free(cinfo);
        free(af);
        free(pixels);
        return pivq_set_error("write_jpeg: out of memory");
    }
    if (pivq_atomic_open(af, "write_jpeg", path)) {
        free(c);
        free(cinfo);
        free(af);
        free(pixels);
        return -1;
    }
    cinfo->err = jpeg_std_error(&c->pub);
    c->pub.error_exit = on_error_exit;
    c->pub.output_message = silent;
    if (setjmp(c->jump)) {
        pivq_set_error("write_jpeg: %s: %s", path, c->msg);
        jpeg_destroy_compress(cinfo);
        pivq_atomic_abort(af);
        free(c);
        free(cinfo);
        free(af);
        free(pixels);
        return -1;
    }
    jpeg_create_compress(cinfo);
    jpeg_stdio_dest(cinfo, af->f);
    cinfo->image_width = (JDIMENSION)w;
    cinfo->image_height = (JDIMENSION)h;
    cinfo->input_components = ch;
    cinfo->in_color_space = ch == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(cinfo);
    jpeg_set_quality(cinfo, quality, TRUE);
    jpeg_start_compress(cinfo, TRUE);
    while (cinfo->next_scanline < cinfo->image_height) {
        JSAMPROW rows[1] = {pixels + (size_t)cinfo->next_scanline * (size_t)w * ch};
        jpeg_write_scanlines(cinfo, rows, 1);
    }
    jpeg_finish_compress(cinfo);
    jpeg_destroy_compress(cinfo);
    int rc = pivq_atomic_commit(af, "write_jpeg");
    free(c);
    free(cinfo);
    free(af);
    free(pixels);
    return rc;
}
