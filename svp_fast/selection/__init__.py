"""Selection methods: thin wrappers over the C++/CUDA core (k-center, uncertainty)
and the small pure-Python ones (forgetting events, random)."""

from .forgetting import ForgettingTracker, forgetting
from .kcenter import KCenterStats, kcenter
from .random import random_selection
from ._plan import UncertaintyStats
from .uncertainty import uncertainty, uncertainty_scores

__all__ = ["ForgettingTracker", "KCenterStats", "UncertaintyStats", "forgetting", "kcenter",
           "random_selection", "uncertainty", "uncertainty_scores"]
