/* quant/assign.c — exact minimum-cost rectangular linear assignment (L rows into K >= L columns).
 *
 * This is the solver behind the "matching" quantizer (notebooks/METHOD.md, "Quantizers"): the
 * L latents of one image take L distinct codebook entries, minimising the summed cost. It is exact,
 * not greedy, and built for PI-VQ's regime: L in the tens to hundreds, K in the thousands,
 * and most rows' nearest codes already distinct, so that reading the cost matrix once is
 * most of the work and everything after it must touch only a few rows.
 *
 * Notation: C is L x K, u_i and v_j are dual potentials, the reduced cost of edge (i, j) is
 * C_ij - u_i - v_j. Columns are ordered within a row by (cost, column index), a strict total
 * order; "the m cheapest columns of row i" means the first m in that order (so they are unique
 * and the m cheapest always contain the m' cheapest for m' < m).
 *
 *   1. Row pass. One streaming pass over C computes every row's minimum, its argmin (lowest
 *      column on ties), and the minimum of each block of ROW_BLOCK columns (kept to bound
 *      later selections), and rejects NaN/Inf. It is the only pass over all of C.
 *   2. Greedy start and fast path. u_i = min_j C_ij, v = 0; rows take their argmin in row
 *      order unless already taken. Taken edges are tight, all reduced costs are >= 0, v <= 0,
 *      and untaken columns have v = 0: the invariants of step 4. If every row got its argmin,
 *      the argmins were distinct and that is optimal (each row pays its own minimum, a lower
 *      bound for any assignment): notebooks/METHOD.md's fact (2). Return.
 *   3. Candidate reduction (notebooks/METHOD.md's fact (1)): row i needs only its L cheapest
 *      columns.
 *      Proof: take an optimal assignment where row i uses a column c outside that set S_i. The
 *      other L-1 rows occupy at most L-1 of the L columns of S_i, so some d in S_i is free, and
 *      C_id <= C_ic since every column outside S_i costs at least as much as every one inside.
 *      Moving row i to d keeps the assignment optimal and puts one more row inside its set;
 *      repeat. Any superset of S_i works equally. So row i's edges can be cut down to a list
 *      holding (at least) its L cheapest columns, L^2 edges in all instead of L*K.
 *      We go further and build each row's list lazily, as a prefix of the row's column order
 *      that grows only when a search needs it: a row first lists its FIRST_LIST cheapest
 *      columns (when step 4 first reaches it), then LIST_GROWTH times more, up to L, after
 *      which fact (1) says nothing more is needed. A row with a short list carries a horizon
 *      t_i: every unlisted column costs >= t_i. Since v <= 0, an unlisted edge's reduced cost
 *      is >= t_i - u_i, which lets step 4 prove that no unlisted edge can matter yet. In
 *      practice a search touches two or three rows and each needs only its first few columns,
 *      so the selection over K columns (which dominated a first, eager version) mostly runs
 *      over a few blocks of one row.
 *      A list of m columns: bound the m-th cheapest cost from above by the m-th smallest block
 *      minimum (m distinct entries are <= it), gather the entries <= bound from the blocks
 *      whose minimum is <= bound, and if more than L were gathered keep the L cheapest by
 *      quickselect. (With fewer blocks than m, interleaved groups of the row give the bound the
 *      same way; failing that, the whole row is gathered.)
 *   4. Shortest augmenting paths (Hungarian method with potentials, Jonker-Volgenant style,
 *      augmenting only the L rows; nothing is padded to a square). For each row left free by
 *      step 2: Dijkstra over reduced costs from that row, alternating row -> listed column ->
 *      the column's row, until it settles an unassigned column. Before settling a column at
 *      distance d, any scanned row whose horizon bound (its distance + t_i - u_i) is below d
 *      gets a longer list and is relaxed again, so every column is settled at its true distance
 *      in the full (fact-(1)-reduced) graph. Then the potentials of the settled rows and
 *      columns are updated (reduced costs stay >= 0 everywhere, including unlisted edges,
 *      because no horizon bound was below the final distance; the path becomes tight; the
 *      sink keeps v = 0) and the path is flipped. Potentials and distances are double so float
 *      costs do not drift.
 *      Cost after step 1: at most L searches; each relaxes at most L listed edges per scanned
 *      row (plus re-relaxations when a list grows, at most log_4 L times per row) and scans a
 *      frontier of at most |U| <= min(K, L^2) columns per settled column, where U is the union
 *      of the lists. So O(L^2 |U|) in the worst case, plus O(K) per list built without block
 *      bounds; in PI-VQ's typical case a few searches of two or three rows each.
 *
 * When 2L > K a list would not be much shorter than the row, so rows are used whole, read in
 * place from C, and no lists are kept (scratch O(K)).
 * Scratch: one allocation per call (per thread in the batch), O(L^2 + L*K/ROW_BLOCK + K)
 * bytes. The per-column arrays are left "clean" between problems (row4col = -1, v = 0,
 * dist = unseen), so a batch pays O(L), not O(K), per problem to reset them.
 */
#include "core/core.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__FAST_MATH__) || (defined(__FINITE_MATH_ONLY__) && __FINITE_MATH_ONLY__)
/* Infinities mark column states and NaN/Inf detection relies on IEEE arithmetic. */
#error "quant/assign.c must be compiled without -ffast-math / -ffinite-math-only"
#endif

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Columns per block of the row pass. Its block minima bound later selections; smaller blocks
   make those bounds tighter but the streaming pass slower. */
