"""GPU benchmarks (one H200), side by side with plain PyTorch in the same run.

    python3 benchmarks/bench_gpu.py [--out DIR] [--quick]

1. k-center time per step, N = 1,281,167: D=512 fp32, D=2048 fp32, D=2048 fp16,
   against the best plain-PyTorch loop (norms + matvec, no host sync) and the
   floor N*D*bytes / copy bandwidth measured here.
2. Small set: N=50,000, D=64, 24,000 picks (the CIFAR-10 core-set), total time
   against the same PyTorch loop (launch overhead dominates there).
3. Uncertainty top-10% of 1,281,167 x 1,000 logits: least confidence, entropy,
   margin, against PyTorch composites and the floor of reading the logits once.
4. Pruned: synthetic clustered 1,281,167 x 2048 fp16 (../shared/anchors
   generator), a 10% core-set (128,117 picks): total time and the per-step curve
   (PNG + CSV), against the plain PyTorch loop (extrapolated from its first
   steps) and the plain-PyTorch cell prototype of the anchors.
Prints a short table last; writes JSON/CSV/PNG under --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch

import svp_fast

N_IMAGENET = 1_281_167


def sync():
    torch.cuda.synchronize()


def timed(fn, repeat=3):
    ts = []
    for _ in range(repeat):
        sync()
        t = time.perf_counter()
        out = fn()
        sync()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2], out


def copy_bandwidth():
    x = torch.empty(2 << 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    y.copy_(x)
    t, _ = timed(lambda: y.copy_(x), 5)
    del x, y
    return 2 * (2 << 30) / t  # read + write bytes per second


def torch_kcenter_steps(x, steps, start=0):
    """The best plain-PyTorch loop (ANCHORS.md): norms + matvec, min, argmax; no sync."""
    xf = x
    norms = (x.float() ** 2).sum(1)
    mind = torch.full((x.shape[0],), float("inf"), device=x.device)
    idx = torch.tensor(start, device=x.device)
    picks = torch.empty(steps, dtype=torch.long, device=x.device)
    for t in range(steps):
        picks[t] = idx
        c = xf[idx]
        d = norms - 2 * (xf @ c).float() + (c.float() ** 2).sum()
        torch.minimum(mind, d, out=mind)
        mind[idx] = -1
        idx = torch.argmax(mind)
    return picks


def synthetic_clustered_gpu(n, d, classes=1000, sub=32, seed=0, dtype=torch.float16):
    g = torch.Generator(device="cuda").manual_seed(seed)
    centers = torch.randn(classes, sub, device="cuda", generator=g) * 4
    lab = torch.randint(0, classes, (n,), device="cuda", generator=g)
    w = torch.randn(sub, d, device="cuda", generator=g) / sub ** 0.5
    x = torch.empty(n, d, device="cuda", dtype=dtype)
    for s in range(0, n, 131072):
        e = min(n, s + 131072)
        z = centers[lab[s:e]] + torch.randn(e - s, sub, device="cuda", generator=g)
        x[s:e] = (z @ w + 0.05 * torch.randn(e - s, d, device="cuda", generator=g)).to(dtype)
    return x


class StepClock:
    """A tqdm-like progress sink that records (seconds, picks done)."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.n = 0
        self.trace = [(0.0, 0)]

    def update(self, k):
        self.n += k
        self.trace.append((time.perf_counter() - self.t0, self.n))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "bench_gpu_out"))
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    info = svp_fast.build_info()
    dev = torch.cuda.get_device_name()
    bw = copy_bandwidth()
    print(f"device {dev}; copy bandwidth (read+write) {bw / 1e12:.2f} TB/s; build {info}", flush=True)
    n_big = 200_000 if args.quick else N_IMAGENET
    rows = []

    # 1. per-step time at ImageNet scale
    for d, dtype in [(512, torch.float32), (2048, torch.float32), (2048, torch.float16)]:
        x = torch.randn(n_big, d, device="cuda", dtype=dtype)
        steps = 200
        floor = x.numel() * x.element_size() / bw
        t_torch, _ = timed(lambda: torch_kcenter_steps(x, steps), 2)
        svp_fast.kcenter(x, 5, method="scan")
        t_svp, (p, st) = timed(lambda: svp_fast.kcenter(x, steps, method="scan", return_stats=True), 3)
        step_svp = st.select_seconds / (steps - 1)
        rows.append({"case": f"kcenter step N={n_big} D={d} {str(dtype)[6:]}",
                     "torch_ms": t_torch / steps * 1e3, "svp_ms": step_svp * 1e3,
                     "floor_ms": floor * 1e3, "vs_torch": t_torch / steps / step_svp,
                     "vs_floor": step_svp / floor, "ambiguous": st.ambiguous_steps})
        print(rows[-1], flush=True)
        del x

    # 2. the CIFAR-10 core-set size: launch overhead dominates
    x = torch.randn(50_000, 64, device="cuda")
    sel = torch.randperm(50_000, device="cuda")[:1000]
    b = 24_000
    t_torch, _ = timed(lambda: torch_kcenter_steps(x, b), 1)
    svp_fast.kcenter(x, 10, already_selected=sel)
    t_svp, _ = timed(lambda: svp_fast.kcenter(x, b, already_selected=sel, method="scan"), 3)
    rows.append({"case": "kcenter N=50000 D=64 24000 picks (total s)", "torch_ms": t_torch * 1e3,
                 "svp_ms": t_svp * 1e3, "floor_ms": float("nan"), "vs_torch": t_torch / t_svp,
                 "vs_floor": float("nan")})
    print(rows[-1], flush=True)
    del x

    # 3. uncertainty top-10% of 1,281,167 x 1,000 logits
    z = torch.randn(n_big, 1000, device="cuda") * 3
    k = n_big // 10
    floor = z.numel() * 4 / bw
    composites = {
        "least_confidence": lambda: torch.topk(1 - torch.softmax(z, 1).max(1).values, k).indices,
        "entropy": lambda: torch.topk(-(torch.softmax(z, 1) * torch.log_softmax(z, 1)).sum(1), k).indices,
        "margin": lambda: torch.topk(1 - (lambda t: t[:, 0] - t[:, 1])(torch.topk(torch.softmax(z, 1), 2, 1).values), k).indices,
    }
    for m, fn in composites.items():
        t_torch, ref = timed(fn, 3)
        svp_fast.uncertainty(z, k, method=m)
        t_svp, got = timed(lambda: svp_fast.uncertainty(z, k, method=m), 5)
        same = float((torch.sort(ref).values == torch.sort(got).values).float().mean())
        _, st = svp_fast.uncertainty(z, k, method=m, return_stats=True)  # rows decided in float64
        rows.append({"case": f"uncertainty top10% {m}", "torch_ms": t_torch * 1e3, "svp_ms": t_svp * 1e3,
                     "floor_ms": floor * 1e3, "vs_torch": t_torch / t_svp, "vs_floor": t_svp / floor,
                     "same_set_as_torch": same, "rows_refined": st["rows_refined"]})
        print(rows[-1], flush=True)
    del z

    # 4. pruned 10% core-set on synthetic clustered ImageNet-like embeddings
    x = synthetic_clustered_gpu(n_big, 2048)
    budget = n_big // 10 + 1
    t_torch, _ = timed(lambda: torch_kcenter_steps(x, 1000), 1)
    torch_total = t_torch / 1000 * budget
    clock = StepClock()
    sync()
    t0 = time.perf_counter()
    p, st = svp_fast.kcenter(x, budget, method="pruned", return_stats=True, progress=clock)
    sync()
    t_svp = time.perf_counter() - t0
    check = torch_kcenter_steps(x, 2000)
    same = int((p[:2000] == check).long().cumprod(0).sum())
    rows.append({"case": f"pruned 10% core-set N={n_big} D=2048 fp16 (total s)",
                 "torch_ms": torch_total * 1e3, "svp_ms": t_svp * 1e3, "floor_ms": float("nan"),
                 "vs_torch": torch_total / t_svp, "vs_floor": float("nan"),
                 "evaluated_fraction": st.evaluated_fraction, "cells_s": st.cells_seconds,
                 "ambiguous": st.ambiguous_steps, "same_first_picks_as_torch_scan": same})
    print(rows[-1], flush=True)
    with open(os.path.join(args.out, "pruned_curve.csv"), "w") as f:
        f.write("seconds,picks\n")
        for s, n in clock.trace:
            f.write(f"{s:.4f},{n}\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        tr = clock.trace
        xs = [n for _, n in tr[1:]]
        ys = [(tr[i][0] - tr[i - 1][0]) / max(1, tr[i][1] - tr[i - 1][1]) * 1e3 for i in range(1, len(tr))]
        plt.figure(figsize=(6, 3.5))
        plt.plot(xs, ys)
        plt.axhline(t_torch / 1000 * 1e3, color="gray", ls="--", label="plain PyTorch scan")
        plt.yscale("log")
        plt.xlabel("picks")
        plt.ylabel("ms per pick")
        plt.title(f"pruned k-center, {dev}")
        plt.legend()
        plt.tight_layout()
        plt.savefig(os.path.join(args.out, "pruned_curve.png"), dpi=120)
    except Exception as e:  # plotting must not lose the numbers
        print("plot failed:", e)
    with open(os.path.join(args.out, "bench_gpu.json"), "w") as f:
        json.dump({"device": dev, "copy_bw": bw, "rows": rows}, f, indent=1)
    print("\n| case | PyTorch ms | svp_fast ms | floor ms | x PyTorch | / floor |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        fl = "" if math.isnan(r["floor_ms"]) else f"{r['floor_ms']:.3f}"
        vf = "" if math.isnan(r["vs_floor"]) else f"{r['vs_floor']:.2f}"
        print(f"| {r['case']} | {r['torch_ms']:.3f} | {r['svp_ms']:.3f} | {fl} | {r['vs_torch']:.2f} | {vf} |")


if __name__ == "__main__":
    sys.exit(main())
