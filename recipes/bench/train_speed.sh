#!/bin/sh
# Training speed of the default PI-VQ model, pivq and its PyTorch twin side by side in one run:
#   sh recipes/bench/train_speed.sh [STEPS] [extra model args: PATCH WIDTH DEPTH HEADS MLP_RATIO L K C]
# Both sides run with the same environment: OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = the thread
# count and OMP_WAIT_POLICY=PASSIVE (without them Debian's torch fights its own OpenBLAS threads;
# with them neither side's idle threads spin on cores another job needs, which on a loaded machine
# made pivq's 2-thread steps up to 12x slower). Prints images/s, the ratio pivq / torch, and the
# share of step time spent quantizing, for matching and nearest at 1 and 2 threads.
set -eu
cd "$(dirname "$0")/../.."
steps=${1:-10}
[ $# -gt 0 ] && shift
sh .ci/setup bench
sh .ci/task build
printf '%-9s %7s %12s %12s %7s %14s %14s\n' mode threads "pivq img/s" "torch img/s" ratio "pivq quant %" "torch quant %"
for mode in matching nearest; do
  for t in 1 2; do
    export OMP_NUM_THREADS=$t OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=$t
    p=$(./build/pivq recipes/bench/train_speed.lua "$mode" "$t" "$steps" "$@")
    q=$(/usr/bin/python3 recipes/bench/train_torch.py "$mode" "$t" "$steps" "$@")
    /usr/bin/python3 - "$p" "$q" <<'PY'
import json, sys
p, q = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("%-9s %7d %12.1f %12.1f %7.2f %14.1f %14.1f" % (p["mode"], p["threads"], p["img_per_s"], q["img_per_s"],
      p["img_per_s"] / q["img_per_s"], 100 * p["quant_share"], 100 * q["quant_share"]))
PY
  done
done
