"""``svp-fast bench``: selection latency on this machine, beside plain numpy and PyTorch.

For every point of a grid of N (rows), D (columns), dtype and budget it times

* k-center with svp_fast (methods scan, lazy, pruned, batched) on every available
  backend (the CPU always; CUDA when torch sees a GPU and svp_fast was built
  with CUDA), and the plain loops people write, measured in the same run:
  numpy ``d = np.minimum(d, ((X - X[i])**2).sum(1)); i = d.argmax()`` and a
  PyTorch norms + matrix-vector loop (on the CPU, and on the GPU when present);
* top-k uncertainty (least confidence, entropy, margin; the budget is 10% of
  N) on (N, C) logits, beside numpy and PyTorch softmax + top-k.

Every measurement is one warm-up run, then ``--repeat`` timed runs, of which
the median is kept. The baselines' per-step cost does not change from step to
step, so they are timed over ``--baseline-steps`` steps; svp_fast always runs
the whole budget (its lazy and pruned methods get cheaper as picks accumulate,
and their one-off setup, e.g. the k-means cells, is included).

It prints a table with the speed-up of each svp_fast row over each baseline;
``--out DIR`` also writes every measurement to ``DIR/bench.csv`` and plots time
per step against N (``DIR/bench.png``), and ``--compare OLD.csv`` prints each
row's time against an earlier run's. The defaults finish in a few minutes on a
2-core machine; ``--quick`` runs a tiny grid (seconds), and the grid flags scale
it up.

The same cases make the pytest-benchmark suite (``benchmarks/test_latency.py``):
:func:`kcenter_contenders` and :func:`uncertainty_contenders` say what is timed
at a grid point, for both, and :data:`SUITES` lists the suite's grid points
(``svp-fast bench --suite small`` runs them here).
"""

from __future__ import annotations

import argparse
import csv
import functools
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

CSV_NAME, PLOT_NAME = "bench.csv", "bench.png"
DTYPES = ("float32", "float16", "float64")
KCENTER_METHODS = ("scan", "lazy", "pruned", "batched")
UNCERTAINTY_METHODS = ("least_confidence", "entropy", "margin")


