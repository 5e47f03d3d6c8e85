#!/usr/bin/python3
"""Benchmark data and the SciPy side of the assignment benchmark.

  /usr/bin/python3 recipes/bench/assign_scipy.py gen   DIR   # write the cost batches (both sides read these)
  /usr/bin/python3 recipes/bench/assign_scipy.py scipy DIR   # time scipy.optimize.linear_sum_assignment on them

File DIR/<kind>_<L>x<K>.cost: 8-byte magic b"PIVQASN1", int64 B, L, K (little-endian), then
B x L x K float32. `scipy` writes DIR/<name>.scipy: float64 ms per batch (best of REPEATS),
then B float64 optimal totals (sum of the chosen float32 costs, in float64).
"""
import glob
import os
import struct
import sys
import time

import numpy as np
from scipy.optimize import linear_sum_assignment

B = 64
SHAPES = [(49, 4096), (64, 4096), (256, 4096), (64, 1024), (32, 512)]
KINDS = ["uniform", "sqeuclid"]
CODE_DIM = 64
REPEATS = 3
MAGIC = b"PIVQASN1"


def make_costs(kind, L, K, rng):
    """B x L x K float32 costs."""
    if kind == "uniform":
        return rng.random((B, L, K), dtype=np.float32)
    # Squared Euclidean distance from Gaussian latents to a Gaussian codebook (one codebook
    # per problem, as a training step sees one codebook and many images).
    out = np.empty((B, L, K), dtype=np.float32)
    for b in range(B):
        z = rng.standard_normal((L, CODE_DIM))
        e = rng.standard_normal((K, CODE_DIM))
        d = (z * z).sum(1)[:, None] + (e * e).sum(1)[None, :] - 2.0 * z @ e.T
        out[b] = np.maximum(d, 0.0)
    return out


def gen(directory):
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(20260401)
    for kind in KINDS:
        for L, K in SHAPES:
            path = os.path.join(directory, f"{kind}_{L}x{K}.cost")
            costs = make_costs(kind, L, K, rng)
            with open(path, "wb") as f:
                f.write(MAGIC + struct.pack("<qqq", B, L, K))
                f.write(np.ascontiguousarray(costs, dtype="<f4").tobytes())
            print(f"wrote {path}")


def read_costs(path):
    with open(path, "rb") as f:
        head = f.read(32)
        assert head[:8] == MAGIC, path
        b, L, K = struct.unpack("<qqq", head[8:])
        return np.fromfile(f, dtype="<f4", count=b * L * K).reshape(b, L, K)


def run_scipy(directory):
    print(f"scipy {__import__('scipy').__version__}, numpy {np.__version__}; best of {REPEATS}")
    for path in sorted(glob.glob(os.path.join(directory, "*.cost"))):
        costs = read_costs(path)
        best = float("inf")
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            cols = [linear_sum_assignment(c)[1] for c in costs]
            best = min(best, time.perf_counter() - t0)
        rows = np.arange(costs.shape[1])
        totals = np.array([c[rows, k].astype(np.float64).sum() for c, k in zip(costs, cols)])
        name = os.path.basename(path)[: -len(".cost")]
        with open(os.path.join(directory, name + ".scipy"), "wb") as f:
            f.write(struct.pack("<d", best * 1e3))
            f.write(totals.astype("<f8").tobytes())
        print(f"{name:20s} scipy {best * 1e3:9.2f} ms per batch of {costs.shape[0]}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("gen", "scipy"):
        sys.exit(__doc__)
    (gen if sys.argv[1] == "gen" else run_scipy)(sys.argv[2])
