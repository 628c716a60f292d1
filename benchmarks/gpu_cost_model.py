"""The GPU cost model: predicted time of every case of bench_gpu.py, per kernel, beside its floor.

    python3 benchmarks/gpu_cost_model.py                 the table (H200)
    python3 benchmarks/gpu_cost_model.py --json          one JSON object per case
    python3 benchmarks/gpu_cost_model.py --device h100   another device's rates
    python3 benchmarks/gpu_cost_model.py --measure       re-measure the data-dependent
                                                         counts (passes, picks per pass,
                                                         screened-in pairs) on scaled stand-ins

Every kernel launch of a case is counted from the code (csrc/cuda): the global
bytes it reads and writes, its products (tensor-core multiply-adds counted as 2
flops), its float32 SIMT and float64 operations, its grid-wide barriers and
host round trips. A launch costs the largest of bytes over the bandwidth,
products over the product rate and float64 operations over the float64 rate,
plus its barriers and a launch overhead. The case's floor is the larger of all
its bytes over the bandwidth and all its products over the product rate: what
no implementation of the same algorithm on the same device can beat.

What the code cannot say (how many passes the batched engine makes, how many
row-pick pairs its screen lets through, what fraction the cells leave to
scan) comes from measured profiles: the CPU engines' passes on stand-ins of
the same data at a tenth of the rows (extrapolated in proportion to the picks),
and the emulated GPU build's screen counts (--measure writes them to
benchmarks/results/gpu_cost_profiles.json; the defaults below are those numbers).

bench_gpu.py prints the prediction beside every measurement, so the first run on
a device shows at once where the model is wrong. Rates (H200, measured or
quoted in the issue): device-to-device copy 4.3 TB/s counting both directions,
bf16/fp16 dense products 790 TFLOP/s, float64 60 TFLOP/s, float32 SIMT 60 TFLOP/s,
a grid-wide barrier 3 us, a kernel launch 3 us of device time, a host round
trip 15 us.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional

PROFILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "gpu_cost_profiles.json")
N_IMAGENET = 1_281_167


@dataclass(frozen=True)
class Device:
    name: str
    bandwidth: float      # bytes/s, reads and writes together (a copy counts both)
    products: float       # tensor-core flop/s (fp16/bf16 inputs, fp32 accumulation)
    simt32: float         # float32 flop/s on the SIMT units
    f64: float            # float64 flop/s
    barrier: float        # s, one grid-wide barrier (cooperative grid.sync)
    launch: float         # s of device time per kernel launch
    round_trip: float     # s, a host synchronisation and a small copy back
    sms: int


DEVICES = {
    "h200": Device("NVIDIA H200", 4.3e12, 790e12, 60e12, 60e12, 3e-6, 3e-6, 15e-6, 132),
    "h100": Device("NVIDIA H100 (SXM)", 3.0e12, 750e12, 60e12, 60e12, 3e-6, 3e-6, 15e-6, 132),
}


@dataclass
class Launch:
    """One kernel (or library call) of a case: its counts for `count` launches."""

    kernel: str
    count: float = 1.0
    read: float = 0.0      # bytes, all launches
    written: float = 0.0
    products: float = 0.0  # tensor-core flops
    simt: float = 0.0      # float32 SIMT flops
    f64: float = 0.0       # float64 flops
    barriers: float = 0.0  # grid-wide barriers
    round_trips: float = 0.0
    fixed: float = 0.0     # s of time counted as is (a measured per-call cost)

    def seconds(self, dev: Device) -> float:
        busy = max((self.read + self.written) / dev.bandwidth, self.products / dev.products,
                   self.simt / dev.simt32, self.f64 / dev.f64)
        return (busy + self.count * dev.launch + self.barriers * dev.barrier
                + self.round_trips * dev.round_trip + self.fixed)


@dataclass
class Case:
    name: str             # e.g. "imagenet-1281167x2048-fp16"
    bench_case: str       # the row of bench_gpu.py it predicts
    launches: List[Launch] = field(default_factory=list)
    notes: str = ""

    def predicted(self, dev: Device) -> float:
        return sum(l.seconds(dev) for l in self.launches)

    def floor(self, dev: Device) -> float:
        b = sum(l.read + l.written for l in self.launches)
        p = sum(l.products for l in self.launches)
        return max(b / dev.bandwidth, p / dev.products)


# ----------------------------------------------------------------- profiles
# Data-dependent counts. Defaults: benchmarks/results/gpu_cost_profiles.json
# (written by --measure); these built-in values are the fallback when it is
# missing. picks_per_pass: the batched engine's mean over a 10% core-set
# with T = 256; screened_in: the fraction of row-pick pairs whose exact
# distance the screen computes; evaluated: the pruned engine's fraction of a
# scan's distances.

DEFAULT_PROFILES = {
    "batched-clustered": {"picks_per_pass": 180.0, "screened_in": 2e-3, "source": "assumed"},
    "batched-noise": {"picks_per_pass": 150.0, "screened_in": 2e-3, "source": "assumed"},
    "batched-small": {"picks_per_pass": 120.0, "screened_in": 1e-2, "source": "assumed"},
    "pruned-clustered": {"evaluated": 3.2e-3, "active_cells": 0.05, "source": "ANCHORS.md (CPU, 0.30-0.32%)"},
}


def load_profiles(path: str = PROFILES) -> Dict[str, dict]:
    prof = {k: dict(v) for k, v in DEFAULT_PROFILES.items()}
    try:
        with open(path) as f:
            for k, v in json.load(f).items():
                prof.setdefault(k, {}).update(v)
    except (OSError, ValueError):
        pass
    return prof


# ----------------------------------------------------------------- kernels
# The per-launch counts of csrc/cuda, one function per kernel family.

ACC = 4  # float32 accumulation: m, m2 per row
ASSIGN = 8


def facts(n, d, es) -> Launch:
    """kc_facts: every value read once (NaN/Inf, magnitudes, float64 norms)."""
    return Launch("kc_facts", read=n * d * es, written=n * 8, f64=2 * n * d)


def prepare(n) -> Launch:
    """kc_prepare: m, m2, assign initialised."""
    return Launch("kc_prepare", written=n * (2 * ACC + ASSIGN))


def scan_steps(n, d, es, steps) -> List[Launch]:
    """kc_steps: per step every live row read once (distance, min update,
    candidates), the block candidates reduced, one grid-wide barrier; the
    state read and written per row."""
    per_row_state = 2 * ACC  # m read; written when it changes (counted once)
    # (chunks of about 12,500 steps a launch)
    return [Launch("kc_steps", count=steps / 12500, read=steps * n * (d * es + per_row_state),
                   written=steps * n * 0.1 * (2 * ACC + ASSIGN), simt=steps * n * d * 3,
                   barriers=steps)]


def batched(n, d, es, budget, T, picks_per_pass, screened_rows, split: bool) -> List[Launch]:
    """The batched engine (kcenter_batched.cuh): per pass the radix sort of N
    min-distances, the T x T candidate distances, the certified acceptance,
    one host round trip, then the pass's b picks applied to every row as one
    product S = X P^T on the tensor cores (cuBLAS) and the float32 screen
    (kb_screen), which computes the exact distance of the screened-in pairs."""
    passes = max(1.0, budget / picks_per_pass)
    b = min(T, picks_per_pass)
    K = 3 * d if split else d  # float32 rows as [xh | xl | xh] bf16
    ks = 2 if split else es
    out: List[Launch] = []
    if split:
        out.append(Launch("kb_split_rows", read=n * d * 4, written=n * K * 2))
    out.append(Launch("kb_sqnorms", read=n * d * es, written=n * 8, f64=2 * n * d))
    # CUB onesweep radix sort, 32-bit keys and int values: a histogram pass,
    # then 4 passes of 8-bit digits, each reading and writing keys and values
    out.append(Launch("batched_sort (CUB radix)", count=passes * 5, read=passes * n * (4 + 5 * 8),
                      written=passes * n * 4 * 8))
    out.append(Launch("kb_pairs", count=passes, read=passes * T * d * es, written=passes * T * T * 4,
                      simt=passes * 3 * T * T * d))
    # the acceptance: about 4.5 us a pick on one block per SM (the desk review
    # of its SASS: a block reduction, the certified decision, the T-row update)
    out.append(Launch("kb_accept", count=passes, read=passes * T * 40, fixed=budget * 4.5e-6,
                      barriers=passes))
    out.append(Launch("host round trip (KcState)", count=0, round_trips=passes))
    out.append(Launch("kc_exclude + kb_gather", count=2 * passes, read=passes * b * d * es,
                      written=passes * b * (K * ks + d * 4)))
    out.append(Launch("cuBLAS GemmEx (S = X P^T)", count=passes * math.ceil(n * b * 4 / (256 << 20)),
                      read=passes * (n * K * ks + b * K * ks), written=passes * n * b * 4,
                      products=passes * 2.0 * n * b * K))
    exact = screened_rows * n / passes  # row-pick pairs computed exactly, per pass (on average)
    out.append(Launch("kb_screen", count=passes * math.ceil(n * b * 4 / (256 << 20)),
                      read=passes * (n * b * 4 + n * (2 * ACC + 8 + 4) + exact * d * es),
                      written=passes * n * 0.01 * (2 * ACC + ASSIGN),
                      simt=passes * (12.0 * n * b + 3.0 * exact * d)))
    return out


def pruned(n, d, es, budget, evaluated, active_cells, n_cells=4096) -> List[Launch]:
    """The pruned engine (kcenter_pruned.cuh): set-up (cells grouped, centroids,
    member distances sorted), then per step every cell's centroid distance to
    the new center (float32 centroids), the members of the cells that may change
    (about `evaluated` of a scan), their cells' best two refreshed, four grid
    barriers."""
    setup = [Launch("cells set-up (hist, scatter, centroids, sort)", count=6,
                    read=n * d * es * 2 + n * 40, written=n * 40 + n_cells * d * 4)]
    steps = budget
    per_step_cells = n_cells * d * 4  # the centroids, float32
    scanned = evaluated * n  # members scanned per step
    return setup + [Launch("kc_steps_pruned", count=math.ceil(steps / 12500),
                           read=steps * (per_step_cells + scanned * (d * es + 24) + n_cells * 48 * (1 + active_cells)),
                           written=steps * scanned * 0.2 * 16, simt=steps * (2 * n_cells * d + 3 * scanned * d),
                           f64=steps * 2 * n_cells * d, barriers=4 * steps)]


def uncertainty(n, c, es) -> List[Launch]:
    """uncertainty.cu: one pass over the logits (scores, keys and error bounds),
    the keys' radix sort, the position bounds and two scans, the groups near
    the boundary refined (a few rows), the top-k gathered."""
    return [Launch("unc_pass", read=n * c * es, written=n * (4 + 8 + 4), simt=n * c * 8),
            Launch("sort (CUB radix) + bounds + scans + select", count=12,
                   read=n * (8 + 4 + 8 + 8 + 5 * 16 + 16 + 8), written=n * (4 + 8 + 5 * 16 + 16 + 8 + 2)),
            Launch("refine_rows + order_groups + gather_top", count=3, read=n * 0.01 * c * es + n * 0.1 * 16,
                   written=n * 0.1 * 12, f64=n * 0.01 * c * 20),
            Launch("host round trip (validation)", count=0, round_trips=1)]


# ----------------------------------------------------------------- the cases

def cases(prof: Dict[str, dict], n_big: int = N_IMAGENET) -> List[Case]:
    out: List[Case] = []
    long_name = {"fp32": "float32", "fp16": "float16"}  # as bench_gpu.py names them
    for d, dt, es in [(512, "fp32", 4), (2048, "fp32", 4), (2048, "fp16", 2)]:
        out.append(Case(f"scan-step-{n_big}x{d}-{dt}", f"kcenter step N={n_big} D={d} {long_name[dt]}",
                        scan_steps(n_big, d, es, 1), notes="one step (bench_gpu.py: svp_ms per step)"))
    n, budget = 50_000, 24_000
    out.append(Case(f"small-{n}x64-fp32", f"kcenter N={n} D=64 {budget} picks (total)",
                    [facts(n, 64, 4), prepare(n)] + scan_steps(n, 64, 4, budget)))
    for m in ("least_confidence", "entropy", "margin"):
        out.append(Case(f"uncertainty-{n_big}x1000-fp32-{m}", f"uncertainty top10% {m}",
                        uncertainty(n_big, 1000, 4)))
    p = prof["batched-small"]
    out.append(Case(f"batched-{n}x64-fp32", f"batched N={n} D=64 {budget} picks (total)",
                    [facts(n, 64, 4), prepare(n)] + batched(n, 64, 4, budget, 256, p["picks_per_pass"],
                                                            screened_per_row(p, budget), split=True)))
    budget = n_big // 10 + 1
    for kind, dt, es in [("clustered", "fp16", 2), ("clustered", "fp32", 4), ("noise", "fp16", 2)]:
        p = prof[f"batched-{kind}"]
        out.append(Case(f"imagenet-{n_big}x2048-{dt}" + ("" if kind == "clustered" else "-noise"),
                        f"batched 10% core-set N={n_big} D=2048 {kind} {long_name[dt]} (total)",
                        [facts(n_big, 2048, es), prepare(n_big)]
                        + batched(n_big, 2048, es, budget, 256, p["picks_per_pass"],
                                  screened_per_row(p, budget), split=dt == "fp32"),
                        notes=f"{p['picks_per_pass']:.0f} picks a pass ({p.get('source', '')}); "
                              f"{screened_per_row(p, budget):.0f} exact distances a row "
                              f"({p.get('screen_source', 'assumed')})"))
    p = prof["pruned-clustered"]
    out.append(Case(f"pruned-{n_big}x2048-fp16", f"pruned 10% core-set N={n_big} D=2048 fp16 (total)",
                    [facts(n_big, 2048, 2), prepare(n_big)]
                    + pruned(n_big, 2048, 2, budget, p["evaluated"], p.get("active_cells", 0.05)),
                    notes=f"{p['evaluated']:.2%} of a scan's distances ({p.get('source', '')})"))
    return out


def predictions(device: str = "h200", profiles: Optional[Dict[str, dict]] = None,
                n_big: int = N_IMAGENET) -> Dict[str, dict]:
    """{bench_gpu.py row name: {case, predicted_s, floor_s, kernels}}: what
    bench_gpu.py prints beside its measurements."""
    dev = DEVICES[device]
    out = {}
    for c in cases(profiles or load_profiles(), n_big):
        out[c.bench_case] = as_dict(c, dev)
    return out


def as_dict(c: Case, dev: Device) -> dict:
    return {"case": c.name, "bench_case": c.bench_case, "device": dev.name,
            "predicted_s": c.predicted(dev), "floor_s": c.floor(dev),
            "kernels": [{"kernel": l.kernel, "launches": l.count, "predicted_s": l.seconds(dev),
                         "bytes": l.read + l.written, "products": l.products, "f64": l.f64,
                         "barriers": l.barriers} for l in c.launches],
            "notes": c.notes}


# ----------------------------------------------------------------- measuring

def measure(out_path: str = PROFILES, scale: int = 10) -> dict:
    """The data-dependent counts on stand-ins at 1/scale of the rows: the CPU
    batched engine's passes over a 10% core-set (T = 256), the emulated GPU
    build's screened-in pairs where this build is emulated, the pruned
    engine's evaluated fraction."""
    import time

    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_gpu import synthetic_clustered  # noqa: E402  (the same data as the bench)

    import svp_fast

    n = N_IMAGENET // scale
    budget = n // 10 + 1
    prof: Dict[str, dict] = {}
    for kind in ("clustered", "noise"):
        t0 = time.perf_counter()
        if kind == "clustered":
            x = synthetic_clustered(n, 2048, "cpu", dtype=torch.float16)
        else:
            g = torch.Generator().manual_seed(1)
            x = torch.randn(n, 2048, generator=g).to(torch.float16)
        _, st = svp_fast.kcenter(x, budget, method="batched", batch_candidates=256, return_stats=True)
        prof[f"batched-{kind}"] = {"picks_per_pass": budget / st.passes,
                                   "source": f"CPU batched engine, {n:,} x 2048 fp16, {budget:,} picks, "
                                             f"{st.passes} passes ({time.perf_counter() - t0:.0f} s)"}
        if kind == "clustered":
            _, sp = svp_fast.kcenter(x, budget, method="pruned", return_stats=True)
            prof["pruned-clustered"] = {"evaluated": sp.evaluated_fraction,
                                        "source": f"CPU pruned engine, {n:,} x 2048 fp16, {budget:,} picks"}
        x = None
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50_000, 64, generator=g)
    _, st = svp_fast.kcenter(x, 24_000, method="batched", batch_candidates=256, return_stats=True)
    prof["batched-small"] = {"picks_per_pass": 24_000 / st.passes,
                             "source": f"CPU batched engine, 50,000 x 64 fp32, {st.passes} passes"}
    prof["measured"] = {"date": time.strftime("%Y-%m-%d"), "scale": f"1/{scale} of the rows"}
    with open(out_path, "w") as f:
        json.dump(prof, f, indent=1)
    if svp_fast.build_info().get("cuda_emulated"):
        for k, v in measure_screen().items():
            prof.setdefault(k, {}).update(v)
        with open(out_path, "w") as f:
            json.dump(prof, f, indent=1)
    return prof


