"""Readers for the datasets svp_fast knows, all offline: nothing is downloaded.

* :func:`load_digits`: scikit-learn's bundled 8x8 digits (1,797 images).
* :func:`load_fashion_mnist`: Fashion-MNIST (or MNIST) from its four idx ``.gz``
  files; default folder ``/usr/share/datasets/fashion-mnist`` (Debian package
  ``dataset-fashion-mnist``).
* :func:`load_cifar`: CIFAR-10/100 from the extracted python-pickle folder
  (``cifar-10-batches-py`` / ``cifar-100-python``).
* :func:`load_image_folder`: ImageNet-style class folders (see
  :mod:`svp_fast.data.folder`).
* :func:`load_arrays`: ``.npz`` file or folder of ``.npy`` files.

Each returns :class:`~svp_fast.data.base.Splits` (train, test); the test part is
normalised with the training part's statistics.
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .base import AUGMENTATIONS, ArrayDataset, Splits, check_labels

PathLike = Union[str, os.PathLike]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
IDX_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def _folder(path: PathLike, what: str, expected: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what} folder {str(p)!r} does not exist; expected {expected}")
    if not p.is_dir():
        raise NotADirectoryError(f"{what} path {str(p)!r} is not a folder; expected {expected}")
    return p


def _file(folder: Path, name: str, what: str, expected: str) -> Path:
    p = folder / name
    if not p.is_file():
        raise FileNotFoundError(f"{what}: file {str(p)!r} is missing; expected {expected}")
    return p


def _augmentation(augmentation: Optional[str], shape: tuple) -> str:
    """Default: crop and flip for 32x32 images (the paper's CIFAR setting), none otherwise."""
    if augmentation is None:
        return "crop_flip" if len(shape) == 3 and shape[1:] == (32, 32) else "none"
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS} or None, got {augmentation!r}")
    return augmentation


def _splits(x_train, y_train, x_test, y_test, name: str, augmentation: Optional[str],
            num_classes: Optional[int] = None) -> Splits:
    aug = _augmentation(augmentation, tuple(x_train.shape[1:]))
    train = ArrayDataset(x_train, y_train, num_classes=num_classes, augmentation=aug,
                         name=f"{name}/train")
    test = None
    if x_test is not None:
        test = ArrayDataset(x_test, y_test, num_classes=train.num_classes, augmentation=aug,
                            name=f"{name}/test", **train.normalisation())
    return Splits(train, test)


# ----------------------------------------------------------------------------- digits

def load_digits(*, test_fraction: float = 0.25, seed: int = 0,
                augmentation: Optional[str] = None) -> Splits:
    """scikit-learn's bundled digits as (1, 8, 8) images, split by class (stratified).

    Args:
        test_fraction: share of each class held out for testing.
        seed: seed of the split (the same seed gives the same split).
    """
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    bunch = sk_digits()
    # pixel values are 0..16; store them as float32 in [0, 1]
    images = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(images, labels, test_size=test_fraction,
                                              random_state=seed, stratify=labels)
    return _splits(x_tr, y_tr, x_te, y_te, "digits", augmentation, num_classes=10)


