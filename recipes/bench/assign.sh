#!/bin/sh
# The assignment benchmark, SciPy and pivq side by side in one run:
#   sh recipes/bench/assign.sh [DATA_DIR] [REPEATS]
# Writes ~0.8 GB of cost batches to DATA_DIR (default /tmp/pivq_assign_bench) once; installs
# python3-scipy/numpy if missing (Debian's, run with /usr/bin/python3).
set -eu
cd "$(dirname "$0")/../.."
data=${1:-/tmp/pivq_assign_bench}
repeats=${2:-10}
sh .ci/setup bench
sh .ci/task build
mkdir -p "$data"
[ -f "$data/sqeuclid_32x512.cost" ] || /usr/bin/python3 recipes/bench/assign_scipy.py gen "$data"
/usr/bin/python3 recipes/bench/assign_scipy.py scipy "$data"
echo
./build/pivq recipes/bench/assign.lua "$data" "$repeats"
