/* io/png.c — PNG decoding and encoding through libpng.
 *
 * libpng reports errors by longjmp to the setjmp point of the caller. That jump stays inside
 * each function here: the error callback copies libpng's message into a heap context and
 * jumps back to the setjmp in the same C function, which frees everything and returns NULL/-1
 * with the message. Nothing that lives across the setjmp is a modified local (those could be
 * clobbered by the jump); it is all in the heap context.
 *
 * A PNG header can declare 2^31 x 2^31 pixels in 60 bytes. Before allocating we require the
 * declared raw image (rows of filtered bytes) to fit in what the file's compressed data could
 * hold (deflate expands at most ~1032:1), and width x height to be under the pixel cap.
 */
#include "io/io.h"

#include <stdlib.h>
#include <string.h>

#include <png.h>

typedef struct png_ctx {
    const unsigned char *data;
    size_t len, pos;
    char msg[256];
    unsigned char *pixels;
    png_bytep *rows;
    pivq_tensor *t;
} png_ctx;

static void on_error(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    /* warnings concern ancillary chunks (colour profiles, text) that we do not use */
    (void)png;
    (void)msg;
}

static void read_mem(png_structp png, png_bytep out, size_t n)
{
    png_ctx *c = png_get_io_ptr(png);
    if (c->len - c->pos < n) png_error(png, "unexpected end of file (truncated PNG)");
    memcpy(out, c->data + c->pos, n);
    c->pos += n;
}

/* libpng allocates a chunk's declared length before reading its data, and Debian's 1.6.39
   does so for zTXt even past png_set_chunk_malloc_max: a 51-byte file declaring a 1.9 GB
   zTXt chunk made it allocate 1.9 GB (found by fuzz_image). We hold the whole file, so we
   walk the chunk list first and refuse any chunk that runs past the end of the file. */
static int check_chunk_lengths(const unsigned char *d, size_t len, const char *name)
{
    uint64_t pos = 8;
    while (pos + 8 <= len) {
        uint64_t n = (uint64_t)d[pos] << 24 | (uint64_t)d[pos + 1] << 16 |
                     (uint64_t)d[pos + 2] << 8 | d[pos + 3];
        const unsigned char *type = d + pos + 4;
        if (n + 12 > len - pos)
            return pivq_set_error("png: %s: chunk \"%c%c%c%c\" at byte %llu declares %llu bytes, "
                                  "the file has %llu left (truncated or corrupt PNG)",
                                  name, type[0] >= 32 && type[0] < 127 ? type[0] : '?',
                                  type[1] >= 32 && type[1] < 127 ? type[1] : '?',
                                  type[2] >= 32 && type[2] < 127 ? type[2] : '?',
                                  type[3] >= 32 && type[3] < 127 ? type[3] : '?',
                                  (unsigned long long)pos, (unsigned long long)n,
                                  (unsigned long long)(len - pos - 12 < len ? len - pos - 12 : 0));
        if (memcmp(type, "IEND", 4) == 0) break;
        pos += 12 + n;
    }
    return 0; /* a missing IEND or a cut chunk header is left to libpng to report */
}

int pivq_is_png(const unsigned char *data, size_t len)
{
    return len >= 8 && png_sig_cmp(data, 0, 8) == 0;
}

pivq_tensor *pivq_png_decode(const unsigned char *data, size_t len, const char *name)
{
    if (check_chunk_lengths(data, len, name)) return NULL;
    png_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        pivq_set_error("png: %s: out of memory", name);
        return NULL;
    }
    c->data = data;
    c->len = len;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        free(c);
        pivq_set_error("png: %s: cannot create a libpng reader", name);
        return NULL;
    }
    if (setjmp(png_jmpbuf(png))) {
        pivq_set_error("png: %s: %s", name, c->msg[0] ? c->msg : "decoding failed");
        goto done;
    }
    png_set_read_fn(png, c, read_mem);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    /* let mutated files past the checksums so that the fuzzer reaches the decoding paths */
    png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
#ifdef PNG_IGNORE_ADLER32
    png_set_option(png, PNG_IGNORE_ADLER32, PNG_OPTION_ON);
