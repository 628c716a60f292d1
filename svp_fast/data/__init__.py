"""Datasets for svp_fast, read from local files only (nothing is downloaded).

The dataset interface (:class:`Dataset`, documented in :mod:`svp_fast.data.base`)
is what the training loop, inference and pipelines use: ``len``, ``labels``
(int64 numpy), ``num_classes``, ``spec`` (a :class:`DataSpec` for sizing
models) and ``batch(indices, augment=False, generator=None)`` returning a tuple
of input tensors for ``model(*inputs)``.

:func:`load_dataset` opens one by name; the names are in :data:`DATASETS`:

=================  ==========================================================
``digits``         scikit-learn's bundled 8x8 digits (no files needed)
``fashion-mnist``  idx ``.gz`` files; default folder /usr/share/datasets/fashion-mnist
``cifar10``        extracted ``cifar-10-batches-py`` folder (``root`` required)
``cifar100``       extracted ``cifar-100-python`` folder (``root`` required)
``imagefolder``    ImageNet-style ``train/`` and ``val/`` class folders (``root`` required)
``arrays``         a ``.npz`` file or a folder of ``.npy`` files (``root`` required)
``amazon-csv``     text in the Amazon Review / Yelp CSV layout (class number from 1,
                   then title and body, or body); a file or a folder with
                   ``train.csv`` and ``test.csv`` (``root`` required)
``text-csv``       text in a CSV with a header: ``text`` and ``label`` columns, or
                   those named by ``text_field`` / ``label_field``
``jsonl``          text as JSON lines: ``{"text": ..., "label": ...}``
=================  ==========================================================

Text datasets are tokenised, hashed and cached once (see
:mod:`svp_fast.data.text`); their options are those of :func:`load_text`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from .base import ArrayDataset, Dataset, DataSpec, Splits, crop_flip
from .folder import ImageFolderDataset, load_image_folder
from .readers import load_arrays, load_cifar, load_digits, load_fashion_mnist, read_idx
from .text import TextDataset, TextFormatError, load_text, text_loader


def _needs_root(name: str, loader: Callable, expected: str) -> Callable:
    def load(root=None, **options):
        if root is None:
            raise ValueError(f"dataset {name!r} needs a root: {expected}")
        return loader(root, **options)
    return load


def _digits(root=None, **options):
    if root is not None:
        raise ValueError("dataset 'digits' is bundled with scikit-learn and takes no root, "
                         f"got {str(root)!r}")
    return load_digits(**options)


DATASETS: dict[str, Callable[..., Splits]] = {
    "digits": _digits,
    "fashion-mnist": lambda root=None, **o: load_fashion_mnist(root, **o),
    "cifar10": _needs_root("cifar10", lambda r, **o: load_cifar(r, num_classes=10, **o),
                           "the extracted cifar-10-batches-py folder"),
    "cifar100": _needs_root("cifar100", lambda r, **o: load_cifar(r, num_classes=100, **o),
                            "the extracted cifar-100-python folder"),
    "imagefolder": _needs_root("imagefolder", load_image_folder,
                               "a folder with train/ and val/ class folders"),
    "arrays": _needs_root("arrays", load_arrays, "a .npz file or a folder of .npy files"),
    "amazon-csv": text_loader("amazon-csv"),
    "text-csv": text_loader("text-csv"),
    "jsonl": text_loader("jsonl"),
}


def load_dataset(name: str, root: Optional[Any] = None, **options) -> Splits:
    """Open dataset ``name`` (see :data:`DATASETS`), from ``root`` where it needs one.

    ``options`` go to the reader (e.g. ``augmentation="none"``, ``image_size=64``,
    ``test_fraction=0.2``). Raises ValueError for an unknown name and
    FileNotFoundError (naming the path and the files expected) for missing data.
    """
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(repr(d) for d in DATASETS)}, got {name!r}")
    return DATASETS[name](root, **options)


__all__ = ["ArrayDataset", "DATASETS", "DataSpec", "Dataset", "ImageFolderDataset", "Splits",
           "TextDataset", "TextFormatError", "crop_flip", "load_arrays", "load_cifar",
           "load_dataset", "load_digits", "load_fashion_mnist", "load_image_folder", "load_text",
           "read_idx"]
