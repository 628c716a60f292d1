"""Run folders that are complete or absent, never half-written.

A run writes into a hidden temporary sibling (``.<name>.partial-XXXX``) and
renames it to ``<name>`` only after every file is written, so a crash or
Ctrl-C never leaves a folder that looks complete. On a Python exception the
partial folder is removed; a killed process leaves the hidden ``.partial``
folder, which is safe to delete. Writing into an existing ``<name>`` is refused
(before any work starts) unless ``overwrite=True``, which replaces it in one
step at the end (the old run stays intact until the new one is complete).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
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

    def __enter__(self) -> "RunFolder":
        parent = self.path.parent
        parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{self.path.name}.partial-"))
        # mkdtemp makes the folder private (0700); give the run the usual permissions
        os.chmod(self.tmp, 0o777 & ~current_umask())
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        self._commit()
        return False

    def _commit(self) -> None:
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
