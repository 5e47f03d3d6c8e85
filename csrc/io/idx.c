/* io/idx.c — the IDX format of the MNIST family (LeCun's distribution format), raw or gzip.
 *
 * Layout: bytes 0..1 zero, byte 2 the element type, byte 3 the number of dims, then one
 * big-endian uint32 per dim, then the elements, big-endian, row-major.
 *
 * The header is untrusted: its dims could multiply to terabytes or overflow. We compute the
 * payload size with overflow checks and compare it with what the input can hold (exactly the
 * remaining bytes of a raw file; at most PIVQ_DEFLATE_MAX_RATIO times the size of a gzip
 * stream) before allocating. A gzip stream must end (CRC checked by zlib) right after the
 * payload: trailing bytes or a short stream are errors, not silently ignored.
 */
#include "io/io.h"

#include <stdlib.h>
#include <string.h>

#include <zlib.h>

enum {
    IDX_U8 = 0x08,
    IDX_I8 = 0x09,
    IDX_I16 = 0x0B,
    IDX_I32 = 0x0C,
    IDX_F32 = 0x0D,
    IDX_F64 = 0x0E
};

static int idx_elem_size(int t)
{
    switch (t) {
    case IDX_U8:
    case IDX_I8: return 1;
    case IDX_I16: return 2;
    case IDX_I32:
    case IDX_F32: return 4;
    case IDX_F64: return 8;
    default: return 0;
    }
}

static int idx_dtype(int t)
{
    switch (t) {
    case IDX_U8: return PIVQ_UINT8;
    case IDX_F32:
    case IDX_F64: return PIVQ_FLOAT32;
    default: return PIVQ_INT32;
    }
}

/* A byte source over either raw memory or a gzip stream being inflated. */
typedef struct idx_src {
    const char *name;
    const unsigned char *data;
    size_t len, pos; /* raw */
    int gz;
    z_stream z;
} idx_src;

/* Read exactly n bytes; -1 with a message naming what was being read if the input ends. */
static int src_read(idx_src *s, void *dst, size_t n, const char *what)
{
    if (!s->gz) {
        if (s->len - s->pos < n)
            return pivq_set_error("idx: %s: truncated %s (need %zu bytes, %zu left)", s->name, what,
                                  n, s->len - s->pos);
        memcpy(dst, s->data + s->pos, n);
        s->pos += n;
        return 0;
    }
    s->z.next_out = dst;
    /* avail_out is 32-bit in zlib: feed large reads in chunks */
    size_t done = 0;
    while (done < n) {
        size_t chunk = n - done > (1u << 30) ? (1u << 30) : n - done;
        s->z.next_out = (unsigned char *)dst + done;
        s->z.avail_out = (uInt)chunk;
        while (s->z.avail_out > 0) {
            int rc = inflate(&s->z, Z_NO_FLUSH);
            if (rc == Z_STREAM_END && s->z.avail_out > 0)
                return pivq_set_error("idx: %s: gzip data ends inside the %s (%zu of %zu "
                                      "bytes)",
                                      s->name, what, done + chunk - s->z.avail_out, n);
            if (rc == Z_BUF_ERROR || (rc == Z_OK && s->z.avail_in == 0 && s->z.avail_out > 0))
                return pivq_set_error("idx: %s: truncated gzip stream (in the %s)", s->name, what);
            if (rc != Z_OK && rc != Z_STREAM_END)
                return pivq_set_error("idx: %s: corrupt gzip stream (%s)", s->name,
                                      s->z.msg ? s->z.msg : zError(rc));
        }
        done += chunk;
    }
    return 0;
}

/* After the payload the input must be exhausted (raw) or the gzip stream must end cleanly
   (which also verifies its CRC and length) with nothing after it. */
