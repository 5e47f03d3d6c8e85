#!/bin/sh
# Training speed of the default PI-VQ model, pivq and its PyTorch twin side by side in one run:
#   sh recipes/bench/train_speed.sh [STEPS] [extra model args: PATCH WIDTH DEPTH HEADS MLP_RATIO L K C]
# Both sides run with the same environment: OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = the thread
# count and OMP_WAIT_POLICY=PASSIVE (without them Debian's torch fights its own OpenBLAS threads;
# with them neither side's idle threads spin on cores another job needs, which on a loaded machine
# made pivq's 2-thread steps up to 12x slower). Each pair runs ROUNDS times (environment, default
# 3), alternating which side goes first, and within each round every precision runs in turn (so a
# bf16 / fp32 ratio compares neighbouring runs); the table shows the medians and the median of the
# rounds' ratios, so that load from other work that comes and goes falls on both sides alike.
# Prints images/s (median step), the ratio pivq / torch, pivq's GFLOP/s and model FLOP utilisation
# (its share of the peak measured for the precision in use, recipes/bench/train_speed.lua), and the
# share of step time spent quantizing, for matching and nearest at 1 and 2 threads and for each of
# PRECISIONS (environment, default "fp32 bf16": pivq under pivq.autocast, torch under
# torch.autocast("cpu", dtype=torch.bfloat16)); then pivq's bf16 / fp32 ratio per mode and threads.
# MODES (environment, default "matching nearest") picks the quantizers.
set -eu
cd "$(dirname "$0")/../.."
steps=${1:-10}
[ $# -gt 0 ] && shift
rounds=${ROUNDS:-3}
sh .ci/setup bench
sh .ci/task build
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
all=$(mktemp)
printf '%-9s %7s %5s %12s %12s %7s %8s %6s %14s %14s\n' mode threads prec "pivq img/s" "torch img/s" ratio \
  "GFLOP/s" "MFU %" "pivq quant %" "torch quant %"
for mode in ${MODES:-matching nearest}; do
  for t in 1 2; do
    export OMP_NUM_THREADS=$t OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=$t
    # every round runs each precision, in turn, so that a bf16 / fp32 ratio compares neighbours
    r=1
    while [ "$r" -le "$rounds" ]; do
      for prec in ${PRECISIONS:-fp32 bf16}; do
        export PRECISION=$prec
        if [ $((r % 2)) -eq 1 ]; then
          p=$(./build/pivq recipes/bench/train_speed.lua "$mode" "$t" "$steps" "$@")
          q=$(/usr/bin/python3 recipes/bench/train_torch.py "$mode" "$t" "$steps" "$@")
        else
          q=$(/usr/bin/python3 recipes/bench/train_torch.py "$mode" "$t" "$steps" "$@")
          p=$(./build/pivq recipes/bench/train_speed.lua "$mode" "$t" "$steps" "$@")
        fi
        printf '%s\n%s\n' "$(echo "$p" | sed "s/^{/{\"round\":$r,\"asked\":\"$prec\",/")" "$(echo "$q" | sed "s/^{/{\"round\":$r,\"asked\":\"$prec\",/")" >>"$all"
      done
      r=$((r + 1))
    done
    for prec in ${PRECISIONS:-fp32 bf16}; do
      /usr/bin/python3 -c '
import json, statistics, sys
mode, t, prec = sys.argv[2], int(sys.argv[3]), sys.argv[4]
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if r["mode"] == mode and r["threads"] == t and r["asked"] == prec]
p = [r for r in rows if r["side"] == "pivq"]
q = [r for r in rows if r["side"] != "pivq"]
med = lambda side, k: statistics.median(r[k] for r in side)
ratio = statistics.median(a["img_per_s"] / b["img_per_s"] for a, b in zip(p, q))
print("%-9s %7d %5s %12.1f %12.1f %7.2f %8.1f %6.1f %14.1f %14.1f" % (p[0]["mode"], p[0]["threads"],
      p[0]["precision"], med(p, "img_per_s"), med(q, "img_per_s"), ratio, med(p, "gflops"),
      100 * med(p, "mfu") if all("mfu" in r for r in p) else float("nan"),
      100 * med(p, "quant_share"), 100 * med(q, "quant_share")))
print("%-9s %7s %5s %s" % ("", "", "", "(%.0f MFLOP per image, forward + backward; measured peak %.1f GFLOP/s)"
      % (med(p, "mflop_per_image"), med(p, "peak_gflops"))))
' "$all" "$mode" "$t" "$prec"
    done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
# bf16 against fp32, each side: the median over rounds of each round's ratio (neighbouring runs)
/usr/bin/python3 - "$all" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def ratio(side, mode, t, num, den):
    # the median over rounds of rate(num) / rate(den), both from the same round
    by = {}
    for r in rows:
        if (r["side"] == "pivq") == (side == "pivq") and r["mode"] == mode and r["threads"] == t:
            by.setdefault(r["round"], {})[r["asked"]] = r["img_per_s"]
    v = [x[num] / x[den] for x in by.values() if num in x and den in x]
    return statistics.median(v) if v else None
def cross(mode, t):
    by = {}
    for r in rows:
        if r["mode"] == mode and r["threads"] == t and r["asked"] == "bf16":
            by.setdefault(r["round"], {})[r["side"] == "pivq"] = r["img_per_s"]
    v = [x[True] / x[False] for x in by.values() if True in x and False in x]
    return statistics.median(v) if v else None
print("%-9s %7s %18s %18s %22s" % ("mode", "threads", "pivq bf16/fp32", "torch bf16/fp32", "pivq bf16 / torch bf16"))
for mode in sorted({r["mode"] for r in rows}):
    for t in (1, 2):
        a, b, c = ratio("pivq", mode, t, "bf16", "fp32"), ratio("torch", mode, t, "bf16", "fp32"), cross(mode, t)
        if None in (a, b, c): continue
        print("%-9s %7d %18.2f %18.2f %22.2f" % (mode, t, a, b, c))
PY
rm -f "$all"
