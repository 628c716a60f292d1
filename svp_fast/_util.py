"""Small torch-free helpers shared by the ML layer and the command line."""

from __future__ import annotations

import numbers
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
    """A size from an int count in [0, n] or a float fraction in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a count or a fraction, got {type(value).__name__} {value!r}")
    if isinstance(value, numbers.Integral):
        if not 0 <= int(value) <= n:
            raise ValueError(f"{name} must be in [0, {n}] examples, got {int(value)}")
        return int(value)
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} as a fraction must be in [0, 1], got {value}")
    return int(round(float(value) * n))
