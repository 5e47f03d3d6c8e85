/* libFuzzer target: the PNG and JPEG decoders (dispatched on the signature) on arbitrary
   bytes, plus the reduced-scale JPEG path used by image folders. The pixel cap is lowered so
   that valid-but-huge declared sizes do not make the fuzzer spend its time allocating; the
   size checks themselves are still exercised. See csrc/fuzz/README.md. */
#include "io/io.h"

#include <stddef.h>
#include <stdint.h>

static void touch(pivq_tensor *t)
{
    if (!t) return;
    volatile float sink = 0;
    const float *p = pivq_data(t);
    int64_t n = pivq_numel(t);
    for (int64_t i = 0; i < n; i++)
        sink += p[i];
    (void)sink;
    pivq_tensor_release(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int configured = 0;
    if (!configured) {
        pivq_image_max_pixels((int64_t)1 << 22);
        configured = 1;
    }
    touch(pivq_image_decode(data, size, "fuzz"));
    if (pivq_is_jpeg(data, size))
        touch(pivq_jpeg_decode_scaled(data, size, "fuzz", 1 + (int64_t)(size % 97)));
    return 0;
}
