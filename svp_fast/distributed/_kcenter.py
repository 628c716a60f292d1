"""Exact greedy k-center over shards held by the ranks of a torch.distributed group.

Two protocols give the same picks (docs/distributed.md has their messages
and costs).

**Batched** (the default): one pass certifies many picks.

1. Each rank's shard offers its T best candidates (value, m2, the ordinal of
   the center that gave the value, global index, raw row) and a bound on all
   its other points, in one all-gather.
2. The deciding rank (group rank 0) takes the T best of every offer (value,
   then lower global index) and B, the largest of the ranks' bounds and the
   best value offered but not taken, and runs single-process kcenter's
   acceptance of a pass (csrc/cpu/batch_pass.h): picks inside the candidates,
   each updated against the picks before it, while the best is certified
   above B; near-ties are decided in float64 against every center's row,
   which it keeps. One rank decides because ranks on different CPUs or GPUs
   compute different fast bits, and their passes could end at different
   picks; every value carries the same error bound, so the decisions are
   single-process ones whoever computes them.
3. It broadcasts the pass's picks and radii; every rank applies them to its
   shard in one call, the rows taken from the gathered offers.
4. When not even the first pick of a pass is certified (a point outside the
   candidates may tie with the best), that pick is one stepwise ambiguous
   step (below, from its float64 band on).

**Stepwise**: one step per pick.

1. Each rank asks its shard for its two best candidates (largest squared
   distance to the nearest center, in the shard's working arithmetic) and
   all-gathers them: 4 float64 per rank (value, global index, value, global
   index).
2. Every rank decides the same thing from the same numbers: the best value M
   (ties to the lowest global index) wins outright when no other candidate
   reaches thr = M - 2 E(M), E being the core's rigorous bound on the
   rounding error of a computed value. Otherwise the step is *ambiguous* (a
   few % of steps in float32/float16; in float64 only on real ties): every rank
   all-gathers its band members (values >= thr; in rounds of bounded size)
   with their raw rows, computes
   for each member the float64 distance to its own nearest local center, an
   all-reduce(min) gives each member's exact distance to the nearest center
   anywhere, and the largest wins; values within float64's own error bound of
   the largest are ties, won by the lowest global index.
3. The winner's owner removes it from its candidates and broadcasts its raw
   row (D elements of the input dtype); every rank applies it as the new
   center.

The picks are therefore those of single-process ``svp_fast.kcenter`` on the
concatenated shards, which are those of float64 arithmetic.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist

from .. import _core
from .._arrays import (F64, as_index_array, check_budget, check_budget_type, check_choice, check_index,
                       check_threads, is_torch)
from .._progress import make_hook
from ..selection._planner import random_starts
from ..selection.cells import build_cells, default_n_cells
from ._comm import Communicator, DistributedKCenterError, backend_map
from ._shards import DTYPE_NAMES, LocalShard, make_shard

METRICS = ("euclidean", "cosine")
METHODS = ("auto", "scan", "pruned", "lazy")
_METHOD_CODES = {"scan": 0, "pruned": 1, "lazy": 2}
PROTOCOLS = ("auto", "batched", "stepwise")
# candidates per rank and pass of the batched protocol, unless the caller says;
# fewer when one rank's offer would pass _OFFER_MAX_BYTES
DEFAULT_BATCH_CANDIDATES = 256
_OFFER_MAX_BYTES = 16 << 20
_NAME = "local_embeddings"
# rows of already_selected moved per collective during setup
_SETUP_CHUNK_BYTES = 8 << 20
# band members (index + row) one rank sends per round of an ambiguous step
_BAND_ROUND_BYTES = 1 << 20


@dataclass
class DistributedKCenterStats:
    """What one rank did in a distributed k-center run."""

    method: str
    backend: str  # of the step collectives: "gloo", "nccl", ...
    device: str  # where this rank's rows live: "cpu" or "cuda"
    world_size: int
    rank: int
    local_rows: int
    offset: int  # global index of this rank's first row
    total_rows: int
    steps: int  # selection steps run (picks decided by the protocol)
    ambiguous_steps: int
    band_members: int  # candidates compared in float64, over all ambiguous steps
    distance_evals: int  # point-center distances this rank computed
    float64_accumulation: bool
    setup_seconds: float  # validation, agreement, cells, already_selected
    cells_seconds: float
    select_seconds: float  # the step loop
    communication_seconds: float  # of select_seconds: inside collectives (waiting included)
    collectives: int  # issued by the step loop
    protocol: str = "stepwise"  # "batched" or "stepwise"
    passes: int = 0  # batched: passes (one offer all-gather each); stepwise: steps
    batch_candidates: int = 0  # batched: T, the candidates each rank offers per pass
    pass_picks: Optional[np.ndarray] = None  # batched: picks certified by each pass, in order

    @property
    def picks_per_pass(self) -> float:
        return self.steps / self.passes if self.passes else 0.0

    @property
    def collectives_per_pick(self) -> float:
        return self.collectives / self.steps if self.steps else 0.0

    @property
    def seconds_per_step(self) -> float:
        return self.select_seconds / self.steps if self.steps else 0.0

    @property
    def communication_seconds_per_step(self) -> float:
        return self.communication_seconds / self.steps if self.steps else 0.0


def _require_group(group):
    if not dist.is_available():
        raise RuntimeError("svp_fast.distributed needs torch.distributed, which this torch build lacks")
    if not dist.is_initialized():
        raise RuntimeError(
            "svp_fast.distributed.kcenter needs an initialised torch.distributed process group: "
            "call torch.distributed.init_process_group(...) first (torchrun sets its environment), "
            "or pass group=")
    if group is not None and not isinstance(group, dist.ProcessGroup):
        raise TypeError(f"group must be a torch.distributed ProcessGroup or None, got {type(group).__name__}")
    if dist.get_rank(group) < 0:
        raise ValueError("this process is not a member of group")


def _error_record(e: BaseException) -> list:
    return [type(e).__name__, str(e)]


def _raise_first_error(records: list, local_error: Optional[BaseException], rank: int) -> None:
    """Raise on every rank when any rank failed its local checks."""
    if local_error is not None:
        raise local_error
    for r, rec in enumerate(records):
        if rec is not None:
            kind = {"TypeError": TypeError, "ValueError": ValueError}.get(rec[0], RuntimeError)
            raise kind(f"rank {r}: {rec[1]}")


def _positive_or_none(value, name: str):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return int(value)


def _replicated_arguments(budget, already_selected, start, metric, method, n_cells, protocol,
                          batch_candidates, batch_max_picks, seed=0):
    """Type checks of the arguments every rank must pass alike, and their fingerprint."""
    metric = check_choice(metric, "metric", METRICS)
    method = check_choice(method, "method", METHODS)
    protocol = check_choice(protocol, "protocol", PROTOCOLS)
    batch_candidates = _positive_or_none(batch_candidates, "batch_candidates")
    batch_max_picks = _positive_or_none(batch_max_picks, "batch_max_picks")
    if (batch_candidates or batch_max_picks) and protocol == "auto":
        protocol = "batched"  # asked for by its options
    if protocol == "stepwise" and (batch_candidates or batch_max_picks):
        raise ValueError("batch_candidates and batch_max_picks apply to protocol='batched', "
                         f"got them with protocol={protocol!r}")
    # range checks need the global N: done after the agreement
    budget = check_budget_type(budget)
    if already_selected is None:
        selected = np.zeros(0, dtype=np.int64)
    else:
        selected = as_index_array(already_selected, "already_selected", np.iinfo(np.int64).max)
    if isinstance(start, str):
        if start != "random":
            raise ValueError(f"start must be None, a row index or 'random', got {start!r}")
    elif start is not None:
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
            raise TypeError(f"start must be None, a row index or 'random', got "
                            f"{type(start).__name__} {start!r}")
        start = int(start)
    if n_cells is not None:
        if isinstance(n_cells, bool) or not isinstance(n_cells, (int, np.integer)) or n_cells < 1:
            raise ValueError(f"n_cells must be a positive integer or None, got {n_cells!r}")
        n_cells = int(n_cells)
    fingerprint = {
        "budget": budget, "metric": metric, "method": method, "start": start, "n_cells": n_cells,
        "protocol": protocol, "batch_candidates": batch_candidates,
        "batch_max_picks": batch_max_picks,
        "already_selected": f"{selected.size} indices, sha1 "
                            + hashlib.sha1(selected.tobytes()).hexdigest()[:12],
    }
    batch = (protocol, batch_candidates, batch_max_picks)
    if start == "random":
        fingerprint["seed"] = seed  # the ranks draw the start alike
    return budget, selected, start, metric, method, n_cells, batch, fingerprint


def _check_agreement(infos: list) -> None:
    """The same arrays layout and arguments on every rank, or a clear error."""
    first = infos[0]
    for key, what in (("device", "device type"), ("cols", "number of columns D"),
                      ("dtype", "dtype")):
        for r, info in enumerate(infos):
            if info[key] != first[key]:
                kind = TypeError if key == "dtype" else ValueError
                raise kind(f"{_NAME} must have the same {what} on every rank, got "
                           f"{first[key]} on rank 0 and {info[key]} on rank {r}")
    for key in first["args"]:
        for r, info in enumerate(infos):
            if info["args"][key] != first["args"][key]:
                raise ValueError(
                    f"{key} must be the same on every rank, got {first['args'][key]!r} on rank 0 "
                    f"and {info['args'][key]!r} on rank {r}")


def _check_facts(infos: list, offsets: np.ndarray, metric: str, dtype_code: int) -> dict:
    """Raise the single-process errors with global row indices; return reduced facts."""
    for r, info in enumerate(infos):
        f = info["facts"]
        if f["bad_row"] >= 0:
            raise ValueError(
                f"{_NAME} must be finite, got {f['bad_value']:g} at row {offsets[r] + f['bad_row']}, "
                f"column {f['bad_col']} (rank {r}, local row {f['bad_row']})")
    if metric == "cosine":
        for r, info in enumerate(infos):
            f = info["facts"]
            if f["zero_row"] >= 0:
                raise ValueError(
                    f"{_NAME} row {offsets[r] + f['zero_row']} (rank {r}, local row {f['zero_row']}) "
                    "is all zeros; the cosine metric needs rows of nonzero norm")
    reduced = {
        "max_abs": max(info["facts"]["max_abs"] for info in infos),
        "min_norm": min(info["facts"]["min_norm"] for info in infos),
        "max_norm": max(info["facts"]["max_norm"] for info in infos),
    }
    if dtype_code == F64 and reduced["max_abs"] > 1e150:
        raise ValueError(f"{_NAME} holds values up to {reduced['max_abs']:g}, whose squared distances "
                         "overflow float64; rescale the embeddings")
    return reduced


def _setup_device(backends: dict, shard: Optional[LocalShard]) -> torch.device:
    """Where the setup messages live: the CPU when the group moves CPU tensors."""
    if "cpu" in backends:
        return torch.device("cpu")
    if shard is not None and shard.device_type == "cuda":
        return shard.torch_device
    return torch.device("cuda", torch.cuda.current_device())


def _step_device(backends: dict, shard: LocalShard) -> torch.device:
    """Where the step messages live: on the GPU for NCCL, else in host memory."""
    if shard.device_type == "cuda" and backends.get("cuda") == "nccl":
        return shard.torch_device
    if "cpu" not in backends:
        raise ValueError(
            f"the process group's backend ({', '.join(f'{k}:{v}' for k, v in backends.items())}) "
            f"cannot move CPU tensors, and {_NAME} is on the CPU: initialise the group with "
            "backend='gloo' (or 'cpu:gloo,cuda:nccl'), or pass CUDA tensors")
    return torch.device("cpu")


def kcenter(
    local_embeddings: Any,
    budget: int,
    *,
    already_selected: Any = None,
    start: Optional[int] = None,
    metric: str = "euclidean",
    method: str = "auto",
    group: Any = None,
    return_radii: bool = False,
    return_stats: bool = False,
    progress: Any = False,
    n_cells: Optional[int] = None,
    seed: int = 0,
    num_threads: Optional[int] = None,
    simd: Optional[str] = None,
    protocol: str = "auto",
    batch_candidates: Optional[int] = None,
    batch_max_picks: Optional[int] = None,
    _poll_completion: Optional[bool] = None,
):
    """Exact greedy k-center over the rows held by all ranks of a process group.

    Call it on every rank of ``group`` with the same arguments except
    ``local_embeddings``. Rank r's rows are rows ``offset_r ... offset_r +
    n_r - 1`` of the concatenated embeddings (ranks in group order;
    ``offset_r`` is the sum of the lower ranks' row counts, agreed at the
    start). Every rank returns the same global picks: those of single-process
    :func:`svp_fast.kcenter` on the concatenated embeddings, exactly (same
    tie rule: lowest global index; same float64-certified decisions).

    Communication (``protocol``): batched, per pass, one all-gather of every
    rank's offer (T records of 32 bytes and T raw rows) and one broadcast of
    the pass's picks from group rank 0 (24 bytes per pick); a pass certifies
    tens to hundreds of picks (fewer on the first passes; one when a point
    outside the candidates ties with the best). Stepwise, per pick: one
    all-gather of the top-2 candidates (4 float64 = 32 bytes per rank) and
    one broadcast of the winning row from its owner (D elements of the input
    dtype). On an ambiguous step of the stepwise protocol, or a pass that
    certifies nothing, three more: an all-gather of the band sizes (16 bytes
    per rank), an all-gather of the band members (8 bytes + one row each),
    and an all-reduce(min) of their exact distances (8 bytes per member); a
    band larger than 1 MiB per rank (massive exact ties, e.g. once every
    remaining point duplicates a center) takes these three per 1 MiB round.
    Setup costs four small all-gathers, plus one all-reduce per 8 MiB of
    ``already_selected`` rows.

    Args:
        local_embeddings: this rank's (n_r, D) shard: numpy array or memmap
            (float16/32/64), or torch tensor (CPU or CUDA; float16, bfloat16,
            float32, float64). n_r may be 0 (shape (0, D)) and may differ
            between ranks; D and dtype must agree. Never copied unless its
            layout needs it (see ``svp_fast._arrays``), never modified.
        budget: number of new picks, 0 <= budget <= N - len(already_selected), or a
            fraction of the global N as a float in [0, 1) (``svp_fast._arrays.BUDGET_RULE``)
            with N the total number of rows.
        already_selected: global indices of initial centers (never returned),
            the same on every rank. Their owners send their rows to everyone.
        start: global index of the first pick when ``already_selected`` is
            empty (default 0), or ``"random"``: the row that single-process
            ``kcenter(..., start="random", seed=seed)`` draws on all N rows.
        metric: "euclidean" or "cosine" (radii are then 1 - cos).
        method: the local engine. "scan" reads the whole shard each step;
            "lazy" refreshes only the candidates that may reach the top;
            "pruned" skips k-means cells (built per shard) that the triangle
            inequality proves cannot move (pays on clustered proxy features,
            not on isotropic data); "auto" (default) is "scan" under the
            batched protocol and "lazy" under the stepwise one. The picks do
            not depend on it.
        group: the torch.distributed process group (default: the default
            group, e.g. the one torchrun's environment initialised). gloo for
            CPU arrays, NCCL for CUDA tensors (then messages live on the GPU).
        return_radii: also return radius[t], the distance from pick t to its
            nearest earlier center (+inf for the start pick); non-increasing.
        return_stats: also return this rank's :class:`DistributedKCenterStats`.
        progress: True: a tqdm progress bar on the group's rank 0; or a tqdm
            object (updated on the rank that passes it).
        n_cells: cells per shard for "pruned" (default: about sqrt(n_r), a power of two).
        seed: seed of the k-means that builds the cells (does not affect picks).
        num_threads: CPU threads per rank (default: OpenMP's default; with
            several ranks per host, give each rank its share of the cores).
        simd: force a CPU kernel ISA ("avx512", "avx2", "generic"), for tests
            (it may differ between ranks: the picks do not depend on it).
        protocol: "batched" (many picks per pass, two collectives a pass),
            "stepwise" (two collectives per pick), or "auto" (default):
            batched on groups of two ranks or more, stepwise on one rank (or
            batched when ``batch_candidates`` or ``batch_max_picks`` is
            given). Group rank 0 decides the batched passes and keeps every
            center's raw row in host memory ((len(already_selected) + budget)
            x D x element size).
        batch_candidates: batched: the candidates T each rank offers per pass
            (default 256, fewer when one offer would pass 16 MiB of rows).
            Larger T certifies more picks per pass, for a larger message and
            T x D work per pick on rank 0.
        batch_max_picks: batched: at most this many picks per pass (default:
            no cap).

    Returns:
        indices (int64, global, pick order): numpy, or a torch tensor on
        ``local_embeddings``' device for torch input; then radii (float64)
        if ``return_radii`` and the stats if ``return_stats``.

    Raises:
        TypeError / ValueError on every rank for bad input on any rank, naming
        the argument and, for rows, the global row, the rank and the local row
        (NaN/Inf, zero rows for cosine, D or dtype differing between ranks,
        arguments differing between ranks, budget or indices out of range).
        DistributedKCenterError (a RuntimeError) on the surviving ranks when a
        rank dies or stops answering: it names the collective, the step and the
        process-group timeout, and comes within that timeout.
    """
    _require_group(group)
    t_setup = time.perf_counter()
    threads = check_threads(num_threads)
    simd = simd or ""

    # 1. Local checks. Errors are shared before anyone raises: a rank that
    #    raised alone would leave the others waiting in the next collective.
    local_error = None
    shard = None
    info = {"rows": 0, "cols": None, "dtype": None, "device": None, "facts": None, "args": {}}
    try:
        shard = make_shard(local_embeddings, _NAME)
        info.update(rows=shard.rows, cols=shard.cols, dtype=DTYPE_NAMES[shard.dtype_code],
                    device=shard.device_type)
        budget, selected, start, metric, method, n_cells, batch, info["args"] = \
            _replicated_arguments(budget, already_selected, start, metric, method, n_cells,
                                  protocol, batch_candidates, batch_max_picks, seed)
        info["facts"] = shard.facts(threads, simd)
    except (TypeError, ValueError, RuntimeError) as e:
        local_error = e
    backends = backend_map(group)
    setup = Communicator(group, _setup_device(backends, shard), _poll_completion)
    rank, world = setup.rank, setup.world_size
    infos = setup.all_gather_json(
        "all-gather of the shard shapes, dtypes and arguments",
        {"info": info, "error": _error_record(local_error) if local_error else None})
    _raise_first_error([i["error"] for i in infos], local_error, rank)
    infos = [i["info"] for i in infos]

    # 2. Agreement and global checks: every rank holds the same numbers, so
    #    every rank raises the same error (no collective in between).
    _check_agreement(infos)
    rows = np.array([i["rows"] for i in infos], dtype=np.int64)
    ends = np.cumsum(rows)
    offsets = ends - rows
    n_total = int(ends[-1])
    offset = int(offsets[rank])
    if n_total == 0:
        raise ValueError(f"{_NAME} must hold rows on some rank: every rank's shard is empty "
                         f"(shapes (0, {shard.cols}))")
    bad = np.flatnonzero(selected >= n_total)
    if bad.size:
        j = int(bad[0])
        raise ValueError(f"already_selected[{j}] = {int(selected[j])} is out of range [0, {n_total})")
    budget = check_budget(budget, n_total - selected.size, "the number of points not already selected",
                          total=n_total)
    if start is not None:
        if selected.size:
            raise ValueError("start applies only when already_selected is empty; "
                             f"got start={start!r} and {selected.size} already selected")
        # "random": the row single-process kcenter draws with this seed
        start = (int(random_starts(np.array([n_total]), seed)[0]) if start == "random"
                 else check_index(start, "start", n_total))
    start = 0 if start is None else start
    protocol, batch_candidates, batch_max_picks = batch
    if protocol == "auto":
        # one rank exchanges nothing: the stepwise loop over the lazy engine
        # reads the fewest rows; with more, collectives dominate a step
        protocol = "batched" if world > 1 else "stepwise"
    reduced = _check_facts(infos, offsets, metric, shard.dtype_code)
    metric_code = METRICS.index(metric)
    float64 = bool(_core.shard_needs_float64(reduced["max_abs"], reduced["min_norm"],
                                             reduced["max_norm"], shard.dtype_code, metric_code,
                                             shard.cols))
    # the lazy engine's savings do not survive passes of many picks (each pass
    # lowers the top values as far as its picks do): batched passes run the scan
    chosen = method if method != "auto" else ("scan" if protocol == "batched" else "lazy")
    if chosen == "pruned" and shard.device_type == "cuda":
        raise ValueError("method='pruned' is not available for CUDA shards yet; use 'lazy' or 'scan'")
    device = _step_device(backends, shard)

    # 3. Local state. A failure here (out of memory, FAISS) is shared too.
    cells_seconds = 0.0
    local_error = None
    try:
        cells, cells_n = None, 0
        if chosen == "pruned" and shard.rows > 0 and budget > 0:
            t0 = time.perf_counter()
            cells_n = min(shard.rows, n_cells or default_n_cells(shard.rows))
            cells, _ = build_cells(shard.m, cells_n, metric=metric, seed=seed, threads=threads)
            cells_seconds = time.perf_counter() - t0
        shard.build(metric_code, _METHOD_CODES[chosen], float64, cells, cells_n, threads, simd)
        decider = None
        if protocol == "batched" and rank == 0 and budget > 0:
            decider = _core.KCenterDecider(cols=shard.cols, dtype=shard.dtype_code,
                                           metric=metric_code, float64=float64,
                                           num_threads=threads, simd=simd,
                                           capacity=selected.size + budget)
    except Exception as e:  # noqa: BLE001 - re-raised on this rank, reported on the others
        local_error = e
    status = setup.all_gather_json("all-gather of the setup status",
                                   _error_record(local_error) if local_error else None)
    _raise_first_error(status, local_error, rank)

    comm = setup if device == setup.device else Communicator(group, device, _poll_completion)
    if protocol == "batched":
        T = batch_candidates or max(1, min(DEFAULT_BATCH_CANDIDATES,
                                           _OFFER_MAX_BYTES // shard.row_bytes))
        driver = _BatchedDriver(shard, comm, offsets, ends, rank, metric, budget, decider, T,
                                batch_max_picks or budget)
    else:
        driver = _Driver(shard, comm, offsets, ends, rank, metric, budget)
    driver.apply_selected(selected)
    if selected.size == 0 and budget > 0:
        driver.apply_start(start)
    setup_seconds = time.perf_counter() - t_setup

    # 4. The steps.
    if progress is True or progress is False or progress is None:
        bar = progress is True and rank == 0  # one bar for the whole group
    else:
        bar = progress  # the caller's tqdm, on the rank that passed it
    hook, close = make_hook(budget, bar, "k-center", "pick")
    t_select = time.perf_counter()
    comm_seconds0, comm_calls0 = comm.seconds, comm.calls
    try:
        driver.run(hook)
    finally:
        close()
    select_seconds = time.perf_counter() - t_select

    stats = DistributedKCenterStats(
        method=chosen, backend=comm.backend, device=shard.device_type, world_size=world, rank=rank,
        local_rows=shard.rows, offset=offset, total_rows=n_total, steps=driver.steps,
        ambiguous_steps=driver.ambiguous_steps, band_members=driver.band_members,
        distance_evals=shard.distance_evals, float64_accumulation=float64,
        setup_seconds=setup_seconds, cells_seconds=cells_seconds, select_seconds=select_seconds,
        communication_seconds=comm.seconds - comm_seconds0, collectives=comm.calls - comm_calls0,
        protocol=protocol, passes=driver.passes,
        batch_candidates=driver.T if protocol == "batched" else 0,
        pass_picks=np.asarray(driver.pass_picks, dtype=np.int64) if protocol == "batched" else None)
    picks, radii = driver.picks, (driver.radii if return_radii else None)
    if is_torch(local_embeddings):
        picks = torch.from_numpy(picks).to(local_embeddings.device)
        if radii is not None:
            radii = torch.from_numpy(radii).to(local_embeddings.device)
    out = [picks]
    if return_radii:
        out.append(radii)
    if return_stats:
        out.append(stats)
    return out[0] if len(out) == 1 else tuple(out)


class _Driver:
    """The step loop of one rank; every method is called on every rank in the same order."""

    def __init__(self, shard: LocalShard, comm: Communicator, offsets, ends, rank, metric, budget):
        self.shard, self.comm = shard, comm
        self.offsets, self.ends = offsets, ends
        self.rank, self.world = rank, comm.world_size
        self.offset = int(offsets[rank])
        self.cosine = metric == "cosine"
        self.budget = budget
        self.picks = np.empty(budget, dtype=np.int64)
        self.radii = np.empty(budget, dtype=np.float64)
        self.done = 0  # picks made
        self.steps = self.ambiguous_steps = self.band_members = 0
        # local rows of the centers this rank owns: the float64 tie-breaks
        # measure a candidate against them
        self.local_centers = np.empty(16, dtype=np.int64)
        self.n_local_centers = 0
        dev = comm.device
        self.row_bytes = shard.row_bytes
        self.row = torch.empty(self.row_bytes, dtype=torch.uint8, device=dev)
        self.top_send = torch.empty(4, dtype=torch.float64, device=dev)
        self.top_all = torch.empty(4 * self.world, dtype=torch.float64, device=dev)
        self.on_cpu = dev.type == "cpu"
        self.top_send_np = self.top_send.numpy() if self.on_cpu else np.empty(4, dtype=np.float64)
        # ambiguous steps: (members sent this round, largest possible exact value left)
        self.meta_send_t = torch.empty(2, dtype=torch.float64, device=dev)
        self.meta_send = self.meta_send_t.numpy() if self.on_cpu else np.empty(2, dtype=np.float64)
        self.meta_all = torch.empty(2 * self.world, dtype=torch.float64, device=dev)

    # -- ownership --------------------------------------------------------

    def owner(self, g: int) -> int:
        return int(np.searchsorted(self.ends, g, side="right"))

    def _remember_center(self, local_row: int) -> None:
        if self.n_local_centers == self.local_centers.size:
            self.local_centers = np.resize(self.local_centers, 2 * self.local_centers.size)
        self.local_centers[self.n_local_centers] = local_row
        self.n_local_centers += 1

    def _exclude_if_mine(self, g: int) -> int:
        """Local row of global index g here (after excluding it), or -1."""
        if self.owner(g) != self.rank:
            return -1
        local = g - self.offset
        self.shard.exclude(local)
        return local

    def _add_center(self, g: int, local: int) -> None:
        """Every rank: g becomes a center. Its owner broadcasts the row."""
        owner = self.owner(g)
        if local >= 0:
            self.shard.copy_row(local, self.row)
        self.comm.broadcast("broadcast of the new center's row", self.row, owner)
        self.shard.add_center(self.row, local)
        self._centers_known(self.row, 1)
        if local >= 0:
            self._remember_center(local)

    def _centers_known(self, rows: torch.Tensor, q: int) -> None:
        """Every rank: the raw rows (q x row_bytes) of the next q centers, in order."""

    @property
    def passes(self) -> int:
        return self.steps

    # -- setup ------------------------------------------------------------

    def apply_selected(self, selected: np.ndarray) -> None:
        if selected.size == 0:
            return
        rb = self.row_bytes
        chunk = max(1, min(selected.size, _SETUP_CHUNK_BYTES // rb))
        owners = np.searchsorted(self.ends, selected, side="right")
        locals_ = np.where(owners == self.rank, selected - self.offset, -1).tolist()
        for local in locals_:
            if local >= 0:
                self.shard.exclude(local)
        n_chunks = -(-selected.size // chunk)
        for c, lo in enumerate(range(0, selected.size, chunk)):
            hi = min(selected.size, lo + chunk)
            self.comm.phase = f"setup: already_selected rows, chunk {c + 1} of {n_chunks}"
            buf = torch.zeros((hi - lo) * rb, dtype=torch.uint8, device=self.comm.device)
            for j in range(lo, hi):
                if locals_[j] >= 0:
                    self.shard.copy_row(locals_[j], buf[(j - lo) * rb:(j - lo + 1) * rb])
            # exactly one rank contributes each row, the others zeros: the sum of
            # bytes is the row, bit for bit, whatever the dtype
            self.comm.all_reduce("all-reduce of the already_selected rows", buf, dist.ReduceOp.SUM)
            for j in range(lo, hi):
                self.shard.add_center(buf[(j - lo) * rb:(j - lo + 1) * rb], locals_[j])
                if locals_[j] >= 0:
                    self._remember_center(locals_[j])
            self._centers_known(buf, hi - lo)

    def apply_start(self, start: int) -> None:
        self.comm.phase = "setup: the start pick"
        self.picks[0] = start
        self.radii[0] = math.inf
        self.done = 1
        local = self._exclude_if_mine(start)
        if self.budget > 1:
            self._add_center(start, local)

    # -- steps ------------------------------------------------------------

    def run(self, hook) -> None:
        self.prev_radius = math.inf  # squared, working space
        for t in range(self.done, self.budget):
            self.comm.phase = f"step {t} of {self.budget}"
            winner, radius = self._step()
            self.steps += 1
            self._record(t, winner, radius)
            local = self._exclude_if_mine(winner)
            if t + 1 < self.budget:
                self._add_center(winner, local)
            hook(t + 1)

    def _step(self):
        v1, i1, v2, i2 = self.shard.top2()
        off = self.offset
        buf = self.top_send_np
        buf[0], buf[1] = v1, (off + i1 if i1 >= 0 else -1)
        buf[2], buf[3] = v2, (off + i2 if i2 >= 0 else -1)
        self.comm.all_gather("all-gather of the top-2 candidates", self._dev(buf, self.top_send),
                             self.top_all)
        tops = self._host(self.top_all).reshape(-1, 2)
        index = tops[:, 1]
        value = np.where(index >= 0, tops[:, 0], -np.inf)
        m = float(value.max())
        if not m >= 0:
            raise AssertionError("no candidate left on any rank")  # budget was checked
        winner = int(index[value == m].min())
        thr = m - 2.0 * self.shard.error_bound(m)
        if np.count_nonzero(value >= thr) == 1:
            return winner, m
        return self._decide_band(thr)

    def _decide_band(self, thr: float):
        """An ambiguous step: compare the band's members in float64 across ranks.

        The winner is what single-process kcenter picks: with ``top`` the
        largest exact (float64) distance to the nearest center among the band's
        members, the lowest global index among the members within
        ``exact_tolerance(top)`` of it. Members travel in rounds of at most
        ``_BAND_ROUND_BYTES`` per rank, largest computed value first, so that
        a huge band (many exact ties) never needs more memory than one round;
        the rounds stop when no member left on any rank can reach
        ``top - exact_tolerance(top)`` (its exact value is at most its computed
        value plus ``error_bound``). A typical band fits in one round: three
        collectives (sizes, members, exact minima).
        """
        self.ambiguous_steps += 1
        comm, rb, dev, shard = self.comm, self.row_bytes, self.comm.device, self.shard
        local_idx, local_val = shard.band(thr)
        local_idx = np.asarray(local_idx, dtype=np.int64)
        local_val = np.asarray(local_val, dtype=np.float64)
        order = np.lexsort((local_idx, -local_val))  # largest value first, then lowest index
        local_idx, local_val = local_idx[order], local_val[order]
        record = 8 + rb  # int64 global index, then the raw row
        per_round = max(1, _BAND_ROUND_BYTES // record)
        centers = self.local_centers[: self.n_local_centers]
        top = -math.inf
        values, indices = [], []  # exact values and global indices of the members compared
        pos, rounds = 0, 0
        while True:
            rounds += 1
            take = local_idx[pos: pos + per_round]
            pos += take.size
            # the largest exact value a member still waiting here can have
            next_upper = (local_val[pos] + shard.error_bound(local_val[pos])
                          if pos < local_idx.size else -math.inf)
            self.meta_send[0], self.meta_send[1] = take.size, next_upper
            comm.all_gather(f"all-gather of the band sizes (round {rounds})",
                            self._dev(self.meta_send, self.meta_send_t), self.meta_all)
            meta = self._host(self.meta_all).reshape(-1, 2)
            counts = meta[:, 0].astype(np.int64)
            width = int(counts.max())
            if width:
                send = torch.zeros(width * record, dtype=torch.uint8, device=dev)
                heads = torch.from_numpy((self.offset + take).view(np.uint8).reshape(-1, 8))
                for j, local in enumerate(take.tolist()):
                    send[j * record: j * record + 8].copy_(heads[j])
                    shard.copy_row(local, send[j * record + 8:(j + 1) * record])
                gathered = torch.empty(width * record * self.world, dtype=torch.uint8, device=dev)
                comm.all_gather(f"all-gather of the band members (round {rounds})", send, gathered)
                slots = [r * width + j for r in range(self.world) for j in range(int(counts[r]))]
                g = gathered.view(-1, record)[:, :8].cpu().contiguous().view(torch.int64)
                exact = torch.empty(len(slots), dtype=torch.float64)
                for k, slot in enumerate(slots):
                    exact[k] = shard.exact_min(gathered[slot * record + 8:(slot + 1) * record],
                                               centers)
                exact = exact.to(dev)
                comm.all_reduce(f"all-reduce (min) of the band's exact distances (round {rounds})",
                                exact, dist.ReduceOp.MIN)
                values.append(exact.cpu().numpy())
                indices.append(g.numpy().ravel()[slots])
                top = max(top, float(values[-1].max()))
                self.band_members += len(slots)
            if not np.any(meta[:, 1] >= top - shard.exact_tolerance(top)):
                break
        values, indices = np.concatenate(values), np.concatenate(indices)
        # As in single-process kcenter: float64 values within float64's own
        # error of the largest are ties (real ties land anywhere within it),
        # and the lowest global index among them wins.
        tied = values >= top - shard.exact_tolerance(top)
        return int(indices[tied].min()), top

    def _record(self, t: int, winner: int, radius: float) -> None:
        """Pick t is ``winner``, its squared working-space radius ``radius``."""
        self.picks[t] = winner
        self.prev_radius = min(self.prev_radius, max(radius, 0.0))
        self.radii[t] = 0.5 * self.prev_radius if self.cosine else math.sqrt(self.prev_radius)
        self.done = t + 1

    def _dev(self, host: np.ndarray, dev_tensor: torch.Tensor) -> torch.Tensor:
        """A small host array as the message tensor (a view on the CPU, a copy on a GPU)."""
        if self.on_cpu:
            return dev_tensor  # shares memory with `host`
        dev_tensor.copy_(torch.from_numpy(host))
        return dev_tensor

    def _host(self, t: torch.Tensor) -> np.ndarray:
        return t.numpy() if self.on_cpu else t.cpu().numpy()


class _BatchedDriver(_Driver):
    """The batched protocol (module docstring): passes of many picks each.

    Message buffers (on the step device): this rank's offer and the world's
    (``_core.offer_layout``), and the decision that group rank 0 broadcasts,
    int64: [picks q, the band threshold's float64 bits (q = 0), float64
    decisions so far, q global indices, q slots (rank x T + record), q
    squared radii as float64 bits], with room for T picks.
    """

    def __init__(self, shard, comm, offsets, ends, rank, metric, budget, decider, T: int,
                 cap: int):
        super().__init__(shard, comm, offsets, ends, rank, metric, budget)
        self.decider, self.T, self.cap = decider, T, cap
        self.n_passes = 0
        self.pass_picks = []  # picks of each pass
        dev = comm.device
        self.head, self.offer_bytes = _core.offer_layout(T, self.row_bytes)
        self.send = torch.zeros(self.offer_bytes, dtype=torch.uint8, device=dev)
        self.gathered = torch.empty(self.offer_bytes * self.world, dtype=torch.uint8, device=dev)
        # the gathered offers' rows: (rank, record, byte)
        self.offered_rows = self.gathered.view(self.world, self.offer_bytes)[
            :, self.head:self.head + T * self.row_bytes].unflatten(1, (T, self.row_bytes))
        self.decision = torch.zeros(3 + 3 * T, dtype=torch.int64, device=dev)
        self.decision_np = self.decision.numpy() if self.on_cpu else np.zeros(3 + 3 * T, np.int64)
        self.decided_ambiguous = 0  # float64 decisions inside passes (counted by rank 0)

    @property
    def passes(self) -> int:
        return self.n_passes

    def _centers_known(self, rows: torch.Tensor, q: int) -> None:
        if self.decider is not None:
            host = rows if rows.device.type == "cpu" else rows.cpu()
            self.decider.add_centers(rows_ptr=host.data_ptr(), q=q)

    def run(self, hook) -> None:
        self.prev_radius = math.inf  # squared, working space
        T, comm, shard = self.T, self.comm, self.shard
        while self.done < self.budget:
            t = self.done
            self.n_passes += 1
            comm.phase = f"pass {self.n_passes} (picks from {t} of {self.budget})"
            shard.offer(T, self.offset, self.send)
            comm.all_gather("all-gather of the pass's candidates", self.send, self.gathered)
            if self.decider is not None:
                self._decide(t)
            comm.broadcast("broadcast of the pass's picks", self.decision, 0)
            dec = self._host(self.decision)
            q = int(dec[0])
            self.decided_ambiguous = int(dec[2])
            if q == 0:  # nothing certified: one stepwise step, from its band on
                shard.top2()  # brings every point that may lie in the band up to date
                winner, radius = self._decide_band(float(dec[1:2].view(np.float64)[0]))
                self.steps += 1
                self.pass_picks.append(1)
                self._record(t, winner, radius)
                local = self._exclude_if_mine(winner)
                if self.done < self.budget:
                    self._add_center(winner, local)
                hook(self.done)
                continue
            picks = dec[3:3 + q].copy()
            slots = dec[3 + T:3 + T + q]
            radii = dec[3 + 2 * T:3 + 2 * T + q].view(np.float64)
            for j in range(q):
                self._record(t + j, int(picks[j]), float(radii[j]))
            self.steps += q
            self.pass_picks.append(q)
            if self.done < self.budget:
                mine = (picks >= self.offset) & (picks < self.offset + self.shard.rows)
                local_rows = np.where(mine, picks - self.offset, -1)
                slots_t = torch.from_numpy(slots.copy()).to(self.offered_rows.device)
                rows = self.offered_rows[slots_t // T, slots_t % T]  # (q, row_bytes), contiguous
                shard.add_centers(rows, local_rows)
                for local in local_rows[mine].tolist():
                    self._remember_center(local)
            hook(self.done)
        self.ambiguous_steps += self.decided_ambiguous

    def _decide(self, t: int) -> None:
        """Group rank 0: the pass's picks, from every rank's offer, into the decision."""
        T, dec = self.T, self.decision_np
        offers = self.gathered if self.on_cpu else self.gathered.cpu()
        q, thr = self.decider.decide_pass(
            offers_ptr=offers.data_ptr(), world=self.world, T=T, remaining=self.budget - t,
            cap=self.cap, picks_ptr=dec[3:].ctypes.data, slots_ptr=dec[3 + T:].ctypes.data,
            radii_ptr=dec[3 + 2 * T:].ctypes.data)
        dec[0] = q
        dec[1:2].view(np.float64)[0] = thr
        dec[2] = self.decider.ambiguous_steps
        if not self.on_cpu:
            self.decision.copy_(torch.from_numpy(dec))


__all__ = ["DistributedKCenterError", "DistributedKCenterStats", "kcenter"]
