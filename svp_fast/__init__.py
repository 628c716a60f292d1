"""svp_fast: Selection via Proxy with a fast, exact selection core.

Selection (torch-free to import):

* :func:`kcenter` - exact greedy k-center (farthest-first traversal), CPU or CUDA.
* :func:`uncertainty`, :func:`uncertainty_scores` - least confidence, entropy, margin.
* :class:`ForgettingTracker`, :func:`forgetting` - forgetting events (Toneva et al.).
* :func:`random_selection` - seeded random subsets.
* :func:`build_info` - what this build was compiled with (SIMD, OpenMP, CUDA).

Subpackages (they import torch): ``svp_fast.data`` (datasets), ``svp_fast.proxy``
(models, training, inference), ``svp_fast.pipelines`` (core-set and active
learning), ``svp_fast.distributed`` (k-center over torch.distributed).
"""

try:
    from . import _core  # noqa: F401  (the compiled selection core)
except ImportError as _e:  # pragma: no cover - depends on how Python was started
    import os as _os

    raise ImportError(
        f"svp_fast's compiled core (_core) is not in {_os.path.dirname(__file__)}. This is "
        "usually the source folder shadowing the installed package: run from another "
        "directory than the repository root (e.g. `pytest -q python_tests`, not `python -m "
        "pytest`), or install in place with `pip install -e .`") from _e

from ._info import build_info
from .selection import (ForgettingTracker, KCenterStats, UncertaintyStats, forgetting, kcenter,
                        random_selection, uncertainty, uncertainty_scores)

__version__ = "0.1.0"

__all__ = ["ForgettingTracker", "KCenterStats", "UncertaintyStats", "build_info", "forgetting",
           "kcenter", "random_selection", "uncertainty", "uncertainty_scores", "__version__"]