#define ROW_BLOCK 64
/* Length a candidate list starts at, and the factor it grows by when a search needs more. */
#define FIRST_LIST 4
#define LIST_GROWTH 4
/* Interleaved groups per wanted entry, for bounds when there are fewer blocks than that. */
#define GROUPS_PER_ENTRY 4

/* A column's distance in the current search doubles as its state: UNSEEN_DIST until reached,
   SETTLED_DIST once settled (so no relaxation can lower it), finite while on the frontier. */
#define UNSEEN_DIST INFINITY
#define SETTLED_DIST (-INFINITY)

/* What went wrong in one problem, formatted into a message by the caller (the message buffer
   is thread-local, so OpenMP workers must not write it). */
typedef enum { FAULT_NONE = 0, FAULT_NONFINITE, FAULT_NO_PATH } fault_kind;
typedef struct {
    fault_kind kind;
    int64_t row, col; /* offending entry (NONFINITE) or stuck row (NO_PATH) */
    float value;
} assign_fault;

/* A column of one row during selection. */
typedef struct {
    float cost;
    int32_t col;
} cost_col;

/* What a relaxation reads and writes for column j, side by side: one cache line per edge. */
typedef struct {
    double dist; /* this search's tentative distance, or UNSEEN_DIST / SETTLED_DIST */
    double v;    /* column potential: <= 0, and 0 on every unassigned column */
} column_state;

/* Working memory for problems of one shape. One malloc; arrays carved out of it. */
typedef struct {
    int32_t L, K, n_blocks;
    bool use_lists; /* 2L <= K: rows use candidate lists, else whole rows */
    /* per row */
    float *row_min;        /* [L] */
    int32_t *row_argmin;   /* [L] */
    float *block_min;      /* [L x n_blocks] minimum of each ROW_BLOCK columns (lists only) */
    double *u;             /* [L] row potentials */
    int32_t *col4row;      /* [L] column of each row, -1 while free */
    int32_t *free_rows;    /* [L] rows left over by the greedy start */
    int32_t *scanned_rows; /* [L] rows reached by the current search, in order */
    double *scanned_reach; /* [L] distance at which each of those was reached */
    int32_t *list_len;     /* [L] candidate list length, 0 = none yet */
    float *list_horizon;   /* [L] every unlisted column costs >= this; INFINITY if complete */
    int32_t *list_col;     /* [L x L] listed columns of each row (lists only) */
    float *list_cost;      /* [L x L] their costs */
    /* per column [K]; col (dist = UNSEEN_DIST, v = 0) and row4col are clean between problems */
    column_state *col;
    int32_t *row4col;      /* row holding each column, -1 if none */
    int32_t *pred;         /* row from which the column was reached */
    int32_t *frontier_pos; /* index of a frontier column in frontier_col */
    int32_t *frontier_col; /* reached, unsettled columns (unordered) */
    double *frontier_dist; /* their distances, contiguous for the minimum search */
    int32_t *touched;      /* every column reached by the current search */
    int32_t n_frontier, n_touched;
    /* selection temporaries (lists only) */
    float *bound_scratch; /* [K] copies of block/group minima that quickselect permutes */
    cost_col *gathered;   /* [K] entries under a bound */
    void *block;
} assign_scratch;

/* ---------------------------------------------------------------- scratch --------------- */

/* Reserve n elements of size elem at *offset (64-byte aligned); false on size overflow. */
static bool reserve(size_t *offset, size_t *at, size_t n, size_t elem)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, elem, &bytes)) return false;
    size_t start = (*offset + 63) & ~(size_t)63;
    if (start < *offset || __builtin_add_overflow(start, bytes, offset)) return false;
    *at = start;
    return true;
}

/* Allocate scratch for L x K problems. Returns 0, or the byte count that could not be
   allocated (SIZE_MAX if it overflows). */
