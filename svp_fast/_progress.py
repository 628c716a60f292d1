"""Progress bars and the poll hook the core calls between steps.

The core calls ``hook(done)`` from the calling thread at most every
``poll_interval`` seconds with the GIL re-taken; Ctrl-C is checked right before
(PyErr_CheckSignals), so a long selection stops within that interval with
KeyboardInterrupt and the core's worker threads already joined.
"""

from __future__ import annotations

from typing import Callable, Optional

from tqdm.auto import tqdm


def make_hook(total: int, progress, desc: str, unit: str,
              on_poll: Optional[Callable[[int], None]] = None):
    """Return (hook, close). ``progress``: False, True, or a tqdm-like object."""
    bar = None
    if progress is True:
        bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)
    elif progress not in (False, None):
        bar = progress  # a caller's tqdm

    state = {"done": 0}

    def hook(done: int) -> None:
        if bar is not None and done > state["done"]:
            bar.update(done - state["done"])
            state["done"] = done
        if on_poll is not None:
            on_poll(done)

    def close() -> None:
        if bar is not None and progress is True:
            bar.close()

    return hook, close
