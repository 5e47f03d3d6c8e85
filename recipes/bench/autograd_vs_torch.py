#!/usr/bin/python3
"""Side-by-side benchmark of pivq's autograd against PyTorch (issue 3).

    /usr/bin/python3 recipes/bench/autograd_vs_torch.py [--threads 1,2] [--iters 10] [--rounds 3]
                                                        [--build build]

Workloads (forward + backward, batch 64):
  conv   Conv 1->64 3x3 s1 p1, ReLU, Conv 64->128 4x4 s2 p1, ReLU, Conv 128->128 4x4 s2 p1
  block  pre-norm transformer block, sequence 49, width 256, 4 heads, MLP 1024
  cross  the same block with cross-attention from 49 queries to 32 keys
  sgemm  1024^3 matrix product (the BLAS rate GFLOP/s are compared with)

Both sides run as separate processes with the same thread count and environment:
OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = n, OMP_WAIT_POLICY=PASSIVE (without it Debian's
torch fights its own OpenBLAS threads), torch.set_num_threads(n). The pivq side first writes
its initial weights, inputs and gradients; the PyTorch side loads the same weights and
reports the largest gradient difference relative to the largest gradient. Each side runs
--rounds times, alternating which goes first, and the table shows the median round (the
fastest step: the best round), so that load from other work on a shared machine that comes
and goes falls on both sides alike.

Installs python3-torch (Debian) through .ci/setup when it is missing. Prints a table: wall time
per step, images/s (conv), the ratio PyTorch time / pivq time (>= 1 means pivq is faster),
pivq's GFLOP/s as a share of the measured sgemm rate, and the same ratio on process CPU time
(all threads) and on the fastest step of each side, which other load on a shared machine
disturbs less than the mean wall time.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # recipes/bench -> root


def ensure_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        subprocess.run(["sh", os.path.join(ROOT, ".ci", "setup"), "bench"], check=True)


def run(cmd, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               OMP_WAIT_POLICY="PASSIVE")
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def median(results):
    """The median of each timing over the rounds; best_ms the best of them."""
    out = dict(results[0])
    for key in ("ms", "cpu_ms", "gflops"):
        if key in out:
            out[key] = statistics.median(r[key] for r in results)
    out["best_ms"] = min(r["best_ms"] for r in results)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--build", default="build")
    ap.add_argument("--workloads", default="conv,block,cross")
    args = ap.parse_args()
    ensure_torch()
    pivq = os.path.join(ROOT, args.build, "pivq")
    if not os.path.exists(pivq):
        subprocess.run(["sh", os.path.join(ROOT, ".ci", "task"), "build"], check=True)
    try:
        load = open("/proc/loadavg").read().split()[0]
    except OSError:
        load = "?"
    print(f"pivq vs PyTorch, forward + backward, mean of {args.iters} steps, median of "
          f"{args.rounds} alternating rounds (load average at start {load})")
    header = (f"{'workload':<8} {'thr':>3} {'pivq ms':>9} {'torch ms':>9} {'ratio':>6} "
              f"{'pivq img/s':>10} {'torch img/s':>11} {'GFLOP/s':>8} {'% sgemm':>7} {'grad err':>9} "
              f"{'cpu ratio':>9} {'best ratio':>10}")
    print(header)
    print("-" * len(header))
    for threads in [int(t) for t in args.threads.split(",")]:
        sgemm = median([run([pivq, "recipes/bench/autograd_bench.lua", "sgemm", str(threads),
                             str(args.iters)], threads) for _ in range(args.rounds)])
        for wl in args.workloads.split(","):
            ours, theirs = [], []
            with tempfile.TemporaryDirectory() as dump:
                for r in range(args.rounds):
                    # round 0: pivq first, writing the weights and gradients PyTorch compares with
                    extra = [dump] if r == 0 else []
                    sides = [(ours, [pivq, "recipes/bench/autograd_bench.lua"]),
                             (theirs, [sys.executable, "recipes/bench/autograd_torch.py"])]
                    for out, cmd in sides if r % 2 == 0 else sides[::-1]:
                        out.append(run(cmd + [wl, str(threads), str(args.iters)] + extra, threads))
            err = theirs[0]["grad_rel_err"]
            ours, theirs = median(ours), median(theirs)
            ratio = theirs["ms"] / ours["ms"]
            imgs = (f"{64e3 / ours['ms']:>10.0f} {64e3 / theirs['ms']:>11.0f}" if wl == "conv"
                    else f"{'':>10} {'':>11}")
            print(f"{wl:<8} {threads:>3} {ours['ms']:>9.1f} {theirs['ms']:>9.1f} {ratio:>6.2f} "
                  f"{imgs} {ours['gflops']:>8.1f} {100 * ours['gflops'] / sgemm['gflops']:>6.0f}% "
                  f"{err:>9.1e} {theirs['cpu_ms'] / ours['cpu_ms']:>9.2f} "
                  f"{theirs['best_ms'] / ours['best_ms']:>10.2f}")
        print(f"{'sgemm':<8} {threads:>3} {sgemm['ms']:>9.1f} {'':>9} {'':>6} {'':>10} {'':>11} "
              f"{sgemm['gflops']:>8.1f}")


if __name__ == "__main__":
    main()
