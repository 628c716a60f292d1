"""Progress bars and the poll hook the core calls between steps.

The core calls ``hook(done)`` from the calling thread at most every
``poll_interval`` seconds with the GIL re-taken; Ctrl-C is checked right before
(PyErr_CheckSignals), so a long selection stops within that interval with
KeyboardInterrupt and the core's worker threads already joined.

The bar appears at the first call of the hook, not before: the core checks its
input (NaN, Inf, zero rows for the cosine metric) before it polls, so an input
error is never printed after a bar that looked like work had started.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Optional

import numpy as np
from tqdm.auto import tqdm


def check_progress(progress: Any, name: str = "progress"):
    """``progress`` as False (no bar), True (a tqdm bar) or a caller's tqdm-like
    object (anything with ``update(n)``); TypeError naming ``name`` otherwise."""
    if progress is None or isinstance(progress, (bool, np.bool_)):
        return bool(progress)
    if isinstance(progress, numbers.Integral) and int(progress) in (0, 1):
        return bool(progress)
    if callable(getattr(progress, "update", None)):
        return progress
    raise TypeError(f"{name} must be True, False or a tqdm-like object with update(n), got "
                    f"{type(progress).__name__} {progress!r}")


# A k-center run's first picks cost the most (every point's bound moves; later
# picks touch few points), so a rate measured on them overestimates the time
# left many times over (the issue: 1:52 shown for a 4 s run). The bar shows
# no estimate until this share of the work is done, then tqdm's.
ESTIMATE_AFTER = 0.1
NO_ESTIMATE_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<?, {rate_fmt}{postfix}]"


def make_hook(total: int, progress, desc: str, unit: str,
              on_poll: Optional[Callable[[int], None]] = None):
    """Return (hook, close). ``progress``: False, True, or a tqdm-like object.
    ``hook.state["bar"]`` is the bar once shown."""
    progress = check_progress(progress)
    state = {"done": 0, "bar": None if progress is True or progress is False else progress}

    def hook(done: int) -> None:
        bar = state["bar"]
        if bar is None and progress is True:
            bar = state["bar"] = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True,
                                      leave=False, bar_format=NO_ESTIMATE_FORMAT)
        if bar is not None and done > state["done"]:
            if progress is True and bar.bar_format is not None and \
                    done >= ESTIMATE_AFTER * total:
                bar.bar_format = None  # tqdm's own format, with the time left
            bar.update(done - state["done"])
            state["done"] = done
        if on_poll is not None:
            on_poll(done)

    hook.state = state

    def close() -> None:
        if state["bar"] is not None and progress is True:
            state["bar"].close()

    return hook, close
