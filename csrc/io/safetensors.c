/* io/safetensors.c — checkpoints in the safetensors format (huggingface/safetensors), so that
 * weights can be read from other ecosystems.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of JSON
 *   {"__metadata__": {"k": "v", ...}, "name": {"dtype": "F32", "shape": [2, 3],
 *    "data_offsets": [begin, end]}, ...}
 * (possibly padded with spaces), then the data buffer; offsets are relative to the buffer.
 *
 * Everything in the header is untrusted. We accept a file only if the tensors tile the data
 * buffer exactly (no overlap, no hole, as the reference implementation requires), so every
 * allocation is bounded by the file's own size. The JSON is parsed with cJSON (Debian's
 * libcjson): a well-tested parser with a nesting limit, rather than one written by hand.
 */
#include "io/io.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "io/safetensors.c assumes a little-endian host (safetensors data is little-endian)"
#endif

/* The reference implementation refuses headers above 100 MB; so do we. */
#define HEADER_MAX ((uint64_t)100 * 1000 * 1000)

typedef enum {
    ST_F32,
    ST_I32,
    ST_I64,
    ST_U8,
    ST_F64,
    ST_F16,
    ST_BF16,
    ST_I8,
    ST_I16,
    ST_U16,
    ST_U32,
    ST_BOOL,
    ST_COUNT
} st_dtype;

static const struct {
    const char *name;
    int file_size; /* bytes per element in the file */
    int dtype;     /* what it loads as */
} ST_TYPES[ST_COUNT] = {
    [ST_F32] = {"F32", 4, PIVQ_FLOAT32},   [ST_I32] = {"I32", 4, PIVQ_INT32},
    [ST_I64] = {"I64", 8, PIVQ_INT64},     [ST_U8] = {"U8", 1, PIVQ_UINT8},
    [ST_F64] = {"F64", 8, PIVQ_FLOAT32},   [ST_F16] = {"F16", 2, PIVQ_FLOAT32},
    [ST_BF16] = {"BF16", 2, PIVQ_FLOAT32}, [ST_I8] = {"I8", 1, PIVQ_INT32},
    [ST_I16] = {"I16", 2, PIVQ_INT32},     [ST_U16] = {"U16", 2, PIVQ_INT32},
    [ST_U32] = {"U32", 4, PIVQ_INT64},     [ST_BOOL] = {"BOOL", 1, PIVQ_UINT8},
};

static const char *native_name(int dtype)
{
    switch (dtype) {
    case PIVQ_FLOAT32: return "F32";
    case PIVQ_INT32: return "I32";
    case PIVQ_INT64: return "I64";
    default: return "U8";
    }
}

struct pivq_tensor_set {
    int n, nmeta;
    char **names;
    pivq_tensor **tensors;
    char **keys, **values;
};

void pivq_tensor_set_free(pivq_tensor_set *s)
{
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        free(s->names[i]);
        pivq_tensor_release(s->tensors[i]);
    }
    for (int i = 0; i < s->nmeta; i++) {
        free(s->keys[i]);
        free(s->values[i]);
    }
    free(s->names);
    free(s->tensors);
    free(s->keys);
    free(s->values);
    free(s);
}

int pivq_tensor_set_count(const pivq_tensor_set *s)
{
    return s ? s->n : 0;
}
int pivq_tensor_set_metadata_count(const pivq_tensor_set *s)
{
    return s ? s->nmeta : 0;
}

const char *pivq_tensor_set_name(const pivq_tensor_set *s, int i)
{
    return s && i >= 0 && i < s->n ? s->names[i] : NULL;
}

pivq_tensor *pivq_tensor_set_tensor(const pivq_tensor_set *s, int i)
{
    if (!s || i < 0 || i >= s->n) {
        pivq_set_error("tensor_set_tensor: index %d out of range (%d tensors)", i, s ? s->n : 0);
        return NULL;
    }
    return pivq_tensor_retain(s->tensors[i]);
}

