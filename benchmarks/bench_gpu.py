"""GPU benchmarks (one H200), side by side with plain PyTorch in the same run.

    python3 benchmarks/bench_gpu.py [--out DIR] [--quick] [--cap-seconds S] [--only a,b] [--dry-run]

Cases (``--only`` takes their names):

* ``scan``: k-center time per step, N = 1,281,167: D=512 fp32, D=2048 fp32, D=2048
  fp16, against the best plain-PyTorch loop (norms + matvec, no host sync) and
  the floor N*D*bytes / copy bandwidth measured here.
* ``small``: N=50,000, D=64, 24,000 picks (the CIFAR-10 core-set), total time
  against the same PyTorch loop (launch overhead dominates there).
* ``uncertainty``: top-10% of 1,281,167 x 1,000 logits, each method, against
  PyTorch composites and the floor of reading the logits once.
* ``batched``: the batched engine: 50,000 x 64 with 24,000 picks against the
  PyTorch loop, then 10% core-sets of 1,281,167 x 2048 (clustered fp16 and
  fp32, Gaussian noise fp16), each capped and extrapolated, its first 2,000
  picks compared with the scan's.
* ``pruned``: synthetic clustered 1,281,167 x 2048 fp16 (the ../shared/anchors
  generator), a 10% core-set (128,117 picks), stopped at the cap and
  extrapolated: the per-step curve (PNG + CSV) against the plain PyTorch loop.

Every row is capped (``--cap-seconds``, default 45 s of svp_fast time): a run
that reaches the cap is stopped and reported with the picks it made and the
rate it ran at. The JSON is rewritten after every row, so a timeout loses
nothing that finished. ``--dry-run`` (CI, no GPU) runs every case at tiny
sizes on the CPU through svp_fast's CUDA backend on a stand-in core
(benchmarks/_dry_run.py): the script's own code, up to the first CUDA call.
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


class Capped(Exception):
    """Raised from the k-center callback when a row reaches its time cap."""


class Bench:
    def __init__(self, args):
        self.args = args
        self.dev = torch.device("cpu" if args.dry_run else "cuda")
        self.rows = []
        self.meta = {}
        self.n_big = 3000 if args.dry_run else (200_000 if args.quick else N_IMAGENET)
        self.model = {}  # the cost model's predictions, by case (gpu_cost_model.py)

    # -- timing ---------------------------------------------------------------

    def sync(self):
        if self.dev.type == "cuda":
            torch.cuda.synchronize()

    def timed(self, fn, repeat=3):
        ts, out = [], None
        for _ in range(repeat):
            self.sync()
            t = time.perf_counter()
            out = fn()
            self.sync()
            ts.append(time.perf_counter() - t)
        ts.sort()
        return ts[len(ts) // 2], out

    def copy_bandwidth(self):
        if self.dev.type != "cuda":
            return float("nan")
        x = torch.empty(2 << 30, dtype=torch.uint8, device=self.dev)
        y = torch.empty_like(x)
        y.copy_(x)
        t, _ = self.timed(lambda: y.copy_(x), 5)
        x = y = None  # (not del: the timed closures above refer to them)
        return 2 * (2 << 30) / t  # read + write bytes per second

    def capped_kcenter(self, x, budget, **kw):
        """svp_fast.kcenter stopped at the cap: (seconds, picks made, stats or None)."""
        cap = self.args.cap_seconds
        done = [0]
        t0 = [0.0]

        def watch(picks, radii):
            done[0] = len(picks)
            if time.perf_counter() - t0[0] > cap:
                raise Capped()

        self.sync()
        t0[0] = time.perf_counter()
        try:
            out = svp_fast.kcenter(x, budget, callback=watch, return_stats=True, **kw)
            self.sync()
            return time.perf_counter() - t0[0], budget, out[-1]
        except Capped:
            self.sync()
            return time.perf_counter() - t0[0], done[0], None

    def curve(self, name, x, budget, floor_s):
        """Picks against time for one capped batched run (the callback's samples,
        about 10 a second), as CSV and a plot of milliseconds per pick with the
        floor of one pass (the rows' bytes over the copy bandwidth) divided by
        the picks per pass, for issue 14's per-pass comparison."""
        trace = []
        t0 = [0.0]

        def watch(picks, radii):
            trace.append((time.perf_counter() - t0[0], len(picks)))
            if trace[-1][0] > self.args.cap_seconds:
                raise Capped()

        self.sync()
        t0[0] = time.perf_counter()
        try:
            _, st = svp_fast.kcenter(x, budget, method="batched", callback=watch, return_stats=True)
            ppp = st.picks_per_pass
        except Capped:
            ppp = float("nan")
        path = os.path.join(self.args.out, f"{name}_curve.csv")
        with open(path, "w") as f:
            f.write("seconds,picks\n")
            for s_, n_ in trace:
                f.write(f"{s_:.4f},{n_}\n")
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            xs, ys = [], []
            for (s0, n0), (s1, n1) in zip(trace, trace[1:]):
                if n1 > n0:
                    xs.append(n1)
                    ys.append((s1 - s0) / (n1 - n0) * 1e3)
            fig, ax = plt.subplots(figsize=(6, 3.5))
            ax.plot(xs, ys, label="svp_fast batched (ms per pick)")
            ax.axhline(floor_s * 1e3, color="gray", ls="--", label="one pass's read floor")
            if ys:  # a run too short for two samples has no curve
                ax.set_yscale("log")
            ax.set_xlabel("picks")
            ax.set_ylabel("ms per pick")
            ax.set_title(f"batched k-center, {self.meta.get('device', '')}; {ppp:.0f} picks/pass")
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8)
            fig.tight_layout()
            fig.savefig(os.path.join(self.args.out, f"{name}_curve.png"), dpi=110)
            plt.close(fig)
        except Exception as e:  # the numbers are in the CSV
            print("plot failed:", e)

    # -- output ---------------------------------------------------------------

    def predict(self, device_name: str):
        """The cost model's prediction of every case, for the device named (the
        H100's rates for an H100, else the H200's)."""
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import gpu_cost_model

        kind = "h100" if "H100" in device_name else "h200"
        self.model = gpu_cost_model.predictions(kind, n_big=self.n_big)
        self.meta["model_device"] = kind

    def add(self, row):
        m = self.model.get(row.get("case"))
        if m is not None:  # beside the measurement: where the model was wrong
            row["model_ms"] = m["predicted_s"] * 1e3
            row["model_floor_ms"] = m["floor_s"] * 1e3
            if row.get("svp_ms"):
                row["vs_model"] = row["svp_ms"] / row["model_ms"]
        self.rows.append(row)
        print(row, flush=True)
        self.save()

    def save(self):
        os.makedirs(self.args.out, exist_ok=True)
        with open(os.path.join(self.args.out, "bench_gpu.json"), "w") as f:
            json.dump({**self.meta, "rows": self.rows}, f, indent=1)

    def table(self):
        print("\n| case | PyTorch ms | svp_fast ms | floor ms | x PyTorch | / floor | model ms | / model |")
        print("|---|---|---|---|---|---|---|---|")
        for r in self.rows:
            def f(v, fmt):
                return "" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)
            print(f"| {r['case']} | {f(r.get('torch_ms'), '{:.3f}')} | {f(r.get('svp_ms'), '{:.3f}')} "
                  f"| {f(r.get('floor_ms'), '{:.3f}')} | {f(r.get('vs_torch'), '{:.2f}')} "
                  f"| {f(r.get('vs_floor'), '{:.2f}')} | {f(r.get('model_ms'), '{:.3f}')} "
                  f"| {f(r.get('vs_model'), '{:.2f}')} |")


