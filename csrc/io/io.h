/* io/io.h — helpers shared by the files of the io layer (files, IDX, PNG, JPEG, safetensors,
 * images, the loader); not part of the public API. */
#ifndef PIVQ_IO_IO_H
#define PIVQ_IO_IO_H

#include "core/core.h"

#include <stdio.h>

/* Read a whole file into a malloc'ed buffer (*out, *len). `fname` prefixes messages. Files
   larger than max_bytes are refused before anything is allocated. */
int pivq_read_file(const char *fname, const char *path, int64_t max_bytes, unsigned char **out,
                   size_t *len);

/* Atomic replacement of a file: write to a temporary file in the same folder, then
   pivq_atomic_commit (fflush + fsync + rename + fsync of the folder) or pivq_atomic_abort. */
typedef struct pivq_atomic_file {
    FILE *f;
    char *tmp_path;
    char *path;
} pivq_atomic_file;
int pivq_atomic_open(pivq_atomic_file *af, const char *fname, const char *path);
int pivq_atomic_commit(pivq_atomic_file *af, const char *fname);
void pivq_atomic_abort(pivq_atomic_file *af);

/* A new string list from n malloc'ed strings (ownership passes to the list). */
pivq_strings *pivq_strings_new(char **items, int64_t n);

/* Decoders into C x H x W float32 (io/png.c, io/jpeg.c); `name` only for messages. */
pivq_tensor *pivq_png_decode(const unsigned char *data, size_t len, const char *name);
pivq_tensor *pivq_jpeg_decode(const unsigned char *data, size_t len, const char *name);
/* The same at the smallest of 1/1, 1/2, 1/4, 1/8 scale whose shorter side stays >= min_side
   (0: full size). */
pivq_tensor *pivq_jpeg_decode_scaled(const unsigned char *data, size_t len, const char *name,
                                     int64_t min_side);
int pivq_is_png(const unsigned char *data, size_t len);
int pivq_is_jpeg(const unsigned char *data, size_t len);

/* Number of elements of a shape read from a file, or -1 when it overflows. Unlike
   pivq_sizes_numel, the product of the NONZERO sizes must also stay below 2^60: a zero dim
   would otherwise let absurd sizes through to the contiguous-strides computation (whose
   running product overflows; reported upstream). */
static inline int64_t pivq_io_numel(int ndim, const int64_t *size)
{
    int64_t n = 1, nonzero = 1;
    for (int i = 0; i < ndim; i++) {
        if (size[i] < 0) return -1;
        if (size[i] == 0) {
            n = 0;
            continue;
        }
        if (nonzero > ((int64_t)1 << 60) / size[i]) return -1;
        nonzero *= size[i];
        n = n ? nonzero : 0;
    }
    return n;
}

/* Decode one image file into out (channels x size x size uint8): composite alpha over
   `background` (NULL: white), centre-crop to a square (crop x crop, or the largest when crop is
   0), area resize, convert the channels (gray repeated, colour to BT.601 luma). */
int pivq_image_load_square_u8(const char *path, int size, int channels, int crop,
                              const float *background, unsigned char *out);

/* Current pixel cap (io/image.c). */
int64_t pivq_image_pixel_cap(void);

/* Bytes of 8-bit interleaved pixels (H x W x C) from a C x H x W (or H x W) float32/uint8
   tensor; float values clamped to [0,1] and rounded. Used by the PNG and JPEG writers. */
unsigned char *pivq_image_to_interleaved_u8(const char *fname, const pivq_tensor *img,
                                            int *channels, int64_t *height, int64_t *width);

/* deflate cannot expand data by more than about 1032:1 (zlib's technical notes), so a
   compressed stream of n bytes never justifies more than this many output bytes. */
#define PIVQ_DEFLATE_MAX_RATIO 1040

#endif
