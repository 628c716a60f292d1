"""Distributed k-center over torch.distributed (gloo on CPU).

Multi-process tests (marked ``distributed``) spawn 2, 3 and 4 gloo ranks once
per world size, run a list of cases in them (each under both protocols,
batched and stepwise, unless it names one), and compare every rank's picks
with single-process ``svp_fast.kcenter`` on the concatenated data: indices
exactly equal, radii within 1e-6 relative. Single-process tests use a
one-rank group in this process.
"""

from __future__ import annotations

import datetime
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist

import svp_fast
from conftest import EMULATED
from distributed_worker import load_api, protocols_of, run_cases, run_failure

sd = load_api()
PYTHON = sys.executable
# a hung case fails the test instead of hanging the suite (the emulated CUDA
# build runs the CUDA shards' kernels on the CPU: longer)
JOIN_SECONDS = 600 if EMULATED else 150

# ----------------------------------------------------------------------------- data and cases


def _data(kind: str, n: int, d: int, dtype, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "gauss":
        x = rng.standard_normal((n, d))
    elif kind == "clustered":
        centers = rng.standard_normal((12, d)) * 4
        x = centers[rng.integers(0, 12, n)] + 0.3 * rng.standard_normal((n, d))
    elif kind == "ties":
        # few distinct rows and many duplicates: exact ties everywhere, across
        # shards, down to distance 0 (all ties go to the lowest global index)
        x = rng.integers(1, 4, size=(n, d)).astype(np.float64)
    elif kind == "ties2":  # only 2**d distinct rows
        x = rng.integers(1, 3, size=(n, d)).astype(np.float64)
    else:  # pragma: no cover
        raise ValueError(kind)
    return x.astype(dtype)


def _spread(layout, count: int, seed: int) -> np.ndarray:
    """``count`` global indices with at least one on every non-empty shard, shuffled."""
    rng = np.random.default_rng(seed)
    bounds = np.concatenate([[0], np.cumsum(layout)])
    firsts = [int(rng.integers(bounds[r], bounds[r + 1])) for r in range(len(layout)) if layout[r]]
    rest = rng.choice(np.setdiff1d(np.arange(bounds[-1]), firsts), count - len(firsts), replace=False)
    out = np.concatenate([firsts, rest]).astype(np.int64)
    rng.shuffle(out)
    return out


def C(name, layout, dtype="float32", metric="euclidean", method="scan", budget=150, data="gauss",
      kind="numpy", d=12, **extra):
    return dict(name=name, layout=list(layout), dtype=dtype, metric=metric, method=method,
                budget=budget, data=data, kind=kind, d=d, **extra)


def B(name, layout, T, cap=None, **kw):
    """A case of the batched protocol alone, with T candidates per rank and a cap per pass."""
    return C(name, layout, protocols=["batched"], batch_candidates=T, batch_max_picks=cap, **kw)


# The kernels this CPU runs (best last): ranks forced to different ones compute
# different fast bits (test_heterogeneous_kernels_compute_different_bits)
_BEST = svp_fast.build_info()["simd"]
ISAS = ["generic"] + (["avx2"] if _BEST in ("avx2", "avx512") else []) + (
    ["avx512"] if _BEST == "avx512" else [])


CASES = {
    2: [
        C("equal_f32_scan", [600, 600], method="scan"),
        C("unequal_f16_cosine_lazy_memmap_start", [900, 300], "float16", "cosine", "lazy",
          kind="memmap", start=1000),
        C("unequal_f64_pruned_torch_selected", [350, 850], "float64", method="pruned",
          data="clustered", kind="torch", selected=40),
        C("ties_everything", [200, 200], method="lazy", data="ties", d=4, budget=400),
        C("equal_f32_cosine_polling", [500, 500], metric="cosine", method="auto", poll=True),
        C("ties_cosine_f64_pruned", [250, 200], "float64", "cosine", "pruned", data="ties", d=4,
          budget=300),
        # 8 distinct rows, every pick after the 8th is an exact tie among all remaining
        # points; bands travel in rounds of 3 members per rank
        C("ties_in_rounds", [70, 50], method="lazy", data="ties2", d=3, budget=120,
          band_round_bytes=3 * (8 + 3 * 4)),
        C("budget_zero", [50, 50], budget=0),
        C("budget_one_start_on_rank1", [50, 50], budget=1, start=70),
        # the CUDA shard's Python glue (CudaShard) on a stand-in of KCenterShardCuda
        C("standin_cuda_shard_f16_torch_selected", [300, 500], "float16", method="lazy",
          kind="torch", selected=20, standin_cuda=True),
        C("standin_cuda_shard_ties_cosine", [150, 100], metric="cosine", data="ties", d=3,
          budget=200, kind="torch", standin_cuda=True),
        # tiny passes: the T best of two ranks' offers, picks from both in one pass
        B("batched_T2_lazy", [300, 500], 2, method="lazy", budget=300),
        B("batched_T5_cap3_f16_cosine_selected", [450, 350], 5, 3, dtype="float16",
          metric="cosine", selected=20),
        B("batched_T1_pruned_clustered", [400, 300], 1, method="pruned", data="clustered",
          budget=200),
        B("batched_T3_ties", [120, 130], 3, method="lazy", data="ties", d=4, budget=250),
        B("batched_T64_standin_cuda_f32_cosine", [300, 400], 64, metric="cosine", kind="torch",
          standin_cuda=True, budget=300),
        # rank 0 (the decider) and rank 1 on different kernels: different fast bits
        B("batched_heterogeneous_kernels_f32", [600, 600], 6, budget=400,
          simd_on_rank={0: ISAS[-1], 1: ISAS[0]}),
        B("batched_heterogeneous_kernels_f16_cosine_lazy", [500, 700], 16, 5, dtype="float16",
          metric="cosine", method="lazy", budget=400, simd_on_rank={0: ISAS[0], 1: ISAS[-1]}),
    ],
    3: [
        C("empty_middle_f32_scan_memmap", [600, 0, 900], kind="memmap"),
        C("empty_middle_f16_lazy_selected", [600, 0, 900], "float16", method="lazy", selected=30),
        C("unequal_f64_cosine_lazy_torch", [300, 500, 700], "float64", "cosine", "lazy", kind="torch"),
        C("bf16_cosine_scan_torch", [400, 400, 400], "float32", "cosine", "scan", kind="torch",
          bf16=True),
        C("f32_cosine_pruned_selected", [250, 900, 450], metric="cosine", method="pruned",
          data="clustered", selected=25),
        C("ties_f16_empty_first", [0, 250, 200], "float16", method="lazy", data="ties", d=4,
          budget=400),
        C("ties_cosine_f32_scan", [200, 100, 100], metric="cosine", data="ties", d=3, budget=300),
        B("batched_T3_cap2_empty_middle_f16_lazy_selected", [400, 0, 500], 3, 2, dtype="float16",
          method="lazy", selected=15, budget=250),
        B("batched_T2_f64_cosine_torch_start", [300, 200, 250], 2, dtype="float64",
          metric="cosine", kind="torch", start=610, budget=200),
        B("batched_heterogeneous_kernels_f32_cosine_pruned", [300, 400, 350], 8, metric="cosine",
          method="pruned", data="clustered", budget=300,
          simd_on_rank={0: ISAS[0], 1: ISAS[-1], 2: ISAS[len(ISAS) // 2]}),
    ],
    4: [
        C("empty_second_f32_lazy_selected", [500, 0, 300, 700], method="lazy", selected=30),
        C("empty_second_f16_cosine_scan_start", [500, 0, 300, 700], "float16", "cosine", "scan",
          start=1400),
        C("equal_f64_pruned_torch", [300, 300, 300, 300], "float64", method="pruned",
          data="clustered", kind="torch"),
        C("two_empty_f32_lazy", [0, 0, 800, 400], method="lazy"),
        C("skewed_f32_cosine_pruned_memmap", [100, 1000, 100, 100], metric="cosine",
          method="pruned", data="clustered", kind="memmap", selected=12),
        # a group passed explicitly: global ranks 1 and 3 are its ranks 0 and 1
        # (broadcasts must name global ranks)
        C("subgroup_of_ranks_1_3", [400, 500], "float16", method="lazy", subgroup=[1, 3],
          selected=10),
        B("batched_T4_cap3_skewed_f64_pruned", [100, 600, 50, 250], 4, 3, dtype="float64",
          method="pruned", data="clustered", budget=300),
        B("batched_T2_two_empty_bf16", [0, 300, 0, 400], 2, metric="cosine", kind="torch",
          bf16=True, budget=250),
        # the deciding rank is the group's rank 0, global rank 2
        B("batched_T3_subgroup_of_ranks_2_3", [300, 350], 3, dtype="float16", subgroup=[2, 3],
          selected=7, budget=200, simd_on_rank={0: ISAS[-1], 1: ISAS[0]}),
    ],
}

# Cases whose every rank must raise (2 ranks of 400 rows, budget 100 unless given):
# (name, case options, expected exception type, text in the message)
ERROR_CASES = [
    ("dtype_differs", dict(astype_on_rank={1: "float16"}), "TypeError",
     "must have the same dtype on every rank, got float32 on rank 0 and float16 on rank 1"),
    # rank 1's own error, raised on rank 1 as is and on rank 0 as "rank 1: ..."
    ("integers_on_rank1", dict(astype_on_rank={1: "int32"}), "TypeError",
     "local_embeddings must have a floating dtype"),
    ("d_differs", dict(cols_on_rank={1: 8}), "ValueError",
     "must have the same number of columns D on every rank, got 12 on rank 0 and 8 on rank 1"),
    ("budget_differs", dict(budget_on_rank=[100, 120]), "ValueError",
     "budget must be the same on every rank, got 100 on rank 0 and 120 on rank 1"),
    ("nan_on_rank1", dict(nan_at=(400 + 5, 3)), "ValueError",
     "must be finite, got nan at row 405, column 3 (rank 1, local row 5)"),
    ("budget_too_large", dict(budget=801), "ValueError",
     "budget must be at most the number of points not already selected (800), got 801"),
    ("selected_out_of_range", dict(selected_list=[3, 800]), "ValueError",
     "already_selected[1] = 800 is out of range [0, 800)"),
]


def _materialise(case: dict, folder) -> dict:
    """Write the case's full data to a .npy (the ranks slice it) and fix its indices."""
    case = dict(case)
    n = sum(case["layout"])
    seed = sum(map(ord, case["name"]))
    x = _data(case["data"], n, case["d"], np.dtype(case["dtype"]), seed)
    if case.get("bf16"):  # values exact in bfloat16, stored as float32
        x = torch.from_numpy(x).to(torch.bfloat16).to(torch.float32).numpy()
    if "nan_at" in case:
        x[case["nan_at"]] = np.nan
    case["path"] = str(folder / f"{case['name']}.npy")
    np.save(case["path"], x)
    if isinstance(case.get("selected"), int):
        case["selected"] = _spread(case["layout"], case["selected"], seed)
    if "selected_list" in case:
        case["selected"] = np.array(case.pop("selected_list"), dtype=np.int64)
    return case


def _reference(case: dict):
    x = np.load(case["path"])
    if case.get("bf16"):
        x = torch.from_numpy(x).to(torch.bfloat16)
    picks, radii = svp_fast.kcenter(x, case["budget"], already_selected=case.get("selected"),
                                    start=case.get("start"), metric=case["metric"],
                                    return_radii=True)
    if isinstance(picks, torch.Tensor):
        picks, radii = picks.numpy(), radii.numpy()
    return picks, radii


def _spawn(target, world: int, folder, *args, timeout: float = JOIN_SECONDS, victim=None):
    """Run ``target(rank, world, store, out_dir, *args)`` in ``world`` fresh processes.

    Returns (exit codes, ranks still running at the deadline, killed). The
    ``victim`` rank is not waited for: it is killed once the others are done.
    """
    ctx = mp.get_context("spawn")
    store = str(folder / "store")
    env_threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the children: no oversubscription
    try:
        procs = [ctx.Process(target=target, args=(r, world, store, str(folder)) + args)
                 for r in range(world)]
        for p in procs:
            p.start()
    finally:
        if env_threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env_threads
    deadline = time.monotonic() + timeout
    for r, p in enumerate(procs):
        if r != victim:
            p.join(max(0.1, deadline - time.monotonic()))
    hung = [r for r, p in enumerate(procs) if p.is_alive() and r != victim]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    return [p.exitcode for p in procs], hung


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """world size -> (folder, {case name: materialised case}); each world spawned once."""
    done = {}

    def get(world: int):
        if world not in done:
            folder = tmp_path_factory.mktemp(f"world{world}")
            cases = [_materialise(c, folder) for c in CASES[world]]
            if world == 2:
                for name, extra, _, _ in ERROR_CASES:
                    cases.append(_materialise(C(name, [400, 400], budget=extra.get("budget", 100),
                                                protocols=["batched"],
                                                **{k: v for k, v in extra.items() if k != "budget"}),
                                              folder))
            codes, hung = _spawn(run_cases, world, folder, cases)
            assert not hung, f"ranks {hung} of {world} hung (killed after {JOIN_SECONDS} s)"
            assert codes == [0] * world, f"exit codes {codes}"
            done[world] = (folder, {c["name"]: c for c in cases})
        return done[world]

    return get


def _outputs(folder, case, world, protocol):
    out = []
    for r in range(world):
        err = folder / f"{case['name']}.{protocol}.rank{r}.error.json"
        if err.exists():
            info = json.loads(err.read_text())
            pytest.fail(f"rank {r} raised {info['type']}: {info['message']}\n{info['traceback']}")
        out.append(np.load(folder / f"{case['name']}.{protocol}.rank{r}.npz"))
    return out


# ----------------------------------------------------------------------------- multi-process


@pytest.mark.distributed
@pytest.mark.parametrize("world,name,protocol", [(w, c["name"], p) for w in CASES for c in CASES[w]
                                                 for p in protocols_of(c)])
def test_picks_equal_single_process(runs, world, name, protocol):
    folder, cases = runs(world)
    case = cases[name]
    ref_picks, ref_radii = _reference(case)
    outs = _outputs(folder, case, len(case.get("subgroup", range(world))), protocol)
    for r, o in enumerate(outs):
        assert str(o["protocol"]) == protocol
        assert o["picks"].dtype == np.int64
        np.testing.assert_array_equal(o["picks"], ref_picks, err_msg=f"rank {r}")
        np.testing.assert_allclose(o["radii"], ref_radii, rtol=1e-6, err_msg=f"rank {r}")
        expected_type = "Tensor" if case["kind"] == "torch" else "ndarray"
        assert str(o["picks_type"]) == expected_type
    if case["budget"] > 1:
        # radii are non-increasing, as exact ones are
        assert np.all(np.diff(outs[0]["radii"]) <= 0)


@pytest.mark.distributed
@pytest.mark.parametrize("protocol", ["batched", "stepwise"])
def test_ambiguous_steps_were_exercised(runs, protocol):
    """The float64 tie-break across ranks must have run, or the cases prove little."""
    folder, cases = runs(3)
    total = 0
    for name, case in cases.items():  # (world 3 has no error cases)
        if protocol in protocols_of(case):
            total += int(_outputs(folder, case, 3, protocol)[0]["ambiguous"])
    assert total > 10


def _owners(case, picks):
    return np.searchsorted(np.cumsum(case["layout"]), picks, side="right")


@pytest.mark.distributed
@pytest.mark.parametrize("world", sorted(CASES))
def test_batched_passes_cross_ranks_and_certify_many(runs, world):
    """Passes of the batched cases hold picks from several ranks; with T = 256
    they certify many picks each, with far fewer collectives than steps."""
    folder, cases = runs(world)
    crossing = 0
    errors = {e[0] for e in ERROR_CASES}
    for name, case in cases.items():
        if "batched" not in protocols_of(case) or case["budget"] < 2 or name in errors:
            continue
        o = _outputs(folder, case, len(case.get("subgroup", range(world))), "batched")[0]
        sizes = o["pass_picks"]
        assert sizes.sum() == o["steps"] and sizes.size == o["passes"], name
        if case.get("batch_max_picks"):
            assert sizes.max() <= case["batch_max_picks"], name
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        first = 0 if case.get("selected") is not None else 1  # the start pick: no pass
        owners = _owners(case, o["picks"][first:])
        crossing += sum(len(set(owners[a:b].tolist())) > 1 for a, b in zip(bounds[:-1], bounds[1:]))
        if not case.get("batch_candidates") and case["data"] == "gauss":
            # the default T: many picks per pass, two collectives a pass
            assert o["passes"] * 10 < o["steps"], (name, int(o["passes"]), int(o["steps"]))
    assert crossing > 5


@pytest.mark.distributed
def test_batched_stepwise_fallback_was_exercised(runs):
    """Passes that certify nothing (ties with points outside the candidates)
    decide their pick by the float64 band across ranks."""
    folder, cases = runs(2)
    o = _outputs(folder, cases["batched_T3_ties"], 2, "batched")[0]
    assert o["band_members"] > 0 and np.any(o["pass_picks"] == 1)


@pytest.mark.parametrize("world,name", [(w, c["name"]) for w in CASES for c in CASES[w]
                                        if c.get("simd_on_rank")])
def test_heterogeneous_kernels_compute_different_bits(runs, world, name):
    """The ranks' kernels of the heterogeneous cases round differently: single
    process radii (fast values where no float64 decision was needed) differ in
    their bits between them, while the picks agree."""
    if len(ISAS) < 2:
        pytest.skip("this CPU runs one kernel ISA only")
    folder, cases = runs(world)
    case = cases[name]
    x = np.load(case["path"])
    if case.get("bf16"):
        x = torch.from_numpy(x).to(torch.bfloat16)
    isas = sorted(set(case["simd_on_rank"].values()))
    runs_ = [svp_fast.kcenter(x, case["budget"], metric=case["metric"], simd=isa,
                              already_selected=case.get("selected"), start=case.get("start"),
                              return_radii=True) for isa in isas]
    assert all(np.array_equal(runs_[0][0], r[0]) for r in runs_[1:])
    assert any(np.any(np.asarray(runs_[0][1]) != np.asarray(r[1])) for r in runs_[1:])


@pytest.mark.distributed
@pytest.mark.parametrize("name,kind,text", [(n, k, t) for n, _, k, t in ERROR_CASES])
def test_errors_raised_on_every_rank(runs, name, kind, text):
    folder, cases = runs(2)
    for r in range(2):
        path = folder / f"{name}.batched.rank{r}.error.json"
        assert path.exists(), f"rank {r} did not raise"
        info = json.loads(path.read_text())
        assert info["type"] == kind, info
        assert text in info["message"], info["message"]
    if name == "integers_on_rank1":
        assert json.loads((folder / f"{name}.batched.rank0.error.json").read_text())["message"].startswith(
            "rank 1: ")


@pytest.mark.distributed
@pytest.mark.parametrize("protocol", ["batched", "stepwise"])
@pytest.mark.parametrize("how,poll", [("kill", None), ("stall", True)])
def test_dead_or_silent_rank_fails_the_others_within_the_timeout(tmp_path, how, poll, protocol):
    timeout_s = 3.0
    case = _materialise(C(f"failure_{how}", [1500, 1500, 1500], budget=4000, d=16), tmp_path)
    # batched: small passes, so that the victim dies mid-run
    case.update(victim=1, at_step=40, how=how, timeout_s=timeout_s, poll=poll, protocol=protocol,
                batch_candidates=8 if protocol == "batched" else None)
    codes, hung = _spawn(run_failure, 3, tmp_path, case, timeout=90, victim=1)
    assert not hung, f"ranks {hung} hung"
    died_at = float((tmp_path / "victim_mark").read_text())
    for r in (0, 2):
        info = json.loads((tmp_path / f"failure.rank{r}.json").read_text())
        assert info["outcome"] == "raised", info
        assert info["type"] == "DistributedKCenterError"
        msg = info["message"]
        if protocol == "stepwise":
            assert f"on rank {r} of 3 at step " in msg
            assert ("all-gather of the top-2 candidates" in msg
                    or "broadcast of the new center's row" in msg)
        else:
            assert f"on rank {r} of 3 at pass " in msg
            assert ("all-gather of the pass's candidates" in msg
                    or "broadcast of the pass's picks" in msg)
        assert "process-group timeout 3 s" in msg
        waited = info["time"] - died_at
        # a dead peer is noticed at once; a silent one at the timeout (plus a
        # loaded machine's slack), never later
        assert waited < timeout_s + 10, waited
        if how == "stall":
            assert waited > timeout_s - 1.0, waited
    assert codes[1] != 0  # the victim was killed (by itself, or by _spawn after the others ended)
    assert codes[0] == codes[2] == 0


@pytest.mark.distributed
def test_command_line_under_torchrun(tmp_path):
    x = _data("gauss", 900, 10, np.float16, seed=5)
    np.save(tmp_path / "emb.npy", x)
    selected = np.array([5, 450, 899], dtype=np.int64)
    np.save(tmp_path / "sel.npy", selected)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "3",
           "-m", "svp_fast.distributed.cli", str(tmp_path / "emb.npy"), "--budget", "0.2",
           "--out", str(tmp_path / "picks.npy"), "--radii", str(tmp_path / "radii.npy"),
           "--already-selected", str(tmp_path / "sel.npy"), "--metric", "cosine", "--no-progress",
           "--threads", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "k-center: 180 picks from 900 points on 3 ranks" in res.stdout
    assert "(gloo, scan, batched, " in res.stdout  # auto on 3 ranks: batched passes, the scan
    ref, ref_r = svp_fast.kcenter(x, 180, already_selected=selected, metric="cosine",
                                  return_radii=True)
    np.testing.assert_array_equal(np.load(tmp_path / "picks.npy"), ref)
    np.testing.assert_allclose(np.load(tmp_path / "radii.npy"), ref_r, rtol=1e-6)


def test_command_line_without_torchrun_says_how_to_launch(tmp_path):
    np.save(tmp_path / "emb.npy", np.zeros((4, 2), np.float32))
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    res = subprocess.run([PYTHON, "-m", "svp_fast.distributed.cli", str(tmp_path / "emb.npy"),
                          "--budget", "2", "--out", str(tmp_path / "p.npy")],
                         capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 2
    assert "needs the environment torchrun sets" in res.stderr
    assert "torchrun --nproc-per-node" in res.stderr


# ----------------------------------------------------------------------------- one rank, in process


@pytest.fixture
def one_rank_group():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=30))
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_needs_an_initialised_group():
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="needs an initialised torch.distributed process group"):
        sd.kcenter(np.zeros((3, 2), np.float32), 1)


@pytest.mark.parametrize("protocol", ["batched", "stepwise"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("method", ["scan", "lazy", "pruned"])
def test_one_rank_equals_single_process(one_rank_group, metric, method, protocol):
    x = _data("clustered", 800, 8, np.float32, seed=1)
    ref, ref_r = svp_fast.kcenter(x, 150, metric=metric, return_radii=True, start=17)
    picks, radii, stats = sd.kcenter(x, 150, metric=metric, method=method, start=17,
                                     return_radii=True, return_stats=True, protocol=protocol)
    np.testing.assert_array_equal(picks, ref)
    np.testing.assert_allclose(radii, ref_r, rtol=1e-6)
    assert stats.method == method and stats.world_size == 1 and stats.steps == 149
    assert stats.backend == "gloo" and stats.total_rows == 800
    assert stats.protocol == protocol
    if protocol == "stepwise":
        # common path: two collectives per step, three more per ambiguous step
        assert stats.collectives == 2 * 148 + 1 + 3 * stats.ambiguous_steps
        assert stats.passes == 149
    else:
        # two collectives per pass (every pass certified picks)
        assert stats.collectives == 2 * stats.passes
        assert stats.passes < 15 and stats.pass_picks.sum() == 149
        assert stats.batch_candidates == 256


def test_auto_protocol_and_engine(one_rank_group):
    x = _data("gauss", 500, 6, np.float32, seed=3)
    ref = svp_fast.kcenter(x, 60)
    # one rank: nothing to exchange, the stepwise loop over the lazy engine
    picks, st = sd.kcenter(x, 60, return_stats=True)
    assert (st.protocol, st.method, st.batch_candidates) == ("stepwise", "lazy", 0)
    assert st.pass_picks is None and st.passes == st.steps == 59
    np.testing.assert_array_equal(picks, ref)
    # batch options ask for the batched protocol, whose auto engine is the scan
    picks, st = sd.kcenter(x, 60, return_stats=True, batch_max_picks=7)
    assert (st.protocol, st.method, st.batch_candidates) == ("batched", "scan", 256)
    assert st.pass_picks.max() <= 7 and st.collectives_per_pick < 2
    np.testing.assert_array_equal(picks, ref)
    # huge rows: fewer candidates, so that one offer stays within 16 MiB
    wide = np.random.default_rng(0).standard_normal((40, 70000))
    _, st = sd.kcenter(wide, 3, return_stats=True, protocol="batched")
    assert st.batch_candidates == (16 << 20) // (70000 * 8) == 29


def test_one_rank_batched_through_the_cuda_shard_glue(one_rank_group, monkeypatch):
    """CudaShard's offer and add_centers (the batched protocol) on the stand-in core."""
    from cuda_standin import StandInShardLib

    from svp_fast.distributed import _shards

    made = []

    def standin(m, name):
        shard = _shards.CudaShard(m, name, lib=StandInShardLib, torch_device=torch.device("cpu"))
        made.append(shard)
        return shard

    monkeypatch.setitem(_shards.SHARDS, "cpu", standin)
    x = torch.from_numpy(_data("gauss", 700, 9, np.float16, seed=4))
    ref = svp_fast.kcenter(x, 200, metric="cosine", already_selected=[3, 500])
    picks, stats = sd.kcenter(x, 200, metric="cosine", already_selected=[3, 500],
                              batch_candidates=4, batch_max_picks=3, return_stats=True)
    assert torch.equal(picks, ref)
    calls = made[0].core.calls
    assert calls.count("offer") == stats.passes and "add_centers" in calls
    assert stats.pass_picks.max() <= 3


def test_one_rank_random_start_is_the_single_process_draw(one_rank_group):
    x = _data("clustered", 500, 8, np.float32, seed=3)
    for seed in (0, 7):
        ref = svp_fast.kcenter(x, 40, start="random", seed=seed)
        np.testing.assert_array_equal(sd.kcenter(x, 40, start="random", seed=seed), ref)
    assert svp_fast.kcenter(x, 1, start="random", seed=7)[0] != \
        svp_fast.kcenter(x, 1, start="random", seed=0)[0]


def test_one_rank_torch_input_returns_torch(one_rank_group):
    x = torch.from_numpy(_data("gauss", 300, 6, np.float32, seed=2))
    picks, radii = sd.kcenter(x, 20, return_radii=True, already_selected=torch.tensor([4, 9]))
    assert isinstance(picks, torch.Tensor) and picks.dtype == torch.int64
    assert isinstance(radii, torch.Tensor) and radii.dtype == torch.float64
    ref = svp_fast.kcenter(x, 20, already_selected=[4, 9])
    assert torch.equal(picks, ref)


@pytest.mark.parametrize("kwargs,exc,text", [
    (dict(metric="manhattan"), ValueError, "metric must be one of 'euclidean', 'cosine', got 'manhattan'"),
    (dict(method="fast"), ValueError, "method must be one of"),
    (dict(budget=11), ValueError, "budget must be at most the number of points not already selected (10)"),
    (dict(budget=-1), ValueError, "budget must be >= 0, got -1"),
    (dict(budget=2.5), ValueError, "budget as a float is a fraction of the N rows and must be below 1"),
    (dict(budget="3"), TypeError, "budget must be a count"),
    (dict(start=10), ValueError, "start must be in [0, 10), got 10"),
    (dict(start=1, already_selected=[2]), ValueError, "start applies only when already_selected is empty"),
    (dict(start="first"), ValueError, "start must be None, a row index or 'random', got 'first'"),
    (dict(start=1.5), TypeError, "start must be None, a row index or 'random', got float 1.5"),
    (dict(already_selected=[1, 1]), ValueError, "already_selected must not repeat an index"),
    (dict(already_selected=[0.5]), TypeError, "already_selected must hold integers"),
    (dict(n_cells=0, method="pruned"), ValueError, "n_cells must be a positive integer"),
    (dict(group="world"), TypeError, "group must be a torch.distributed ProcessGroup"),
    (dict(protocol="fast"), ValueError, "protocol must be one of 'auto', 'batched', 'stepwise', got 'fast'"),
    (dict(batch_candidates=0), ValueError, "batch_candidates must be a positive integer or None, got 0"),
    (dict(batch_max_picks=2.0), ValueError, "batch_max_picks must be a positive integer or None"),
    (dict(protocol="stepwise", batch_candidates=8), ValueError,
     "batch_candidates and batch_max_picks apply to protocol='batched'"),
])
def test_bad_arguments_name_the_argument(one_rank_group, kwargs, exc, text):
    kwargs = dict(kwargs)
    budget = kwargs.pop("budget", 3)
    with pytest.raises(exc) as info:
        sd.kcenter(np.ones((10, 3), np.float32) * np.arange(10)[:, None], budget, **kwargs)
    assert text in str(info.value)


@pytest.mark.parametrize("x,exc,text", [
    (np.zeros((5, 3), np.int32), TypeError, "local_embeddings must have a floating dtype"),
    (np.zeros(5, np.float32), ValueError, "local_embeddings must be a 2-D array"),
    (np.zeros((0, 3), np.int64), TypeError, "local_embeddings must have a floating dtype"),
    (np.zeros((0, 3), np.float32), ValueError, "local_embeddings must hold rows on some rank"),
    ("emb.npy", TypeError, "local_embeddings must be an array"),
])
def test_bad_shards_name_the_argument(one_rank_group, x, exc, text):
    with pytest.raises(exc, match=None) as info:
        sd.kcenter(x, 1)
    assert text in str(info.value)


def test_cosine_zero_row_is_reported_with_its_global_index(one_rank_group):
    x = np.ones((6, 2), np.float32)
    x[4] = 0
    with pytest.raises(ValueError, match=r"local_embeddings row 4 \(rank 0, local row 4\) is all zeros"):
        sd.kcenter(x, 2, metric="cosine")


def test_no_cuda_shard_is_a_clear_error():
    from svp_fast import _core
    from svp_fast.distributed._shards import CudaShard

    if hasattr(_core, "KCenterShardCuda"):
        pytest.skip("this build has the CUDA shard")
    with pytest.raises(RuntimeError, match="has no CUDA shard .*Pass the local embeddings as a CPU"):
        CudaShard.core_class()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_torch_facts_match_the_core(dtype):
    """The CUDA shards' validation pass (torch) agrees with the C++ one."""
    from svp_fast import _core
    from svp_fast._arrays import as_matrix
    from svp_fast.selection._backend_cuda import tensor_facts as torch_facts

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((300, 7))).to(dtype)
    x[100] = 0
    m = as_matrix(x, "x")
    core = _core.shard_facts(m.ptr, m.rows, m.cols, m.row_stride, m.dtype_code, 1, "")
    mine = torch_facts(x, chunk_bytes=7 * 8 * 64)  # several chunks
    assert mine["zero_row"] == core["zero_row"] == 100
    assert mine["bad_row"] == core["bad_row"] == -1
    for key in ("max_abs", "min_norm", "max_norm"):
        assert mine[key] == pytest.approx(core[key], rel=1e-12), key
    x[250, 4] = float("inf")
    x[260, 1] = float("nan")
    mine = torch_facts(x, chunk_bytes=7 * 8 * 64)
    assert (mine["bad_row"], mine["bad_col"], mine["bad_value"]) == (250, 4, float("inf"))