const char *pivq_tensor_set_metadata_key(const pivq_tensor_set *s, int i)
{
    return s && i >= 0 && i < s->nmeta ? s->keys[i] : NULL;
}

const char *pivq_tensor_set_metadata_value(const pivq_tensor_set *s, int i)
{
    return s && i >= 0 && i < s->nmeta ? s->values[i] : NULL;
}

/* ---- reading ----------------------------------------------------------------------------- */

/* Bytes come either from memory or from an open file (large checkpoints are read tensor by
   tensor straight into their storage, never whole). */
typedef struct st_src {
    const char *name;
    const unsigned char *mem;
    FILE *f;
    uint64_t size;
} st_src;

static int src_read_at(st_src *s, uint64_t off, void *dst, uint64_t n)
{
    if (off > s->size || n > s->size - off)
        return pivq_set_error("safetensors: %s: read past the end of the file", s->name);
    if (n == 0) return 0;
    if (s->mem) {
        memcpy(dst, s->mem + off, (size_t)n);
        return 0;
    }
    if (fseeko(s->f, (off_t)off, SEEK_SET) != 0 || fread(dst, 1, (size_t)n, s->f) != n)
        return pivq_set_error("safetensors: %s: read error at byte %llu (file changed or "
                              "truncated while reading?)",
                              s->name, (unsigned long long)off);
    return 0;
}

typedef struct st_entry {
    const char *name; /* points into the cJSON tree */
    int st;
    int ndim;
    int64_t shape[PIVQ_MAX_DIMS];
    uint64_t begin, end;
} st_entry;

/* A JSON number that is an exact integer in [0, 2^53]. */
static int json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != floor(d)) return -1;
    *out = (uint64_t)d;
    return 0;
}

static int parse_entry(const char *fn, const cJSON *item, uint64_t data_size, st_entry *e)
{
    e->name = item->string;
    if (!cJSON_IsObject(item))
        return pivq_set_error("safetensors: %s: entry \"%s\" is not an object", fn, e->name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs))
        return pivq_set_error("safetensors: %s: tensor \"%s\" needs a string dtype, a shape "
                              "array and a data_offsets array",
                              fn, e->name);
    e->st = -1;
    for (int k = 0; k < ST_COUNT; k++)
        if (strcmp(dt->valuestring, ST_TYPES[k].name) == 0) e->st = k;
    if (e->st < 0)
        return pivq_set_error("safetensors: %s: tensor \"%s\" has unknown dtype \"%.32s\" "
                              "(supported: F32 I32 I64 U8 F64 F16 BF16 I8 I16 U16 U32 BOOL)",
                              fn, e->name, dt->valuestring);
    int nd = cJSON_GetArraySize(shape);
    if (nd > PIVQ_MAX_DIMS)
        return pivq_set_error("safetensors: %s: tensor \"%s\" has %d dims (at most %d)", fn,
                              e->name, nd, PIVQ_MAX_DIMS);
    e->ndim = nd;
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, shape)
    {
        uint64_t s;
        if (json_uint(v, &s))
            return pivq_set_error("safetensors: %s: tensor \"%s\": shape entry %d is not a "
                                  "nonnegative integer",
                                  fn, e->name, i);
        e->shape[i++] = (int64_t)s;
    }
    if (cJSON_GetArraySize(offs) != 2 || json_uint(cJSON_GetArrayItem(offs, 0), &e->begin) ||
        json_uint(cJSON_GetArrayItem(offs, 1), &e->end))
        return pivq_set_error("safetensors: %s: tensor \"%s\": data_offsets must be two "
                              "nonnegative integers",
                              fn, e->name);
    if (e->begin > e->end || e->end > data_size)
        return pivq_set_error("safetensors: %s: tensor \"%s\": data_offsets [%llu, %llu] out "
                              "of range (data buffer of %llu bytes)",
                              fn, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                              (unsigned long long)data_size);
    int64_t numel = pivq_io_numel(nd, e->shape);
    char buf[160];
    int es = ST_TYPES[e->st].file_size;
    if (numel < 0 || numel > INT64_MAX / 8 || (uint64_t)(numel * es) != e->end - e->begin)
        return pivq_set_error("safetensors: %s: tensor \"%s\": shape %s of %s needs %lld bytes "
                              "but data_offsets [%llu, %llu] span %llu",
                              fn, e->name, pivq_sizes_str(nd, e->shape, buf, sizeof buf),
                              ST_TYPES[e->st].name,
                              numel < 0 || numel > INT64_MAX / 8 ? -1LL : (long long)(numel * es),
                              (unsigned long long)e->begin, (unsigned long long)e->end,
                              (unsigned long long)(e->end - e->begin));
    return 0;
}

