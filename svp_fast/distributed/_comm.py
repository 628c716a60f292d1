"""The few collectives distributed k-center needs, over a torch.distributed group.

One class, :class:`Communicator`, owns the group, this rank's place in it, the
device the messages live on, and preallocated message buffers. Every
collective goes through :meth:`Communicator._run`, which turns a failure (a
peer that died, a peer that stopped answering within the process-group
timeout) into a :class:`DistributedKCenterError` naming the collective, the
step and the timeout, on every surviving rank.

Gloo and NCCL take the same code path: the same collectives, issued
asynchronously and waited for in one place. The only difference is how the
wait is done: gloo's own wait honours the process-group timeout and raises;
NCCL's wait only orders CUDA streams, so for NCCL the host polls
``Work.is_completed()`` against the same deadline (the message reaches the host
anyway: the picks are decided on the host).
"""

from __future__ import annotations

import datetime
import json
import time
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist


# torch 2.13 renamed all_gather_into_tensor (deprecated, with a FutureWarning) to
# all_gather_single; older releases only have the former.
_all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


class DistributedKCenterError(RuntimeError):
    """A collective of distributed k-center failed: another rank died, stalled,
    or is running something else (different arguments, another collective)."""


def backend_map(group) -> dict:
    """{"cpu": "gloo", "cuda": "nccl", ...} for the group."""
    try:
        config = dist.get_backend_config(group)
    except AttributeError:  # pragma: no cover - torch < 2.1
        config = str(dist.get_backend(group))
    out = {}
    for part in config.split(","):
        part = part.strip()
        if ":" in part:
            device, backend = part.split(":", 1)
            out[device.strip()] = backend.strip()
        elif part:
            # a plain backend name: gloo and mpi move CPU tensors, NCCL CUDA ones
            out["cuda" if part == "nccl" else "cpu"] = part
            if part == "gloo":
                out.setdefault("cuda", "gloo")
    return out


def group_timeout_seconds(group, device: torch.device, backend: str) -> float:
    """The timeout the group's collectives honour (seconds)."""
    try:
        pg = group if group is not None else dist.group.WORLD
        return pg._get_backend(device).options._timeout.total_seconds()
    except Exception:  # private API moved: fall back to torch's documented default
        try:
            return dist.distributed_c10d._get_default_timeout(backend).total_seconds()
        except Exception:  # pragma: no cover
            return datetime.timedelta(minutes=30).total_seconds()


class Communicator:
    """Collectives of one distributed k-center run.

    Args:
        group: the process group (None: the default group).
        device: where message tensors live (CPU for gloo, the shard's CUDA
            device for NCCL).
        poll_completion: wait by polling ``is_completed()`` (NCCL) instead of
            the backend's blocking wait (gloo). None: poll for NCCL only.
    """

    def __init__(self, group, device: torch.device, poll_completion: Optional[bool] = None):
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.device = device
        backends = backend_map(group)
        self.backend = backends.get(device.type, "?")
        self.timeout_s = group_timeout_seconds(group, device, self.backend)
        self.poll_completion = (self.backend == "nccl") if poll_completion is None else poll_completion
        self.phase = "setup"  # where the run is, for error messages
        self.seconds = 0.0  # time spent inside collectives (waiting included)
        self.calls = 0
        # global rank of each group rank (broadcast takes global ranks)
        self._global = [dist.get_global_rank(group, r) if group is not None else r
                        for r in range(self.world_size)]

    # -- plumbing ---------------------------------------------------------

    def _run(self, what: str, start):
        """Issue a collective (``start(async_op=True)`` returns a Work) and wait for it."""
        t0 = time.perf_counter()
        try:
            work = start()
            if work is not None:
                self._wait(work, what)
        except DistributedKCenterError:
            raise
        except Exception as e:  # RuntimeError / DistBackendError / TimeoutError from the backend
            raise self._error(what, e) from e
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1

    def _wait(self, work, what: str) -> None:
        if not self.poll_completion:
            work.wait()
            return
        deadline = time.monotonic() + self.timeout_s
        spins = 0
        while not work.is_completed():
            spins += 1
            if spins > 2000:  # the common case completes while spinning; then back off
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no completion within {self.timeout_s:g} s")
                time.sleep(min(1e-3, 1e-6 * spins))
        work.wait()  # raises the backend's error, if any

    def _error(self, what: str, cause: BaseException) -> DistributedKCenterError:
        return DistributedKCenterError(
            f"svp_fast.distributed.kcenter: {what} failed on rank {self.rank} of "
            f"{self.world_size} at {self.phase} ({self.backend}, process-group timeout "
            f"{self.timeout_s:g} s): {type(cause).__name__}: {cause}\n"
            "Another rank has probably died, stalled, or is not running the same selection "
            "(same budget, arguments and group on every rank); see the other ranks' logs.")

    def global_rank(self, group_rank: int) -> int:
        return self._global[group_rank]

    # -- collectives --------------------------------------------------------

    def all_gather(self, what: str, send: torch.Tensor, out: torch.Tensor) -> None:
        """``out`` (world_size * send.numel(), same dtype) receives every rank's ``send``."""
        self._run(what, lambda: _all_gather_single(out, send, group=self.group, async_op=True))

    def broadcast(self, what: str, buf: torch.Tensor, src_group_rank: int) -> None:
        src = self.global_rank(src_group_rank)
        self._run(what, lambda: dist.broadcast(buf, src=src, group=self.group, async_op=True))

    def all_reduce(self, what: str, buf: torch.Tensor, op) -> None:
        self._run(what, lambda: dist.all_reduce(buf, op=op, group=self.group, async_op=True))

    def all_gather_json(self, what: str, obj: Any) -> list:
        """Every rank's JSON-able ``obj``, in rank order (two collectives)."""
        payload = np.frombuffer(json.dumps(obj, sort_keys=True).encode(), dtype=np.uint8)
        n = torch.tensor([payload.size], dtype=torch.int64, device=self.device)
        sizes = torch.empty(self.world_size, dtype=torch.int64, device=self.device)
        self.all_gather(what + " (sizes)", n, sizes)
        sizes = sizes.cpu().tolist()
        width = max(sizes)
        send = torch.zeros(width, dtype=torch.uint8)
        send[: payload.size] = torch.from_numpy(payload.copy())
        send = send.to(self.device)
        out = torch.empty(width * self.world_size, dtype=torch.uint8, device=self.device)
        self.all_gather(what, send, out)
        raw = out.cpu().numpy().reshape(self.world_size, width)
        return [json.loads(raw[r, : sizes[r]].tobytes().decode()) for r in range(self.world_size)]
