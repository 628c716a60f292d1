"""The command line's array inputs: open a .npy, check it, and put it on a device.

``svp-fast kcenter`` and ``svp-fast uncertainty`` read an (N, D) ``.npy``
memory-mapped. Before the selection starts (and before its progress bar), one
pass in chunks of rows (:func:`load_rows`) checks that every value is finite
(and, for the cosine metric, that no row is all zeros), so that an input error
names the file, the row and the column and comes before any work. The same pass
copies the rows onto ``--device``: on ``cpu`` the selection then reads the
mapped file itself (now in the page cache; no copy in memory), on ``cuda[:N]``
each chunk goes through one pinned staging buffer into a tensor on the GPU, so
the host never holds more than one chunk beyond the mapped file.

Torch is imported only for a CUDA device.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np

NPY_MAGIC = b"\x93NUMPY"
# rows per chunk: about this many bytes (large enough for full-speed reads and
# copies, small enough for a bar that moves and a bounded staging buffer)
CHUNK_BYTES = 64 << 20


# ----------------------------------------------------------------------------- files

def open_npy(path: str, what: str) -> np.ndarray:
    """The array in ``path``, memory-mapped; ValueError/FileNotFoundError naming
    ``what`` and the file when it is missing or not a plain .npy array."""
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{what} file {path!r} is a directory, not a .npy file")
    if not p.is_file():
        raise FileNotFoundError(f"{what} file {path!r} does not exist" if not p.exists()
                                else f"{what} file {path!r} is not a regular file")
    with open(p, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    if head != NPY_MAGIC:
        if head.startswith(b"PK"):
            raise ValueError(f"{what} file {path!r} is a zip archive (.npz?), not a .npy file; "
                             "save a single array with numpy.save")
        begins = f"it begins with {head!r}" if head else "it is empty"
        raise ValueError(f"{what} file {path!r} is not a .npy file: a .npy file begins with "
                         f"{NPY_MAGIC!r} (numpy.save writes it), {begins}")
    try:
        # memory-mapped: a large file is read as the work goes, not copied
        return np.load(p, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        if "Python objects" in str(e) or "pickle" in str(e):
            raise ValueError(f"{what} file {path!r} holds Python objects (dtype object), not "
                             "numbers") from None
        raise ValueError(f"{what} file {path!r} is damaged or truncated: {e}") from None
    except EOFError as e:
        raise ValueError(f"{what} file {path!r} is damaged or truncated: {e}") from None


def check_matrix_file(x: np.ndarray, path: str, what: str, columns: str = "D") -> None:
    """An (N, D) array of float16/32/64, or a ValueError/TypeError naming the file."""
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{what} file {path!r} must hold a 2-D (N, {columns}) array with N, "
                         f"{columns} >= 1, got shape {x.shape}")
    if x.dtype.kind != "f" or x.dtype.itemsize not in (2, 4, 8):
        raise TypeError(f"{what} file {path!r} must hold float16, float32 or float64 values, "
                        f"got {x.dtype}")


# ----------------------------------------------------------------------------- devices

def device_arg(text: str) -> str:
    """argparse type of --device: cpu, cuda or cuda:N."""
    t = text.strip().lower()
    if t in ("cpu", "cuda") or re.fullmatch(r"cuda:\d+", t):
        return t
    raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")


def check_device(device: str, flag: str = "--device") -> str:
    """``device`` if this build and machine can compute there, else a ValueError
    (one line) saying why. Checked before any file is read."""
    if device == "cpu":
        return device
    from . import build_info

    if not build_info()["cuda_compiled"]:
        raise ValueError(f"{flag} {device}: this svp_fast was built without CUDA (no nvcc on "
                         "PATH at install time); reinstall with SVP_FAST_CUDA=ON on a machine "
                         f"with the CUDA toolkit, or use {flag} cpu")
    if build_info().get("cuda_emulated"):
        from . import _emulation

        return _emulation.check_device(device, flag)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        raise ValueError(f"{flag} {device} needs torch, which is not installed") from None
    if not torch.cuda.is_available():
        raise ValueError(f"{flag} {device}: torch sees no CUDA device on this machine; use "
                         f"{flag} cpu")
    count = torch.cuda.device_count()
    index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
    if index >= count:
        have = ", ".join(f"cuda:{i}" for i in range(count))
        raise ValueError(f"{flag} {device}: this machine has {count} CUDA device"
                         f"{'s' if count != 1 else ''} ({have})")
    return f"cuda:{index}"


# ----------------------------------------------------------------------------- loading

def _facts(chunk: np.ndarray, threads: int):
    from . import _core
    from ._arrays import as_matrix
    from ._threads import KCENTER_STEP, choose_threads

    m = as_matrix(chunk, "rows")
    # one pass over the chunk: a region of work like one step of a scan
    threads = choose_threads(threads, KCENTER_STEP, m.rows * m.cols * m.itemsize).threads
    return _core.shard_facts(m.ptr, m.rows, m.cols, m.row_stride, m.dtype_code, threads, "")


def load_rows(x: np.ndarray, path: str, what: str, device: str = "cpu", *,
              nonzero_rows: bool = False, chunk_rows: Optional[int] = None,
              progress: bool = True, threads: Optional[int] = None, copy: Optional[bool] = None,
              bar_delay: float = 0.5) -> Any:
    """Check ``x`` (N, D) chunk by chunk and put it on ``device``.

    Every value must be finite, and with ``nonzero_rows`` no row may be all
    zeros: otherwise a ValueError naming ``what``, the file ``path``, the row
    and the column, raised after the bar is closed. Returns ``x`` itself on the
    CPU (``copy=False``, the default there), else a torch tensor on ``device``
    holding the rows (``copy=True`` makes one on the CPU too). A tqdm bar
    (``progress``) follows the rows once the pass takes longer than
    ``bar_delay`` seconds.
    """
    from tqdm.auto import tqdm

    n, d = x.shape
    if chunk_rows is None:
        chunk_rows = max(1, CHUNK_BYTES // max(1, d * x.dtype.itemsize))
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    copy = device != "cpu" if copy is None else copy
    out = stage = None
    from . import _emulation

    # the emulated build's CUDA device keeps its memory on the host
    emulated = _emulation.EMULATED and device != "cpu"
    if copy:
        import torch

        dtype = getattr(torch, str(x.dtype))
        out = torch.empty((n, d), dtype=dtype, device="cpu" if emulated else device)
        stage = torch.empty((min(chunk_rows, n), d), dtype=dtype,
                            pin_memory=out.is_cuda)
    verb = f"loading onto {device}" if copy and device != "cpu" else "reading"
    error = None
    # a chunk is large (CHUNK_BYTES): draw every one
    with tqdm(total=n, desc=f"{verb} {Path(path).name}", unit="row", mininterval=0,
              disable=not progress, leave=False, dynamic_ncols=True, delay=bar_delay) as bar:
        for lo in range(0, n, chunk_rows):
            hi = min(n, lo + chunk_rows)
            rows = x[lo:hi]
            if stage is not None:
                host = stage[: hi - lo]
                np.copyto(host.numpy(), rows)  # one read of the file's pages
                rows = host.numpy()
            facts = _facts(rows, threads or 0)
            if facts["bad_row"] >= 0:
                error = (f"{what} file {path!r} must be finite, got {facts['bad_value']:g} at "
                         f"row {lo + facts['bad_row']}, column {facts['bad_col']}")
                break
            if nonzero_rows and facts["zero_row"] >= 0:
                error = (f"{what} file {path!r} row {lo + facts['zero_row']} is all zeros; the "
                         "cosine metric needs rows of nonzero norm")
                break
            if out is not None:
                out[lo:hi].copy_(stage[: hi - lo])  # synchronous: the stage is reused next
            bar.update(hi - lo)
    if error is not None:
        raise ValueError(error)
    if out is not None and emulated:
        out = out.as_subclass(_emulation.tensor_class())
    return out if out is not None else x


def to_numpy(a: Any) -> np.ndarray:
    """A selection's output (numpy, or a torch tensor on any device) as numpy."""
    if isinstance(a, np.ndarray):
        return a
    return a.detach().cpu().numpy()