def torch_kcenter_steps(x, steps, start=0):
    """The best plain-PyTorch loop (ANCHORS.md): norms + matvec, min, argmax.

    No host synchronisation: the index stays a 1-element device tensor and is
    used through index_select / index_fill_ (indexing with a 0-dim tensor
    would synchronise twice per step and flatter svp_fast's ratio)."""
    n = x.shape[0]
    norms = (x.float() ** 2).sum(1)
    mind = torch.full((n,), float("inf"), device=x.device)
    idx = torch.full((1,), start, dtype=torch.long, device=x.device)
    picks = torch.empty(steps, dtype=torch.long, device=x.device)
    for t in range(steps):
        picks[t:t + 1].copy_(idx)
        c = x.index_select(0, idx)  # (1, D)
        d = norms - 2 * (x @ c.T).squeeze(1).float() + (c.float() ** 2).sum()
        torch.minimum(mind, d, out=mind)
        mind.index_fill_(0, idx, -1.0)
        idx = torch.argmax(mind).view(1)
    return picks


def synthetic_clustered(n, d, device, classes=1000, sub=32, seed=0, dtype=torch.float16):
    g = torch.Generator(device=device).manual_seed(seed)
    centers = torch.randn(classes, sub, device=device, generator=g) * 4
    lab = torch.randint(0, classes, (n,), device=device, generator=g)
    w = torch.randn(sub, d, device=device, generator=g) / sub ** 0.5
    x = torch.empty(n, d, device=device, dtype=dtype)
    for s in range(0, n, 131072):
        e = min(n, s + 131072)
        z = centers[lab[s:e]] + torch.randn(e - s, sub, device=device, generator=g)
        x[s:e] = (z @ w + 0.05 * torch.randn(e - s, d, device=device, generator=g)).to(dtype)
    return x


