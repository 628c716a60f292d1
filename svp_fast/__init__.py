"""svp_fast: Selection via Proxy with a fast, exact selection core.

Public API:

* :func:`kcenter` - exact greedy k-center (farthest-first traversal) on CPU or GPU.
* :func:`uncertainty`, :func:`uncertainty_scores` - least confidence, entropy, margin.
* :func:`build_info` - what this build was compiled with (SIMD, OpenMP, CUDA).
"""

from ._info import build_info
from .selection import KCenterStats, kcenter, uncertainty, uncertainty_scores

__version__ = "0.1.0"

__all__ = ["KCenterStats", "build_info", "kcenter", "uncertainty", "uncertainty_scores", "__version__"]