def _int_list(text: str) -> List[int]:
    try:
        out = [int(float(t)) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 10000,100000, got {text!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return out


def _choice_list(choices: Sequence[str]):
    def parse(text: str) -> List[str]:
        out = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in out if t not in choices]
        if bad or not out:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated subset of {', '.join(choices)}, got {text!r}")
        return out
    return parse


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("grid")
    g.add_argument("--n", type=_int_list, default=[10_000, 40_000, 160_000], metavar="N[,N...]",
                   help="numbers of rows (default 10000,40000,160000)")
    g.add_argument("--d", type=_int_list, default=[64, 256], metavar="D[,D...]",
                   help="embedding widths for k-center (default 64,256)")
    g.add_argument("--dtype", type=_choice_list(DTYPES), default=["float32", "float16"],
                   metavar="T[,T...]", help="float32, float16, float64 (default float32,float16)")
    g.add_argument("--budget", type=_int_list, default=[200], metavar="B[,B...]",
                   help="k-center picks per run (default 200)")
    g.add_argument("--classes", type=int, default=100,
                   help="columns of the logits for uncertainty (default 100)")
    g.add_argument("--data", choices=("clustered", "gaussian"), default="clustered",
                   help="synthetic embeddings: clustered (like a proxy's features: 100 clusters in "
                        "a 32-dim subspace) or isotropic gaussian (nothing to prune)")
    g.add_argument("--input", metavar="NPY",
                   help="time your own (N, D) embeddings instead: --n takes its first rows")
    g.add_argument("--quick", action="store_true", help="a tiny grid, for a smoke test (seconds)")
    g.add_argument("--suite", choices=tuple(SUITES), default=None,
                   help="instead of the grid: the grid points of the pytest-benchmark suite "
                        "(benchmarks/test_latency.py) of that size")
    w = p.add_argument_group("what to time")
    w.add_argument("--methods", type=_choice_list(KCENTER_METHODS), default=list(KCENTER_METHODS),
                   metavar="M[,M...]", help="svp_fast k-center methods (default scan,lazy,pruned,batched)")
    w.add_argument("--backends", type=_choice_list(("cpu", "cuda")), default=None, metavar="B[,B...]",
                   help="cpu and/or cuda (default: cpu, plus cuda when torch sees a GPU)")
    w.add_argument("--baselines", type=_choice_list(("numpy", "torch")), default=["numpy", "torch"],
                   metavar="B[,B...]", help="plain loops to compare with (default numpy,torch)")
    w.add_argument("--no-kcenter", action="store_true", help="skip k-center")
    w.add_argument("--no-uncertainty", action="store_true", help="skip uncertainty")
    t = p.add_argument_group("timing and output")
    t.add_argument("--repeat", type=int, default=3, help="timed runs per measurement; the median "
                   "is kept (default 3)")
    t.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    t.add_argument("--baseline-steps", type=int, default=20,
                   help="k-center steps timed for the baselines (default 20)")
    t.add_argument("--threads", type=int, default=None,
                   help="CPU threads for svp_fast and torch (default: each one's own default; "
                        "svp_fast's follows the size of the work and the free cores, and "
                        "bench.csv records what ran)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", metavar="DIR",
                   help=f"write {CSV_NAME} (every measurement) and {PLOT_NAME} (time per step "
                        "against N) into DIR, created if needed; files there are refused unless "
                        "--overwrite")
    t.add_argument("--overwrite", action="store_true", help="replace the files in --out")
    t.add_argument("--no-plot", action="store_true", help=f"no {PLOT_NAME}")
    t.add_argument("--compare", metavar="CSV",
                   help=f"an earlier run's {CSV_NAME}: print each row's time against it")


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``bench`` on the ``svp-fast`` command's subparsers."""
    p = subparsers.add_parser(
        "bench", help="selection latency on this machine, beside numpy and PyTorch loops",
        description=__doc__.split("\n\n")[0].replace("``", ""))
    add_bench_arguments(p)
    p.set_defaults(func=run_bench)
    return p


# ----------------------------------------------------------------------------- measurement


@dataclass
class Row:
    task: str  # "kcenter" or "uncertainty"
    impl: str  # "svp_fast", "numpy", "torch"
    method: str
    backend: str  # "cpu" or "cuda"
    n: int
    d: int  # D for k-center, classes for uncertainty
    dtype: str
    budget: int
    steps_timed: int  # k-center steps in one timed run
    seconds: float  # median of the timed runs
    seconds_per_step: float  # k-center; uncertainty: = seconds
    setup_seconds: float = 0.0  # svp_fast k-center: validation + cells, inside `seconds`
    evaluated_fraction: float = float("nan")
    repeats: int = 0
    # CPU threads the timed runs used (svp_fast: from its statistics, the
    # default's choice or --threads; torch: torch.get_num_threads(); numpy: 1)
    # and the 1-minute load average when the row was measured: a time taken
    # beside other work, or on another thread count, is not today's time
    threads: int = 0
    load: float = float("nan")
    note: str = ""
    speedup_vs_numpy: float = float("nan")
    speedup_vs_torch: float = float("nan")
    extra: dict = field(default_factory=dict)


@dataclass
class _Contender:
    """One thing to time at a grid point: ``fn()`` runs it once."""

    row: dict  # Row fields other than the timings
    fn: Callable[[], object]
    steps: int = 1  # k-center steps one run makes
    seconds: float = 0.0
    load: float = float("nan")  # the 1-minute load average after its timed runs
    result: object = None
    error: Optional[str] = None


def _time_interleaved(contenders: List[_Contender], warmup: int, repeat: int,
                      sync: Callable[[], None]) -> None:
    """Median seconds of each contender over ``repeat`` rounds, after ``warmup``
    rounds. Every round runs each contender once, in turn, so that a change in
    the machine's load (other processes, frequency) hits them all alike."""
    times = [[] for _ in contenders]
    for round_ in range(warmup + max(1, repeat)):
        for c, bucket in zip(contenders, times):
            if c.error:
                continue
            sync()
            t0 = time.perf_counter()
            try:
                c.result = c.fn()
            except (RuntimeError, NotImplementedError, AttributeError) as e:  # backend not built
                c.error = str(e)
                continue
            sync()
            if round_ >= warmup:
                bucket.append(time.perf_counter() - t0)
    load = _load_average()
    for c, bucket in zip(contenders, times):
        c.load = load
        if bucket:
            c.seconds = statistics.median(bucket)


def _load_average() -> float:
    try:
        return float(os.getloadavg()[0])
    except OSError:  # pragma: no cover - not on this platform
        return float("nan")


def _clustered(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    k, sub = 100, min(32, d)
    basis = np.linalg.qr(rng.standard_normal((d, sub)))[0].T  # sub x d, orthonormal rows
    centers = rng.standard_normal((k, sub)) * 4.0
    z = centers[rng.integers(0, k, n)] + rng.standard_normal((n, sub))
    return (z @ basis + 0.05 * rng.standard_normal((n, d))).astype(np.float32)


def make_embeddings(n: int, d: int, dtype: str, kind: str, seed: int,
                    source: Optional[np.ndarray] = None) -> np.ndarray:
    if source is not None:
        return np.array(source[:n], dtype=dtype)  # in memory: time the selection, not the disk
    rng = np.random.default_rng(seed)
    x = _clustered(n, d, rng) if kind == "clustered" else rng.standard_normal((n, d), dtype=np.float32)
    return x.astype(dtype)


def numpy_kcenter_loop(x32: np.ndarray, steps: int) -> np.ndarray:
    """The plain numpy loop: one broadcast subtraction per step."""
    n = x32.shape[0]
    d = np.full(n, np.inf, dtype=np.float32)
    i = 0
    picks = np.empty(steps, dtype=np.int64)
    for t in range(steps):
        picks[t] = i
        d = np.minimum(d, ((x32 - x32[i]) ** 2).sum(1))
        i = int(d.argmax())
    return picks


def torch_kcenter_loop(xt, x2, steps: int):
    """The better PyTorch loop: ||x||^2 - 2 x.c + ||c||^2 by matrix-vector product,
    no host sync per step (the picks stay on the device until the end)."""
    import torch

    n = xt.shape[0]
    d = torch.full((n,), float("inf"), dtype=x2.dtype, device=xt.device)
    picks = torch.empty(steps, dtype=torch.int64, device=xt.device)
    i = torch.zeros((), dtype=torch.int64, device=xt.device)
    for t in range(steps):
        picks[t] = i
        c = xt[i]
        dist = x2 - 2.0 * (xt @ c).to(x2.dtype) + x2[i]
        torch.minimum(d, dist, out=d)
        i = torch.argmax(d)
    return picks


def numpy_uncertainty(logits: np.ndarray, k: int, method: str) -> np.ndarray:
    z = logits.astype(np.float32)
    z = z - z.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    if method == "least_confidence":
        s = 1.0 - p.max(1)
    elif method == "entropy":
        s = -(p * np.log(np.maximum(p, 1e-30))).sum(1)
    else:
        top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
        s = 1.0 - (top2[:, 1] - top2[:, 0])
    idx = np.argpartition(-s, k - 1)[:k] if k < s.size else np.arange(s.size)
    return idx[np.argsort(-s[idx], kind="stable")]


def torch_uncertainty(logits, k: int, method: str):
    import torch

    p = torch.softmax(logits.float(), dim=1)
    if method == "least_confidence":
        s = 1.0 - p.max(1).values
    elif method == "entropy":
        s = -(p * torch.log(p.clamp_min(1e-30))).sum(1)
    else:
        top2 = p.topk(2, dim=1).values
        s = 1.0 - (top2[:, 0] - top2[:, 1])
    return torch.topk(s, k).indices


# ----------------------------------------------------------------------------- the cases
# What is timed at one grid point, for `svp-fast bench` and the pytest-benchmark
# suite alike: svp_fast's call and the baselines that compute the same thing.


def kcenter_contenders(x: np.ndarray, budget: int, backend: str, *,
                       methods: Sequence[str] = KCENTER_METHODS,
                       baselines: Sequence[str] = ("numpy", "torch"),
                       baseline_steps: Optional[int] = None, threads: Optional[int] = None,
                       svp_cuda: bool = False) -> List["_Contender"]:
    """svp_fast k-center (each of ``methods``, the whole ``budget``) and the plain
    numpy and PyTorch loops (``baseline_steps`` steps, default the whole budget:
    their cost per step does not change) on ``x``, on ``backend``."""
    import torch

    import svp_fast

    n, d = x.shape
    dtype = str(x.dtype)
    data = x if backend == "cpu" else _on_backend(torch.from_numpy(x), backend)
    base = dict(task="kcenter", backend=backend, n=n, d=d, dtype=dtype, budget=budget)
    cands = []
    svp_threads = threads if backend == "cpu" else None
    for method in methods if backend == "cpu" or svp_cuda else []:
        cands.append(_Contender(
            dict(base, impl="svp_fast", method=method),
            lambda method=method: svp_fast.kcenter(data, budget, method=method, return_stats=True,
                                                   num_threads=svp_threads),
            steps=budget))
    steps = max(1, min(budget, baseline_steps or budget))
    if "numpy" in baselines and backend == "cpu":
        x32 = np.ascontiguousarray(x, dtype=np.float32)  # numpy's float16 math is emulated
        cands.append(_Contender(
            dict(base, impl="numpy", method="broadcast",
                 note="float32 copy" if x.dtype != np.float32 else ""),
            lambda: numpy_kcenter_loop(x32, steps), steps=steps))
    if "torch" in baselines:
        if x.dtype == np.float64:
            work_dtype = torch.float64
        else:  # on the CPU, half-precision matmul is slow and rarely used: float32 copy
            work_dtype = torch.float32 if backend == "cpu" else getattr(torch, dtype)
        xt = _on_backend(torch.from_numpy(np.ascontiguousarray(x)), backend).to(work_dtype)
        acc = torch.float64 if x.dtype == np.float64 else torch.float32
        x2 = (xt.to(acc) ** 2).sum(1)
        cands.append(_Contender(
            dict(base, impl="torch", method="norms+matvec",
                 note="float32 copy" if backend == "cpu" and x.dtype == np.float16 else ""),
            lambda: torch_kcenter_loop(xt, x2, steps), steps=steps))
    return cands


def _on_backend(t, backend: str):
    """``t.to(backend)``; in a build with the emulated CUDA device, "cuda" is that
    device (host memory: svp_fast._emulation)."""
    from . import _emulation

    if backend != "cpu" and _emulation.EMULATED:
        return _emulation.to_device(t)
    return t.to(backend)


def uncertainty_contenders(logits: np.ndarray, k: int, backend: str, method: str, *,
                           baselines: Sequence[str] = ("numpy", "torch"),
                           threads: Optional[int] = None,
                           svp_cuda: bool = False) -> List["_Contender"]:
    """svp_fast top-``k`` uncertainty (``method``) and the numpy and PyTorch
    softmax + top-k composites on ``logits``, on ``backend``."""
    import torch

    import svp_fast

    n, c = logits.shape
    data = logits if backend == "cpu" else _on_backend(torch.from_numpy(logits), backend)
    base = dict(task="uncertainty", backend=backend, n=n, d=c, dtype=str(logits.dtype), budget=k)
    svp_threads = threads if backend == "cpu" else None
    cands = []
    if backend == "cpu" or svp_cuda:
        cands.append(_Contender(
            dict(base, impl="svp_fast", method=method),
            lambda: svp_fast.uncertainty(data, k, method=method, num_threads=svp_threads,
                                         return_stats=True)))
    if "numpy" in baselines and backend == "cpu":
        cands.append(_Contender(dict(base, impl="numpy", method=method),
                                lambda: numpy_uncertainty(logits, k, method)))
    if "torch" in baselines:
        t = _on_backend(torch.from_numpy(logits), backend)
        cands.append(_Contender(dict(base, impl="torch", method=method),
                                lambda: torch_uncertainty(t, k, method)))
    return cands


# The pytest-benchmark suite's grid points (benchmarks/test_latency.py): "small"
# runs every case once in seconds (CI runs it with --benchmark-disable);
# "large" (SVP_BENCH_SIZE=large) is for measuring.
SUITES = {
    "small": {"kcenter": [(2_000, 64, 100), (20_000, 64, 200)],
              "dtypes": ("float32", "float16", "float64"),
              "uncertainty": [(10_000, 100), (100_000, 100)]},
    "large": {"kcenter": [(200_000, 64, 1_000), (200_000, 256, 1_000)],
              "dtypes": ("float32", "float16", "float64"),
              "uncertainty": [(1_000_000, 100), (200_000, 1_000)]},
    # the CUDA cases on the emulated device (a build with SVP_FAST_CUDA=EMU):
    # every contender once, in seconds of emulation
    "emulated": {"kcenter": [(2_000, 64, 24)],
                 "dtypes": ("float32", "float16", "float64"),
                 "uncertainty": [(5_000, 100)]},
}
SUITE_SEED = 0


@dataclass(frozen=True)
class SuitePoint:
    """One grid point of the suite: the contenders there share a benchmark group."""

    task: str
    backend: str
    n: int
    d: int  # D for k-center, classes for uncertainty
    dtype: str
    budget: int
    method: str = ""  # uncertainty: its method (each has its own baselines)

    @property
    def group(self) -> str:
        if self.task == "kcenter":
            return (f"kcenter {self.backend} {self.dtype} N={self.n:,} D={self.d} "
                    f"{self.budget} picks")
        return (f"uncertainty {self.method} {self.backend} {self.dtype} N={self.n:,} "
                f"C={self.d} top {self.budget}")

    def contender_names(self, svp_cuda: bool) -> List[str]:
        """``impl:method`` of every contender :func:`suite_contenders` builds here."""
        svp = self.backend == "cpu" or svp_cuda
        numpy_ok = self.backend == "cpu"
        if self.task == "kcenter":
            return ([f"svp_fast:{m}" for m in KCENTER_METHODS] if svp else []) + \
                (["numpy:broadcast"] if numpy_ok else []) + ["torch:norms+matvec"]
        return ([f"svp_fast:{self.method}"] if svp else []) + \
            ([f"numpy:{self.method}"] if numpy_ok else []) + [f"torch:{self.method}"]


def suite_points(size: str = "small", backends: Sequence[str] = ("cpu",),
                 tasks: Sequence[str] = ("kcenter", "uncertainty")) -> List[SuitePoint]:
    if size not in SUITES:
        raise ValueError(f"suite size must be one of {', '.join(SUITES)}, got {size!r}")
    grid = SUITES[size]
    points = []
    for backend in backends:
        if "kcenter" in tasks:
            points += [SuitePoint("kcenter", backend, n, d, dtype, budget)
                       for n, d, budget in grid["kcenter"] for dtype in grid["dtypes"]]
        if "uncertainty" in tasks:
            points += [SuitePoint("uncertainty", backend, n, c, "float32", max(1, n // 10), m)
                       for n, c in grid["uncertainty"] for m in UNCERTAINTY_METHODS]
    return points


@functools.lru_cache(maxsize=4)
def suite_embeddings(n: int, d: int, dtype: str) -> np.ndarray:
    """The suite's embeddings: clustered like a proxy's features (cached)."""
    return make_embeddings(n, d, dtype, "clustered", SUITE_SEED)


@functools.lru_cache(maxsize=4)
def suite_logits(n: int, c: int, dtype: str, seed: int = SUITE_SEED) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, c), dtype=np.float32) * 3).astype(dtype)


def suite_contenders(point: SuitePoint, threads: Optional[int] = None,
                     svp_cuda: bool = False) -> List["_Contender"]:
    """Every contender at ``point``; the baselines run the whole budget, so that
    a benchmark group compares the same work."""
    if point.task == "kcenter":
        return kcenter_contenders(suite_embeddings(point.n, point.d, point.dtype), point.budget,
                                  point.backend, threads=threads, svp_cuda=svp_cuda)
    return uncertainty_contenders(suite_logits(point.n, point.d, point.dtype), point.budget,
                                  point.backend, point.method, threads=threads,
                                  svp_cuda=svp_cuda)


def synchronised(fn: Callable[[], object], backend: str) -> Callable[[], object]:
    """``fn`` that returns only once the device has finished (CUDA work is
    asynchronous: a timer around the launch alone would time nothing)."""
    if backend == "cpu":
        return fn
    import torch

    from . import _emulation

    if _emulation.EMULATED:
        return fn  # the emulated device has finished when a call returns (its bindings wait)

    def run():
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


# ----------------------------------------------------------------------------- the run


class Bench:
    def __init__(self, args, out=None):
        import torch

        import svp_fast

        self.args, self.out = args, out if out is not None else sys.stdout
        self.torch, self.svp = torch, svp_fast
        self.threads = args.threads
        if self.threads:
            torch.set_num_threads(self.threads)
        info = svp_fast.build_info()
        self.gpu = bool(torch.cuda.is_available())
        self.svp_cuda = self.gpu and bool(info.get("cuda_compiled"))
        backends = args.backends or (["cpu", "cuda"] if self.gpu else ["cpu"])
        if "cuda" in backends and not self.gpu:
            self.say("note: --backends cuda asked, but torch sees no GPU: CPU only")
            backends = [b for b in backends if b != "cuda"]
        self.backends = backends
        self.rows: List[Row] = []
        self.source = None
        if args.input:
            self.source = np.load(args.input, mmap_mode="r")
            if self.source.ndim != 2:
                raise ValueError(f"--input must hold an (N, D) array, got shape {self.source.shape}")

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def threads_of(self, c: "_Contender") -> int:
        """The CPU threads a contender's timed runs used (0 on a GPU)."""
        if c.row["backend"] != "cpu":
            return 0
        if c.row["impl"] == "svp_fast":
            return int(c.result[-1].num_threads)  # its statistics: what actually ran
        if c.row["impl"] == "torch":
            return int(self.torch.get_num_threads())
        return 1  # the numpy loop: elementwise, one thread

    def sync(self, backend: str) -> Callable[[], None]:
        if backend == "cuda":
            return self.torch.cuda.synchronize
        return lambda: None

    def add(self, row: Row) -> None:
        self.rows.append(row)
        per = f"{row.seconds_per_step * 1e3:9.3f} ms/step" if row.task == "kcenter" \
            else f"{row.seconds * 1e3:9.3f} ms"
        self.say(f"  {row.task:11s} {row.backend:4s} {row.impl:8s} {row.method:16s} N={row.n:<9d} "
                 f"{'D' if row.task == 'kcenter' else 'C'}={row.d:<5d} {row.dtype:8s} {per}"
                 + (f"  ({row.note})" if row.note else ""))

    # -- k-center -----------------------------------------------------------

    def kcenter_grid(self) -> None:
        a = self.args
        if a.suite:
            for p in suite_points(a.suite, self.backends, tasks=("kcenter",)):
                x = suite_embeddings(p.n, p.d, p.dtype)
                self.kcenter_point(x, p.budget, p.backend)
            return
        widths = [self.source.shape[1]] if self.source is not None else a.d
        for d in widths:
            for dtype in a.dtype:
                for n in a.n:
                    if self.source is not None and n > self.source.shape[0]:
                        self.say(f"  skip N={n}: --input has {self.source.shape[0]} rows")
                        continue
                    x = make_embeddings(n, d, dtype, a.data, a.seed, self.source)
                    for budget in a.budget:
                        if budget > n:
                            continue
                        for backend in self.backends:
                            self.kcenter_point(x, budget, backend)

    def kcenter_point(self, x: np.ndarray, budget: int, backend: str) -> None:
        a = self.args
        if backend != "cpu" and not self.svp_cuda:
            self.say(f"  kcenter {backend}: svp_fast was built without CUDA; baselines only")
        cands = kcenter_contenders(x, budget, backend, methods=a.methods, baselines=a.baselines,
                                   baseline_steps=a.baseline_steps, threads=self.threads,
                                   svp_cuda=self.svp_cuda)
        _time_interleaved(cands, a.warmup, a.repeat, self.sync(backend))
        for c in cands:
            if c.error:
                self.say(f"  kcenter {backend} {c.row['impl']} {c.row['method']}: unavailable ({c.error})")
                continue
            extra = {}
            if c.row["impl"] == "svp_fast":
                stats = c.result[1]
                extra = dict(setup_seconds=stats.setup_seconds + stats.cells_seconds,
                             evaluated_fraction=stats.evaluated_fraction)
            self.add(Row(steps_timed=c.steps, seconds=c.seconds,
                         seconds_per_step=c.seconds / c.steps, repeats=a.repeat,
                         threads=self.threads_of(c), load=c.load, **c.row, **extra))

    # -- uncertainty ----------------------------------------------------------

    def uncertainty_grid(self) -> None:
        a = self.args
        if a.suite:
            points = [(p.n, p.d, p.dtype, p.backend, p.method)
                      for p in suite_points(a.suite, self.backends, tasks=("uncertainty",))]
        else:
            points = [(n, a.classes, dtype, backend, method) for dtype in a.dtype for n in a.n
                      for backend in self.backends for method in UNCERTAINTY_METHODS]
        for n, c, dtype, backend, method in points:
            logits = suite_logits(n, c, dtype, a.seed)
            cands = uncertainty_contenders(logits, max(1, n // 10), backend, method,
                                           baselines=a.baselines, threads=self.threads,
                                           svp_cuda=self.svp_cuda)
            _time_interleaved(cands, a.warmup, a.repeat, self.sync(backend))
            for cand in cands:
                if cand.error:
                    self.say(f"  uncertainty {backend} {cand.row['impl']} {method}: "
                             f"unavailable ({cand.error})")
                    continue
                self.add(Row(steps_timed=1, seconds=cand.seconds, seconds_per_step=cand.seconds,
                             repeats=a.repeat, threads=self.threads_of(cand), load=cand.load,
                             **cand.row))

    # -- report -----------------------------------------------------------

    def ratios(self) -> None:
        """Speed-up of every svp_fast row over the baselines of the same grid point."""
        def key(r: Row):
            return (r.task, r.backend, r.n, r.d, r.dtype, r.budget,
                    r.method if r.task == "uncertainty" else "")

        best = {}
        for r in self.rows:
            if r.impl in ("numpy", "torch"):
                best[key(r) + (r.impl,)] = r.seconds_per_step
        for r in self.rows:
            if r.impl == "svp_fast":
                for impl in ("numpy", "torch"):
                    ref = best.get(key(r) + (impl,))
                    if ref is not None and r.seconds_per_step > 0:
                        setattr(r, f"speedup_vs_{impl}", ref / r.seconds_per_step)

    def table(self) -> str:
        head = ["task", "backend", "impl", "method", "N", "D/C", "dtype", "budget",
                "ms/step", "x numpy", "x torch", "evaluated", "setup s", "threads", "load"]
        lines = []
        for r in self.rows:
            per = r.seconds_per_step * 1e3
            lines.append([r.task, r.backend, r.impl, r.method, f"{r.n:,}", str(r.d), r.dtype,
                          str(r.budget), f"{per:.3f}" if per < 100 else f"{per:.1f}",
                          _ratio(r.speedup_vs_numpy), _ratio(r.speedup_vs_torch),
                          "" if math.isnan(r.evaluated_fraction) else f"{r.evaluated_fraction:.0%}",
                          f"{r.setup_seconds:.3f}" if r.task == "kcenter" and r.impl == "svp_fast"
                          else "", str(r.threads) if r.threads else "",
                          "" if math.isnan(r.load) else f"{r.load:.1f}"])
        widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
                  for i, h in enumerate(head)]
        fmt = "  ".join(f"{{:{'<' if i < 4 or i == 6 else '>'}{w}}}" for i, w in enumerate(widths))
        out = [fmt.format(*head), fmt.format(*["-" * w for w in widths])]
        out += [fmt.format(*line) for line in lines]
        return "\n".join(out)

    def write_csv(self, path) -> None:
        fields = [f for f in asdict(self.rows[0]) if f != "extra"] if self.rows else []
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for r in self.rows:
                row = asdict(r)
                row.pop("extra")
                w.writerow(row)

    def plot(self, path):
        """Time against N, one panel per k-center grid point and one for
        uncertainty; each panel's legend below it, never over its lines (the
        uncertainty panel has a line per method, implementation and dtype).
        Returns the Figure."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        panels = sorted({(r.task, r.d, r.dtype, r.budget) for r in self.rows if r.task == "kcenter"})
        if any(r.task == "uncertainty" for r in self.rows):
            panels.append(("uncertainty", 0, "", 0))
        if not panels:
            return None
        cols = min(3, len(panels))
        rows = -(-len(panels) // cols)
        # without pyplot: no global state, nothing left open
        fig = Figure(figsize=(5.2 * cols, 5.6 * rows), layout="constrained")
        FigureCanvasAgg(fig)
        axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
        for ax, (task, d, dtype, budget) in zip(axes.ravel(), panels):
            if task == "kcenter":
                sel = [r for r in self.rows if r.task == task and r.d == d and r.dtype == dtype
                       and r.budget == budget]
                ax.set_title(f"k-center, D={d}, {dtype}, {budget} picks", fontsize=10)
                ax.set_ylabel("time per step (ms)")
            else:
                sel = [r for r in self.rows if r.task == "uncertainty"]
                ax.set_title(f"uncertainty top-10%, C={self.args.classes}", fontsize=10)
                ax.set_ylabel("time (ms)")
            lines = sorted({(r.backend, r.impl, r.method, r.dtype if task != "kcenter" else "")
                            for r in sel})
            for backend, impl, method, dt in lines:
                pts = sorted((r.n, r.seconds_per_step * 1e3) for r in sel
                             if (r.backend, r.impl, r.method) == (backend, impl, method)
                             and (task == "kcenter" or r.dtype == dt))
                style = "-o" if impl == "svp_fast" else "--s"
                label = f"{impl} {method} ({backend}{', ' + dt if dt else ''})"
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, ms=3, label=label)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("N (rows)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2,
                      frameon=False)
        for ax in axes.ravel()[len(panels):]:
            ax.set_visible(False)
        fig.suptitle("svp_fast selection latency (median of repeats; lower is better)", fontsize=11)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        return fig

    def machine(self) -> str:
        info = self.svp.build_info()
        gpu = self.torch.cuda.get_device_name(0) if self.gpu else "none"
        return (f"svp_fast {info.get('version')} (SIMD {info.get('simd')}, OpenMP threads "
                f"{self.threads or info.get('omp_max_threads')}, CUDA built: "
                f"{info.get('cuda_compiled')}), torch {self.torch.__version__} "
                f"({self.torch.get_num_threads()} threads), {os.cpu_count()} CPUs, GPU: {gpu}")


_KEY = ("task", "backend", "impl", "method", "n", "d", "dtype", "budget")


def read_csv(path) -> List[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def compare_table(old: List[dict], new: List[Row], old_name: str = "old") -> str:
    """Each row of this run beside the same grid point of an earlier run's CSV:
    milliseconds per step then and now, and now / then (below 1: faster now).
    Rows of one run only are listed as such."""
    def key(r: dict):
        return tuple(str(r[k]) for k in _KEY)

    before = {key(r): r for r in old}
    lines = [f"against {old_name}: ms per step (uncertainty: per call), now / then",
             f"{'task':11s} {'backend':7s} {'impl':8s} {'method':16s} {'N':>9s} {'D/C':>5s} "
             f"{'dtype':8s} {'budget':>6s} {'then':>10s} {'now':>10s} {'now/then':>9s}"
             f"  {'threads':>7s}  {'load':>9s}"]
    seen = set()
    flagged = 0
    for r in new:
        k = key(asdict(r))
        seen.add(k)
        was = before.get(k)
        then = float(was["seconds_per_step"]) if was else None
        now = r.seconds_per_step * 1e3
        ratio = f"{now / (then * 1e3):8.2f}x" if then else "   (new)"
        threads, load, flag = "", "", ""
        if was is not None:
            old_threads = _csv_int(was.get("threads"))
            threads = f"{old_threads if old_threads is not None else '?'}->{r.threads}"
            old_load = _csv_float(was.get("load"))
            load = f"{'?' if old_load is None else f'{old_load:.1f}'}->{r.load:.1f}"
            if old_threads != r.threads:
                flag = "  * threads differ"
                flagged += 1
        lines.append(f"{r.task:11s} {r.backend:7s} {r.impl:8s} {r.method:16s} {r.n:>9d} "
                     f"{r.d:>5d} {r.dtype:8s} {r.budget:>6d} "
                     f"{'' if then is None else f'{then * 1e3:10.3f}':>10s} {now:10.3f} {ratio}"
                     f"  {threads:>7s}  {load:>9s}{flag}")
    if flagged:
        lines.append(f"* {flagged} rows were measured with different thread counts in the two "
                     "runs (or an older CSV that did not record them): their ratio compares "
                     "thread counts as well as code; rerun both with --threads N to compare "
                     "the code alone")
    gone = [k for k in before if k not in seen]
    if gone:
        lines.append(f"({len(gone)} rows of {old_name} were not measured this time)")
    return "\n".join(lines)


def _csv_int(text) -> Optional[int]:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _csv_float(text) -> Optional[float]:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _warn_if_busy(bench: Bench) -> None:
    """Timings mean little on a machine that other processes keep busy: say so
    (checked before the run: the run's own threads would count afterwards)."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on this platform
        return
    cpus = os.cpu_count() or 1
    if load > 0.5 * cpus + 0.5:
        bench.say(f"note: load average {load:.1f} on {cpus} CPUs: other processes compete for the "
                  "cores, so timings are noisy, multithreaded loops most (a thread that loses its "
                  "core stalls every step); rerun on an idle machine, or compare with --threads 1")


def _ratio(v: float) -> str:
    if math.isnan(v):
        return ""
    return f"{v:.1f}x" if v < 100 else f"{v:.0f}x"


_QUICK = dict(n=[2_000, 8_000], d=[32], budget=[40], dtype=["float32"], repeat=1, warmup=1,
              baseline_steps=10, classes=20)


def _apply_quick(args) -> None:
    """--quick shrinks the grid; flags given explicitly still win."""
    defaults = build_parser().parse_args([])
    for key, value in _QUICK.items():
        if getattr(args, key) == getattr(defaults, key):
            setattr(args, key, value)


def _check(args) -> None:
    for name in ("repeat", "baseline_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.classes < 2:
        raise ValueError(f"--classes must be >= 2, got {args.classes}")
    if args.out:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {args.out!r} is a file, not a folder")
        names = [CSV_NAME] + ([] if args.no_plot else [PLOT_NAME])
        there = [name for name in names if (out / name).exists()]
        if there and not args.overwrite:
            raise ValueError(f"--out {args.out!r} already holds {', '.join(there)}; pass "
                             "--overwrite to replace them, or choose another folder")
    if args.compare and not Path(args.compare).is_file():
        raise ValueError(f"--compare {args.compare!r} does not exist (an earlier run's "
                         f"{CSV_NAME})")


def run_bench(args) -> int:
    """Run the benchmark described by ``args``; returns the exit code."""
    if args.quick:
        _apply_quick(args)
    _check(args)
    bench = Bench(args)
    bench.say(f"svp-fast bench: {bench.machine()}")
    _warn_if_busy(bench)
    t0 = time.perf_counter()
    if not args.no_kcenter:
        bench.kcenter_grid()
    if not args.no_uncertainty:
        bench.uncertainty_grid()
    bench.ratios()
    bench.say("")
    bench.say(bench.table())
    if args.compare:
        bench.say("")
        bench.say(compare_table(read_csv(args.compare), bench.rows, args.compare))
    if bench.rows and args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        bench.write_csv(out / CSV_NAME)
        bench.say(f"\nwrote {out / CSV_NAME}")
        if not args.no_plot:
            bench.plot(out / PLOT_NAME)
            bench.say(f"wrote {out / PLOT_NAME}")
    bench.say(f"bench finished in {time.perf_counter() - t0:.1f} s. 'x numpy' / 'x torch': how many "
              "times faster svp_fast is than that loop at the same grid point (time per step, "
              "setup included; uncertainty: whole call); 'evaluated': share of a plain scan's "
              "distances computed; 'setup s': validation and, for pruned, the k-means cells, "
              "which pay off over thousands of picks (--budget).")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m svp_fast.bench",
                                description=__doc__.split("\n\n")[0].replace("``", ""))
    add_bench_arguments(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_bench(args)
    except (ValueError, OSError) as e:
        print(f"svp-fast bench: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
