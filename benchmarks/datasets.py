"""Embeddings for the selection benchmarks, all made offline.

* ``fashion_mnist_proxy_features``: real proxy embeddings, the SVP case. A small
  MLP (784-256-64-10) is trained for 2 epochs on Fashion-MNIST (Debian package
  dataset-fashion-mnist) and its 64-d penultimate features of the 60,000
  training images are returned. Cached as .npy next to this file.
* ``synthetic_clustered``: looks like real embeddings: many classes, each a
  Gaussian blob in a low-dimensional (``subspace`` dims) space mapped into D
  dims, plus small isotropic noise (the anchor prototype's generator).
* ``isotropic``: Gaussian noise, the worst case for any pruning.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

FASHION_DIR = Path(os.environ.get("SVP_FAST_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
CACHE = Path(__file__).resolve().parent / ".cache"


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist_train():
    img = FASHION_DIR / "train-images-idx3-ubyte.gz"
    if not img.exists():
        raise FileNotFoundError(
            f"{img} not found: install Debian's dataset-fashion-mnist "
            "(apt-get install dataset-fashion-mnist) or set SVP_FAST_FASHION_MNIST")
    x = _idx(img).reshape(-1, 784).astype(np.float32) / 255.0
    y = _idx(FASHION_DIR / "train-labels-idx1-ubyte.gz").astype(np.int64)
    return x, y


def fashion_mnist_proxy_features(epochs: int = 2, seed: int = 0) -> np.ndarray:
    """(60000, 64) float32 penultimate features of a 2-epoch MLP proxy."""
    cache = CACHE / f"fmnist_mlp_features_e{epochs}_s{seed}.npy"
    if cache.exists():
        return np.load(cache)
    import torch
    from torch import nn

    x, y = fashion_mnist_train()
    torch.manual_seed(seed)
    body = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU())
    head = nn.Linear(64, 10)
    model = nn.Sequential(body, head)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(xt.shape[0], generator=g)
        for i in range(0, xt.shape[0], 128):
            b = perm[i:i + 128]
            loss = nn.functional.cross_entropy(model(xt[b]), yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        feats = body(xt).numpy().astype(np.float32)
    CACHE.mkdir(exist_ok=True)
    np.save(cache, feats)
    return feats


def synthetic_clustered(n: int, d: int, *, classes: int = 1000, subspace: int = 32,
                        noise: float = 0.05, seed: int = 0, dtype=np.float32,
                        chunk: int = 131072) -> np.ndarray:
    """Class blobs in one random ``subspace``-dim subspace of R^d, plus noise.

    The generator of ../shared/anchors/gpu_pruned_proto.py: class centers
    ~N(0, 16) in the subspace, unit Gaussian spread around them, mapped into
    d dims by a random (subspace x d) matrix scaled by 1/sqrt(subspace), plus
    isotropic noise of std ``noise``. Generated in chunks, so an ImageNet-sized
    float16 set needs no float64 copy."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, subspace)).astype(np.float32) * 4.0
    w = rng.standard_normal((subspace, d)).astype(np.float32) / np.sqrt(subspace)
    labels = rng.integers(0, classes, n)
    out = np.empty((n, d), dtype=dtype)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        z = centers[labels[lo:hi]] + rng.standard_normal((hi - lo, subspace), dtype=np.float32)
        block = z @ w
        block += noise * rng.standard_normal((hi - lo, d), dtype=np.float32)
        out[lo:hi] = block
    return out


def isotropic(n: int, d: int, *, seed: int = 0, dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d), dtype=np.float32).astype(dtype, copy=False)


def spread_blobs(n: int, d: int, *, decay: float = 1.0, classes: int = 1000,
                 noise: float = 0.5, seed: int = 0, dtype=np.float32,
                 chunk: int = 65536) -> np.ndarray:
    """Blobs whose centers and within-blob noise spread over all ``d`` directions
    (issue 23): the variance along the k-th of d random orthogonal directions is
    proportional to k^-decay (decay 0: isotropic blobs; about 1: the spectra of
    large networks' penultimate features), class centers drawn with that spectrum
    and the rows around them with the same spectrum scaled by ``noise``^2. The
    total variance is about d (rows of norm about sqrt(d)).

    Generated in chunks through one random rotation (a d x d float32 product per
    chunk), so an ImageNet-sized float16 set needs no float64 copy."""
    rng = np.random.default_rng(seed)
    k = np.arange(1, d + 1, dtype=np.float64)
    spectrum = k ** -float(decay)
    spectrum *= d / spectrum.sum() / (1.0 + noise * noise)
    scale = np.sqrt(spectrum).astype(np.float32)
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    rot = (q * np.sign(np.diag(r))).astype(np.float32)  # Haar-distributed rotation
    centers = rng.standard_normal((classes, d), dtype=np.float32) * scale
    labels = rng.integers(0, classes, n)
    out = np.empty((n, d), dtype=dtype)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        z = rng.standard_normal((hi - lo, d), dtype=np.float32)
        z *= np.float32(noise) * scale
        z += centers[labels[lo:hi]]
        out[lo:hi] = z @ rot
    return out
