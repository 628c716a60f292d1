"""Small torch-free helpers shared by the ML layer and the command line."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Union


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Union[str, os.PathLike], write: Callable[[IO[bytes]], None],
                 durable: bool = False) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it to
    ``path``: a crash never leaves a truncated file under the final name.
    ``durable`` also flushes the file to disk before the rename (checkpoints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp files are private (0600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def count_from_size(value: Any, n: int, name: str) -> int:
    """A size from an int count in [0, n] or a float fraction of n in [0, 1): the
    rule of every budget (``svp_fast._arrays.BUDGET_RULE``)."""
    from ._arrays import check_budget

    return check_budget(value, n, "the number of examples", name=name)
