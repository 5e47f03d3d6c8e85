#!/bin/sh
# PRDC benchmark (issue #8): pivq.eval.prdc against a NumPy/scikit-learn implementation of the same
# formulas (Naeem et al. 2020: full pairwise distances, k-th neighbour radii, strict <), on the
# same N x N points of dimension D, same thread count, in one run; prints times, ratio, results.
#   sh recipes/bench/prdc.sh [N] [D] [THREADS...]     (default 10000 128, threads 1 2)
# Installs python3-numpy/python3-sklearn if missing (Debian's, run with /usr/bin/python3).
set -eu
cd "$(dirname "$0")/../.."
n=${1:-10000}
d=${2:-128}
shift 2 2>/dev/null || shift $#
threads=${*:-1 2}
sh .ci/setup bench
sh .ci/task build
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT INT TERM
./build/pivq recipes/bench/prdc.lua gen "$data" "$n" "$d"
for t in $threads; do
  OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t OMP_WAIT_POLICY=PASSIVE \
    /usr/bin/python3 recipes/bench/prdc_numpy.py "$data" "$n" "$d" "$data/numpy-$t.json"
  ./build/pivq recipes/bench/prdc.lua run "$data" "$n" "$d" "$t" "$data/numpy-$t.json"
done
