"""Selection methods: thin wrappers over the C++/CUDA core."""

from .kcenter import KCenterStats, kcenter
from .uncertainty import uncertainty, uncertainty_scores

__all__ = ["KCenterStats", "kcenter", "uncertainty", "uncertainty_scores"]
