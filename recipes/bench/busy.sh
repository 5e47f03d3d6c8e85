#!/bin/sh
# Speed on a busy machine: pivq's throughput with 1 and 2 threads, on an idle machine and with one
# competing CPU-bound process per core (started and stopped by this script), under OpenMP wait
# policies side by side in one run:
#   sh recipes/bench/busy.sh [SECONDS] [WORKLOADS]
# WORKLOADS (default "train conv attention assign") are recipes/bench/busy.lua's. POLICIES
# (environment, default "libgomp pivq") names the policies compared: "pivq" is the host's default
# (no variable set: the host chooses, csrc/host/main.c), "libgomp" is libgomp's own default
# spinning (GOMP_SPINCOUNT=300000, what pivq ran with before the host chose), "passive" is
# OMP_WAIT_POLICY=PASSIVE, and a number N is GOMP_SPINCOUNT=N. Each condition runs ROUNDS times
# (environment, default 2), the policies alternating in order each round, so that other load that
# comes and goes falls on all of them alike; the table shows the median items/s, then per policy
# 2t/1t (the 2-thread throughput over the 1-thread one, busy and idle) and, idle, each policy's
# speed relative to the first one. The load average is printed before and after. LOADS
# (environment, default "idle busy") picks the conditions: LOADS=idle measures only the idle
# machine (the "at most 5% slower than libgomp's spinning" comparison).
set -eu
cd "$(dirname "$0")/../.."
seconds=${1:-3}
workloads=${2:-"train conv attention assign"}
policies=${POLICIES:-"libgomp pivq"}
rounds=${ROUNDS:-2}
[ -x build/pivq ] || sh .ci/task build
cores=$(nproc)
hogs=""
stop_load() { for p in $hogs; do kill "$p" 2>/dev/null || true; done; hogs=""; }
trap stop_load EXIT INT TERM
start_load() {
  i=0
  while [ "$i" -lt "$cores" ]; do
    awk 'BEGIN { for (;;) x++ }' &
    hogs="$hogs $!"
    i=$((i + 1))
  done
  sleep 1
}
run() { # run POLICY WORKLOAD THREADS -> one JSON line
  case "$1" in
    pivq) env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT ./build/pivq recipes/bench/busy.lua "$2" "$3" "$seconds" ;;
    libgomp) env -u OMP_WAIT_POLICY GOMP_SPINCOUNT=300000 ./build/pivq recipes/bench/busy.lua "$2" "$3" "$seconds" ;;
    passive) env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=PASSIVE ./build/pivq recipes/bench/busy.lua "$2" "$3" "$seconds" ;;
    *[!0-9]*) echo "busy.sh: unknown policy '$1' (pivq, libgomp, passive or a spin count)" >&2; exit 2 ;;
    *) env -u OMP_WAIT_POLICY GOMP_SPINCOUNT="$1" ./build/pivq recipes/bench/busy.lua "$2" "$3" "$seconds" ;;
  esac
}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($cores cores)"
out=$(mktemp)
for load in ${LOADS:-idle busy}; do
  [ "$load" = busy ] && start_load
  r=1
  while [ "$r" -le "$rounds" ]; do
    for w in $workloads; do
      for t in 1 2; do
        for p in $policies; do
          printf '{"load":"%s","policy":"%s","line":%s}\n' "$load" "$p" "$(run "$p" "$w" "$t")" >>"$out"
        done
      done
    done
    r=$((r + 1))
  done
  stop_load
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 - "$out" "$policies" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
pols = sys.argv[2].split()
med = {}
for r in rows:
    med.setdefault((r["line"]["workload"], r["load"], r["policy"], r["line"]["threads"]), []).append(r["line"]["items_per_s"])
med = {k: statistics.median(v) for k, v in med.items()}
works = []
for r in rows:
    if r["line"]["workload"] not in works: works.append(r["line"]["workload"])
head = "%-10s %-5s %-8s %10s %10s %7s" % ("workload", "load", "policy", "1t item/s", "2t item/s", "2t/1t")
print(head + "  %s" % ("vs " + pols[0] + " (1t, 2t)"))
for w in works:
    for load in ("idle", "busy"):
        for p in pols:
            if (w, load, p, 1) not in med: continue
            a, b = med[(w, load, p, 1)], med[(w, load, p, 2)]
            rel = "%.2f, %.2f" % (a / med[(w, load, pols[0], 1)], b / med[(w, load, pols[0], 2)])
            print("%-10s %-5s %-8s %10.1f %10.1f %7.2f  %s" % (w, load, p, a, b, b / a, rel))
PY
rm -f "$out"
