"""PyTorch twin of pivq's default PI-VQ model, for the training-speed benchmark.

    OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=N /usr/bin/python3 recipes/bench/train_torch.py MODE THREADS STEPS \
        [PATCH WIDTH DEPTH HEADS MLP_RATIO L K C]

Colour and the conv head through the environment (both sides read the same variables):
PIVQ_BENCH_SIZE (28), PIVQ_BENCH_CHANNELS (1), PIVQ_BENCH_HEAD (linear | conv),
PIVQ_BENCH_HEAD_WIDTH (64), PIVQ_BENCH_BATCH (64); e.g. the face64 preset:
PIVQ_BENCH_SIZE=64 PIVQ_BENCH_CHANNELS=3 PIVQ_BENCH_HEAD=conv PIVQ_BENCH_BATCH=32 ... 8 128 3 4 2 64 1024 32

Same architecture as lua/pivq/models/pivq.lua (patch embedding + 2-D position embedding + L
learned readout tokens, pre-norm blocks; decoder queries with self- and cross-attention to the
code vectors; sigmoid pixels), the same quantizer (EMA codebook; matching through SciPy's
linear_sum_assignment per image, nearest by argmin), the same loss (L1 + L2 + beta *
commitment) and AdamW. PRECISION=bf16 in the environment runs forward and loss under
torch.autocast("cpu", dtype=torch.bfloat16) (the quantizer stays fp32, as in pivq).
Prints one JSON line: images/s over the timed steps (after 3 warm-up
steps) and the share of step time spent quantizing.
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

mode, threads = sys.argv[1], int(sys.argv[2])
steps = int(sys.argv[3]) if mode != "quality" else 0
rest = [int(v) for v in sys.argv[4:12]] + [None] * 8
BF16 = os.environ.get("PRECISION", "fp32") == "bf16"
PATCH = rest[0] or 7
WIDTH = rest[1] or 128
DEPTH = rest[2] or 2
HEADS = rest[3] or 4
MLP = rest[4] or 2
L = rest[5] or 64
K = rest[6] or 512
C = rest[7] or 32
torch.set_num_threads(threads)
torch.manual_seed(1)
B = int(os.environ.get("PIVQ_BENCH_BATCH", "64"))
SIZE = int(os.environ.get("PIVQ_BENCH_SIZE", "28"))
CH = int(os.environ.get("PIVQ_BENCH_CHANNELS", "1"))
HEAD = os.environ.get("PIVQ_BENCH_HEAD", "linear")
HEAD_WIDTH = int(os.environ.get("PIVQ_BENCH_HEAD_WIDTH", "64"))
GRID = SIZE // PATCH
N = GRID * GRID


class Block(nn.Module):
    def __init__(self, cross):
        super().__init__()
        self.ln1 = nn.LayerNorm(WIDTH)
        self.attn = nn.MultiheadAttention(WIDTH, HEADS, batch_first=True)
        self.cross = cross
        if cross:
            self.lnc = nn.LayerNorm(WIDTH)
            self.cattn = nn.MultiheadAttention(WIDTH, HEADS, batch_first=True)
        self.ln2 = nn.LayerNorm(WIDTH)
        self.fc1 = nn.Linear(WIDTH, WIDTH * MLP)
        self.fc2 = nn.Linear(WIDTH * MLP, WIDTH)

    def forward(self, x, context=None):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        if self.cross:
            h = self.lnc(x)
            x = x + self.cattn(h, context, context, need_weights=False)[0]
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(PATCH * PATCH * CH, WIDTH)
        self.pos = nn.Parameter(torch.randn(1, N, WIDTH) * 0.02)
        self.queries = nn.Parameter(torch.randn(1, L, WIDTH))
        self.enc = nn.ModuleList([Block(False) for _ in range(DEPTH)])
        self.enc_norm = nn.LayerNorm(WIDTH)
        self.to_code = nn.Linear(WIDTH, C)
        self.from_code = nn.Linear(C, WIDTH)
        self.dec_queries = nn.Parameter(torch.randn(1, N, WIDTH) * 0.02)
        self.dec = nn.ModuleList([Block(True) for _ in range(DEPTH)])
        self.dec_norm = nn.LayerNorm(WIDTH)
        if HEAD == "conv":
            # pivq's conv head: 1x1 conv, then per factor 2 of the patch nearest 2x upsampling,
            # 3x3 conv, SiLU (widths halve after the first stage, down to 16), a 3x3 conv out
            w = HEAD_WIDTH
            self.head_in = nn.Conv2d(WIDTH, w, 1)
            ups, size, stage = [], 1, 0
            while size < PATCH:
                stage, size = stage + 1, size * 2
                w2 = max(16, w // (2 if stage > 1 else 1))
                ups.append(nn.Conv2d(w, w2, 3, padding=1))
                w = w2
            self.head_up = nn.ModuleList(ups)
            self.head_out = nn.Conv2d(w, CH, 3, padding=1)
        else:
            self.to_pixels = nn.Linear(WIDTH, PATCH * PATCH * CH)
        self.register_buffer("codebook", torch.randn(K, C))
        self.register_buffer("ema_count", torch.ones(K))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.quant_time = 0.0

    def quantize(self, z):
        t0 = time.perf_counter()
        z = z.float()
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            flat = z.reshape(-1, C)
            d = (flat * flat).sum(1, keepdim=True) - 2 * flat @ self.codebook.t() + (self.codebook ** 2).sum(1)[None]
            if mode == "matching":
                dn = d.view(z.shape[0], L, K).numpy()
                idx = torch.from_numpy(np.stack([linear_sum_assignment(c)[1] for c in dn])).reshape(-1)
            else:
                idx = d.argmin(1)
            onehot = F.one_hot(idx, K).float()
            n = onehot.sum(0)
            self.ema_count.mul_(0.99).add_(n, alpha=0.01)
            self.ema_sum.mul_(0.99).add_(onehot.t() @ flat, alpha=0.01)
            tot = self.ema_count.sum()
            smoothed = (self.ema_count + 1e-5) / (tot + K * 1e-5) * tot
            self.codebook.copy_(self.ema_sum / smoothed[:, None])
        e = self.codebook[idx].view_as(z)
        self.quant_time += time.perf_counter() - t0
        commit = F.mse_loss(z, e)
        return z + (e - z).detach(), commit

    def forward(self, x):
        b = x.shape[0]
        patches = x.reshape(b, CH, GRID, PATCH, GRID, PATCH).permute(0, 2, 4, 3, 5, 1).reshape(b, N, -1)
        h = torch.cat([self.embed(patches) + self.pos, self.queries.expand(b, -1, -1)], 1)
        for blk in self.enc:
            h = blk(h)
        z = self.to_code(self.enc_norm(h[:, N:]))
        zq, commit = self.quantize(z)
        mem = self.from_code(zq)
        q = self.dec_queries.expand(b, -1, -1)
        for blk in self.dec:
            q = blk(q, mem)
        feats = self.dec_norm(q)
        if HEAD == "conv":
            h = self.head_in(feats.reshape(b, GRID, GRID, WIDTH).permute(0, 3, 1, 2).contiguous())
            for conv in self.head_up:
                h = F.silu(conv(F.interpolate(h, scale_factor=2, mode="nearest")))
            return torch.sigmoid(self.head_out(h)), commit
        out = self.to_pixels(feats)
        img = out.reshape(b, GRID, GRID, PATCH, PATCH, CH).permute(0, 5, 1, 3, 2, 4).reshape(b, CH, SIZE, SIZE)
        return torch.sigmoid(img), commit


def train_step(model, opt, xb):
    """One step: L1 + L2 + 0.25 commitment, backward, clip 1.0, AdamW (as pivq's benchmark step)."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=BF16):
        y, commit = model(xb)
        loss = F.l1_loss(y.float(), xb) + F.mse_loss(y.float(), xb) + 0.25 * commit
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def load_u8(path):
    """The uint8 `images` tensor of a safetensors file (pivq.save), as float32 in [0, 1]."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    meta = header["images"]
    lo, hi = meta["data_offsets"]
    return torch.from_numpy(np.frombuffer(data[lo:hi], dtype=np.uint8).reshape(meta["shape"]).astype(np.float32) / 255)


if mode == "quality":
    # quality MINUTES TRAIN.safetensors TEST.safetensors: train for MINUTES of wall-clock (L1 + L2 +
    # commitment, AdamW 2e-3 with 200 warm-up steps, clip 1.0, batch B, matching through SciPy), logging
    # the held-out PSNR once a minute; the same data as pivq (exported by recipes/bench/export_split.lua)
    minutes, train_path, test_path = float(sys.argv[3]), sys.argv[4 + 8], sys.argv[5 + 8]
    mode = "matching"
    train_x, test_x = load_u8(train_path), load_u8(test_path)
    model = Model()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 200))
    g = torch.Generator().manual_seed(1)
    t_start, step, next_eval = time.perf_counter(), 0, 60.0

    def held_out_psnr():
        model.eval()
        with torch.no_grad():
            mse = []
            for i in range(0, test_x.shape[0], 100):
                xb = test_x[i:i + 100]
                y, _ = model(xb)
                mse.append(((y - xb) ** 2).flatten(1).mean(1))
            mse = torch.cat(mse)
        model.train()
        return float((10 * torch.log10(1 / mse.clamp_min(1e-10))).mean())

    while True:
        elapsed = time.perf_counter() - t_start
        if elapsed >= next_eval or elapsed >= minutes * 60:
            print(json.dumps({"side": "torch", "minutes": elapsed / 60, "step": step, "psnr": held_out_psnr()}),
                  flush=True)
            next_eval += 60.0
            if elapsed >= minutes * 60:
                break
        idx = torch.randint(0, train_x.shape[0], (B,), generator=g)
        train_step(model, opt, train_x[idx])
        sched.step()
        step += 1
    sys.exit(0)

model = Model()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
x = torch.rand(B, CH, SIZE, SIZE)
times = []
quant = []
for step in range(steps + 3):
    model.quant_time = 0.0
    t0 = time.perf_counter()
    train_step(model, opt, x)
    if step >= 3:
        times.append(time.perf_counter() - t0)
        quant.append(model.quant_time)
med = float(np.median(times))
print(json.dumps({"side": "torch", "mode": mode, "threads": threads, "precision": "bf16" if BF16 else "fp32",
                  "img_per_s": B / med,
                  "step_ms": med * 1e3, "quant_share": float(np.sum(quant) / np.sum(times))}))