static int cmp_entry(const void *a, const void *b)
{
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static float half_to_float(uint16_t h)
{
    int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
    float v;
    if (exp == 0)
        v = ldexpf((float)mant, -24);
    else if (exp == 31)
        v = mant ? NAN : INFINITY;
    else
        v = ldexpf((float)(mant | 1024), exp - 25);
    return sign ? -v : v;
}

/* Convert n elements of file type st (raw little-endian bytes) into the tensor's data. */
static void st_convert(int st, const unsigned char *src, void *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        switch (st) {
        case ST_F64: {
            double d;
            memcpy(&d, src + 8 * i, 8);
            ((float *)dst)[i] = (float)d;
            break;
        }
        case ST_F16:
            ((float *)dst)[i] = half_to_float((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
            break;
        case ST_BF16: {
            uint32_t bits = (uint32_t)(src[2 * i] | src[2 * i + 1] << 8) << 16;
            memcpy((float *)dst + i, &bits, 4);
            break;
        }
        case ST_I8: ((int32_t *)dst)[i] = (int8_t)src[i]; break;
        case ST_I16:
            ((int32_t *)dst)[i] = (int16_t)(uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
            break;
        case ST_U16: ((int32_t *)dst)[i] = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8); break;
        case ST_U32: {
            uint32_t u;
            memcpy(&u, src + 4 * i, 4);
            ((int64_t *)dst)[i] = u;
            break;
        }
        case ST_BOOL: ((uint8_t *)dst)[i] = src[i] != 0; break;
        }
    }
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static pivq_tensor_set *st_parse(st_src *src)
{
    const char *fn = src->name;
    unsigned char lenbytes[8];
    if (src->size < 8) {
        pivq_set_error("safetensors: %s: file of %llu bytes is too short for the 8-byte header "
                       "length",
                       fn, (unsigned long long)src->size);
        return NULL;
    }
    if (src_read_at(src, 0, lenbytes, 8)) return NULL;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | lenbytes[i];
    if (hlen > src->size - 8) {
        pivq_set_error("safetensors: %s: header length %llu goes beyond the end of the file "
                       "(%llu bytes)",
                       fn, (unsigned long long)hlen, (unsigned long long)src->size);
        return NULL;
    }
    if (hlen > HEADER_MAX || hlen < 2) {
        pivq_set_error("safetensors: %s: header length %llu is not plausible (2..%llu)", fn,
                       (unsigned long long)hlen, (unsigned long long)HEADER_MAX);
        return NULL;
    }
    uint64_t data_size = src->size - 8 - hlen;
    char *header = malloc((size_t)hlen + 1);
    cJSON *root = NULL;
    st_entry *entries = NULL;
    pivq_tensor_set *set = NULL;
    unsigned char *scratch = NULL;
    if (!header) {
        pivq_set_error("safetensors: %s: out of memory", fn);
        return NULL;
    }
    if (src_read_at(src, 8, header, hlen)) goto fail;
    header[hlen] = '\0';
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(header, (size_t)hlen, &end, 0);
    if (!root) {
        size_t at = end && end >= header ? (size_t)(end - header) : 0;
        pivq_set_error("safetensors: %s: invalid JSON in the header (near byte %zu of %llu)", fn,
                       at, (unsigned long long)hlen);
        goto fail;
    }
    /* the writer may pad the header with spaces; anything else after the JSON is corrupt */
    for (const char *p = end; p < header + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            pivq_set_error("safetensors: %s: unexpected bytes after the JSON header (at byte "
                           "%zu)",
                           fn, (size_t)(p - header));
            goto fail;
        }
    if (!cJSON_IsObject(root)) {
        pivq_set_error("safetensors: %s: the header is not a JSON object", fn);
        goto fail;
    }
    int count = cJSON_GetArraySize(root);
    entries = calloc((size_t)count + 1, sizeof *entries);
    set = calloc(1, sizeof *set);
    if (!entries || !set) {
        pivq_set_error("safetensors: %s: out of memory", fn);
        goto fail;
    }
    const cJSON *meta = NULL;
    int n = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, root)
    {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (meta) {
                pivq_set_error("safetensors: %s: two __metadata__ entries", fn);
                goto fail;
            }
            meta = item;
            continue;
        }
        if (parse_entry(fn, item, data_size, &entries[n])) goto fail;
        n++;
    }
    if (meta && !cJSON_IsObject(meta)) {
        pivq_set_error("safetensors: %s: __metadata__ is not an object", fn);
        goto fail;
    }
    qsort(entries, (size_t)n, sizeof *entries, cmp_entry);
    /* the tensors must tile the data buffer: sorted by begin, each starts where the previous
       ended (empty tensors may sit anywhere inside it) */
    uint64_t covered = 0;
    const char *last = NULL;
    for (int i = 0; i < n; i++) {
        st_entry *e = &entries[i];
        for (int j = i + 1; j < n && entries[j].begin == e->begin; j++)
            if (strcmp(entries[j].name, e->name) == 0) {
                pivq_set_error("safetensors: %s: tensor name \"%s\" appears twice", fn, e->name);
                goto fail;
            }
        if (e->begin == e->end) continue;
        if (e->begin < covered) {
            pivq_set_error("safetensors: %s: tensors \"%s\" and \"%s\" overlap (bytes %llu.."
                           "%llu)",
                           fn, last, e->name, (unsigned long long)e->begin,
                           (unsigned long long)covered);
            goto fail;
        }
        if (e->begin > covered) {
            pivq_set_error("safetensors: %s: bytes %llu..%llu of the data buffer belong to no "
                           "tensor",
                           fn, (unsigned long long)covered, (unsigned long long)e->begin);
            goto fail;
        }
        covered = e->end;
        last = e->name;
    }
    if (covered != data_size) {
        pivq_set_error("safetensors: %s: the tensors cover %llu bytes of a %llu-byte data "
                       "buffer",
                       fn, (unsigned long long)covered, (unsigned long long)data_size);
        goto fail;
    }
    /* duplicate names at different offsets: a quadratic check is fine for header sizes */
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(entries[i].name, entries[j].name) == 0) {
                pivq_set_error("safetensors: %s: tensor name \"%s\" appears twice", fn,
                               entries[i].name);
                goto fail;
            }
    int nmeta = meta ? cJSON_GetArraySize(meta) : 0;
    set->names = calloc((size_t)n + 1, sizeof *set->names);
    set->tensors = calloc((size_t)n + 1, sizeof *set->tensors);
    set->keys = calloc((size_t)nmeta + 1, sizeof *set->keys);
    set->values = calloc((size_t)nmeta + 1, sizeof *set->values);
    if (!set->names || !set->tensors || !set->keys || !set->values) {
        pivq_set_error("safetensors: %s: out of memory", fn);
        goto fail;
    }
    if (meta) {
        const cJSON *kv;
        cJSON_ArrayForEach(kv, meta)
        {
            if (!cJSON_IsString(kv)) {
                pivq_set_error("safetensors: %s: __metadata__ value \"%s\" is not a string", fn,
                               kv->string);
                goto fail;
            }
            set->keys[set->nmeta] = dup_str(kv->string);
            set->values[set->nmeta] = dup_str(kv->valuestring);
            set->nmeta++;
            if (!set->keys[set->nmeta - 1] || !set->values[set->nmeta - 1]) {
                pivq_set_error("safetensors: %s: out of memory", fn);
                goto fail;
            }
        }
    }
    for (int i = 0; i < n; i++) {
        st_entry *e = &entries[i];
        int dtype = ST_TYPES[e->st].dtype;
        pivq_tensor *t = pivq_empty(dtype, e->ndim, e->shape);
        set->names[i] = dup_str(e->name);
        if (!t || !set->names[i]) {
            pivq_tensor_release(t);
            if (t) pivq_set_error("safetensors: %s: out of memory", fn);
            goto fail;
        }
        set->tensors[i] = t;
        set->n++;
        uint64_t nbytes = e->end - e->begin;
        uint64_t at = 8 + hlen + e->begin;
        int64_t numel = pivq_numel(t);
        if (pivq_dtype_size(dtype) == ST_TYPES[e->st].file_size && e->st != ST_BOOL) {
            if (src_read_at(src, at, pivq_data(t), nbytes)) goto fail;
        } else {
            scratch = malloc(nbytes ? (size_t)nbytes : 1);
            if (!scratch) {
                pivq_set_error("safetensors: %s: out of memory", fn);
                goto fail;
            }
            if (src_read_at(src, at, scratch, nbytes)) goto fail;
            st_convert(e->st, scratch, pivq_data(t), numel);
            free(scratch);
            scratch = NULL;
        }
    }
    free(entries);
    cJSON_Delete(root);
    free(header);
    return set;
fail:
    free(scratch);
    free(entries);
    cJSON_Delete(root);
    free(header);
    pivq_tensor_set_free(set);
    return NULL;
}

