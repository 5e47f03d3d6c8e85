/* libFuzzer target: the safetensors reader (header length, JSON, offsets, dtypes) on
   arbitrary bytes. See csrc/fuzz/README.md. */
#include "pivq.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pivq_tensor_set *s = pivq_safetensors_decode(data, size, "fuzz");
    if (s) {
        volatile size_t sink = 0;
        for (int i = 0; i < pivq_tensor_set_count(s); i++) {
            sink += strlen(pivq_tensor_set_name(s, i));
            pivq_tensor *t = pivq_tensor_set_tensor(s, i);
            const uint8_t *p = pivq_data(t);
            size_t n = (size_t)pivq_numel(t) * (size_t)pivq_dtype_size(t->scalar_type);
            for (size_t j = 0; j < n; j++)
                sink += p[j];
            pivq_tensor_release(t);
        }
        for (int i = 0; i < pivq_tensor_set_metadata_count(s); i++)
            sink += strlen(pivq_tensor_set_metadata_key(s, i)) +
                    strlen(pivq_tensor_set_metadata_value(s, i));
        (void)sink;
    }
    pivq_tensor_set_free(s);
    return 0;
}
