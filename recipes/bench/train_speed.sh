#!/bin/sh
# Training speed of the default PI-VQ model, pivq and its PyTorch twin side by side in one run:
#   sh recipes/bench/train_speed.sh [STEPS] [extra model args: PATCH WIDTH DEPTH HEADS MLP_RATIO L K C]
# Both sides run with the same environment: OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = the thread
# count and OMP_WAIT_POLICY=PASSIVE (without them Debian's torch fights its own OpenBLAS threads;
# with them neither side's idle threads spin on cores another job needs, which on a loaded machine
# made pivq's 2-thread steps up to 12x slower). Each pair runs ROUNDS times (environment, default
# 3), alternating which side goes first; the table shows the medians and the median of the
# rounds' ratios, so that load from other work that comes and goes falls on both sides alike.
# Prints images/s (median step), the ratio pivq / torch, and the share of step time spent
# quantizing, for matching and nearest at 1 and 2 threads.
set -eu
cd "$(dirname "$0")/../.."
steps=${1:-10}
[ $# -gt 0 ] && shift
rounds=${ROUNDS:-3}
sh .ci/setup bench
sh .ci/task build
printf '%-9s %7s %12s %12s %7s %14s %14s\n' mode threads "pivq img/s" "torch img/s" ratio "pivq quant %" "torch quant %"
for mode in matching nearest; do
  for t in 1 2; do
    export OMP_NUM_THREADS=$t OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=$t
    results=""
    r=1
    while [ "$r" -le "$rounds" ]; do
      if [ $((r % 2)) -eq 1 ]; then
        p=$(./build/pivq recipes/bench/train_speed.lua "$mode" "$t" "$steps" "$@")
        q=$(/usr/bin/python3 recipes/bench/train_torch.py "$mode" "$t" "$steps" "$@")
      else
        q=$(/usr/bin/python3 recipes/bench/train_torch.py "$mode" "$t" "$steps" "$@")
        p=$(./build/pivq recipes/bench/train_speed.lua "$mode" "$t" "$steps" "$@")
      fi
      results="$results$p
$q
"
      r=$((r + 1))
    done
    printf '%s' "$results" | /usr/bin/python3 -c '
import json, statistics, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
p = [r for r in rows if r["side"] == "pivq"]
q = [r for r in rows if r["side"] != "pivq"]
med = lambda side, k: statistics.median(r[k] for r in side)
ratio = statistics.median(a["img_per_s"] / b["img_per_s"] for a, b in zip(p, q))
print("%-9s %7d %12.1f %12.1f %7.2f %14.1f %14.1f" % (p[0]["mode"], p[0]["threads"], med(p, "img_per_s"),
      med(q, "img_per_s"), ratio, 100 * med(p, "quant_share"), 100 * med(q, "quant_share")))
'
  done
done
