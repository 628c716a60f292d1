"""The model registry: names -> builders, below both model files.

``models.py`` (images and vectors) and ``text_models.py`` (text) register
their built-in models here when they are imported (``svp_fast.proxy``
imports both, so every built-in name is registered before any lookup), and
:func:`register_model` adds yours. :func:`create_model` builds a model by
name from a dataset's :class:`~svp_fast.data.DataSpec`; a name
``"package.module:builder"`` is imported on first use.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable, Optional

import torch

from ..data.base import DataSpec
from .classifier import Classifier

__all__ = ["MODELS", "create_model", "model_builder", "register_model"]

#: Every registered name and its builder ``builder(spec, **options) -> Classifier``.
MODELS: dict[str, Callable[..., Classifier]] = {}


def model_builder(name: str) -> Callable[..., Classifier]:
    """The builder of model ``name``: a registered name, or ``"package.module:builder"``
    (imported and registered under that name on first use, so that run folders
    and checkpoints of your own models rebuild the same way)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"model must be a non-empty string, got {name!r}")
    if name in MODELS:
        return MODELS[name]
    if ":" not in name:
        raise ValueError(f"model must be one of {', '.join(repr(m) for m in MODELS)}, or "
                         f"'package.module:builder' for a model of your own; got {name!r}")
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ImportError(f"model {name!r}: cannot import module {module_name!r} ({e}); is it "
                          "on PYTHONPATH?") from None
    builder = getattr(module, attr, None)
    if not callable(builder):
        raise ValueError(f"model {name!r}: module {module_name!r} has no callable {attr!r}")
    MODELS[name] = builder
    return builder


def register_model(name: str, builder: Callable[..., Classifier], *, replace: bool = False) -> None:
    """Make ``create_model(name, spec)`` call ``builder(spec, **options)``.

    The builder returns a :class:`Classifier` sized from the spec; it should
    raise ValueError when the spec's inputs do not suit it.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if name in MODELS and not replace:
        raise ValueError(f"model {name!r} is already registered (pass replace=True)")
    MODELS[name] = builder


def create_model(name: str, spec: DataSpec, *, seed: Optional[int] = None, **options) -> Classifier:
    """Build model ``name`` (see :data:`MODELS`) for data described by ``spec``.

    Args:
        spec: the dataset's :class:`~svp_fast.data.DataSpec` (``dataset.spec``).
        seed: seeds the initial weights without touching the global RNG.
        options: passed to the builder (e.g. ``hidden=(128,)`` for MLPs,
            ``channels=(8, 16)`` for CNNs, ``width=2`` for ResNets).
    """
    builder = model_builder(name)
    if not isinstance(spec, DataSpec):
        raise TypeError(f"spec must be a DataSpec (dataset.spec), got {type(spec).__name__}")
    if seed is None:
        model = builder(spec, **options)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = builder(spec, **options)
    if not isinstance(model, Classifier):
        raise TypeError(f"the builder of model {name!r} returned {type(model).__name__}, "
                        "not a Classifier")
    # what save_checkpoint records so that load_checkpoint can rebuild the model
    model._svp_build = {"name": name, "spec": dataclasses.asdict(spec), "options": dict(options)}
    return model
