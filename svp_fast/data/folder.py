"""ImageNet-style class folders: ``root/<class name>/**/<image file>``.

Images are decoded with Pillow on demand (one batch at a time; pass
``num_workers`` to the training loop to decode in parallel), resized so that
the shorter side is ``image_size`` and centre-cropped to a square. Pillow is
needed only here; torchvision is not used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .base import AUGMENTATIONS, Dataset, DataSpec, Splits, as_indices, crop_flip

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _pil():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is present in the test environment
        raise ImportError("reading image folders needs Pillow: pip install pillow") from None
    return Image


def _scan(root: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Class names (sorted sub-folders) and (file, class name) pairs, sorted for reproducibility."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    items = []
    for c in classes:
        for dirpath, dirnames, filenames in os.walk(root / c, followlinks=True):
            dirnames.sort()
            for f in sorted(filenames):
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    items.append((os.path.join(dirpath, f), c))
    return classes, items


class ImageFolderDataset(Dataset):
    """Images in class folders, decoded lazily.

    Args:
        root: folder with one sub-folder per class.
        image_size: side of the square images the models get (default 32, the
            size the pre-activation ResNets were designed for).
        classes: class names in label order; default: the sorted sub-folders.
            Give the training set's to a test set so that labels agree.
        mean, std: per-channel normalisation of [0, 1] pixels (default ImageNet's).
        augmentation: "none" or "crop_flip".
    """

    def __init__(self, root, *, image_size: int = 32, classes: Optional[Sequence[str]] = None,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 augmentation: str = "none", name: Optional[str] = None):
        _pil()  # fail early, with the install hint, when Pillow is missing
        root = Path(root).expanduser()
        expected = "one sub-folder per class holding image files (" + ", ".join(IMAGE_EXTENSIONS) + ")"
        if not root.is_dir():
            what = "does not exist" if not root.exists() else "is not a folder"
            raise FileNotFoundError(f"image folder {str(root)!r} {what}; expected {expected}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")
        found, items = _scan(root)
        if not items:
            raise FileNotFoundError(f"image folder {str(root)!r} holds no images; expected {expected}")
        self.classes = list(classes) if classes is not None else found
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted({c for _, c in items if c not in index})
        if unknown:
            raise ValueError(f"image folder {str(root)!r} has classes {unknown[:5]} that are not "
                             f"among the {len(self.classes)} given classes")
        self.root = root
        self.files = [f for f, _ in items]
        self._labels = np.array([index[c] for _, c in items], dtype=np.int64)
        self._labels.flags.writeable = False
        self.image_size = image_size
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self._augmentation = augmentation
        self.name = name or root.name
        self._spec = DataSpec("image", (3, image_size, image_size), len(self.classes))

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def spec(self) -> DataSpec:
        return self._spec

    @property
    def augmentation(self) -> str:
        return self._augmentation

    def load(self, i: int) -> torch.Tensor:
        """Image ``i`` as a (3, S, S) uint8 tensor: shorter side resized to S, centre crop."""
        image = _pil()
        path = self.files[i]
        try:
            with image.open(path) as im:
                im = im.convert("RGB")
                w, h = im.size
                s = self.image_size
                scale = s / min(w, h)
                nw, nh = max(s, round(w * scale)), max(s, round(h * scale))
                im = im.resize((nw, nh), image.Resampling.BILINEAR)
                left, top = (nw - s) // 2, (nh - s) // 2
                im = im.crop((left, top, left + s, top + s))
                arr = np.asarray(im, dtype=np.uint8)
        except OSError as e:
            raise ValueError(f"cannot decode image {path!r}: {e}") from None
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)

    def batch(self, indices: np.ndarray, *, augment: bool = False,
              generator: Optional[torch.Generator] = None) -> tuple:
        idx = as_indices(indices, len(self))
        s = self.image_size
        x = torch.stack([self.load(int(i)) for i in idx]) if idx.size else torch.zeros(0, 3, s, s)
        x = (x.to(torch.float32) / 255.0 - self._mean) / self._std
        if augment and self._augmentation == "crop_flip":
            x = crop_flip(x, generator)
        return (x,)


def load_image_folder(root, *, image_size: int = 32, augmentation: Optional[str] = None) -> Splits:
    """Class folders laid out as ImageNet's: ``root/train/<class>/...`` and
    ``root/val/<class>/...`` (or ``root/test``); a ``root`` without ``train/``
    is itself the class folders of a training set without a test part.

    Default augmentation: crop and flip.
    """
    aug = "crop_flip" if augmentation is None else augmentation
    root = Path(root).expanduser()
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise FileNotFoundError(f"image folder {str(root)!r} {what}; expected train/ and val/ "
                                "sub-folders, or one sub-folder per class")
    train_dir = root / "train"
    if not train_dir.is_dir():
        return Splits(ImageFolderDataset(root, image_size=image_size, augmentation=aug,
                                         name=root.name), None)
    train = ImageFolderDataset(train_dir, image_size=image_size, augmentation=aug,
                               name=f"{root.name}/train")
    test_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    test = None
    if test_dir is not None:
        test = ImageFolderDataset(test_dir, image_size=image_size, classes=train.classes,
                                  augmentation=aug, name=f"{root.name}/{test_dir.name}")
    return Splits(train, test)
