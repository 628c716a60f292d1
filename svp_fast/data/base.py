"""The dataset interface every pipeline, training loop and model factory relies on.

A :class:`Dataset` is a labelled, indexable collection; the code that trains,
infers and selects never looks inside an example. What it uses:

* ``len(dataset)``: the number of examples N.
* ``dataset.labels``: int64 numpy array (N,), classes in ``[0, num_classes)``.
* ``dataset.num_classes``: int.
* ``dataset.spec``: a :class:`DataSpec`, what a model factory needs to size a
  model for this data (modality, input shape, number of classes, extras such as
  a vocabulary size for text).
* ``dataset.batch(indices, augment=False, generator=None)``: the model inputs of
  those rows as a *tuple* of CPU tensors, ready for ``model(*inputs)``. A model
  for images gets ``(images,)``; a text model may get ``(token_ids, offsets)``.
  The dataset owns normalisation, padding or packing of variable-length inputs,
  and its own augmentation (applied only when ``augment=True``, drawing from
  ``generator`` so that runs are reproducible).

A new modality (text, audio, ...) is a new :class:`Dataset` subclass plus a
model that accepts its tuple; the training loop, inference and pipelines stay
as they are.
"""

from __future__ import annotations

import abc
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch

AUGMENTATIONS = ("none", "crop_flip")


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its inputs.

    Attributes:
        kind: "image" (inputs ``(C, H, W)`` float tensors), "vector" (``(D,)``),
            or another modality's name (e.g. "text").
        input_shape: shape of one example's first input tensor, without the
            batch dimension (None where it varies, e.g. text).
        num_classes: number of classes.
        extra: modality-specific facts (e.g. ``{"vocab_size": 30000}``).
    """

    kind: str
    input_shape: Optional[tuple]
    num_classes: int
    extra: dict = field(default_factory=dict)


class Dataset(abc.ABC):
    """Abstract labelled dataset; see the module docstring for the contract."""

    name: str = "dataset"

    @property
    @abc.abstractmethod
    def labels(self) -> np.ndarray:
        """int64 class of every example, shape (N,)."""

    @property
    @abc.abstractmethod
    def num_classes(self) -> int:
        """Number of classes."""

    @property
    @abc.abstractmethod
    def spec(self) -> DataSpec:
        """Facts a model factory sizes a model from."""

    @abc.abstractmethod
    def batch(self, indices: np.ndarray, *, augment: bool = False,
              generator: Optional[torch.Generator] = None) -> tuple:
        """Model inputs of rows ``indices`` (a 1-D int64 array) as a tuple of CPU tensors."""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def augmentation(self) -> str:
        """Name of the augmentation ``batch(augment=True)`` applies ("none" if it does nothing)."""
        return "none"

    def describe(self) -> dict:
        """JSON-able summary recorded in run folders."""
        return {"name": self.name, "size": len(self), "num_classes": self.num_classes,
                "kind": self.spec.kind,
                "input_shape": list(self.spec.input_shape) if self.spec.input_shape else None,
                "augmentation": self.augmentation}

    def __repr__(self) -> str:
        shape = self.spec.input_shape
        return (f"{type(self).__name__}(name={self.name!r}, size={len(self)}, "
                f"num_classes={self.num_classes}, input_shape={shape})")


@dataclass(frozen=True)
class Splits:
    """A dataset's training and test parts (the test part may be None)."""

    train: Dataset
    test: Optional[Dataset]


def check_labels(labels: Any, n: int, name: str = "labels",
                 num_classes: Optional[int] = None) -> tuple[np.ndarray, int]:
    """A copy of ``labels`` as int64 (n,), and the number of classes."""
    arr = np.asarray(labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the inputs, got {arr.shape}")
    if arr.dtype == bool or (arr.dtype.kind not in "iu" and arr.size):
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{name} must hold integer classes, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=True)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be >= 0, got a label {int(arr.min())}")
    top = int(arr.max()) + 1 if arr.size else 0
    if num_classes is None:
        num_classes = top
    elif top > num_classes:
        raise ValueError(f"{name} holds class {top - 1} but num_classes is {num_classes}")
    return arr, int(num_classes)


def as_indices(indices: Any, n: int, name: str = "indices") -> np.ndarray:
    """A 1-D int64 numpy array of indices in [0, n) (duplicates allowed)."""
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    arr = np.asarray(indices)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype == bool or arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.min() < 0 or arr.max() >= n:
        bad = int(arr[(arr < 0) | (arr >= n)][0])
        raise ValueError(f"{name} must be in [0, {n}), got {bad}")
    return arr


def crop_flip(images: torch.Tensor, generator: Optional[torch.Generator], padding: int = 4) -> torch.Tensor:
    """Random crop after zero padding, then a random horizontal flip, per image.

    The standard CIFAR augmentation (as in the SVP paper), done on a whole
    (B, C, H, W) batch at once: one padded copy and one gather, no Python loop.
    Padding is applied after normalisation, so pads are the mean pixel (zero).
    """
    b, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    rows = dy[:, None] + torch.arange(h)  # (B, H)
    cols = dx[:, None] + torch.arange(w)  # (B, W)
    # a flipped image reads its columns right to left
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    return padded[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def _as_tensor(values: Any) -> torch.Tensor:
    """A tensor sharing memory with ``values`` where torch allows it."""
    arr = np.asarray(values)
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)  # torch cannot view negative strides; a copy
    if not arr.flags.writeable:
        # torch warns that writing to such a tensor is undefined; this class
        # never writes to its inputs, so the shared read-only memory is safe
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(arr)
    return torch.from_numpy(arr)


