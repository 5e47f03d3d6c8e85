#!/bin/sh
# Sampling speed, fp32 against bf16 (`pivq sample --precision`), side by side in one run:
#   sh recipes/bench/sample_speed.sh CKPT [N] [ROUNDS]
# Draws N (default 1000) samples (strategy pair, a bank of the first 2,000 training images) at 1
# and 2 threads, alternating the precisions ROUNDS (default 3) times, and prints the medians of:
# the decode rate (images/s, what `pivq sample` reports); the codes + decode rate (the bank left
# out); the end-to-end rate (N / the wall time of the whole `pivq sample` command: start, model,
# cached bank, codes, decode, PNG); and the draw's share of codes + decode. Each precision runs
# on its own copy of CKPT (a bank is cached beside its checkpoint, per precision: one copy would
# re-encode it every round), warmed by one untimed run, so no round pays for the bank.
set -eu
cd "$(dirname "$0")/../.."
ckpt=$1
n=${2:-1000}
rounds=${3:-3}
[ -x build/pivq ] || sh .ci/task build
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for prec in fp32 bf16; do
  mkdir "$out/$prec"
  cp "$ckpt" "$out/$prec/model.safetensors"
done
run() { # threads precision -> "codes:decode:start:end" seconds
  t0=$(date +%s.%N)
  line=$(OMP_NUM_THREADS=$1 ./build/pivq sample --ckpt "$out/$2/model.safetensors" -n "$n" --bank-limit 2000 --precision "$2" \
    --out "$out/s.png" | sed -n 's/.*codes \([0-9.]*\) s, decode \([0-9.]*\) s.*/\1:\2/p')
  t1=$(date +%s.%N)
  [ -n "$line" ] || {
    echo "sample_speed: pivq sample printed no timing line" >&2
    exit 1
  }
  echo "$line:$t0:$t1"
}
for prec in fp32 bf16; do run 1 "$prec" >/dev/null 2>&1; done
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%7s | %12s %12s %6s | %14s %14s %6s | %12s %12s %6s | %10s %10s\n' threads "fp32 decode" "bf16 decode" \
  ratio "fp32 codes+dec" "bf16 codes+dec" ratio "fp32 e2e" "bf16 e2e" ratio "fp32 draw" "bf16 draw"
for t in 1 2; do
  f32="" b16=""
  r=1
  while [ "$r" -le "$rounds" ]; do
    for prec in fp32 bf16; do
      v=$(run "$t" "$prec")
      if [ "$prec" = fp32 ]; then f32="$f32 $v"; else b16="$b16 $v"; fi
    done
    r=$((r + 1))
  done
  /usr/bin/python3 -c '
import statistics, sys
n = float(sys.argv[4])
def med(text, f):
    def parts(v):
        c, d, t0, t1 = map(float, v.split(":"))
        return c, d, t1 - t0
    return statistics.median(f(*parts(v)) for v in text.split())
cols = []
for f in (lambda c, d, w: n / d, lambda c, d, w: n / (c + d), lambda c, d, w: n / w):
    a, b = med(sys.argv[2], f), med(sys.argv[3], f)
    cols += [a, b, b / a]
share = [100 * med(x, lambda c, d, w: c / (c + d)) for x in (sys.argv[2], sys.argv[3])]
print("%7s | %12.0f %12.0f %6.2f | %14.0f %14.0f %6.2f | %12.0f %12.0f %6.2f | %9.0f%% %9.0f%%"
      % tuple([sys.argv[1]] + cols + share))' "$t" "$f32" "$b16" "$n"
done
echo "rates in images/s (medians of $rounds alternating rounds); draw = codes / (codes + decode)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
