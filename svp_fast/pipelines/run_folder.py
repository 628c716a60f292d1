"""Run folders that are complete or absent, never half-written.

A run writes into a hidden temporary sibling (``.<name>.partial-XXXX``) and
renames it to ``<name>`` only after every file is written, so a crash or
Ctrl-C never leaves a folder that looks complete. On a Python exception the
partial folder is removed. A killed process cannot remove it: the partial
folder records who writes it (process id, host, process start time), and the
next run into the same ``<name>`` removes those whose writer is gone, saying so
on stderr, and mentions those it cannot prove abandoned (a writer that is still
running, on another host, or a folder from an older svp_fast). Writing into an
existing ``<name>`` is refused (before any work starts) unless
``overwrite=True``, which replaces it in one step at the end (the old run stays
intact until the new one is complete).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import numpy as np

from .._util import current_umask


class RunFolderExistsError(FileExistsError):
    """The run folder exists and overwrite was not asked for."""


def _json_default(o: Any):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _clean(o: Any) -> Any:
    """NaN/Inf are not JSON: write them as null."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


# inside a partial folder: who is writing it (removed before the folder is renamed)
WRITER_FILE = ".svp_fast_writer.json"


def _process_start(pid: int) -> Optional[str]:
    """The start time of process ``pid`` (Linux: clock ticks since boot), which
    tells a process from a later one that got the same id; None if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # the command name (field 2) may hold spaces: count from its ')'
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _writer_alive(writer: dict) -> Optional[bool]:
    """Whether the process that writes a partial folder still runs (None: cannot tell)."""
    if writer.get("host") != socket.gethostname():
        return None
    pid = int(writer.get("pid", -1))
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    started = _process_start(pid)
    if writer.get("started") and started and started != writer["started"]:
        return False  # the id now belongs to another process
    return True


def clean_leftovers(path: Union[str, os.PathLike], report=None) -> list:
    """Remove the partial folders of ``path`` whose writer was killed; report
    (not remove) those that may still be written. Returns the messages, each
    also passed to ``report`` (default: printed to stderr)."""
    path = Path(path)
    if report is None:
        def report(message):
            print(f"svp_fast: {message}", file=sys.stderr, flush=True)
    messages = []
    for leftover in sorted(path.parent.glob(f".{path.name}.partial-*")):
        if not leftover.is_dir():
            continue
        try:
            writer = json.loads((leftover / WRITER_FILE).read_text())
        except (OSError, ValueError):
            writer = None
        alive = _writer_alive(writer) if isinstance(writer, dict) else None
        if alive is False:
            shutil.rmtree(leftover, ignore_errors=True)
            message = (f"removed {str(leftover)!r}, the unfinished run folder of a run that was "
                       f"killed (process {writer['pid']})")
        elif alive:
            message = (f"{str(leftover)!r} is being written by another run (process "
                       f"{writer['pid']}) into {str(path)!r}; the run that finishes last wins")
        elif writer is not None:
            message = (f"{str(leftover)!r} is an unfinished run folder from host "
                       f"{writer.get('host')!r} (process {writer.get('pid')}); delete it once "
                       "that run has ended")
        else:
            message = (f"{str(leftover)!r} is an unfinished run folder of an earlier run that "
                       "did not record its process; delete it if no run is writing "
                       f"{str(path)!r}")
        messages.append(message)
        report(message)
    for old in sorted(path.parent.glob(f".{path.name}.old-*")):
        message = (f"{str(old / 'run')!r} holds the run folder that an interrupted overwrite of "
                   f"{str(path)!r} was replacing; move it back or delete it")
        messages.append(message)
        report(message)
    return messages


def check_run_folder(path: Union[str, os.PathLike], overwrite: bool) -> Path:
    """Refuse early: raise RunFolderExistsError if ``path`` exists and not ``overwrite``."""
    p = Path(path).expanduser()
    if p.exists() and not overwrite:
        raise RunFolderExistsError(f"run folder {str(p)!r} already exists; choose another "
                                   "folder or pass overwrite=True (--overwrite) to replace it")
    if p.exists() and not p.is_dir():
        raise RunFolderExistsError(f"run folder {str(p)!r} exists and is not a folder")
    return p


class RunFolder:
    """Context manager: ``with RunFolder(path) as run: run.write_json(...)``.

    Files go to ``run.tmp`` while the block runs; leaving the block normally
    moves them to ``path`` atomically.
    """

    def __init__(self, path: Union[str, os.PathLike], *, overwrite: bool = False):
        self.path = check_run_folder(path, overwrite)
        self.overwrite = overwrite
        self.tmp: Optional[Path] = None
        self.leftovers: list = []

    def __enter__(self) -> "RunFolder":
        parent = self.path.parent
        parent.mkdir(parents=True, exist_ok=True)
        self.leftovers = clean_leftovers(self.path)
        self.tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{self.path.name}.partial-"))
        # mkdtemp makes the folder private (0700); give the run the usual permissions
        os.chmod(self.tmp, 0o777 & ~current_umask())
        pid = os.getpid()
        (self.tmp / WRITER_FILE).write_text(json.dumps(
            {"pid": pid, "host": socket.gethostname(), "started": _process_start(pid)}))
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        self._commit()
        return False

    def _commit(self) -> None:
        (self.tmp / WRITER_FILE).unlink(missing_ok=True)
        old = None
        if self.path.exists():
            if not self.overwrite:
                shutil.rmtree(self.tmp, ignore_errors=True)
                raise RunFolderExistsError(f"run folder {str(self.path)!r} appeared while the run "
                                           "was going; its results were not written")
            old = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.old-"))
            os.rename(self.path, old / "run")
        os.rename(self.tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def file(self, name: str) -> Path:
        """Path of ``name`` inside the (temporary) folder."""
        if self.tmp is None:
            raise RuntimeError("use RunFolder as a context manager")
        return self.tmp / name

    def write_json(self, name: str, obj: Any) -> None:
        with open(self.file(name), "w") as f:
            json.dump(_clean(obj), f, indent=2, default=_json_default, allow_nan=False)
            f.write("\n")

    def write_npy(self, name: str, array: np.ndarray) -> None:
        np.save(self.file(name), np.asarray(array), allow_pickle=False)

    def write_csv(self, name: str, rows: Iterable[dict]) -> None:
        rows = list(rows)
        fields: list[str] = []
        for r in rows:
            fields += [k for k in r if k not in fields]
        with open(self.file(name), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if v is None else v) for k, v in r.items()})