def measure_screen(n: int = 6000, budgets=(150, 600)) -> Dict[str, dict]:
    """How many exact distances per row the screen lets through, from the
    emulated GPU build (small: every emulated thread is a fiber), at two
    budgets: fitted as a + b ln K (a row's nearest two centers change about
    ln K times over K picks; the first passes, with m2 still infinite, screen
    nothing out). The distances less the candidates' T x T blocks and the
    start's application."""
    import torch

    from svp_fast import _emulation
    from svp_fast.selection import _backend_cuda

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_gpu import synthetic_clustered  # noqa: E402

    import svp_fast

    out = {}
    # cuBLAS is the emulation's stand-in (it honours cublasGemmEx's contract)
    lib = os.path.join(os.path.dirname(svp_fast.__file__), "libcublas_svp_emu.so")
    ok, why = svp_fast._core.cuda_set_cublas_library(path=lib)
    if not ok:
        raise RuntimeError(f"the emulation's cuBLAS stand-in does not load: {why}")
    _backend_cuda.BATCH_PRODUCT = "cublas"
    T = 256
    for kind in ("clustered", "noise"):
        x = (synthetic_clustered(n, 256, "cpu", dtype=torch.float16) if kind == "clustered"
             else torch.randn(n, 256, generator=torch.Generator().manual_seed(1)).half())
        per_row = []
        for k in budgets:
            _, st = svp_fast.kcenter(_emulation.to_device(x), k, method="batched", return_stats=True,
                                     batch_candidates=T)
            assert st.extra.get("product") == "cublas", st.extra
            per_row.append(max(0.0, st.distance_evals - st.passes * T * T - n) / n)
        slope = (per_row[1] - per_row[0]) / (math.log(budgets[1]) - math.log(budgets[0]))
        out[f"batched-{kind}"] = {
            "screened_per_row_a": per_row[1] - slope * math.log(budgets[1]),
            "screened_per_row_b": slope,
            "screen_source": f"emulated GPU, {n:,} x 256 fp16: {per_row[0]:.1f} and {per_row[1]:.1f} "
                             f"exact distances a row over {budgets[0]} and {budgets[1]} picks"}
    return out