static size_t scratch_init(assign_scratch *s, int32_t L, int32_t K)
{
    memset(s, 0, sizeof *s);
    s->L = L;
    s->K = K;
    s->n_blocks = (int32_t)(((int64_t)K + ROW_BLOCK - 1) / ROW_BLOCK);
    s->use_lists = 2 * (int64_t)L <= K;
    const size_t nL = (size_t)L, nK = (size_t)K;
    const size_t nL_lists = s->use_lists ? nL : 0, nK_lists = s->use_lists ? nK : 0;
    size_t total = 0, at[22];
    int a = 0;
    bool ok =
        reserve(&total, &at[a++], nL, sizeof(float))                                /* row_min */
        && reserve(&total, &at[a++], nL, sizeof(int32_t))                           /* row_argmin */
        && reserve(&total, &at[a++], nL_lists * (size_t)s->n_blocks, sizeof(float)) /* block_min */
        && reserve(&total, &at[a++], nL, sizeof(double))                            /* u */
        && reserve(&total, &at[a++], nL, sizeof(int32_t))                           /* col4row */
        && reserve(&total, &at[a++], nL, sizeof(int32_t))                           /* free_rows */
        && reserve(&total, &at[a++], nL, sizeof(int32_t))            /* scanned_rows */
        && reserve(&total, &at[a++], nL, sizeof(double))             /* scanned_reach */
        && reserve(&total, &at[a++], nL, sizeof(int32_t))            /* list_len */
        && reserve(&total, &at[a++], nL, sizeof(float))              /* list_horizon */
        && reserve(&total, &at[a++], nL_lists * nL, sizeof(int32_t)) /* list_col */
        && reserve(&total, &at[a++], nL_lists * nL, sizeof(float))   /* list_cost */
        && reserve(&total, &at[a++], nK, sizeof(column_state))       /* col */
        && reserve(&total, &at[a++], nK, sizeof(int32_t))            /* row4col */
        && reserve(&total, &at[a++], nK, sizeof(int32_t))            /* pred */
        && reserve(&total, &at[a++], nK, sizeof(int32_t))            /* frontier_pos */
        && reserve(&total, &at[a++], nK, sizeof(int32_t))            /* frontier_col */
        && reserve(&total, &at[a++], nK, sizeof(double))             /* frontier_dist */
        && reserve(&total, &at[a++], nK, sizeof(int32_t))            /* touched */
        && reserve(&total, &at[a++], nK_lists, sizeof(float))        /* bound_scratch */
        && reserve(&total, &at[a++], nK_lists, sizeof(cost_col));    /* gathered */
    if (!ok) return SIZE_MAX;
    char *base = malloc(total + 64);
    if (!base) return total + 64;
    s->block = base;
    base += (64 - ((uintptr_t)base & 63)) & 63; /* the offsets above assume 64-byte alignment */
    a = 0;
    s->row_min = (float *)(base + at[a++]);
    s->row_argmin = (int32_t *)(base + at[a++]);
    s->block_min = (float *)(base + at[a++]);
    s->u = (double *)(base + at[a++]);
    s->col4row = (int32_t *)(base + at[a++]);
    s->free_rows = (int32_t *)(base + at[a++]);
    s->scanned_rows = (int32_t *)(base + at[a++]);
    s->scanned_reach = (double *)(base + at[a++]);
    s->list_len = (int32_t *)(base + at[a++]);
    s->list_horizon = (float *)(base + at[a++]);
    s->list_col = (int32_t *)(base + at[a++]);
    s->list_cost = (float *)(base + at[a++]);
    s->col = (column_state *)(base + at[a++]);
    s->row4col = (int32_t *)(base + at[a++]);
    s->pred = (int32_t *)(base + at[a++]);
    s->frontier_pos = (int32_t *)(base + at[a++]);
    s->frontier_col = (int32_t *)(base + at[a++]);
    s->frontier_dist = (double *)(base + at[a++]);
    s->touched = (int32_t *)(base + at[a++]);
    s->bound_scratch = (float *)(base + at[a++]);
    s->gathered = (cost_col *)(base + at[a++]);
    /* The clean state of the per-column arrays. */
    for (int32_t k = 0; k < K; k++) {
        s->col[k] = (column_state){UNSEEN_DIST, 0.0};
        s->row4col[k] = -1;
    }
    return 0;
}

static void scratch_free(assign_scratch *s)
{
    free(s->block);
    s->block = NULL;
}

/* ---------------------------------------------------------------- selection ------------- */

/* Rearrange a[0..n) so that a[k] is its k-th smallest (0-based), everything before it <= and
   everything after it >=; return a[k]. Hoare partitioning around a median-of-three pivot value:
   both scans stop on entries equal to the pivot, so runs of ties split evenly. */
static float select_kth_float(float *a, int32_t n, int32_t k)
{
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const int32_t mid = lo + (hi - lo) / 2;
        const float x = a[lo], y = a[mid], z = a[hi];
        const float pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot)
                i++;
            while (a[j] > pivot)
                j--;
            if (i <= j) {
                const float t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        /* now a[lo..j] <= pivot, a[i..hi] >= pivot, and a[j+1..i-1] == pivot */
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            break;
    }
    return a[k];
}

/* The k-th smallest (0-based, k < 16) of a[0..n), a left untouched: one pass keeping the k+1
   smallest in a sorted buffer. For the short first lists this beats copying and
   quickselecting the block minima, as later entries rarely enter the buffer. */
static float kth_smallest_small(const float *a, int32_t n, int32_t k)
{
    float kept[16] = {0};
    int32_t n_kept = 0;
    for (int32_t t = 0; t < n; t++) {
        const float x = a[t];
        if (n_kept > k) {
            if (!(x < kept[k])) continue;
        } else {
            n_kept++;
        }
        int32_t p = n_kept - 1; /* insert x, dropping the largest when full */
        while (p > 0 && kept[p - 1] > x) {
            kept[p] = kept[p - 1];
            p--;
        }
        kept[p] = x;
    }
    return kept[k];
}

/* (cost, column) order: the strict total order that defines "the m cheapest columns". */
static inline bool cheaper(cost_col a, cost_col b)
{
    return a.cost < b.cost || (a.cost == b.cost && a.col < b.col);
}