def case_scan(b: Bench, bw: float):
    for d, dtype in [(512, torch.float32), (2048, torch.float32), (2048, torch.float16)]:
        x = torch.randn(b.n_big, d, device=b.dev, dtype=dtype)
        steps = 20 if b.args.dry_run else 200
        floor = x.numel() * x.element_size() / bw
        t_torch, _ = b.timed(lambda: torch_kcenter_steps(x, steps), 2)
        svp_fast.kcenter(x, 5, method="scan")  # warm-up
        t_svp, (p, st) = b.timed(lambda: svp_fast.kcenter(x, steps, method="scan",
                                                          return_stats=True), 3)
        step_svp = st.select_seconds / (steps - 1)
        b.add({"case": f"kcenter step N={b.n_big} D={d} {str(dtype)[6:]}",
               "torch_ms": t_torch / steps * 1e3, "svp_ms": step_svp * 1e3,
               "floor_ms": floor * 1e3, "vs_torch": t_torch / steps / step_svp,
               "vs_floor": step_svp / floor, "ambiguous": st.ambiguous_steps})
        x = None  # (free the device memory; not del: the timed closures refer to x)


def case_small(b: Bench, bw: float):
    n, budget = (2000, 500) if b.args.dry_run else (50_000, 24_000)
    g = torch.Generator(device=b.dev).manual_seed(1)
    x = torch.randn(n, 64, device=b.dev, generator=g)
    sel = torch.randperm(n, device=b.dev, generator=g)[: n // 50]
    t_torch, _ = b.timed(lambda: torch_kcenter_steps(x, budget), 1)
    svp_fast.kcenter(x, 10, already_selected=sel)
    t_svp, _ = b.timed(lambda: svp_fast.kcenter(x, budget, already_selected=sel, method="scan"), 3)
    b.add({"case": f"kcenter N={n} D=64 {budget} picks (total)", "torch_ms": t_torch * 1e3,
           "svp_ms": t_svp * 1e3, "vs_torch": t_torch / t_svp})


def case_uncertainty(b: Bench, bw: float):
    z = torch.randn(b.n_big, 1000, device=b.dev) * 3
    k = b.n_big // 10
    floor = z.numel() * 4 / bw
    composites = {
        "least_confidence": lambda: torch.topk(1 - torch.softmax(z, 1).max(1).values, k).indices,
        "entropy": lambda: torch.topk(-(torch.softmax(z, 1) * torch.log_softmax(z, 1)).sum(1), k).indices,
        "margin": lambda: torch.topk(1 - (lambda t: t[:, 0] - t[:, 1])(
            torch.topk(torch.softmax(z, 1), 2, 1).values), k).indices,
    }
    for m, fn in composites.items():
        t_torch, ref = b.timed(fn, 3)
        svp_fast.uncertainty(z, k, method=m)
        t_svp, got = b.timed(lambda: svp_fast.uncertainty(z, k, method=m), 5)
        same = float((torch.sort(ref).values == torch.sort(got).values).float().mean())
        _, st = svp_fast.uncertainty(z, k, method=m, return_stats=True)  # rows decided in float64
        b.add({"case": f"uncertainty top10% {m}", "torch_ms": t_torch * 1e3, "svp_ms": t_svp * 1e3,
               "floor_ms": floor * 1e3, "vs_torch": t_torch / t_svp, "vs_floor": t_svp / floor,
               "same_set_as_torch": same, "rows_refined": st["rows_refined"]})
    z = None  # (free the device memory; not del: the timed closures refer to z)


def case_pruned(b: Bench, bw: float):
    x = synthetic_clustered(b.n_big, 64 if b.args.dry_run else 2048, b.dev)
    budget = b.n_big // 10 + 1
    probe = 50 if b.args.dry_run else 1000
    t_torch, _ = b.timed(lambda: torch_kcenter_steps(x, probe), 1)
    torch_total = t_torch / probe * budget
    seconds, done, st = b.capped_kcenter(x, budget, method="pruned")
    total = seconds if done == budget else seconds / max(done, 1) * budget
    check_n = min(2000, done)
    check = svp_fast.kcenter(x, check_n, method="scan")
    first = svp_fast.kcenter(x, check_n, method="pruned")
    same = int((first == check).long().cumprod(0).sum())
    b.add({"case": f"pruned 10% core-set N={b.n_big} D={x.shape[1]} fp16 (total)",
           "torch_ms": torch_total * 1e3, "svp_ms": total * 1e3, "vs_torch": torch_total / total,
           "picks_done": done, "capped": done < budget,
           "evaluated_fraction": None if st is None else st.evaluated_fraction,
           "same_first_picks_as_scan": same})


def case_batched(b: Bench, bw: float):
    """Issue 14's targets: the batched engine on the CIFAR-sized core-set, then
    a 10% core-set of ImageNet-sized clustered data (fp16, fp32) and of noise."""
    # 50,000 x 64, 24,000 picks: at least 20x the PyTorch loop
    n, budget = (2000, 500) if b.args.dry_run else (50_000, 24_000)
    g = torch.Generator(device=b.dev).manual_seed(1)
    x = torch.randn(n, 64, device=b.dev, generator=g)
    t_torch, ref = b.timed(lambda: torch_kcenter_steps(x, budget), 1)
    svp_fast.kcenter(x, 10, method="batched")
    t_svp, (p, st) = b.timed(lambda: svp_fast.kcenter(x, budget, method="batched",
                                                      return_stats=True), 3)
    scan = svp_fast.kcenter(x, min(budget, 5000), method="scan")
    b.add({"case": f"batched N={n} D=64 {budget} picks (total)", "torch_ms": t_torch * 1e3,
           "svp_ms": t_svp * 1e3, "vs_torch": t_torch / t_svp, "passes": st.passes,
           "picks_per_pass": st.picks_per_pass, "ambiguous": st.ambiguous_steps,
           "same_as_scan": bool((p[: scan.numel()] == scan).all())})
    x = None  # (free the device memory; not del: the timed closures refer to x)
    # 10% of 1,281,167 x 2048: clustered fp16 and fp32, noise fp16
    d = 64 if b.args.dry_run else 2048
    for kind, dtype in [("clustered", torch.float16), ("clustered", torch.float32),
                        ("noise", torch.float16)]:
        if kind == "clustered":
            x = synthetic_clustered(b.n_big, d, b.dev, dtype=dtype)
        else:
            x = torch.randn(b.n_big, d, device=b.dev, generator=g).to(dtype)
        budget = b.n_big // 10 + 1
        probe = 20 if b.args.dry_run else 300
        t_torch, _ = b.timed(lambda: torch_kcenter_steps(x, probe), 1)
        torch_total = t_torch / probe * budget
        seconds, done, st = b.capped_kcenter(x, budget, method="batched")
        total = seconds if done == budget else seconds / max(done, 1) * budget
        if kind == "clustered" and dtype == torch.float16:
            b.curve("batched", x, budget, b.n_big * x.shape[1] * x.element_size() / bw)
        check_n = min(2000, done)
        first = svp_fast.kcenter(x, check_n, method="batched")
        check = svp_fast.kcenter(x, check_n, method="scan")
        b.add({"case": f"batched 10% core-set N={b.n_big} D={d} {kind} {str(dtype)[6:]} (total)",
               "torch_ms": torch_total * 1e3, "svp_ms": total * 1e3,
               "vs_torch": torch_total / total, "picks_done": done, "capped": done < budget,
               "passes": None if st is None else st.passes,
               "picks_per_pass": None if st is None else st.picks_per_pass,
               "floor_per_pass_ms": x.numel() * x.element_size() / bw * 1e3,
               "same_first_picks_as_scan": int((first == check).long().cumprod(0).sum())})
        x = None  # (free the device memory; not del: the timed closures refer to x)


CASES = {"scan": case_scan, "small": case_small, "uncertainty": case_uncertainty,
         "batched": case_batched, "pruned": case_pruned}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "bench_gpu_out"))
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    ap.add_argument("--cap-seconds", type=float, default=45.0)
    ap.add_argument("--only", default=",".join(CASES), help="comma-separated: " + ",".join(CASES))
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny sizes on the CPU through the CUDA glue on a stand-in (CI)")
    args = ap.parse_args(argv)
    only = [c for c in args.only.split(",") if c]
    unknown = [c for c in only if c not in CASES]
    if unknown:
        ap.error(f"--only: unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    b = Bench(args)
    if args.dry_run:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from _dry_run import install_cuda_standin

        install_cuda_standin()
        b.meta["device"] = "dry run (CPU, stand-in core)"
    else:
        b.meta["device"] = torch.cuda.get_device_name()
    bw = b.copy_bandwidth()
    b.meta.update(copy_bw=bw, build=svp_fast.build_info())
    b.predict(b.meta["device"])
    print(f"device {b.meta['device']}; copy bandwidth (read+write) {bw / 1e12:.2f} TB/s", flush=True)
    b.save()
    for name in only:
        t = time.perf_counter()
        try:
            CASES[name](b, bw)
        except Exception as e:  # one case's failure must not lose the others
            b.add({"case": name, "error": f"{type(e).__name__}: {e}"})
        print(f"case {name}: {time.perf_counter() - t:.1f} s", flush=True)
    b.table()
    return 1 if any("error" in r for r in b.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
