"""PRDC with NumPy and scikit-learn, as Naeem et al. 2020 define it (the reference for
recipes/bench/prdc.sh): full pairwise Euclidean distance matrices, a point's radius the distance
to its k-th nearest other point of its own set, membership by strict <, density / (k M).

    python3 prdc_numpy.py DATA_DIR N D OUT_JSON     (DATA_DIR/real.f32 and fake.f32, N x D float32)
"""
import json
import sys
import time

import numpy as np
from sklearn.metrics import pairwise_distances


def kth_radii(x, k):
    d = pairwise_distances(x, x, metric="euclidean", n_jobs=1)
    # column 0 of the partition is the point itself (distance 0): the k-th other point is k
    return np.partition(d, k, axis=1)[:, k]


def prdc(real, fake, k=5):
    real_r = kth_radii(real, k)
    fake_r = kth_radii(fake, k)
    d = pairwise_distances(real, fake, metric="euclidean", n_jobs=1)
    inside_real = d < real_r[:, None]
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((d < fake_r[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float((d.min(axis=1) < real_r).mean()),
    }


def main():
    data, n, dim, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    real = np.fromfile(data + "/real.f32", dtype=np.float32).reshape(n, dim)
    fake = np.fromfile(data + "/fake.f32", dtype=np.float32).reshape(n, dim)
    best, res = float("inf"), None
    for _ in range(2):
        t0 = time.perf_counter()
        res = prdc(real, fake)
        best = min(best, time.perf_counter() - t0)
    res["seconds"] = best
    with open(out, "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    main()
