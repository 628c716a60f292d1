"""Checkpoints of a k-center run: stop it (a crash, SIGKILL, a time limit) and
continue later with exactly the picks and radii of an uninterrupted run.

A checkpoint (.npz, written atomically) holds the picks and radii so far and,
for CPU runs, the engine's state after them: every row's min-distance, its
lower bound on the other centers, its nearest center and how many centers it
has seen, and the last radius. A resume reads it and goes on at about the cost
of reading it, instead of re-applying every earlier pick to every row.
(CUDA runs keep the picks and the last radius; a resume there applies the
earlier picks as initial centers again, on the device.)

``svp_fast.kcenter(x, budget, checkpoint="run.ckpt.npz")`` resumes from the
file when it exists and matches this run, saves every ``checkpoint_every``
seconds, and removes it when the run completes. ``svp-fast kcenter
--checkpoint`` is the same, with the source file's identity in the check.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .._util import atomic_write

FORMAT = "svp-fast-kcenter-checkpoint/2"
# Seconds between saves, for the library and `svp-fast kcenter --checkpoint-every`
# alike: a save writes about 32 bytes a row (the engine's state), so on a
# million rows it costs a fraction of a second every ten.
DEFAULT_CHECKPOINT_EVERY = 10.0


@dataclass
class Saved:
    """What a checkpoint holds."""

    picks: np.ndarray  # int64, the run's picks so far
    radii: Optional[np.ndarray]  # float64 or None
    state: Optional[dict]  # m, m2, assign, fresh arrays, centers, prev_radius (CPU runs)
    prev_radius: float


def data_digest(m) -> str:
    """A cheap fingerprint of a matrix's contents: its first, last and 62
    evenly spaced rows (raw bytes), so that a checkpoint is not continued on
    other data of the same shape."""
    n = m.rows
    rows = np.unique(np.linspace(0, n - 1, num=min(n, 64)).astype(np.int64))
    h = hashlib.sha256()
    x = m.owner
    if m.kind == "torch":
        import torch

        sample = x.index_select(0, torch.from_numpy(rows).to(x.device)).contiguous().cpu()
        h.update(sample.view(torch.uint8).numpy().tobytes())
    else:
        h.update(np.ascontiguousarray(np.asarray(x)[rows]).tobytes())
    return h.hexdigest()


class KCenterCheckpoint:
    """A checkpoint file for one run, identified by ``facts`` (what must match
    for the file to continue this run; ``extra`` adds the caller's, e.g. the
    source file's path, size and modification time)."""

    def __init__(self, path: Any, extra: Optional[dict] = None):
        self.path = Path(path)
        self.extra = dict(extra or {})
        self.facts: dict = {}

    def bind(self, facts: dict) -> None:
        self.facts = {"format": FORMAT, **facts, **self.extra}

    def load(self) -> Optional[Saved]:
        """The saved run, None when there is no file; ValueError when the file is
        not a checkpoint or was written by a different run."""
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as z:
                saved = json.loads(bytes(z["run"]).decode())
                picks = np.array(z["picks"], dtype=np.int64)
                radii = np.array(z["radii"], dtype=np.float64) if "radii" in z.files else None
                state = None
                if "state_m" in z.files:
                    state = {k: np.array(z[f"state_{k}"]) for k in ("m", "m2", "assign", "fresh")}
                    state["centers"] = int(saved["state_centers"])
        except (OSError, ValueError, KeyError, EOFError) as e:
            raise ValueError(f"checkpoint {str(self.path)!r} is not a svp-fast k-center "
                             f"checkpoint ({type(e).__name__}: {e}); delete it to start over") from None
        run = saved.get("facts", {})
        diff = sorted(k for k in set(run) | set(self.facts) if run.get(k) != self.facts.get(k))
        if diff:
            raise ValueError(f"checkpoint {str(self.path)!r} was written by a different run "
                             f"({', '.join(diff)} differ); delete it to start over or use "
                             "another checkpoint")
        prev = float(saved.get("prev_radius", float("inf")))
        if state is not None:
            state["prev_radius"] = prev
        return Saved(picks=picks, radii=radii, state=state, prev_radius=prev)

    def save(self, picks: np.ndarray, radii: Optional[np.ndarray], prev_radius: float,
             state: Optional[dict] = None) -> None:
        meta = {"facts": self.facts, "prev_radius": float(prev_radius)}
        arrays = {"picks": np.asarray(picks, dtype=np.int64)}
        if radii is not None:
            arrays["radii"] = np.asarray(radii, dtype=np.float64)
        if state is not None:
            meta["state_centers"] = int(state["centers"])
            for k in ("m", "m2", "assign", "fresh"):
                arrays[f"state_{k}"] = state[k]
        arrays["run"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda f: np.savez(f, **arrays), durable=True)

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def as_checkpoint(value: Any) -> Optional[KCenterCheckpoint]:
    if value is None:
        return None
    if isinstance(value, KCenterCheckpoint):
        return value
    if isinstance(value, (str, os.PathLike)):
        return KCenterCheckpoint(value)
    raise TypeError(f"checkpoint must be a path or a KCenterCheckpoint, got {type(value).__name__}")


__all__ = ["KCenterCheckpoint", "Saved", "as_checkpoint", "data_digest"]
