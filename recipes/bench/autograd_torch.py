"""The PyTorch side of the autograd benchmark (recipes/bench/autograd_vs_torch.py runs it).

    python3 recipes/bench/autograd_torch.py WORKLOAD THREADS ITERS [DUMP_DIR]

Same workloads, shapes and timing protocol as recipes/bench/autograd_bench.lua. With DUMP_DIR (written
by the pivq side) the model takes pivq's parameters and inputs, and the script compares its
gradients with pivq's: it prints the largest |difference| relative to the largest |gradient|,
per parameter, in the JSON line.
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

workload, threads = sys.argv[1], int(sys.argv[2])
iters = int(sys.argv[3]) if len(sys.argv) > 3 else 10
dump = sys.argv[4] if len(sys.argv) > 4 else None
torch.set_num_threads(threads)
torch.manual_seed(1234)


class Block(nn.Module):
    """Pre-norm block: x + attn(ln1(x) [, context]), then + fc2(gelu(fc1(ln2(.))))."""

    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x, context=None):
        h = self.ln1(x)
        kv = h if context is None else context
        x = x + self.attn(h, kv, kv, need_weights=False)[0]
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


def make(name):
    if name == "conv":
        m = nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(64, 128, 4, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(128, 128, 4, stride=2, padding=1))
        # pivq names Sequential children 1, 2, ...; PyTorch 0, 1, ...
        rename = {"1": "0", "3": "2", "5": "4"}
        return m, {"x": torch.randn(64, 1, 28, 28)}, lambda inp: m(inp["x"]).sum(), rename
    if name in ("block", "cross"):
        m = Block(256, 4, 1024)
        inputs = {"x": torch.randn(64, 49, 256)}
        if name == "cross":
            inputs["context"] = torch.randn(64, 32, 256)
        return m, inputs, lambda inp: m(inp["x"], inp.get("context")).sum(), {}
    if name == "sgemm":
        a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
        return None, {}, lambda inp: a @ b, {}
    raise SystemExit("unknown workload " + name)


model, inputs, run, rename = make(workload)


def torch_name(pivq_name):
    head, _, rest = pivq_name.partition(".")
    return rename.get(head, head) + "." + rest if rest else rename.get(head, head)


def load(path, shape):
    return torch.from_numpy(np.fromfile(path, dtype=np.float32).reshape(shape))


result = {"side": "torch", "workload": workload, "threads": threads}
if dump:
    entries = [line.split() for line in open(os.path.join(dump, "manifest.txt")) if line.strip()]
    shapes = {name: tuple(int(s) for s in shape.split("x")) for name, shape in entries}
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, shape in shapes.items():
            kind, _, rest = name.partition(".")
            if kind == "input":
                inputs[rest] = load(os.path.join(dump, name + ".f32"), shape)
            elif kind == "param":
                params[torch_name(rest)].copy_(load(os.path.join(dump, name + ".f32"), shape))
    model.zero_grad()
    run(inputs).backward()
    worst = 0.0
    for name, shape in shapes.items():
        kind, _, rest = name.partition(".")
        if kind != "grad":
            continue
        ours = load(os.path.join(dump, name + ".f32"), shape)
        theirs = params[torch_name(rest)].grad
        rel = float((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-30))
        worst = max(worst, rel)
    result["grad_rel_err"] = worst


def step():
    if model is None:
        return run(inputs)
    model.zero_grad(set_to_none=True)
    run(inputs).backward()


for _ in range(2):
    step()
times = []
cpu0 = time.process_time()
for _ in range(iters):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
result["cpu_ms"] = 1e3 * (time.process_time() - cpu0) / iters
result["ms"] = 1e3 * sum(times) / len(times)
result["best_ms"] = 1e3 * min(times)
print(json.dumps(result))
