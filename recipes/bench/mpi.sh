#!/bin/sh
# Data-parallel training speed on this machine (README "Distributed training"):
#   sh recipes/bench/mpi.sh [STEPS]
# Prints, for the default model on Fashion-MNIST (global batch 64, quantized steps, STEPS timed
# after STEPS of warm-up): images/s of 1 process x 1 thread, 2 ranks x 1 thread (mpirun, batch 32
# each) and 1 process x 2 threads, with the communication time per step of the 2-rank run (all
# collectives, and the gradient allreduce alone); then the gradient allreduce by itself for
# several bucket sizes (median and best of 30), and one process's step time for the default and a
# CelebA-sized (3 x 64 x 64) model with the message sizes — the inputs of the scaling estimate.
# The three runs go one after the other in this script so that their ratios stay comparable on a
# shared machine; absolute figures move with the machine's load.
set -eu
cd "$(dirname "$0")/../.."
steps=${1:-20}
sh .ci/setup
sh .ci/task build
if ! ./build/pivq -e 'os.exit(pivq.dist.available() and 0 or 1)'; then
  echo "mpi.sh: pivq was built without MPI (sh .ci/setup installs libopenmpi-dev; rebuild)" >&2
  exit 1
fi
B=./build/pivq
# CI-like: as root, 2 ranks may share fewer cores; a rank is bound to a core by default
MPIRUN="mpirun --allow-run-as-root --oversubscribe -np 2"
one=$($B recipes/bench/mpi_bench.lua train steps="$steps" batch=64 threads=1)
two=$($MPIRUN $B recipes/bench/mpi_bench.lua train steps="$steps" batch=32 threads=1)
thr=$($B recipes/bench/mpi_bench.lua train steps="$steps" batch=64 threads=2)
ar=$($MPIRUN $B recipes/bench/mpi_bench.lua allreduce reps=30)
cmp=$($B recipes/bench/mpi_bench.lua compute steps=5 batch=32 threads=1)
/usr/bin/python3 - "$one" "$two" "$thr" "$ar" "$cmp" <<'PY'
import json, sys
one, two, thr, ar, cmp = (json.loads(a) for a in sys.argv[1:])
print("default model, Fashion-MNIST, global batch 64 (%.2f MB of gradients per step)" % (one["grad_bytes"] / 1e6))
print("%-26s %10s %10s %9s" % ("run", "img/s", "ms/step", "speed-up"))
for name, r in (("1 process x 1 thread", one), ("2 ranks x 1 thread (MPI)", two), ("1 process x 2 threads", thr)):
    print("%-26s %10.1f %10.1f %8.2fx" % (name, r["img_per_s"], r["step_ms"], r["img_per_s"] / one["img_per_s"]))
print("2 ranks: communication %.1f ms/step (%.0f%% of the step; waiting for the slower rank included), "
      "of which the gradient allreduce %.1f ms" % (two["comm_ms_per_step"], 100 * two["comm_ms_per_step"] / two["step_ms"],
                                                  two["grad_allreduce_ms_per_step"]))
print("gradient allreduce alone, 2 ranks (median / best of 30, ms):",
      ", ".join("%s %.2f / %.2f" % (k, ar["ms"][k], ar["best_ms"][k]) for k in sorted(ar["ms"])))
for name in ("default", "celeba64"):
    m = cmp[name]
    print("one process, 1 thread, batch %d, %s model (%s): %.0f ms/step; messages per step: gradients %.2f MB, "
          "codebook statistics %.0f KB" % (cmp["batch_per_rank"], name, m["image"], m["step_ms"], m["grad_bytes"] / 1e6,
                                            m["stats_bytes"] / 1e3))
PY