# ----------------------------------------------------------------------------- idx (MNIST family)

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: PathLike) -> np.ndarray:
    """Read an idx file (``.gz`` or plain), the format of MNIST and Fashion-MNIST."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:  # gzip raises BadGzipFile (an OSError) or EOFError
        raise ValueError(f"cannot read idx file {str(path)!r}: {e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{str(path)!r} is not an idx file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{str(path)!r} is truncated: its header needs {header} bytes")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{str(path)!r} holds {len(data)} bytes; its header {shape} "
                         f"announces {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def load_fashion_mnist(root: Optional[PathLike] = None, *,
                       augmentation: Optional[str] = None, name: str = "fashion-mnist") -> Splits:
    """Fashion-MNIST (60,000 + 10,000 images of 28x28) from its idx ``.gz`` files.

    Args:
        root: folder holding ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
            ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``. Default:
            ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``).
            MNIST's files have the same names and layout and load the same way.
    """
    expected = ("the four Fashion-MNIST idx files " + ", ".join(IDX_FILES["train"] + IDX_FILES["test"])
                + (" (install the Debian package dataset-fashion-mnist, or pass the folder that holds them)"
                   if root is None else ""))
    folder = _folder(root if root is not None else FASHION_MNIST_DIR, name, expected)
    parts = {}
    for split, (img_name, lab_name) in IDX_FILES.items():
        images = read_idx(_file(folder, img_name, name, expected))
        labels = read_idx(_file(folder, lab_name, name, expected))
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"{name} {split}: images {images.shape} and labels {labels.shape} "
                             "do not match (expected (N, H, W) and (N,))")
        parts[split] = (images[:, None, :, :], labels.astype(np.int64))
    return _splits(*parts["train"], *parts["test"], name, augmentation, num_classes=10)


# ----------------------------------------------------------------------------- CIFAR

def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ValueError(f"cannot read CIFAR pickle {str(path)!r}: {e}") from None


def _cifar_part(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path)
    if b"data" not in d or label_key not in d:
        raise ValueError(f"CIFAR pickle {str(path)!r} lacks the keys b'data' and {label_key!r}")
    data = np.asarray(d[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"CIFAR pickle {str(path)!r}: data must be (N, 3072), got {data.shape}")
    return data.reshape(-1, 3, 32, 32), np.asarray(d[label_key], dtype=np.int64)


def load_cifar(root: PathLike, *, num_classes: int = 10, augmentation: Optional[str] = None,
               label_mode: str = "fine") -> Splits:
    """CIFAR-10 or CIFAR-100 from the python version's extracted folder.

    Args:
        root: ``cifar-10-batches-py`` (files ``data_batch_1`` .. ``data_batch_5``,
            ``test_batch``) or ``cifar-100-python`` (files ``train``, ``test``).
        num_classes: 10 or 100.
        augmentation: default "crop_flip" (as in the paper).
        label_mode: CIFAR-100 only: "fine" (100 classes) or "coarse" (20).
    """
    if num_classes not in (10, 100):
        raise ValueError(f"num_classes must be 10 or 100 for CIFAR, got {num_classes!r}")
    if num_classes == 10:
        names, test_names = [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]
        expected = "the CIFAR-10 python pickles data_batch_1 .. data_batch_5 and test_batch"
        key, n_classes = b"labels", 10
    else:
        if label_mode not in ("fine", "coarse"):
            raise ValueError(f"label_mode must be 'fine' or 'coarse', got {label_mode!r}")
        names, test_names = ["train"], ["test"]
        expected = "the CIFAR-100 python pickles train and test"
        key = b"fine_labels" if label_mode == "fine" else b"coarse_labels"
        n_classes = 100 if label_mode == "fine" else 20
    name = f"cifar{num_classes}"
    folder = _folder(root, name, expected)
    files = [_file(folder, n, name, expected) for n in names]
    test_files = [_file(folder, n, name, expected) for n in test_names]
    train_parts = [_cifar_part(p, key) for p in files]
    test_parts = [_cifar_part(p, key) for p in test_files]
    x_tr = np.concatenate([p[0] for p in train_parts])
    y_tr = np.concatenate([p[1] for p in train_parts])
    x_te = np.concatenate([p[0] for p in test_parts])
    y_te = np.concatenate([p[1] for p in test_parts])
    return _splits(x_tr, y_tr, x_te, y_te, name, augmentation, num_classes=n_classes)


# ----------------------------------------------------------------------------- plain arrays

_KEYS = (("x_train", "y_train"), ("x", "y"))


def _to_nchw(x: np.ndarray, what: str) -> np.ndarray:
    """(N, D) vectors, (N, H, W) grey images, (N, C, H, W) or (N, H, W, C) with C in {1, 3, 4}."""
    if x.ndim in (2, 4):
        if x.ndim == 4 and x.shape[1] not in (1, 3, 4) and x.shape[3] in (1, 3, 4):
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x
    if x.ndim == 3:
        return x[:, None, :, :]
    raise ValueError(f"{what} must be (N, D), (N, H, W), (N, C, H, W) or (N, H, W, C), got shape {x.shape}")


def load_arrays(path: PathLike, *, test_fraction: float = 0.2, seed: int = 0,
                augmentation: Optional[str] = None) -> Splits:
    """Inputs and labels from a ``.npz`` file or a folder of ``.npy`` files.

    Keys (npz) or file names (folder, ``<key>.npy``): ``x_train``/``y_train`` with
    optional ``x_test``/``y_test``, or ``x``/``y``. Without a test part,
    ``test_fraction`` of each class is held out (stratified, seeded). Inputs:
    (N, D) vectors, or images (N, H, W), (N, C, H, W) or (N, H, W, C); uint8
    images are scaled by 1/255, floating inputs are used as they are before
    normalisation. Loaded without pickle (``allow_pickle=False``).
    """
    p = Path(path).expanduser()
    expected = ("a .npz file or a folder of .npy files with x_train/y_train "
                "(and optionally x_test/y_test), or x/y")
    if not p.exists():
        raise FileNotFoundError(f"arrays path {str(p)!r} does not exist; expected {expected}")
    arrays: dict[str, Any] = {}
    try:
        if p.is_dir():
            for key in ("x_train", "y_train", "x_test", "y_test", "x", "y"):
                f = p / f"{key}.npy"
                if f.is_file():
                    arrays[key] = np.load(f, allow_pickle=False)
        else:
            loaded = np.load(p, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                raise ValueError(f"{str(p)!r} is a single .npy array; {expected}")
            with loaded as z:
                arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        if isinstance(e, ValueError) and expected in str(e):
            raise
        raise ValueError(f"cannot read arrays from {str(p)!r}: {e}") from None
    keys = next((k for k in _KEYS if k[0] in arrays and k[1] in arrays), None)
    if keys is None:
        raise ValueError(f"{str(p)!r} holds {sorted(arrays)}; expected {expected}")
    x, y = arrays[keys[0]], arrays[keys[1]]
    x = _to_nchw(np.asarray(x), keys[0])
    if "x_test" in arrays and "y_test" in arrays:
        x_te, y_te = _to_nchw(np.asarray(arrays["x_test"]), "x_test"), arrays["y_test"]
        x_tr, y_tr = x, y
        if x_te.shape[1:] != x_tr.shape[1:]:
            raise ValueError(f"x_test's examples have shape {x_te.shape[1:]}, x_train's {x_tr.shape[1:]}")
    else:
        from sklearn.model_selection import train_test_split

        if not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"{keys[1]} must have shape ({x.shape[0]},), got {y.shape}")
        counts = np.unique(y, return_counts=True)[1]
        stratify = y if counts.min() >= 2 else None
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction,
                                                  random_state=seed, stratify=stratify)
    y_tr, n_tr = check_labels(y_tr, x_tr.shape[0], f"{keys[1]} (training part)")
    y_te, n_te = check_labels(y_te, x_te.shape[0], "y_test" if "y_test" in arrays else keys[1])
    num_classes = max(n_tr, n_te)
    return _splits(x_tr, y_tr, x_te, y_te, p.stem, augmentation, num_classes=num_classes)