/* Rearrange a[0..n) (distinct columns) so that its k+1 cheapest come first. */
static void select_cheapest_pairs(cost_col *a, int32_t n, int32_t k)
{
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const int32_t mid = lo + (hi - lo) / 2;
        const cost_col x = a[lo], y = a[mid], z = a[hi];
        const cost_col pivot = cheaper(x, y) ? (cheaper(y, z) ? y : (cheaper(x, z) ? z : x))
                                             : (cheaper(x, z) ? x : (cheaper(y, z) ? z : y));
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (cheaper(a[i], pivot))
                i++;
            while (cheaper(pivot, a[j]))
                j--;
            if (i <= j) {
                const cost_col t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            break;
    }
}

/* Append (row[j], j) for every j in [start, end) with row[j] <= bound to gathered[n..];
   returns the new count. Few entries qualify, so with SSE2 sixteen are tested at once and
   skipped together when none does. */
static int32_t gather_at_most(const float *row, int32_t start, int32_t end, float bound,
                              cost_col *gathered, int32_t n)
{
    int32_t j = start;
#ifdef __SSE2__
    const __m128 limit = _mm_set1_ps(bound);
    for (; j + 16 <= end; j += 16) {
        const float *p = row + j;
        const __m128 hit = _mm_or_ps(_mm_or_ps(_mm_cmple_ps(_mm_loadu_ps(p), limit),
                                               _mm_cmple_ps(_mm_loadu_ps(p + 4), limit)),
                                     _mm_or_ps(_mm_cmple_ps(_mm_loadu_ps(p + 8), limit),
                                               _mm_cmple_ps(_mm_loadu_ps(p + 12), limit)));
        if (!_mm_movemask_ps(hit)) continue;
        for (int32_t k = j; k < j + 16; k++) {
            gathered[n] = (cost_col){row[k], k};
            n += row[k] <= bound;
        }
    }
#endif
    for (; j < end; j++) {
        gathered[n] = (cost_col){row[j], j};
        n += row[j] <= bound;
    }
    return n;
}

/* acc[g] = min(acc[g], x[g]) for g < n. */
static void min_into(float *restrict acc, const float *restrict x, int32_t n)
{
    int32_t g = 0;
#ifdef __SSE2__
    for (; g + 4 <= n; g += 4)
        _mm_storeu_ps(acc + g, _mm_min_ps(_mm_loadu_ps(acc + g), _mm_loadu_ps(x + g)));
#endif
    for (; g < n; g++)
        acc[g] = x[g] < acc[g] ? x[g] : acc[g];
}

/* Step 3: (re)build row i's candidate list to hold at least its `want` cheapest columns (fewer
   than L only if want < L), as a prefix of the row's column order, with its horizon. A longer
   list always contains the shorter one, so edges relaxed earlier stay valid. */
static void build_list(assign_scratch *s, const float *row, int32_t i, int32_t want)
{
    const int32_t L = s->L, K = s->K, n_blocks = s->n_blocks;
    const float *block_min = s->block_min + (size_t)i * n_blocks;
    cost_col *gathered = s->gathered;
    int32_t n = 0;
    float bound;
    if (want <= n_blocks) {
        /* 3a. The want-th smallest block minimum bounds the want-th cheapest cost; only blocks
               whose minimum is under the bound hold entries under it. */
        if (want <= 16) {
            bound = kth_smallest_small(block_min, n_blocks, want - 1);
        } else {
            memcpy(s->bound_scratch, block_min, (size_t)n_blocks * sizeof(float));
            bound = select_kth_float(s->bound_scratch, n_blocks, want - 1);
        }
        for (int32_t b = 0; b < n_blocks; b++) {
            if (block_min[b] > bound) continue;
            const int32_t end = b == n_blocks - 1 ? K : (b + 1) * ROW_BLOCK;
            n = gather_at_most(row, b * ROW_BLOCK, end, bound, gathered, n);
        }
    } else if (2 * (int64_t)GROUPS_PER_ENTRY * want <= K) {
        /* 3b. Too few blocks: the same with G interleaved groups {g, g+G, g+2G, ...}, whose
               minima are an elementwise min over the row's chunks of G. */
        const int32_t G = GROUPS_PER_ENTRY * want;
        float *group_min = s->bound_scratch, *copy = s->bound_scratch + G; /* 2G <= K */
        memcpy(group_min, row, (size_t)G * sizeof(float));
        int32_t chunk = G;
        for (; chunk < K; chunk += G)
            min_into(group_min, row + chunk, K - chunk < G ? K - chunk : G);
        memcpy(copy, group_min, (size_t)G * sizeof(float));
        bound = select_kth_float(copy, G, want - 1);
        for (int32_t g = 0; g < G; g++) {
            if (group_min[g] > bound) continue;
            for (int32_t j = g; j < K; j += G) {
                const float c = row[j];
                gathered[n] = (cost_col){c, j};
                n += c <= bound;
            }
        }
    } else {
        /* 3c. No useful bound: gather the whole row. */
        bound = INFINITY;
        for (int32_t j = 0; j < K; j++)
            gathered[j] = (cost_col){row[j], j};
        n = K;
    }
    /* 3d. L entries are always enough (fact (1)): keep the L cheapest. The gathered entries
           are all those <= bound, a prefix of the row's order, so both cases stay prefixes. */
    if (n > L) {
        select_cheapest_pairs(gathered, n, L - 1);
        n = L;
    }
    int32_t *out_col = s->list_col + (size_t)i * L;
    float *out_cost = s->list_cost + (size_t)i * L;
    for (int32_t k = 0; k < n; k++) {
        out_col[k] = gathered[k].col;
        out_cost[k] = gathered[k].cost;
    }
    s->list_len[i] = n;
    s->list_horizon[i] = n >= L ? INFINITY : bound; /* unlisted entries are > bound */
}

