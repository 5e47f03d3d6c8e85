#!/bin/sh
# Sampling speed, fp32 against bf16 (`pivq sample --precision`), side by side in one run:
#   sh recipes/bench/sample_speed.sh CKPT [N] [ROUNDS]
# Draws N (default 1000) samples (strategy pair, a bank of the first 2,000 training images) at 1
# and 2 threads, alternating the precisions ROUNDS (default 3) times, and prints the medians of the
# decode rate (images/s, what `pivq sample` reports) and of the whole draw (codes + decode; the bank,
# cached after the first run, is left out) of each, and their ratios, with the load average.
set -eu
cd "$(dirname "$0")/../.."
ckpt=$1
n=${2:-1000}
rounds=${3:-3}
[ -x build/pivq ] || sh .ci/task build
out=$(mktemp -d)
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%7s %12s %12s %7s %14s %14s %7s\n' threads "fp32 decode" "bf16 decode" ratio "fp32 codes+dec" \
  "bf16 codes+dec" ratio
for t in 1 2; do
  f32="" b16=""
  r=1
  while [ "$r" -le "$rounds" ]; do
    for prec in fp32 bf16; do
      rate=$(OMP_NUM_THREADS=$t ./build/pivq sample --ckpt "$ckpt" -n "$n" --bank-limit 2000 --precision "$prec" \
        --out "$out/s.png" | sed -n 's/.*codes \([0-9.]*\) s, decode \([0-9.]*\) s.*/\1:\2/p')
      if [ "$prec" = fp32 ]; then f32="$f32 $rate"; else b16="$b16 $rate"; fi
    done
    r=$((r + 1))
  done
  /usr/bin/python3 -c '
import statistics, sys
n = float(sys.argv[4])
def rates(text, i):
    return statistics.median(n / (float(v.split(":")[1]) + (float(v.split(":")[0]) if i else 0))
                             for v in text.split())
a, b, c, d = rates(sys.argv[2], 0), rates(sys.argv[3], 0), rates(sys.argv[2], 1), rates(sys.argv[3], 1)
print("%7s %12.0f %12.0f %7.2f %14.0f %14.0f %7.2f" % (sys.argv[1], a, b, b / a, c, d, d / c))' "$t" "$f32" "$b16" "$n"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -rf "$out"