def screened_per_row(p: dict, budget: int) -> float:
    """Exact distances per row over a run of `budget` picks (the fit of measure_screen)."""
    if "screened_per_row_b" in p:
        return max(0.0, p["screened_per_row_a"] + p["screened_per_row_b"] * math.log(max(budget, 2)))
    return p.get("screened_in", 2e-3) * budget


# ----------------------------------------------------------------- report

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=sorted(DEVICES), default="h200")
    ap.add_argument("--json", action="store_true", help="one JSON object per case")
    ap.add_argument("--kernels", action="store_true", help="every kernel's line in the table")
    ap.add_argument("--measure", action="store_true", help="re-measure the profiles (minutes)")
    ap.add_argument("--measure-screen", action="store_true",
                    help="re-measure only the screen's share, on the emulated build")
    ap.add_argument("--profiles", default=PROFILES)
    args = ap.parse_args(argv)
    prof = measure(args.profiles) if args.measure else load_profiles(args.profiles)
    if args.measure_screen:
        saved = {}
        try:
            with open(args.profiles) as f:
                saved = json.load(f)
        except (OSError, ValueError):
            pass
        for k, v in measure_screen().items():
            saved.setdefault(k, {}).update(v)
        with open(args.profiles, "w") as f:
            json.dump(saved, f, indent=1)
        prof = load_profiles(args.profiles)
    dev = DEVICES[args.device]
    cs = cases(prof)
    if args.json:
        for c in cs:
            print(json.dumps(as_dict(c, dev)))
        return 0
    print(f"# predicted on {dev.name} ({dev.bandwidth / 1e12:.1f} TB/s, {dev.products / 1e12:.0f} "
          f"TFLOP/s products, {dev.f64 / 1e12:.0f} TFLOP/s float64)")
    print("| case | predicted s | floor s | vs floor | largest kernel | notes |")
    print("|---|---|---|---|---|---|")
    for c in cs:
        pred, fl = c.predicted(dev), c.floor(dev)
        big = max(c.launches, key=lambda l: l.seconds(dev))
        print(f"| {c.name} | {pred:.4g} | {fl:.4g} | {pred / fl:.2f} | {big.kernel} "
              f"({big.seconds(dev) / pred:.0%}) | {c.notes} |")
        if args.kernels:
            for l in c.launches:
                print(f"|   {l.kernel} | {l.seconds(dev):.4g} | | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