/* ---------------------------------------------------------------- row pass -------------- */

/* Step 1 for one row: its minimum, lowest argmin and (if block_min) each block's minimum.
   Returns false if the row holds NaN/Inf. This pass streams all of C, so it is written to run
   at memory speed whatever the compiler flags: SSE2 (baseline on x86-64) with independent
   accumulators, and a scalar loop elsewhere and for a short last block. Finiteness: x - x is
   +0 for finite x and NaN for NaN/Inf, and OR-ing those bit patterns yields a NaN iff one was.
   The argmin search then scans only the first block that reached the minimum. */
static bool row_pass(const float *row, int32_t K, float *block_min, float *min_out,
                     int32_t *argmin_out)
{
    float best = INFINITY;
    int32_t best_start = 0, start = 0, b = 0;
    bool finite = true;
#ifdef __SSE2__
    __m128 poison0 = _mm_setzero_ps(), poison1 = _mm_setzero_ps();
    for (; start + ROW_BLOCK <= K; start += ROW_BLOCK, b++) {
        const float *p = row + start;
        __m128 m0 = _mm_loadu_ps(p), m1 = _mm_loadu_ps(p + 4), m2 = _mm_loadu_ps(p + 8),
               m3 = _mm_loadu_ps(p + 12);
        poison0 = _mm_or_ps(poison0, _mm_or_ps(_mm_sub_ps(m0, m0), _mm_sub_ps(m1, m1)));
        poison1 = _mm_or_ps(poison1, _mm_or_ps(_mm_sub_ps(m2, m2), _mm_sub_ps(m3, m3)));
        for (int32_t j = 16; j < ROW_BLOCK; j += 16) {
            const __m128 x0 = _mm_loadu_ps(p + j), x1 = _mm_loadu_ps(p + j + 4);
            const __m128 x2 = _mm_loadu_ps(p + j + 8), x3 = _mm_loadu_ps(p + j + 12);
            m0 = _mm_min_ps(m0, x0);
            m1 = _mm_min_ps(m1, x1);
            m2 = _mm_min_ps(m2, x2);
            m3 = _mm_min_ps(m3, x3);
            poison0 = _mm_or_ps(poison0, _mm_or_ps(_mm_sub_ps(x0, x0), _mm_sub_ps(x1, x1)));
            poison1 = _mm_or_ps(poison1, _mm_or_ps(_mm_sub_ps(x2, x2), _mm_sub_ps(x3, x3)));
        }
        __m128 m = _mm_min_ps(_mm_min_ps(m0, m1), _mm_min_ps(m2, m3));
        m = _mm_min_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(1, 0, 3, 2)));
        m = _mm_min_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(2, 3, 0, 1)));
        const float block = _mm_cvtss_f32(m);
        if (block_min) block_min[b] = block;
        if (block < best) {
            best = block;
            best_start = start;
        }
    }
    const __m128 poison = _mm_or_ps(poison0, poison1);
    finite = _mm_movemask_ps(_mm_cmpunord_ps(poison, poison)) == 0;
#endif
    /* Portable path (and the short last block): eight independent lanes, which compilers can
       vectorize; x - x summed per lane stays 0 unless a NaN/Inf passes. */
    for (; start < K; start += ROW_BLOCK, b++) {
        const int32_t end = K - start < ROW_BLOCK ? K : start + ROW_BLOCK;
        float lane_min[8], lane_poison[8];
        for (int l = 0; l < 8; l++) {
            lane_min[l] = INFINITY;
            lane_poison[l] = 0.0f;
        }
        int32_t j = start;
        for (; j + 8 <= end; j += 8)
            for (int l = 0; l < 8; l++) {
                const float x = row[j + l];
                lane_min[l] = x < lane_min[l] ? x : lane_min[l];
                lane_poison[l] += x - x;
            }
        for (; j < end; j++) {
            const float x = row[j];
            lane_min[0] = x < lane_min[0] ? x : lane_min[0];
            lane_poison[0] += x - x;
        }
        float block = INFINITY;
        for (int l = 0; l < 8; l++) {
            block = lane_min[l] < block ? lane_min[l] : block;
            finite &= lane_poison[l] == 0.0f;
        }
        if (block_min) block_min[b] = block;
        if (block < best) {
            best = block;
            best_start = start;
        }
    }
    if (!finite) return false;
    int32_t j = best_start;
    while (row[j] != best)
        j++;
    *min_out = best;
    *argmin_out = j;
    return true;
}

/* ---------------------------------------------------------------- augmenting paths ------ */

/* Step 4a: relax n edges of row i (columns cols[k], or k itself if cols is NULL) for a search
   that reached row i at distance reach: column j is then at reach + C_ij - u_i - v_j. Settled
   columns sit at SETTLED_DIST and unseen ones at UNSEEN_DIST, so one comparison decides. */
