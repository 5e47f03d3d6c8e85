/* ops/grad_table.c — the op table of the autograd engine, generated from the one list of graph
 * ops (PIVQ_GRAD_OPS, autograd/autograd.h). It lives in the ops layer because it names the ops'
 * backward functions; the engine (autograd/autograd.c) sees only its declaration.
 *
 * Completeness is checked when building: the enum, the backward declarations and this table
 * come from the same entries, the table's length must equal PIVQ_GOP_COUNT (below, and its
 * declaration in autograd.h), and an entry whose backward function is not defined anywhere
 * fails the link of libpivq (-Wl,--no-undefined).
 */
#include "ops/ops.h"

#define PIVQ_GOP_ENTRY(NAME, name, strided) {#name, pivq_##name##_backward, strided},
const pivq_grad_op_info pivq_grad_ops[] = {PIVQ_GRAD_OPS(PIVQ_GOP_ENTRY)};
#undef PIVQ_GOP_ENTRY

_Static_assert(sizeof pivq_grad_ops / sizeof pivq_grad_ops[0] == PIVQ_GOP_COUNT,
               "the op table has one entry per graph op (PIVQ_GRAD_OPS)");