static int src_finish(idx_src *s)
{
    if (!s->gz) {
        if (s->pos != s->len)
            return pivq_set_error("idx: %s: %zu unexpected bytes after the data", s->name,
                                  s->len - s->pos);
        return 0;
    }
    unsigned char extra;
    s->z.next_out = &extra;
    s->z.avail_out = 1;
    for (;;) {
        int rc = inflate(&s->z, Z_FINISH);
        if (s->z.avail_out == 0)
            return pivq_set_error("idx: %s: the gzip stream holds more data than the header "
                                  "declares",
                                  s->name);
        if (rc == Z_STREAM_END) break;
        if (rc == Z_BUF_ERROR || (rc == Z_OK && s->z.avail_in == 0))
            return pivq_set_error("idx: %s: truncated gzip stream (missing its end)", s->name);
        if (rc != Z_OK)
            return pivq_set_error("idx: %s: corrupt gzip stream (%s)", s->name,
                                  s->z.msg ? s->z.msg : zError(rc));
    }
    if (s->z.avail_in != 0)
        return pivq_set_error("idx: %s: %u unexpected bytes after the gzip stream", s->name,
                              s->z.avail_in);
    return 0;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Big-endian IDX elements (n of type t at src) into the tensor's dtype at dst. */
static void idx_convert(int t, const unsigned char *src, void *dst, int64_t n)
{
    switch (t) {
    case IDX_U8:
        if (dst != src) memcpy(dst, src, (size_t)n);
        break;
    case IDX_I8:
        for (int64_t i = n - 1; i >= 0; i--)
            ((int32_t *)dst)[i] = (int8_t)src[i];
        break;
    case IDX_I16:
        for (int64_t i = n - 1; i >= 0; i--)
            ((int32_t *)dst)[i] = (int16_t)(uint16_t)(src[2 * i] << 8 | src[2 * i + 1]);
        break;
    case IDX_I32:
    case IDX_F32:
        /* same size in and out: swap in place */
        for (int64_t i = 0; i < n; i++) {
            uint32_t v = be32(src + 4 * i);
            memcpy((char *)dst + 4 * i, &v, 4);
        }
        break;
    case IDX_F64:
        for (int64_t i = 0; i < n; i++) {
            uint64_t v = (uint64_t)be32(src + 8 * i) << 32 | be32(src + 8 * i + 4);
            double d;
            memcpy(&d, &v, 8);
            ((float *)dst)[i] = (float)d;
        }
        break;
    }
}

pivq_tensor *pivq_idx_decode(const void *data, size_t len, const char *name)
{
    if (!name) name = "<memory>";
    if (!data && len) {
        pivq_set_error("idx: %s: data is NULL", name);
        return NULL;
    }
    idx_src s;
    memset(&s, 0, sizeof s);
    s.name = name;
    s.data = data;
    s.len = len;
    s.gz = len >= 2 && s.data[0] == 0x1f && s.data[1] == 0x8b;
    if (s.gz) {
        if (len > UINT32_MAX) {
            pivq_set_error("idx: %s: gzip file larger than 4 GiB", name);
            return NULL;
        }
        s.z.next_in = (unsigned char *)s.data;
        s.z.avail_in = (uInt)len;
        if (inflateInit2(&s.z, 16 + MAX_WBITS) != Z_OK) {
            pivq_set_error("idx: %s: cannot start zlib", name);
            return NULL;
        }
    }
    pivq_tensor *t = NULL;
    unsigned char *tmp = NULL;
    unsigned char head[4], dimbytes[4 * 255];
    if (src_read(&s, head, 4, "header")) goto fail;
    if (head[0] != 0 || head[1] != 0 || idx_elem_size(head[2]) == 0) {
        pivq_set_error("idx: %s: wrong magic %02x %02x %02x %02x (an IDX file starts with "
                       "00 00, a type byte 08/09/0B/0C/0D/0E and the number of dims)",
                       name, head[0], head[1], head[2], head[3]);
        goto fail;
    }
    int type = head[2], ndim = head[3];
    if (ndim < 1 || ndim > PIVQ_MAX_DIMS) {
        pivq_set_error("idx: %s: %d dims (supported: 1..%d)", name, ndim, PIVQ_MAX_DIMS);
        goto fail;
    }
    if (src_read(&s, dimbytes, 4 * (size_t)ndim, "dimension sizes")) goto fail;
    int64_t size[PIVQ_MAX_DIMS];
    for (int i = 0; i < ndim; i++)
        size[i] = be32(dimbytes + 4 * i);
    char shape[160];
    pivq_sizes_str(ndim, size, shape, sizeof shape);
    int esize = idx_elem_size(type);
    int64_t numel = pivq_io_numel(ndim, size);
    if (numel < 0 || numel > INT64_MAX / 8) {
        pivq_set_error("idx: %s: dims %s overflow", name, shape);
        goto fail;
    }
    int64_t payload = numel * esize;
    size_t header_bytes = 4 + 4 * (size_t)ndim;
    if (!s.gz && (uint64_t)payload != len - header_bytes) {
        pivq_set_error("idx: %s: dims %s need %lld data bytes, the file has %zu", name, shape,
                       (long long)payload, len - header_bytes);
        goto fail;
    }
    if (s.gz && payload / PIVQ_DEFLATE_MAX_RATIO > (int64_t)len) {
        pivq_set_error("idx: %s: dims %s need %lld data bytes, more than a %zu-byte gzip "
                       "stream can hold",
                       name, shape, (long long)payload, len);
        goto fail;
    }
    t = pivq_empty(idx_dtype(type), ndim, size);
    if (!t) goto fail;
    /* element types whose tensor dtype is wider are read into a scratch buffer first */
    int direct = pivq_dtype_size(t->scalar_type) == esize;
    unsigned char *dst = pivq_data(t);
    if (!direct) {
        tmp = malloc(payload ? (size_t)payload : 1);
        if (!tmp) {
            pivq_set_error("idx: %s: out of memory (%lld bytes)", name, (long long)payload);
            goto fail;
        }
        dst = tmp;
    }
    if (s.gz) {
        if (src_read(&s, dst, (size_t)payload, "data")) goto fail;
    } else {
        memcpy(dst, s.data + header_bytes, (size_t)payload);
        s.pos = len;
    }
    if (src_finish(&s)) goto fail;
    idx_convert(type, dst, pivq_data(t), numel);
    free(tmp);
    if (s.gz) inflateEnd(&s.z);
    return t;
fail:
    free(tmp);
    pivq_tensor_release(t);
    if (s.gz) inflateEnd(&s.z);
    return NULL;
}

pivq_tensor *pivq_idx_read(const char *path)
{
    unsigned char *buf;
    size_t len;
    if (pivq_read_file("idx", path, PIVQ_MAX_STORAGE_BYTES, &buf, &len)) return NULL;
    pivq_tensor *t = pivq_idx_decode(buf, len, path);
    free(buf);
    return t;
}