static inline void relax_row(assign_scratch *s, int32_t i, double reach, const int32_t *cols,
                             const float *costs, int32_t n)
{
    const double base = reach - s->u[i];
    column_state *restrict col = s->col;
    int32_t *restrict pred = s->pred, *restrict frontier_pos = s->frontier_pos;
    double *restrict frontier_dist = s->frontier_dist;
    for (int32_t k = 0; k < n; k++) {
        const int32_t j = cols ? cols[k] : k;
        const double d = base + (double)costs[k] - col[j].v;
        if (!(d < col[j].dist)) continue;
        if (col[j].dist == UNSEEN_DIST) {
            frontier_pos[j] = s->n_frontier;
            s->frontier_col[s->n_frontier++] = j;
            s->touched[s->n_touched++] = j;
        }
        col[j].dist = d;
        frontier_dist[frontier_pos[j]] = d;
        pred[j] = i;
    }
}

/* Relax every listed edge of row i (or the whole row without lists). */
static void relax_listed(assign_scratch *s, const float *cost, int64_t row_stride, int32_t i,
                         double reach)
{
    if (s->use_lists)
        relax_row(s, i, reach, s->list_col + (size_t)i * s->L, s->list_cost + (size_t)i * s->L,
                  s->list_len[i]);
    else
        relax_row(s, i, reach, NULL, cost + (int64_t)i * row_stride, s->K);
}

/* Lowest bound, over the rows scanned so far, on the distance any of their unlisted edges could
   reach (reach + horizon - u_i, as v <= 0); sets *which to the index in scanned_rows, or -1. */
static double lowest_horizon(const assign_scratch *s, int32_t n_scanned, int32_t *which)
{
    double lowest = INFINITY;
    *which = -1;
    for (int32_t t = 0; t < n_scanned; t++) {
        const int32_t row = s->scanned_rows[t];
        const double bound = s->scanned_reach[t] + (double)s->list_horizon[row] - s->u[row];
        if (bound < lowest) {
            lowest = bound;
            *which = t;
        }
    }
    return lowest;
}

/* Step 4: one Dijkstra search from free row r, then the potential update and the flip of the
   path. Returns false if no unassigned column is reachable (cannot happen for valid input,
   see step 3; kept as a guard). */
static bool augment_from_row(assign_scratch *s, const float *cost, int64_t row_stride, int32_t r)
{
    const int32_t L = s->L;
    double *restrict u = s->u;
    column_state *restrict col = s->col;
    int32_t *restrict row4col = s->row4col, *restrict col4row = s->col4row;
    int32_t *restrict frontier_col = s->frontier_col, *restrict frontier_pos = s->frontier_pos;
    double *restrict frontier_dist = s->frontier_dist;
    int32_t *restrict scanned_rows = s->scanned_rows;
    double *restrict scanned_reach = s->scanned_reach;

    s->n_touched = s->n_frontier = 0;
    int32_t n_scanned = 0, sink = -1, i = r;
    double settled_dist = 0.0; /* distance of the column settled last */
    double horizon = INFINITY; /* lowest_horizon() of the scanned rows, kept up to date */
    int32_t horizon_row = -1;
    for (;;) {
        /* 4a. Scan row i: relax its listed edges. */
        scanned_rows[n_scanned] = i;
        scanned_reach[n_scanned++] = settled_dist;
        if (s->use_lists) {
            if (s->list_len[i] == 0)
                build_list(s, cost + (int64_t)i * row_stride, i, FIRST_LIST < L ? FIRST_LIST : L);
            const double bound = settled_dist + (double)s->list_horizon[i] - u[i];
            if (bound < horizon) {
                horizon = bound;
                horizon_row = n_scanned - 1;
            }
        }
        relax_listed(s, cost, row_stride, i, settled_dist);

        /* 4b. Find the closest frontier column (among equals, an unassigned one: it ends the
               search). Before settling it, lengthen the list of any scanned row whose unlisted
               edges might reach a column sooner. */
        int32_t best_pos;
        double best;
        for (;;) {
            best_pos = -1;
            best = INFINITY;
            bool best_free = false;
            for (int32_t p = 0; p < s->n_frontier; p++) {
                const double d = frontier_dist[p];
                if (d < best || (d == best && !best_free && row4col[frontier_col[p]] < 0)) {
                    best = d;
                    best_pos = p;
                    best_free = row4col[frontier_col[p]] < 0;
                }
            }
            if (!(horizon < best)) break;
            const int32_t row = scanned_rows[horizon_row];
            const int64_t want = (int64_t)s->list_len[row] * LIST_GROWTH;
            build_list(s, cost + (int64_t)row * row_stride, row, want < L ? (int32_t)want : L);
            relax_listed(s, cost, row_stride, row, scanned_reach[horizon_row]);
            horizon = lowest_horizon(s, n_scanned, &horizon_row);
        }
        if (best_pos < 0) break; /* guard: nothing left to reach */

        /* 4c. Settle it. An unassigned column ends the path; otherwise go on from its row. */
        const int32_t j = frontier_col[best_pos];
        const int32_t last = frontier_col[--s->n_frontier];
        frontier_col[best_pos] = last;
        frontier_dist[best_pos] = frontier_dist[s->n_frontier];
        frontier_pos[last] = best_pos;
        col[j].dist = SETTLED_DIST;
        settled_dist = best;
        if (row4col[j] < 0) {
            sink = j;
            break;
        }
        i = row4col[j];
    }

    if (sink >= 0) {
        /* 4d. Potentials: settled rows rise and settled columns fall by how much earlier than
               the sink they were reached, which keeps all reduced costs >= 0 and makes the
               path tight. Every settled column but the sink is the column of a scanned row,
               reached at that row's reach; the sink's change would be 0, so unassigned columns
               keep v = 0. */
        u[r] += settled_dist;
        for (int32_t t = 1; t < n_scanned; t++) {
            const double gain = settled_dist - scanned_reach[t];
            u[scanned_rows[t]] += gain;
            col[col4row[scanned_rows[t]]].v -= gain;
        }
    }
    for (int32_t t = 0; t < s->n_touched; t++)
        col[s->touched[t]].dist = UNSEEN_DIST;
    if (sink < 0) return false;
    /* 4e. Flip the path: each row on it takes the column it reached, from the sink back to r. */
    for (int32_t c = sink;;) {
        const int32_t row = s->pred[c];
        row4col[c] = row;
        const int32_t previous = col4row[row];
        col4row[row] = c;
        if (row == r) break;
        c = previous;
    }
    return true;
}

