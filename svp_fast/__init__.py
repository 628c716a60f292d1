"""svp_fast: Selection via Proxy with a fast, exact selection core.

Selection (torch-free to import):

* :func:`kcenter` - exact greedy k-center (farthest-first traversal), CPU or CUDA.
* :func:`uncertainty`, :func:`uncertainty_scores` - least confidence, entropy, margin.
* :class:`ForgettingTracker`, :func:`forgetting` - forgetting events (Toneva et al.).
* :func:`random_selection` - seeded random subsets.
* :func:`build_info` - what this build was compiled with (SIMD, OpenMP, CUDA).

From your model and data (these import torch on first use):

* :func:`model_outputs` - features and logits of a torch Dataset, DataLoader or
  Hugging Face dataset from one pass of any torch model.
* :func:`select` - then k-center or uncertainty: the indices and a
  ``torch.utils.data.Subset`` to train the target on.

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

# From a model and data to a selection (svp_fast.proxy.outputs): they import
# torch, so they load on first use and `import svp_fast` stays torch-free.
_FROM_MODEL = ("ModelOutputs", "Selection", "model_outputs", "select")


def __getattr__(name: str):
    if name in _FROM_MODEL:
        from .proxy import outputs

        return getattr(outputs, name)
    raise AttributeError(f"module 'svp_fast' has no attribute {name!r}")

__all__ = ["ForgettingTracker", "KCenterStats", "ModelOutputs", "Selection", "UncertaintyStats",
           "build_info", "forgetting", "kcenter", "model_outputs", "random_selection", "select",
           "uncertainty", "uncertainty_scores", "__version__"]
