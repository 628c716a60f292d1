"""Shared pieces of the ML-side tests (data, models, pipelines, CLI)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from svp_fast.data import ArrayDataset, load_digits
from svp_fast.pipelines.common import ModelSetup
from svp_fast.proxy.training import TrainConfig


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine a
    second OpenMP thread waiting for a busy core can stall every step."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits():
    return load_digits()


def quick(name: str, schedule: str = "2@0.1", **kw) -> ModelSetup:
    """A model set-up that trains in a fraction of a second on digits."""
    return ModelSetup(name, TrainConfig(schedule, batch_size=64, progress=False, **kw))


def blobs(n: int = 60, classes: int = 3, dim: int = 4, seed: int = 0) -> ArrayDataset:
    """Well separated Gaussian blobs as a vector dataset."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centers = rng.normal(0, 6, (classes, dim))
    x = (centers[y] + rng.normal(0, 1, (n, dim))).astype(np.float32)
    return ArrayDataset(x, y, name="blobs")