/* ---------------------------------------------------------------- one problem ----------- */

/* Solve one problem of scratch s's shape. Returns 0, or -1 with *fault filled. Leaves s
   clean either way. */
static int solve_problem(assign_scratch *s, const float *cost, int64_t row_stride,
                         int64_t *out_cols, assign_fault *fault)
{
    const int32_t L = s->L, K = s->K;

    /* Step 1: row minima, argmins, block minima, finiteness. */
    for (int32_t i = 0; i < L; i++) {
        const float *row = cost + (int64_t)i * row_stride;
        float *block_min = s->use_lists ? s->block_min + (size_t)i * s->n_blocks : NULL;
        if (!row_pass(row, K, block_min, &s->row_min[i], &s->row_argmin[i])) {
            int32_t j = 0;
            while (row[j] - row[j] == 0.0f)
                j++;
            *fault = (assign_fault){FAULT_NONFINITE, i, j, row[j]};
            return -1;
        }
    }

    /* Step 2: greedy start on the argmins (the fast path when nobody collides). */
    int32_t n_free = 0;
    for (int32_t i = 0; i < L; i++) {
        const int32_t j = s->row_argmin[i];
        s->u[i] = s->row_min[i];
        s->list_len[i] = 0;
        s->list_horizon[i] = -INFINITY; /* no list yet */
        if (s->row4col[j] < 0) {
            s->row4col[j] = i;
            s->col4row[i] = j;
        } else {
            s->col4row[i] = -1;
            s->free_rows[n_free++] = i;
        }
    }

    /* Steps 3-4: an augmenting path for each left-over row (lists built on demand). */
    int status = 0;
    for (int32_t f = 0; f < n_free; f++) {
        if (!augment_from_row(s, cost, row_stride, s->free_rows[f])) {
            *fault = (assign_fault){FAULT_NO_PATH, s->free_rows[f], -1, 0.0f};
            status = -1;
            break;
        }
    }

    /* Output, and return the per-column arrays to their clean state. Only assigned columns
       can have v != 0: a search changes v only on columns it settled, which were assigned
       and stay assigned. */
    for (int32_t i = 0; i < L; i++) {
        const int32_t j = s->col4row[i];
        out_cols[i] = j;
        if (j >= 0) {
            s->row4col[j] = -1;
            s->col[j].v = 0.0;
        }
    }
    return status;
}

/* ---------------------------------------------------------------- public API ------------ */

/* Shape checks shared by both entry points; fname names the caller in messages. */
static int check_shape(const char *fname, int64_t L, int64_t K)
{
    if (L < 1)
        return pivq_set_error("%s: need at least one row to assign, got L=%lld", fname,
                              (long long)L);
    if (L > K)
        return pivq_set_error("%s: cost has L=%lld rows but only K=%lld columns (need L <= K)",
                              fname, (long long)L, (long long)K);
    if (K > INT32_MAX)
        return pivq_set_error("%s: K=%lld columns exceeds the supported maximum %d", fname,
                              (long long)K, INT32_MAX);
    return 0;
}

static int report_fault(const char *fname, const assign_fault *fault, int64_t problem)
{
    char where[96];
    if (problem >= 0)
        snprintf(where, sizeof where, "%lld,%lld,%lld", (long long)problem, (long long)fault->row,
                 (long long)fault->col);
    else
        snprintf(where, sizeof where, "%lld,%lld", (long long)fault->row, (long long)fault->col);
    if (fault->kind == FAULT_NONFINITE) {
        const char *what = isnan(fault->value) ? "NaN" : fault->value > 0 ? "+Inf" : "-Inf";
        return pivq_set_error("%s: cost[%s] (0-based) is %s (costs must be finite)", fname, where,
                              what);
    }
    if (problem >= 0)
        return pivq_set_error(
            "%s: internal error: no augmenting path from row %lld of problem %lld "
            "(please report)",
            fname, (long long)fault->row, (long long)problem);
    return pivq_set_error("%s: internal error: no augmenting path from row %lld (please report)",
                          fname, (long long)fault->row);
}

static int report_out_of_memory(const char *fname, size_t bytes, int64_t L, int64_t K)
{
    if (bytes == SIZE_MAX)
        return pivq_set_error("%s: scratch size overflows for L=%lld, K=%lld", fname, (long long)L,
                              (long long)K);
    return pivq_set_error("%s: out of memory allocating %zu bytes of scratch for L=%lld, K=%lld",
                          fname, bytes, (long long)L, (long long)K);
}

