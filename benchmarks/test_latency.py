"""Selection latency: svp_fast beside the numpy and PyTorch code people write.

Every grid point (svp_fast.bench.SUITES) is one benchmark group: k-center per
method and dtype, top-k uncertainty per method, on the CPU and, where torch sees
a GPU, on CUDA (the timed function ends with torch.cuda.synchronize). The cases
are those of ``svp-fast bench`` (svp_fast.bench.kcenter_contenders and
uncertainty_contenders); here the baselines run the whole budget, so each
group's rows time the same work. Each case also checks its result, so that the
suite cannot rot while CI runs it with --benchmark-disable.
"""

from __future__ import annotations

import numpy as np
import torch

import svp_fast
from svp_fast import bench

# a GPU, or the emulated CUDA device of a build with SVP_FAST_CUDA=EMU (its
# CUDA cases run on the "emulated" grid: the same contenders, small sizes)
EMULATED = bool(svp_fast.build_info().get("cuda_emulated", False))
GPU = torch.cuda.is_available() or EMULATED
SVP_CUDA = GPU and bool(svp_fast.build_info()["cuda_compiled"])
BACKENDS = ["cpu"] + (["cuda"] if GPU else [])


def _case_id(point: bench.SuitePoint, name: str) -> str:
    what = point.method if point.task == "uncertainty" else f"b{point.budget}"
    return f"{point.task}-{point.backend}-{point.dtype}-N{point.n}-D{point.d}-{what}-{name}"


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        size = metafunc.config.getoption("--bench-size")
        points = bench.suite_points(size, ["cpu"])
        if "cuda" in BACKENDS:
            points += bench.suite_points("emulated" if EMULATED else size, ["cuda"])
        cases = [(p, name) for p in points for name in p.contender_names(SVP_CUDA)]
        metafunc.parametrize("case", cases, ids=[_case_id(p, n) for p, n in cases])


_built: dict = {}


def _contender(point: bench.SuitePoint, name: str):
    """The contenders of one point, built once (the cases of a point run in a row)."""
    if point not in _built:
        _built.clear()  # drop the last point's device copies
        _built[point] = {f"{c.row['impl']}:{c.row['method']}": c
                         for c in bench.suite_contenders(point, svp_cuda=SVP_CUDA)}
    return _built[point][name]


_reference: dict = {}


def _reference_picks(point: bench.SuitePoint) -> np.ndarray:
    """svp_fast's picks on the CPU: what every svp_fast method and backend must return."""
    if point not in _reference:
        if point.task == "kcenter":
            x = bench.suite_embeddings(point.n, point.d, point.dtype)
            _reference[point] = svp_fast.kcenter(x, point.budget, method="scan")
        else:
            logits = bench.suite_logits(point.n, point.d, point.dtype)
            _reference[point] = svp_fast.uncertainty(logits, point.budget, method=point.method)
    return _reference[point]


def _as_numpy(a) -> np.ndarray:
    return a.cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def test_latency(benchmark, case):
    point, name = case
    contender = _contender(point, name)
    benchmark.group = point.group
    benchmark.extra_info.update({k: v for k, v in contender.row.items() if k != "note"},
                                steps=contender.steps, note=contender.row.get("note", ""))
    result = benchmark(bench.synchronised(contender.fn, point.backend))

    impl = contender.row["impl"]
    picks = _as_numpy(result[0] if impl == "svp_fast" else result)  # svp_fast: (picks, stats)
    assert picks.shape == (point.budget,) and picks.dtype == np.int64
    assert np.unique(picks).size == point.budget
    if impl == "svp_fast":  # exact: every method and backend gives the reference's picks
        np.testing.assert_array_equal(picks, _reference_picks(point))
    elif point.task == "kcenter":
        assert picks[0] == 0  # the baselines start where svp_fast does
