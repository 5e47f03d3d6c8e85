/* core/alloc_policy.c — glibc malloc tuning for tensor workloads, applied when libpivq loads, and
 * the allocator's statistics.
 *
 * A training step allocates and frees the same large buffers (activations, gradients, im2col
 * columns; megabytes each) over and over. With glibc's defaults each such block is mmap'ed and
 * munmap'ed, or the heap top is trimmed back to the kernel, so every step pays page faults and
 * page clearing again (about 7% of a transformer-block step here). Raising the mmap threshold
 * to its maximum (32 MB on 64-bit) and the trim threshold keeps freed blocks in the process for
 * reuse, at the cost of keeping the step's peak memory resident -- and the peak of anything
 * else the process did, for good: see pivq_malloc_stats_get (pivq.memory.malloc) to tell heap
 * growth from live data.
 * Set PIVQ_MALLOC_DEFAULTS=1 in the environment to keep glibc's defaults.
 * (Candidate to move into core/ctx.c with the other process-wide settings.)
 */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

#ifdef __GLIBC__
#include <malloc.h>

__attribute__((constructor)) static void pivq_alloc_policy(void)
{
    const char *keep = getenv("PIVQ_MALLOC_DEFAULTS");
    if (keep && keep[0] == '1') return;
    mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 512 * 1024 * 1024);
}
#endif

int pivq_malloc_stats_get(pivq_malloc_stats *out)
{
    memset(out, 0, sizeof *out);
/* Under AddressSanitizer malloc is ASan's, and its mallinfo2 reports zeros. */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33) && !defined(__SANITIZE_ADDRESS__)
    struct mallinfo2 mi = mallinfo2();
    out->arena = (int64_t)mi.arena;
    out->in_use = (int64_t)mi.uordblks;
    out->free = (int64_t)mi.fordblks;
    out->mmapped = (int64_t)mi.hblkhd;
    return 0;
#else
    return -1;
#endif
}
