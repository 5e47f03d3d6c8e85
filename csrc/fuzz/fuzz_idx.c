/* libFuzzer target: the IDX reader (raw and gzip) on arbitrary bytes. See csrc/fuzz/README.md. */
#include "pivq.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pivq_tensor *t = pivq_idx_decode(data, size, "fuzz");
    if (t) {
        /* touch every byte so that ASan sees any under-allocation */
        volatile uint8_t sink = 0;
        const uint8_t *p = pivq_data(t);
        size_t n = (size_t)pivq_numel(t) * (size_t)pivq_dtype_size(t->scalar_type);
        for (size_t i = 0; i < n; i++)
            sink ^= p[i];
        (void)sink;
    }
    pivq_tensor_release(t);
    return 0;
}