int pivq_assign_one(const float *cost, int64_t L, int64_t K, int64_t row_stride, int64_t *out_cols)
{
    if (check_shape("assign", L, K)) return -1;
    if (row_stride < K)
        return pivq_set_error("assign: row_stride=%lld is less than K=%lld columns",
                              (long long)row_stride, (long long)K);
    if (row_stride > (INT64_MAX - K) / L)
        return pivq_set_error("assign: L=%lld rows of row_stride=%lld elements overflow",
                              (long long)L, (long long)row_stride);
    if (!cost) return pivq_set_error("assign: cost is NULL");
    if (!out_cols) return pivq_set_error("assign: out_cols is NULL");

    assign_scratch s;
    size_t failed_bytes = scratch_init(&s, (int32_t)L, (int32_t)K);
    if (failed_bytes) return report_out_of_memory("assign", failed_bytes, L, K);
    assign_fault fault = {FAULT_NONE, 0, 0, 0.0f};
    int status = solve_problem(&s, cost, row_stride, out_cols, &fault);
    scratch_free(&s);
    return status ? report_fault("assign", &fault, -1) : 0;
}

int pivq_assign_batch(const float *cost, int64_t B, int64_t L, int64_t K, int64_t *out_cols)
{
    if (B < 0)
        return pivq_set_error("assign_batch: need B >= 0 problems, got B=%lld", (long long)B);
    if (check_shape("assign_batch", L, K)) return -1;
    if (B == 0) return 0;
    if (!cost) return pivq_set_error("assign_batch: cost is NULL");
    if (!out_cols) return pivq_set_error("assign_batch: out_cols is NULL");
    int64_t problem_elems;
    if (__builtin_mul_overflow(L, K, &problem_elems) || problem_elems > INT64_MAX / B)
        return pivq_set_error("assign_batch: B=%lld x L=%lld x K=%lld elements overflow",
                              (long long)B, (long long)L, (long long)K);

    /* Each thread keeps the lowest problem index that failed; the lowest over threads is
       reported after the parallel region, by the calling thread (error buffers are per thread). */
    int64_t first_failed = B;
    assign_fault first_fault = {FAULT_NONE, 0, 0, 0.0f};
    size_t failed_bytes = 0;
#pragma omp parallel if (B > 1)
    {
        assign_scratch s;
        const size_t my_failed_bytes = scratch_init(&s, (int32_t)L, (int32_t)K);
        int64_t my_failed = B;
        assign_fault my_fault = {FAULT_NONE, 0, 0, 0.0f};
#pragma omp for schedule(dynamic)
        for (int64_t b = 0; b < B; b++) {
            if (my_failed_bytes || b > my_failed) continue;
            if (solve_problem(&s, cost + b * problem_elems, K, out_cols + b * L, &my_fault))
                my_failed = b;
        }
#pragma omp critical
        {
            if (my_failed_bytes) failed_bytes = my_failed_bytes;
            if (my_failed < first_failed) {
                first_failed = my_failed;
                first_fault = my_fault;
            }
        }
        scratch_free(&s);
    }
    if (failed_bytes) return report_out_of_memory("assign_batch", failed_bytes, L, K);
    if (first_failed < B) return report_fault("assign_batch", &first_fault, first_failed);
    return 0;
}

double pivq_assign_total_cost(const float *cost, int64_t L, int64_t K, const int64_t *cols)
{
    double total = 0.0;
    for (int64_t i = 0; i < L; i++)
        total += (double)cost[i * K + cols[i]];
    return total;
}

/* ---- the tensor form ---------------------------------------------------------------------- */

pivq_tensor *pivq_assign(const pivq_tensor *cost)
{
    if (pivq_check_tensor("assign", "cost", cost)) return NULL;
    char buf[160];
    if ((cost->ndim != 2 && cost->ndim != 3) || cost->scalar_type != PIVQ_FLOAT32) {
        pivq_set_error("assign: cost must be a float32 L x K or B x L x K tensor, got %s %s",
                       pivq_shape_str(cost, buf, sizeof buf), pivq_dtype_name(cost->scalar_type));
        return NULL;
    }
    int batched = cost->ndim == 3;
    int64_t B = batched ? cost->shape[0] : 1;
    int64_t L = cost->shape[cost->ndim - 2], K = cost->shape[cost->ndim - 1];
    if (L < 1 || K < 1) {
        pivq_set_error("assign: cost is empty (shape %s)", pivq_shape_str(cost, buf, sizeof buf));
        return NULL;
    }
    pivq_tensor *c = pivq_contiguous_nograd(cost);
    if (!c) return NULL;
    int64_t osize[2] = {B, L};
    pivq_tensor *out = batched ? pivq_empty(PIVQ_INT64, 2, osize) : pivq_empty(PIVQ_INT64, 1, &L);
    int rc = -1;
    if (out)
        rc = batched ? pivq_assign_batch(pivq_data(c), B, L, K, pivq_data(out))
                     : pivq_assign_one(pivq_data(c), L, K, K, pivq_data(out));
    if (out && rc != 0) {
        pivq_tensor_release(out);
        out = NULL;
    }
    pivq_tensor_release(c);
    return out;
}
