#!/bin/sh
# Flat memory over long runs (issue 10): RSS of a default training run and of a REPL-style loop.
#   sh recipes/bench/rss.sh [--steps N] [--ops N] [--out DIR] [--skip-train] [--skip-repl] [-- train options]
# 1. `./build/pivq train` with its defaults (3,000 steps; --steps N for a quick check) into DIR
#    (default runs/rss); the training log records rss_mb per logged step (every 50), and this
#    script also samples the process's VmRSS every second for the peak (evaluation included).
#    Prints RSS at steps 100, 1000 and the end, the growth 100 -> end (target: under 5%), and
#    images/s. Options after -- go to `pivq train` (e.g. -- --threads 1).
# 2. recipes/bench/rss.lua repl: 100,000 REPL-style operations (--ops N), RSS at 1k, 10k, 100k.
set -eu
cd "$(dirname "$0")/../.."
steps="" ops=100000 out=runs/rss train=1 repl=1
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps=$2; shift 2 ;;
    --ops) ops=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --skip-train) train=0; shift ;;
    --skip-repl) repl=0; shift ;;
    --) shift; break ;;
    *) echo "rss.sh: unknown option $1 (--steps N, --ops N, --out DIR, --skip-train, --skip-repl, -- train options)" >&2
       exit 2 ;;
  esac
done
sh .ci/task build

if [ "$train" = 1 ]; then
  mkdir -p "$out"
  echo "./build/pivq train --out $out --quiet${steps:+ --steps $steps} $*"
  ./build/pivq train --out "$out" --quiet ${steps:+--steps "$steps"} "$@" >"$out/train.out" 2>&1 &
  pid=$!
  peak=0
  # VmRSS from outside, once a second, until the process is gone (the last read may fail)
  while kill -0 "$pid" 2>/dev/null; do
    kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    if [ -n "$kb" ] && [ "$kb" -gt "$peak" ]; then peak=$kb; fi
    sleep 1
  done
  if ! wait "$pid"; then
    cat "$out/train.out" >&2
    echo "rss.sh: the training failed" >&2
    exit 1
  fi
  ./build/pivq recipes/bench/rss.lua train "$out/log.jsonl" "$(awk "BEGIN { print $peak / 1024 }")"
fi

if [ "$repl" = 1 ]; then
  ./build/pivq recipes/bench/rss.lua repl "$ops"
fi