#endif
#endif
    /* bounds checked again below against the file's size; these stop absurd headers early */
    png_set_user_limits(png, 1u << 20, 1u << 20);
    /* ancillary chunks (zTXt, iCCP) can be compression bombs of their own */
    png_set_chunk_cache_max(png, 128);
    png_set_chunk_malloc_max(png, 8u << 20);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int depth = png_get_bit_depth(png, info), ctype = png_get_color_type(png, info);
    uint64_t raw = ((uint64_t)png_get_rowbytes(png, info) + 1) * h;
    if ((int64_t)w * h > pivq_image_pixel_cap()) {
        pivq_set_error("png: %s: declared size %ux%u exceeds the limit of %lld pixels "
                       "(pivq_image_max_pixels)",
                       name, (unsigned)w, (unsigned)h, (long long)pivq_image_pixel_cap());
        goto done;
    }
    if (raw / PIVQ_DEFLATE_MAX_RATIO > len) {
        pivq_set_error("png: %s: declared size %ux%u needs %llu bytes of image data, more than "
                       "a %zu-byte file can hold",
                       name, (unsigned)w, (unsigned)h, (unsigned long long)raw, len);
        goto done;
    }
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int ch = png_get_channels(png, info);
    int bits = png_get_bit_depth(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (ch < 1 || ch > 4 || (bits != 8 && bits != 16) || rowbytes != (size_t)w * ch * (bits / 8)) {
        pivq_set_error("png: %s: unexpected layout after expansion (%d channels, %d bits)", name,
                       ch, bits);
        goto done;
    }
    c->pixels = malloc(rowbytes * h + 1);
    c->rows = malloc(sizeof(png_bytep) * (h + 1));
    if (!c->pixels || !c->rows) {
        pivq_set_error("png: %s: out of memory for %ux%u pixels", name, (unsigned)w, (unsigned)h);
        goto done;
    }
    for (png_uint_32 y = 0; y < h; y++)
        c->rows[y] = c->pixels + rowbytes * y;
    png_read_image(png, c->rows);
    png_read_end(png, NULL); /* checks the chunks after the image data, up to IEND */
    int64_t size[3] = {ch, h, w};
    c->t = pivq_empty(PIVQ_FLOAT32, 3, size);
    if (!c->t) goto done;
    float *out = pivq_data(c->t);
    int64_t plane = (int64_t)w * h;
    for (png_uint_32 y = 0; y < h; y++) {
        const unsigned char *row = c->rows[y];
        for (png_uint_32 x = 0; x < w; x++)
            for (int k = 0; k < ch; k++) {
                size_t i = (size_t)x * ch + k;
                float v = bits == 8 ? row[i] * (1.0f / 255.0f)
                                    : (row[2 * i] << 8 | row[2 * i + 1]) * (1.0f / 65535.0f);
                out[k * plane + (int64_t)y * w + x] = v;
            }
    }
    pivq_tensor *result = c->t;
    c->t = NULL;
    png_destroy_read_struct(&png, &info, NULL);
    free(c->pixels);
    free(c->rows);
    free(c);
    return result;
done:
    png_destroy_read_struct(&png, &info, NULL);
    pivq_tensor_release(c->t);
    free(c->pixels);
    free(c->rows);
    free(c);
    return NULL;
}

int pivq_image_write_png(const char *path, const pivq_tensor *img)
{
    int ch;
    int64_t h, w;
    unsigned char *pixels = pivq_image_to_interleaved_u8("write_png", img, &ch, &h, &w);
    if (!pixels) return -1;
    if (h < 1 || w < 1 || h > 0x7fffffff || w > 0x7fffffff) {
        free(pixels);
        return pivq_set_error("write_png: %s: a PNG needs 1..2^31-1 rows and columns, got "
                              "%lldx%lld",
                              path ? path : "(null)", (long long)h, (long long)w);
    }
    png_ctx *c = calloc(1, sizeof *c);
    pivq_atomic_file *af = calloc(1, sizeof *af);
    png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)h);
    if (!c || !af || !rows) {
        free(c);
        free(af);
        free(rows);
        free(pixels);
        return pivq_set_error("write_png: out of memory");
    }
    if (pivq_atomic_open(af, "write_png", path)) {
        free(c);
        free(af);
        free(rows);
        free(pixels);
        return -1;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, c, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    volatile int rc = -1; /* volatile: read after a possible longjmp */
    if (!png || !info) {
        pivq_set_error("write_png: %s: cannot create a libpng writer", path);
        goto done;
    }
    if (setjmp(png_jmpbuf(png))) {
        pivq_set_error("write_png: %s: %s", path, c->msg[0] ? c->msg : "encoding failed");
        goto done;
    }
    static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                 PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    png_init_io(png, af->f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, types[ch], PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int64_t y = 0; y < h; y++)
        rows[y] = pixels + (size_t)y * (size_t)w * ch;
    png_write_image(png, rows);
    png_write_end(png, NULL);
    rc = 0;
done:
    png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
    if (rc == 0)
        rc = pivq_atomic_commit(af, "write_png");
    else
        pivq_atomic_abort(af);
    free(c);
    free(af);
    free(rows);
    free(pixels);
    return rc;
}