pivq_tensor_set *pivq_safetensors_decode(const void *data, size_t len, const char *name)
{
    st_src src = {name ? name : "<memory>", data, NULL, len};
    if (!data && len) {
        pivq_set_error("safetensors: %s: data is NULL", src.name);
        return NULL;
    }
    static const unsigned char empty[1];
    if (!src.mem) src.mem = empty;
    return st_parse(&src);
}

pivq_tensor_set *pivq_safetensors_read(const char *path)
{
    if (!path) {
        pivq_set_error("safetensors: path is NULL");
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        pivq_set_error("safetensors: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        pivq_set_error("safetensors: %s is not a regular file", path);
        return NULL;
    }
    st_src src = {path, NULL, f, (uint64_t)st.st_size};
    pivq_tensor_set *set = st_parse(&src);
    fclose(f);
    return set;
}

/* ---- writing ----------------------------------------------------------------------------- */

static int cmp_index_by_name(const void *a, const void *b, void *names)
{
    const char *const *nm = names;
    return strcmp(nm[*(const int *)a], nm[*(const int *)b]);
}

static cJSON *json_int(long long v)
{
    char buf[32];
    /* integers as integers: cJSON prints doubles, which would turn 10^15 into 1e+15 */
    snprintf(buf, sizeof buf, "%lld", v);
    return cJSON_CreateRaw(buf);
}

int pivq_safetensors_write(const char *path, int n, const char *const *names,
                           pivq_tensor *const *tensors, int nmeta, const char *const *keys,
                           const char *const *values)
{
    const char *fn = path ? path : "(null)";
    if (n < 0 || nmeta < 0 || (n > 0 && (!names || !tensors)) || (nmeta > 0 && (!keys || !values)))
        return pivq_set_error("safetensors_write: %s: bad arguments (n=%d, nmeta=%d)", fn, n,
                              nmeta);
    for (int i = 0; i < n; i++) {
        if (!names[i] || !*names[i] || strcmp(names[i], "__metadata__") == 0)
            return pivq_set_error("safetensors_write: %s: tensor %d has an empty or reserved "
                                  "name",
                                  fn, i);
        if (pivq_check_tensor("safetensors_write", names[i], tensors[i])) return -1;
    }
    for (int i = 0; i < nmeta; i++)
        if (!keys[i] || !values[i])
            return pivq_set_error("safetensors_write: %s: metadata entry %d is NULL", fn, i);
    int *order = malloc(sizeof(int) * (size_t)(n + 1));
    if (!order) return pivq_set_error("safetensors_write: out of memory");
    for (int i = 0; i < n; i++)
        order[i] = i;
    /* sorted by name: the same tensors always give the same bytes */
    qsort_r(order, (size_t)n, sizeof *order, cmp_index_by_name, (void *)names);
    for (int i = 1; i < n; i++)
        if (strcmp(names[order[i]], names[order[i - 1]]) == 0) {
            pivq_set_error("safetensors_write: %s: tensor name \"%s\" given twice", fn,
                           names[order[i]]);
            free(order);
            return -1;
        }
    cJSON *root = cJSON_CreateObject();
    int ok = root != NULL;
    if (ok && nmeta > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        ok = meta != NULL;
        for (int i = 0; ok && i < nmeta; i++)
            ok = cJSON_AddStringToObject(meta, keys[i], values[i]) != NULL;
    }
    uint64_t offset = 0;
    for (int k = 0; ok && k < n; k++) {
        const pivq_tensor *t = tensors[order[k]];
        cJSON *e = cJSON_AddObjectToObject(root, names[order[k]]);
        ok = e && cJSON_AddStringToObject(e, "dtype", native_name(t->scalar_type));
        cJSON *shape = ok ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *offs = shape ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        ok = offs != NULL;
        for (int d = 0; ok && d < t->ndim; d++)
            ok = cJSON_AddItemToArray(shape, json_int(t->shape[d]));
        uint64_t nbytes = (uint64_t)pivq_numel(t) * (uint64_t)pivq_dtype_size(t->scalar_type);
        ok = ok && cJSON_AddItemToArray(offs, json_int((long long)offset)) &&
             cJSON_AddItemToArray(offs, json_int((long long)(offset + nbytes)));
        offset += nbytes;
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) {
        free(order);
        return pivq_set_error("safetensors_write: %s: out of memory building the header", fn);
    }
    /* pad with spaces so that the data buffer starts 8-byte aligned, as the reference does */
    size_t jlen = strlen(json), hlen = (jlen + 7) / 8 * 8;
    pivq_atomic_file af;
    if (pivq_atomic_open(&af, "safetensors_write", path)) {
        cJSON_free(json);
        free(order);
        return -1;
    }
    unsigned char lenbytes[8];
    for (int i = 0; i < 8; i++)
        lenbytes[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    int werr = fwrite(lenbytes, 1, 8, af.f) != 8 || fwrite(json, 1, jlen, af.f) != jlen;
    for (size_t i = jlen; !werr && i < hlen; i++)
        werr = fputc(' ', af.f) == EOF;
    cJSON_free(json);
    for (int k = 0; !werr && k < n; k++) {
        pivq_tensor *c = pivq_contiguous_nograd(tensors[order[k]]);
        if (!c) {
            free(order);
            pivq_atomic_abort(&af);
            return -1;
        }
        size_t nbytes = (size_t)pivq_numel(c) * (size_t)pivq_dtype_size(c->scalar_type);
        werr = nbytes && fwrite(pivq_data(c), 1, nbytes, af.f) != nbytes;
        pivq_tensor_release(c);
    }
    free(order);
    if (werr) {
        int e = errno;
        pivq_atomic_abort(&af);
        return pivq_set_error("safetensors_write: cannot write %s: %s", fn, strerror(e));
    }
    return pivq_atomic_commit(&af, "safetensors_write");
}
