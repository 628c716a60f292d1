"""CPU benchmarks of the selection core, side by side with the baselines in one run.

    python benchmarks/bench_cpu.py [--only coreset,floor,uncertainty,pruned,pruned_repeat,batched,imagenet,auto,spread,spread_full] [--quick]

coreset      CIFAR-10-sized core-set: N=50,000, D=64 (Gaussian), 1,000 already
             selected, 24,000 picks: the original SVP loop (numpy + scipy cdist,
             float32 matrix), its float64 O(N) variant, and svp_fast.
floor        N=1,000,000, D=128, float32 and float16, 200 picks: time per step
             against the memory-read floor N*D*bytes / bandwidth measured here.
uncertainty  N=1,000,000 x 1,000 classes, top 10%: against numpy and torch
             composites.
pruned       issue 4: real Fashion-MNIST proxy features (30,000 picks),
             synthetic clustered N=200,000 D=256 (10,000 picks), isotropic
             noise (auto against scan).
pruned_repeat  (not in the default set) the Fashion-MNIST row again, as
             alternating rounds of scan then auto (auto right after a scan, the
             least favourable order), for the spread of the ratio on a noisy
             machine.
batched      issue 14 on the CPU: the batched driver beside scan, lazy and pruned
             (Fashion-MNIST features, noise, the CIFAR-sized core-set, float16),
             with passes and picks per pass.
imagenet     (not in the default set) issue 14's CPU target: synthetic clustered
             1,281,167 x 2048 float16, a 10% core-set (128,117 picks) with
             auto, with the pruned engine's projection bound and without it
             (projection_dims=0: the engine before it), picks compared.
spread       (not in the default set) issue 23: 100,000 x 2048 float16
             embeddings whose variance spreads over many directions (1,000
             blobs, power-law spectra k^-0.5, k^-1, k^-2, and isotropic noise),
             10,000 picks: auto, lazy, batched and pruned side by side, with the
             fraction of distances each evaluated and its floor (those
             distances x D multiply-adds at the float32 product rate measured
             in the same run: torch's (N x D) @ (D x 256) or svp_fast's own
             kernel, whichever is faster; "x torch floor": at torch's rate,
             the issue's definition). --methods, --spectra choose; a
             method "lazy:noproduct" runs it without the product screen.
auto         (not in the default set) issue 23's target for auto: the cases of
             coreset, pruned and batched, each with auto and every explicit
             engine side by side (wall and CPU seconds, medians of --repeat
             runs; --threads 1 for runs that other work barely moves).
spread_full  (not in the default set) the same at 1,281,167 x 2048 float16,
             a 10% core-set (128,117 picks), auto only unless --methods says
             (each explicit engine takes tens of minutes to hours here).
Prints a table per group and writes benchmarks/results/cpu_<group>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import svp_fast  # noqa: E402
from svp_fast import _core  # noqa: E402

from baselines import first_difference, lean_kcenter_f64, svp_original_kcenter  # noqa: E402
from datasets import (fashion_mnist_proxy_features, isotropic, spread_blobs,  # noqa: E402
                      synthetic_clustered)

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "svp_fast": svp_fast.build_info(),
            "date": time.strftime("%Y-%m-%d")}


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def table(rows, cols):
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |", flush=True)


def save(name, rows):
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / f"cpu_{name}.json", "w") as f:
        json.dump({"machine": machine(), "rows": rows}, f, indent=1, default=str)


def bench_coreset(quick):
    rng = np.random.default_rng(0)
    n, d = 50_000, 64
    budget = 2_400 if quick else 24_000
    x = rng.standard_normal((n, d)).astype(np.float32)
    sel = rng.choice(n, 1000, replace=False)
    rows = []
    t_svp, p_svp = timed(lambda: svp_original_kcenter(x, sel, budget))
    rows.append({"method": "original SVP loop (numpy+scipy, f32 matrix)", "seconds": round(t_svp, 2)})
    t_lean, p_lean = timed(lambda: lean_kcenter_f64(x, sel, budget))
    rows.append({"method": "same loop, float64, O(N) memory", "seconds": round(t_lean, 2)})
    for method in ("scan", "lazy", "auto"):
        svp_fast.kcenter(x[:2000], 10, method=method)  # warm-up
        t, (p, st) = timed(lambda: svp_fast.kcenter(x, budget, already_selected=sel, method=method,
                                                    return_stats=True))
        rows.append({"method": f"svp_fast {method} ({st.method})", "seconds": round(t, 3),
                     "x original SVP": round(t_svp / t, 1),
                     "first diff vs f64 loop": first_difference(p, p_lean),
                     "first diff vs original": first_difference(p, p_svp),
                     "evaluated": round(st.evaluated_fraction, 3),
                     "float64 decisions": st.ambiguous_steps})
    table(rows, ["method", "seconds", "x original SVP", "first diff vs f64 loop",
                 "first diff vs original", "evaluated", "float64 decisions"])
    save("coreset", rows)


def bench_floor(quick):
    """Time per step against the read floor. The bandwidth of this (virtual)
    machine drifts by up to 1.5x within a minute, so each timing is paired with
    a bandwidth measurement taken right before it, three pairs per dtype, and
    the median of the paired ratios is reported."""
    n = 200_000 if quick else 1_000_000
    rng = np.random.default_rng(1)
    x32 = rng.standard_normal((n, 128), dtype=np.float32)
    rows = []
    for x in (x32, x32.astype(np.float16)):
        svp_fast.kcenter(x, 3, method="scan")
        steps = 200
        pairs = []
        for _ in range(3):
            bw = _core.measure_read_bandwidth(1 << 30, 0, 5)
            _, (p, st) = timed(lambda: svp_fast.kcenter(x, steps + 1, method="scan", return_stats=True))
            step = st.select_seconds / steps
            pairs.append((step / (x.nbytes / bw), step, bw))
        ratio, step, bw = sorted(pairs)[1]
        rows.append({"dtype": x.dtype.name, "N": n, "D": 128, "ms/step": round(step * 1e3, 2),
                     "floor ms": round(x.nbytes / bw * 1e3, 2), "/ floor": round(ratio, 2),
                     "read GB/s": round(bw / 1e9, 1),
                     "all ratios": " ".join(f"{r:.2f}" for r, _, _ in pairs)})
    table(rows, ["dtype", "N", "D", "ms/step", "floor ms", "/ floor", "read GB/s", "all ratios"])
    save("floor", rows)


def bench_uncertainty(quick):
    import torch

    n = 100_000 if quick else 1_000_000
    rng = np.random.default_rng(2)
    z = (rng.standard_normal((n, 1000), dtype=np.float32) * 3)
    k = n // 10
    bw = _core.measure_read_bandwidth(1 << 30, 0, 5)
    rows = []

    def np_softmax(a):
        e = np.exp(a - a.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    np_scores = {
        "least_confidence": lambda: 1 - np_softmax(z).max(1),
        "entropy": lambda: (lambda p: -(p * np.log(np.maximum(p, 1e-45))).sum(1))(np_softmax(z)),
        "margin": lambda: (lambda s: 1 - (s[:, -1] - s[:, -2]))(np.sort(np_softmax(z), 1)),
    }
    zt = torch.from_numpy(z)
    torch_scores = {
        "least_confidence": lambda: 1 - torch.softmax(zt, 1).max(1).values,
        "entropy": lambda: -(torch.softmax(zt, 1) * torch.log_softmax(zt, 1)).sum(1),
        "margin": lambda: (lambda t: 1 - (t[:, 0] - t[:, 1]))(torch.topk(torch.softmax(zt, 1), 2, 1).values),
    }
    for m in ("least_confidence", "entropy", "margin"):
        t_np, _ = timed(lambda: np.argpartition(-np_scores[m](), k)[:k])
        t_t, _ = timed(lambda: torch.topk(torch_scores[m](), k).indices)
        svp_fast.uncertainty(z[:1000], 10, method=m)
        t_s, _ = timed(lambda: svp_fast.uncertainty(z, k, method=m))
        _, st = svp_fast.uncertainty(z, k, method=m, return_stats=True)
        rows.append({"method": m, "numpy s": round(t_np, 3), "torch s": round(t_t, 3),
                     "svp_fast s": round(t_s, 3), "x numpy": round(t_np / t_s, 1),
                     "x torch": round(t_t / t_s, 1), "floor s": round(z.nbytes / bw, 3),
                     "rows in float64": st["rows_refined"]})
    table(rows, ["method", "numpy s", "torch s", "svp_fast s", "x numpy", "x torch", "floor s",
                 "rows in float64"])
    save("uncertainty", rows)


def bench_pruned(quick):
    rows = []
    cases = [
        ("Fashion-MNIST proxy features 60000x64", fashion_mnist_proxy_features(), 3000 if quick else 30_000),
        ("synthetic clustered 200000x256", synthetic_clustered(50_000 if quick else 200_000, 256), 1000 if quick else 10_000),
        ("isotropic noise 200000x64", isotropic(50_000 if quick else 200_000, 64), 1000 if quick else 10_000),
        ("isotropic noise 50000x256, 300 picks", isotropic(50_000, 256, seed=3), 300),
    ]
    for name, x, b in cases:
        res = {}
        for method in ("scan", "pruned", "lazy", "auto"):
            t, (p, st) = timed(lambda: svp_fast.kcenter(x, b, method=method, return_stats=True))
            res[method] = (t, p, st)
        t_scan, p_scan, _ = res["scan"]
        for method in ("scan", "pruned", "lazy", "auto"):
            t, p, st = res[method]
            rows.append({"data": name, "picks": b, "method": f"{method} ({st.method})",
                         "seconds": round(t, 2), "x scan": round(t_scan / t, 2),
                         "evaluated": round(st.evaluated_fraction, 4),
                         "cells s": round(st.cells_seconds, 2),
                         "same picks": bool(np.array_equal(p, p_scan))})
        print(name, "done", flush=True)
    table(rows, ["data", "picks", "method", "seconds", "x scan", "evaluated", "cells s", "same picks"])
    save("pruned", rows)


def bench_pruned_repeat(quick):
    x = fashion_mnist_proxy_features()
    b = 3000 if quick else 30_000
    rows = []
    for r in range(2 if quick else 6):
        t_scan, p_scan = timed(lambda: svp_fast.kcenter(x, b, method="scan"))
        t_auto, (p, st) = timed(lambda: svp_fast.kcenter(x, b, return_stats=True))
        rows.append({"round": r + 1, "scan s": round(t_scan, 3), "auto s": round(t_auto, 3),
                     "auto select s": round(st.select_seconds, 3),
                     "auto cells s": round(st.cells_seconds, 3),
                     "x scan": round(t_scan / t_auto, 2),
                     "same picks": bool(np.array_equal(p, p_scan))})
    table(rows, ["round", "scan s", "auto s", "auto select s", "auto cells s", "x scan",
                 "same picks"])
    ratios = sorted(r["x scan"] for r in rows)
    print(f"x scan: min {ratios[0]}, median {ratios[len(ratios) // 2]}, max {ratios[-1]}")
    save("pruned_repeat", rows)


def bench_batched(quick):
    """Issue 14 on the CPU: the batched driver (method="batched", and
    batch_candidates over the lazy and pruned engines) beside scan, lazy and
    pruned, with the passes it took and the picks it certified per pass."""
    rows = []
    cases = [
        ("Fashion-MNIST proxy features 60000x64", fashion_mnist_proxy_features(), 600 if quick else 6000),
        ("isotropic noise 50000x64", isotropic(50_000, 64, seed=0), 1200 if quick else 12_000),
        ("CIFAR-sized 50000x64, 24,000 picks", isotropic(50_000, 64, seed=1), 2400 if quick else 24_000),
        ("float16 isotropic 200000x64", isotropic(200_000, 64, seed=2).astype(np.float16), 500 if quick else 5000),
    ]
    runs = [("scan", {}), ("lazy", {}), ("pruned", {}), ("batched", {}),
            ("lazy", {"batch_candidates": 256}), ("pruned", {"batch_candidates": 256})]
    for name, x, b in cases:
        res = []
        for method, kw in runs:
            t, (p, st) = timed(lambda: svp_fast.kcenter(x, b, method=method, return_stats=True, **kw))
            label = method + (f" + passes (T={kw['batch_candidates']})" if kw else "")
            res.append((label, t, p, st))
        t_scan, p_scan = res[0][1], res[0][2]
        for label, t, p, st in res:
            rows.append({"data": name, "picks": b, "method": label, "seconds": round(t, 3),
                         "x scan": round(t_scan / t, 2), "passes": st.passes,
                         "picks/pass": round(st.picks_per_pass, 1),
                         "float64 steps": st.ambiguous_steps,
                         "same picks": bool(np.array_equal(p, p_scan))})
        print(name, "done", flush=True)
    table(rows, ["data", "picks", "method", "seconds", "x scan", "passes", "picks/pass",
                 "float64 steps", "same picks"])
    save("batched", rows)


def bench_imagenet(quick):
    n = 200_000 if quick else 1_281_167
    b = -(-n // 10)  # 10%, rounded up: 128,117
    t_gen, x = timed(lambda: synthetic_clustered(n, 2048, dtype=np.float16))
    print(f"generated {n} x 2048 float16 in {t_gen:.0f} s", flush=True)
    rows, picks = [], {}
    for label, dims in (("auto", None), ("auto, projection_dims=0", 0)):
        t, (p, st) = timed(lambda: svp_fast.kcenter(x, b, return_stats=True, projection_dims=dims))
        picks[label] = p
        ex = st.extra
        rows.append({"data": f"synthetic clustered {n}x2048 float16", "picks": b, "run": label,
                     "seconds": round(t, 1), "cells + projection s": round(st.cells_seconds, 1),
                     "select s": round(st.select_seconds, 1), "method": st.method,
                     "evaluated": round(st.evaluated_fraction, 5),
                     "projection": (f"{ex['projection_dims']} dims, rules out "
                                    f"{ex['projection_skips'] / max(ex['projection_tests'], 1):.1%}"
                                    if "projection_dims" in ex else "none")})
        print(label, "done", flush=True)
    same = bool(np.array_equal(*picks.values()))
    for r in rows:
        r["same picks"] = same
    table(rows, ["data", "picks", "run", "seconds", "cells + projection s", "select s", "method",
                 "evaluated", "projection", "same picks"])
    save("imagenet", rows)


SPECTRA = {"power 0.5": 0.5, "power 1": 1.0, "power 2": 2.0, "isotropic": None}


def product_rate(d: int = 2048, threads: int | None = None) -> dict:
    """float32 matrix-product rates (flops/s, two per multiply-add), measured
    now on ``threads`` threads (None: the default): torch's (8192 x d) @
    (d x 256) (the issue's measure), and svp_fast's own kernel on float16 rows
    held in cache. The floor of a run takes the faster."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        a = torch.randn(8192, d)
        b = torch.randn(d, 256)
        torch.mm(a, b)
        best = 0.0
        for _ in range(5):
            t, _ = timed(lambda: torch.mm(a, b))
            best = max(best, 2.0 * 8192 * d * 256 / t)
    finally:
        torch.set_num_threads(before)
    own = max(_core.measure_product_rate(d, True, threads or 0, 0.3) for _ in range(3))
    # per second of the threads' own CPU time: the floor of a one-thread run's CPU time
    own_cpu = max(_core.measure_product_rate(d, True, threads or 0, 0.3, True) for _ in range(3))
    return {"torch": best, "svp_fast": own, "floor": max(best, own), "cpu": own_cpu}


def spread_data(spectrum: str, n: int, d: int = 2048) -> np.ndarray:
    decay = SPECTRA[spectrum]
    if decay is None:
        return isotropic(n, d, seed=23, dtype=np.float16)
    return spread_blobs(n, d, decay=decay, seed=23, dtype=np.float16)


def bench_spread(quick, full=False, methods=None, spectra=None, threads=None):
    """Issue 23: engines on embeddings whose variance spreads over many directions."""
    n = 1_281_167 if full else (20_000 if quick else 100_000)
    d = 2048
    budget = -(-n // 10)
    methods = methods or (["auto"] if full else ["auto", "lazy", "batched", "pruned"])
    rows = []
    for spectrum in spectra or SPECTRA:
        t_gen, x = timed(lambda: spread_data(spectrum, n, d))
        name = f"{spectrum} {n}x{d} float16"
        print(f"{name}: generated in {t_gen:.0f} s", flush=True)
        svp_fast.kcenter(x[:4096], 64, method="lazy")  # warm-up
        res = []
        for method in methods:
            rate = product_rate(d, threads)
            load0 = os.getloadavg()[0]
            # "lazy:noproduct": the engine without the product screen (the engines before)
            engine, _, variant = method.partition(":")
            tuning = _core.set_product_tuning(min_cols=1 << 40) if variant == "noproduct" else None
            cpu0 = time.process_time()
            try:
                t, (p, st) = timed(lambda: svp_fast.kcenter(x, budget, method=engine,
                                                            return_stats=True,
                                                            num_threads=threads))
            finally:
                if tuning:
                    _core.set_product_tuning(*tuning)
            cpu = time.process_time() - cpu0  # on one thread: the run's work, whatever else runs
            floor = st.distance_evals * d * 2.0 / rate["floor"]
            res.append((method, t, p, st, floor, rate, (load0, os.getloadavg()[0]), cpu))
            print(f"  {method}: {t:.1f} s, cpu {cpu:.1f} s ({st.method}, evaluated "
                  f"{st.evaluated_fraction:.3f}, floor {floor:.1f} s, load {load0:.1f})", flush=True)
        best = min((t for m, t, *_ in res if m != "auto"), default=None)
        best_cpu = min((r[7] for r in res if r[0] != "auto"), default=None)
        p0 = res[0][2]
        for method, t, p, st, floor, rate, load, cpu in res:
            ex = st.extra
            rows.append({
                "data": name, "picks": budget, "method": method, "seconds": round(t, 2),
                "engine": st.method, "evaluated": round(st.evaluated_fraction, 4),
                "floor s": round(floor, 2), "x floor": round(t / floor, 2) if floor else "",
                # the definition: the floor at torch's float32 product rate
                "x torch floor": (round(t / (st.distance_evals * d * 2.0 / rate["torch"]), 2)
                                  if st.distance_evals else ""),
                "x best explicit": round(t / best, 2) if best else "",
                "cpu s": round(cpu, 2),
                "cpu x best": round(cpu / best_cpu, 2) if best_cpu else "",
                # one thread: the run's CPU time against the kernel's rate per CPU-second
                "cpu x floor": (round(cpu / (st.distance_evals * d * 2.0 / rate["cpu"]), 2)
                                if threads == 1 and st.distance_evals else ""),
                "setup s": round(st.cells_seconds, 2),
                "product recomputes": (round(ex["product_recomputes"] / ex["product_pairs"], 4)
                                       if ex.get("product_pairs") else ""),
                "auto's facts": ", ".join(f"{k} {v:.3g}" for k, v in ex.items()
                                         if k in ("intrinsic_dimension", "spread_residual")),
                "torch GFLOP/s": round(rate["torch"] / 1e9), "own GFLOP/s": round(rate["svp_fast"] / 1e9),
                "load": f"{load[0]:.1f}-{load[1]:.1f}",
                "same picks": bool(np.array_equal(p, p0))})
        x = None  # free the rows before the next spectrum is generated
    cols = ["data", "picks", "method", "seconds", "engine", "evaluated", "floor s", "x floor", "x torch floor",
            "x best explicit", "cpu s", "cpu x best", "cpu x floor", "setup s", "product recomputes", "auto's facts", "torch GFLOP/s",
            "own GFLOP/s", "load", "same picks"]
    table(rows, cols)
    save(("spread_full" if full else "spread") + (f"_t{threads}" if threads else ""), rows)


REPEAT_SECONDS = 20.0


def bench_auto(quick, threads=None, repeat=3):
    """Issue 23's target for auto: within 1.1x of the best explicit engine on
    every case of the groups above (the spread group has its own rows), each
    engine side by side on the same data, wall and CPU seconds (medians of
    ``repeat`` runs, fewer for methods slower than REPEAT_SECONDS)."""
    rng = np.random.default_rng(0)
    gauss = rng.standard_normal((50_000, 64)).astype(np.float32)
    sel = rng.choice(50_000, 1000, replace=False)
    f = 10 if quick else 1
    cases = [
        ("CIFAR-sized 50000x64, 1,000 selected", gauss, 24_000 // f, {"already_selected": sel}),
        ("Fashion-MNIST proxy features 60000x64", fashion_mnist_proxy_features(), 30_000 // f, {}),
        ("Fashion-MNIST proxy features 60000x64, 6,000 picks", fashion_mnist_proxy_features(),
         6000 // f, {}),
        ("synthetic clustered 200000x256", synthetic_clustered(200_000, 256), 10_000 // f, {}),
        ("isotropic noise 200000x64", isotropic(200_000, 64), 10_000 // f, {}),
        ("isotropic noise 50000x256, 300 picks", isotropic(50_000, 256, seed=3), 300, {}),
        ("float16 isotropic 200000x64", isotropic(200_000, 64, seed=2).astype(np.float16),
         5000 // f, {}),
    ]
    rows = []
    methods = ("auto", "scan", "lazy", "pruned", "batched")
    for name, x, b, kw in cases:
        # rounds in an order that turns every round (the first run of a case is
        # not always auto's); a method whose runs took REPEAT_SECONDS stops
        # early; the median of each method's runs
        runs = {m: [] for m in methods}
        for r in range(repeat):
            for method in methods[r % len(methods):] + methods[:r % len(methods)]:
                if runs[method] and sum(v[0] for v in runs[method]) > REPEAT_SECONDS:
                    continue
                load0 = os.getloadavg()[0]
                c = time.process_time()
                t, (p, st) = timed(lambda: svp_fast.kcenter(x, b, method=method, return_stats=True,
                                                            num_threads=threads, **kw))
                runs[method].append((t, time.process_time() - c, p, st, load0))
        res = []
        for method in methods:
            ts = sorted(runs[method], key=lambda v: v[0])
            t, cpu, p, st, load0 = ts[(len(ts) - 1) // 2]
            res.append((method, t, cpu, p, st, load0))
        best = min(r[1] for r in res[1:])
        best_cpu = min(r[2] for r in res[1:])
        for method, t, cpu, p, st, load0 in res:
            rows.append({"data": name, "picks": b, "method": method, "engine": st.method,
                         "seconds": round(t, 2), "x best explicit": round(t / best, 2),
                         "cpu s": round(cpu, 2), "cpu x best": round(cpu / best_cpu, 2),
                         "evaluated": round(st.evaluated_fraction, 4),
                         "auto's facts": ", ".join(
                             f"{k} {v:.3g}" for k, v in st.extra.items()
                             if k in ("intrinsic_dimension", "spread_residual", "trial_lazy_s",
                                      "trial_pruned_s", "trial_seconds")),
                         "load": round(load0, 1), "runs": len(runs[method]),
                         "same picks": bool(np.array_equal(p, res[0][3]))})
        print(name, "done", flush=True)
    table(rows, ["data", "picks", "method", "engine", "seconds", "x best explicit", "cpu s",
                 "cpu x best", "evaluated", "auto's facts", "load", "runs", "same picks"])
    save("auto" + (f"_t{threads}" if threads else ""), rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="coreset,floor,uncertainty,pruned")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="auto group: runs of each method (median)")
    ap.add_argument("--methods", help="spread groups: the methods to run (comma-separated)")
    ap.add_argument("--spectra", help="spread groups: which of " + ", ".join(SPECTRA))
    ap.add_argument("--threads", type=int, help="auto and spread groups: threads of every run and rate "
                    "(default: all; one thread is far less sensitive to other work)")
    args = ap.parse_args(argv)
    print(json.dumps(machine(), default=str))
    methods = args.methods.split(",") if args.methods else None
    spectra = args.spectra.split(",") if args.spectra else None
    for name in args.only.split(","):
        print(f"\n## {name}")
        if name == "auto":
            bench_auto(args.quick, threads=args.threads, repeat=args.repeat)
            continue
        if name in ("spread", "spread_full"):
            bench_spread(args.quick, full=name == "spread_full", methods=methods, spectra=spectra,
                         threads=args.threads)
            continue
        {"coreset": bench_coreset, "floor": bench_floor, "uncertainty": bench_uncertainty,
         "pruned": bench_pruned, "pruned_repeat": bench_pruned_repeat,
         "batched": bench_batched, "imagenet": bench_imagenet}[name](args.quick)


if __name__ == "__main__":
    main()