class ArrayDataset(Dataset):
    """Images or feature vectors held in memory.

    Args:
        inputs: (N, C, H, W) images or (N, D) vectors; a numpy array or tensor.
            uint8 images stay uint8 in memory (4x smaller) and become float on
            each batch; they are scaled by 1/255 before normalisation.
        labels: (N,) integer classes.
        num_classes: default ``max(labels) + 1``.
        mean, std: per-channel (images) or per-feature (vectors) normalisation,
            applied after scaling; None computes them from ``inputs`` (pass the
            training set's to a test set, see :meth:`normalisation`).
        augmentation: "none" or "crop_flip" (random crop with 4-pixel padding
            and horizontal flip, for 32x32 images).
        name: shown in logs and run folders.

    The inputs are kept by reference (no copy) when they are a tensor or a
    C-contiguous array (a memory-mapped one too); other layouts are copied
    once. They are never modified.
    """

    def __init__(self, inputs: Any, labels: Any, *, num_classes: Optional[int] = None,
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                 augmentation: str = "none", name: str = "arrays"):
        x = inputs.detach() if isinstance(inputs, torch.Tensor) else _as_tensor(inputs)
        if x.device.type != "cpu":
            raise ValueError(f"inputs must be on the CPU, got a tensor on {x.device}")
        if x.dim() not in (2, 4):
            raise ValueError("inputs must be (N, D) vectors or (N, C, H, W) images, "
                             f"got shape {tuple(x.shape)}")
        if x.dtype not in (torch.uint8, torch.float16, torch.float32, torch.float64):
            raise TypeError(f"inputs must be uint8 or floating point, got {x.dtype}")
        if x.dtype.is_floating_point and x.numel() and not bool(torch.isfinite(x).all()):
            raise ValueError("inputs contain NaN or Inf")
        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")
        if augmentation == "crop_flip" and x.dim() != 4:
            raise ValueError("augmentation 'crop_flip' needs (N, C, H, W) images, "
                             f"got shape {tuple(x.shape)}")
        self._x = x
        self._labels, self._num_classes = check_labels(labels, x.shape[0], "labels", num_classes)
        self._labels.flags.writeable = False  # shared with every caller of .labels
        self._scale = 1.0 / 255.0 if x.dtype == torch.uint8 else 1.0
        self._augmentation = augmentation
        self.name = name
        channels = x.shape[1]
        if mean is None or std is None:
            m, s = self._statistics()
            mean = m if mean is None else mean
            std = s if std is None else std
        self._mean = self._per_channel(mean, channels, "mean")
        self._std = self._per_channel(std, channels, "std")
        if bool((self._std <= 0).any()):
            raise ValueError("std must be positive")
        kind = "image" if x.dim() == 4 else "vector"
        self._spec = DataSpec(kind, tuple(x.shape[1:]), self._num_classes)

    def _statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        # Chunked so that a uint8 dataset is never converted to float at once.
        dims = [0, 2, 3] if self._x.dim() == 4 else [0]
        total = torch.zeros(self._x.shape[1], dtype=torch.float64)
        total_sq = torch.zeros_like(total)
        count = 0
        for start in range(0, self._x.shape[0], 8192):
            chunk = self._x[start:start + 8192].to(torch.float64) * self._scale
            total += chunk.sum(dims)
            total_sq += (chunk * chunk).sum(dims)
            count += chunk.numel() // chunk.shape[1]
        if count == 0:
            return torch.zeros_like(total), torch.ones_like(total)
        mean = total / count
        var = (total_sq / count - mean * mean).clamp_min(0)
        # constant features (e.g. always-blank pixels of digits) keep std 1
        std = torch.where(var > 1e-12, var.sqrt(), torch.ones_like(var))
        return mean, std

    @staticmethod
    def _per_channel(values, channels: int, name: str) -> torch.Tensor:
        t = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
        if t.numel() == 1:
            t = t.expand(channels)
        if t.numel() != channels:
            raise ValueError(f"{name} must have 1 or {channels} values, got {t.numel()}")
        return t.to(torch.float32).clone()

    def normalisation(self) -> dict:
        """``{"mean": [...], "std": [...]}``: pass as keyword arguments to a test set."""
        return {"mean": self._mean.tolist(), "std": self._std.tolist()}

    @property
    def inputs(self) -> torch.Tensor:
        """The stored inputs (read-only view; do not modify)."""
        return self._x

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def spec(self) -> DataSpec:
        return self._spec

    @property
    def augmentation(self) -> str:
        return self._augmentation

    def batch(self, indices: np.ndarray, *, augment: bool = False,
              generator: Optional[torch.Generator] = None) -> tuple:
        idx = torch.from_numpy(as_indices(indices, len(self)))
        x = self._x.index_select(0, idx).to(torch.float32)
        shape = (1, -1, 1, 1) if x.dim() == 4 else (1, -1)
        x = (x * self._scale - self._mean.view(shape)) / self._std.view(shape)
        if augment and self._augmentation == "crop_flip":
            x = crop_flip(x, generator)
        return (x,)
