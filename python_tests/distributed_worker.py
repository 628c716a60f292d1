"""Worker processes for test_distributed.py (imported by the spawned children).

Each child joins a gloo group, runs a list of cases on its slice of the data
and writes what it returned (or the error it raised) to files the parent
compares with single-process ``svp_fast.kcenter``.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import time
import traceback

import numpy as np


def load_api():
    """The public functions of svp_fast.distributed.

    An editable install made before svp_fast/distributed/__init__.py existed
    maps the folder as a namespace package (no __init__ run) until the next
    ``pip install -e``; the private module holds the same objects.
    """
    import svp_fast.distributed as sd

    if not hasattr(sd, "kcenter") or not callable(sd.kcenter):
        from svp_fast.distributed import _kcenter as sd
    return sd


def local_part(case: dict, rank: int):
    """This rank's rows, as the case's array kind (numpy, memmap, torch)."""
    import torch

    bounds = np.concatenate([[0], np.cumsum(case["layout"])])
    lo, hi = int(bounds[rank]), int(bounds[rank + 1])
    full = np.load(case["path"], mmap_mode="r")
    part = full[lo:hi]
    if case["kind"] == "memmap":
        return part
    part = np.array(part)
    if case["kind"] == "torch":
        t = torch.from_numpy(part)
        return t.to(torch.bfloat16) if case.get("bf16") else t
    return part


def _init(rank: int, world: int, store: str, timeout_s: float):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s))


def _finish():
    import torch.distributed as dist

    dist.barrier()  # nobody tears down its connections while a peer still uses them
    dist.destroy_process_group()


def protocols_of(case: dict) -> list:
    """The protocols a case runs under (both unless it says)."""
    return case.get("protocols", ["batched", "stepwise"])


def _collective_seconds(seconds: float) -> float:
    """How long a rank waits for its peers: ``seconds``, 5x on the emulated
    CUDA build, whose kernels run on the CPU (a clean-clone CI run saw rank 1
    wait more than 60 s at the final barrier for rank 0's CUDA-shard cases)."""
    from svp_fast._emulation import EMULATED

    return seconds * 5 if EMULATED else seconds


def run_cases(rank: int, world: int, store: str, out_dir: str, cases: list) -> None:
    """Entry point of one child: every case, in order, under each of its
    protocols, on every rank."""
    import torch.distributed as dist

    _init(rank, world, store, timeout_s=_collective_seconds(60))
    sd = load_api()
    # every process creates every subgroup, in the same order (torch's rule)
    groups = {c["name"]: dist.new_group(c["subgroup"]) for c in cases if "subgroup" in c}
    runs = [(case, protocol) for case in cases for protocol in protocols_of(case)]
    for case, protocol in runs:
        group = groups.get(case["name"])
        if group is not None and rank not in case["subgroup"]:
            continue
        me = dist.get_rank(group) if group is not None else rank
        prefix = os.path.join(out_dir, f"{case['name']}.{protocol}.rank{me}")
        try:
            x = local_part(case, me)
            if case.get("cols_on_rank") and rank in case["cols_on_rank"]:
                x = np.ascontiguousarray(np.asarray(x)[:, : case["cols_on_rank"][rank]])
            if case.get("astype_on_rank") and rank in case["astype_on_rank"]:
                x = np.asarray(x).astype(case["astype_on_rank"][rank])
            budget = case["budget_on_rank"][rank] if "budget_on_rank" in case else case["budget"]
            # small rounds exercise the multi-round float64 tie-break on modest bands
            from svp_fast.distributed import _kcenter, _shards
            if case.get("standin_cuda"):  # the CUDA shard's glue on host rows
                import torch
                from cuda_standin import StandInShardLib

                from svp_fast import _core
                from svp_fast._emulation import EMULATED

                # the emulated build runs the CUDA shard itself (csrc/cuda/shard.cu) on
                # host rows; other builds, its glue against the stand-in
                lib = _core if EMULATED else StandInShardLib
                _shards.SHARDS["cpu"] = lambda m, name: _shards.CudaShard(
                    m, name, lib=lib, torch_device=torch.device("cpu"))
            else:
                _shards.SHARDS["cpu"] = _shards.CpuShard
            _kcenter._BAND_ROUND_BYTES = case.get("band_round_bytes", 1 << 20)
            batch = {}
            if protocol == "batched":
                batch = dict(batch_candidates=case.get("batch_candidates"),
                             batch_max_picks=case.get("batch_max_picks"))
            # ranks computing with different kernels (fast bits) must agree on every pick
            simd = case.get("simd_on_rank", {}).get(me)
            picks, radii, stats = sd.kcenter(
                x, budget, already_selected=case.get("selected"), start=case.get("start"),
                metric=case["metric"], method=case["method"], group=group, return_radii=True,
                return_stats=True, num_threads=1, _poll_completion=case.get("poll"),
                protocol=protocol, simd=simd, **batch)
            picks_type = type(picks).__name__
            picks = picks.numpy() if hasattr(picks, "numpy") else picks
            radii = radii.numpy() if hasattr(radii, "numpy") else radii
            np.savez(prefix + ".npz", picks=picks, radii=radii,
                     ambiguous=stats.ambiguous_steps, steps=stats.steps, picks_type=picks_type,
                     passes=stats.passes, collectives=stats.collectives,
                     protocol=stats.protocol, band_members=stats.band_members,
                     pass_picks=(stats.pass_picks if stats.pass_picks is not None
                                 else np.zeros(0, np.int64)))
        except Exception as e:  # the parent checks which cases must fail, and how
            with open(prefix + ".error.json", "w") as f:
                json.dump({"type": type(e).__name__, "message": str(e),
                           "traceback": traceback.format_exc()}, f)
    _finish()


class _Saboteur:
    """A progress 'bar' whose update() makes this rank fail at a given step."""

    def __init__(self, at_step: int, how: str, mark: str):
        self.done, self.at_step, self.how, self.mark = 0, at_step, how, mark

    def update(self, n: int) -> None:
        self.done += n
        if self.done >= self.at_step:
            with open(self.mark, "w") as f:
                f.write(str(time.time()))
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(3600)  # "stall": alive, silent; the parent kills it later


def run_failure(rank: int, world: int, store: str, out_dir: str, case: dict) -> None:
    """One rank dies (or stalls) mid-selection; the others report how they ended."""
    _init(rank, world, store, timeout_s=case["timeout_s"])
    sd = load_api()
    x = local_part(case, rank)
    progress = False
    if rank == case["victim"]:
        progress = _Saboteur(case["at_step"], case["how"], os.path.join(out_dir, "victim_mark"))
    result = {"rank": rank}
    try:
        sd.kcenter(x, case["budget"], method="scan", num_threads=1, progress=progress,
                   _poll_completion=case.get("poll"), protocol=case["protocol"],
                   batch_candidates=case.get("batch_candidates"))
        result.update(outcome="returned")
    except Exception as e:
        result.update(outcome="raised", type=type(e).__name__, message=str(e))
    result["time"] = time.time()
    with open(os.path.join(out_dir, f"failure.rank{rank}.json"), "w") as f:
        json.dump(result, f)
    os._exit(0)  # the group is broken: skip its teardown
