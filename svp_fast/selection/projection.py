"""A few principal directions of the embeddings, for the pruned k-center's
per-member bound.

For a new center c, the pruned engine reads a member's row only when no bound
proves that c cannot be nearer than the member's current center. With V the
(k x D) directions (spectral norm at most 1, spanning the projector Pi) and mu
a fixed shift, Pythagoras gives, for every x and c,

    ||x - c||^2 = ||Pi(x - c)||^2 + ||(I - Pi)(x - c)||^2
               >= ||V(x - mu) - V(c - mu)||^2 + (rho(x) - rho(c))^2,

with rho(x) = ||(I - Pi)(x - mu)||. So k stored floats per row (and rho)
bound its distance from below: on embeddings whose spread lies mostly in a
few directions (the synthetic ImageNet-sized set of the benchmarks: 32;
proxy features after their first components), this rules out nearly every
member the cells' annuli leave, at k * 4 bytes read instead of the row.

Everything is computed in float64 and every rounding is bounded: the stored
float32 coordinates come with ``err`` (a bound on the Euclidean norm of their
error) and rho with an interval [``resid_lo``, ``resid_hi``], so the engine's
bound is a true lower bound and the picks stay exactly the scan's.

The directions come from ``torch.svd_lowrank`` on a sample; any directions
would be exact, good ones prune more.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .._arrays import Matrix
from .cells import _take

# rows of float64 working space per chunk of the projection pass
_CHUNK_BYTES = 64 << 20
# The projection pays only when a row is much wider than a test's reads (k
# floats and three doubles). Measured side by side (200,000 rows, 10,000
# picks, pruned with and without it): 1 KB rows (256 float32) 0.9x, 2 KB rows
# (512 float32, 1024 float16) 1.6x, 4 KB rows (2048 float16, the ImageNet-
# sized set) 3.7x.
MIN_ROW_BYTES = 2048
# k is the smallest of these that keeps the sample's residual variance under
# RESIDUAL_TARGET (and at most cols / 8); with none, the largest, when its
# residual is under RESIDUAL_MAX; otherwise no projection.
DIMS = (16, 32, 64)
RESIDUAL_TARGET = 0.05
RESIDUAL_MAX = 0.3
SAMPLE_ROWS = 8192

_U64 = 2.0**-53


@dataclass
class Projection:
    """The rows' coordinates on ``dims`` directions with their error bounds,
    in row order (see the module docstring)."""

    coords: np.ndarray    # float32 [N, dims], in units of coord_scale
    err: np.ndarray       # float64 [N]: bound on ||coord_scale * coords[i] - V(x_i - mu)||
    resid_lo: np.ndarray  # float64 [N]: rho(x_i) >= resid_lo[i]
    resid_hi: np.ndarray  # float64 [N]: rho(x_i) <= resid_hi[i]
    residual_fraction: float  # of the sample's variance outside the directions
    directions: np.ndarray  # float64 [dims, D]: V (spectral norm <= 1)
    shift: np.ndarray       # float64 [D]: mu
    # a power of two that brings the coordinates near 1 (float32 holds
    # embeddings of 1e-150 or 1e150 then; multiplying by it is exact)
    coord_scale: float = 1.0
    seconds: float = 0.0

    @property
    def dims(self) -> int:
        return int(self.coords.shape[1])

    def core_args(self) -> dict:
        """The core's ``projection`` argument (pointers; keep self alive)."""
        return {"coords": self.coords.ctypes.data, "dims": self.dims,
                "err": self.err.ctypes.data, "resid_lo": self.resid_lo.ctypes.data,
                "resid_hi": self.resid_hi.ctypes.data,
                "directions": self.directions.ctypes.data, "shift": self.shift.ctypes.data,
                "scale": float(self.coord_scale)}


def choose_dims(sigma2: np.ndarray, total: float, cols: int,
                itemsize: int = 4) -> tuple[int, float]:
    """(k, residual fraction) from a sample's squared singular values
    (descending) and its total variance, for rows of ``cols`` elements of
    ``itemsize`` bytes; k = 0: no projection pays."""
    if cols * itemsize < MIN_ROW_BYTES or not total > 0:
        return 0, 1.0
    allowed = [k for k in DIMS if k <= cols // 8 and k <= sigma2.size]
    if not allowed:
        return 0, 1.0
    resid = {k: max(0.0, 1.0 - float(sigma2[:k].sum()) / total) for k in allowed}
    for k in allowed:
        if resid[k] <= RESIDUAL_TARGET:
            return k, resid[k]
    k = allowed[-1]
    return (k, resid[k]) if resid[k] <= RESIDUAL_MAX else (0, resid[k])


def spread_residual(m: Matrix, *, metric: str = "euclidean", seed: int = 0, k: int = max(DIMS),
                    rows: int = 1024) -> float:
    """The share of the variance of held-out rows that lies outside the top
    ``k`` principal directions of other rows: the principal directions of half
    of ``rows`` sampled rows, measured on the other half (held out, so that a
    spread the sample cannot resolve is not mistaken for a few directions, as
    the in-sample share would be: 1,024 rows of isotropic noise in 2,048
    columns put 14% of their variance in their own top 64 directions, 3% of
    the true one). A cheap guide (about 2^29 float64 multiply-adds at 2,048
    columns) for ``method="auto"``: above RESIDUAL_MAX no projection is built,
    and the pruned engine on wide rows without it costs more than the lazy
    engine (BENCHMARKS.md, issue 23). Never affects picks. 1.0 for fewer
    than 2 k rows."""
    n, d = m.rows, m.cols
    s = int(min(n, rows))
    if s < 2 * k or d <= k:
        return 0.0 if d <= k else 1.0
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=s, replace=False)) if s < n else np.arange(n)
    x = _working(_take(m, idx), metric == "cosine", np.empty((s, d), dtype=np.float64))
    x = x[rng.permutation(s)]
    a, b = x[: s // 2], x[s // 2:]
    mu = a.mean(axis=0)
    a = a - mu
    b = b - mu
    peak = float(np.abs(a).max())
    if not peak > 0:
        return 0.0
    a /= peak
    b /= peak
    with _one_blas_thread():  # a BLAS pool spinning on a busy machine took 10x longer
        w, u = np.linalg.eigh(a @ a.T)  # a's right singular vectors: a^T u / sqrt(w)
        top = np.argsort(w)[::-1][:k]
        top = top[w[top] > w.max() * 1e-12]
        v = (u[:, top].T @ a) / np.sqrt(w[top])[:, None]  # (k, d), orthonormal rows
        total = float(np.einsum("ij,ij->", b, b))
        bv = b @ v.T
    if not total > 0:
        return 0.0
    inside = float(np.einsum("ij,ij->", bv, bv))
    return float(min(1.0, max(0.0, 1.0 - inside / total)))


def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits  # scikit-learn's dependency
    except ImportError:  # pragma: no cover
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, "blas")


def _working(x: np.ndarray, normalize: bool, out: np.ndarray) -> np.ndarray:
    """Rows in the engine's working space, float64, into ``out``."""
    np.copyto(out, x, casting="unsafe")
    if normalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-300)
    return out


def build_projection(m: Matrix, *, metric: str = "euclidean", seed: int = 0,
                     dims: Optional[int] = None,
                     sample_rows: int = SAMPLE_ROWS) -> Optional[Projection]:
    """The projection of a CPU matrix's rows for the pruned engine, or None
    when it would not pay (rows under MIN_ROW_BYTES, or spread over too many
    directions).

    ``dims`` forces k (0: none). The rows must be finite (validated first).
    Costs one pass over the rows (a float64 product with k columns) and
    N * (4k + 24) bytes; about 7 s for 1,281,167 x 2048 float16 rows on two
    cores."""
    t0 = time.perf_counter()
    n, d = m.rows, m.cols
    if dims == 0 or (dims is None and d * m.itemsize < MIN_ROW_BYTES):
        return None
    import torch  # here: its import takes about a second, and narrow rows never need it
    normalize = metric == "cosine"
    rng = np.random.default_rng(seed)
    s = int(min(n, sample_rows))
    idx = np.sort(rng.choice(n, size=s, replace=False)) if s < n else np.arange(n)
    sample = _working(_take(m, idx), normalize, np.empty((s, d), dtype=np.float64))
    mu = sample.mean(axis=0)
    sample -= mu
    total = float(np.einsum("ij,ij->", sample, sample))
    q = int(min(d, s, max(DIMS) + 8))
    if q < 1 or not total > 0:
        return None
    # the directions do not depend on the scale, but svd_lowrank's power
    # iterations (products of three factors) underflow or overflow far from 1
    peak = float(np.abs(sample).max())
    with torch.random.fork_rng(devices=[]):  # svd_lowrank draws from the global RNG
        torch.manual_seed(seed)
        _, sv, vecs = torch.svd_lowrank(torch.from_numpy(sample / peak), q=q, niter=3)
    sigma2 = (sv.numpy().astype(np.float64) * peak) ** 2
    if dims is None:
        k, resid = choose_dims(sigma2, total, d, m.itemsize)
        if k == 0:
            return None
    else:
        k = int(min(dims, q))
        resid = max(0.0, 1.0 - float(sigma2[:k].sum()) / total)
    V = np.ascontiguousarray(vecs.numpy()[:, :k].T, dtype=np.float64)  # (k, D)

    # Scale V so its spectral norm is at most 1, and bound its smallest
    # singular value: G = V V^T is computed with entries off by at most
    # gamma_D (rows of norm ~1), so its eigenvalues by at most k * gamma_D.
    gamma = d * _U64 / (1 - d * _U64)
    eps_g = 1e-9 + k * gamma
    lam = np.linalg.eigvalsh(V @ V.T)
    scale = math.sqrt(float(lam.max()) + eps_g) * (1 + 1e-12)
    V /= scale
    smin2 = (float(lam.min()) - eps_g) / scale**2 * (1 - 1e-12)
    if not smin2 > 0:  # directions not independent (cannot happen for svd output)
        return None
    mu = np.ascontiguousarray(mu, dtype=np.float64)
    mu_norm = float(np.linalg.norm(mu))
    cpeak = float(np.abs(sample @ V.T).max())
    coord_scale = 2.0 ** round(math.log2(cpeak)) if cpeak > 0 else 1.0
    del sample
    # float32 rounding (2^-24 of each coordinate) and, below float32's normal
    # range, its absolute granularity, both in the data's units
    tiny32 = math.sqrt(k) * 2.0**-126 * coord_scale

    coords = np.empty((n, k), dtype=np.float32)
    err = np.empty(n, dtype=np.float64)
    rlo = np.empty(n, dtype=np.float64)
    rhi = np.empty(n, dtype=np.float64)
    chunk = max(1, _CHUNK_BYTES // (8 * d))
    buf = np.empty((min(chunk, n), d), dtype=np.float64)
    vt = np.ascontiguousarray(V.T)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        x = _working(_take(m, slice(lo, hi)), normalize, buf[: hi - lo])
        x -= mu
        p = x @ vt
        nx2 = np.einsum("ij,ij->i", x, x)
        nxc = np.sqrt(nx2)
        c = coords[lo:hi]
        np.copyto(c, p / coord_scale, casting="same_kind")
        # the engine's rows against these (cosine: its own normalisation),
        # and x - mu's rounding; both maps are 1-Lipschitz
        slack = 1e-9 * (nxc + mu_norm)
        # the product's error (sqrt(k) gamma_D ||x - mu||), then float32's
        dv = math.sqrt(k) * gamma * nxc
        c64 = c.astype(np.float64)
        cn = np.sqrt(np.einsum("ij,ij->i", c64, c64)) * coord_scale
        err[lo:hi] = 2.0**-23 * cn + tiny32 + dv + slack
        pn = np.sqrt(np.einsum("ij,ij->i", p, p))
        pn_lo = np.maximum(0.0, pn * (1 - 1e-12) - dv - slack)
        pn_hi = pn * (1 + 1e-12) + dv + slack
        lo2 = nx2 * (1 - gamma - 1e-12) - pn_hi**2 / smin2
        hi2 = nx2 * (1 + gamma + 1e-12) - pn_lo**2
        rlo[lo:hi] = np.maximum(0.0, np.sqrt(np.maximum(lo2, 0.0)) * (1 - 1e-12) - slack)
        rhi[lo:hi] = np.sqrt(np.maximum(hi2, 0.0)) * (1 + 1e-12) + slack
    return Projection(coords=coords, err=err, resid_lo=rlo, resid_hi=rhi,
                      residual_fraction=resid, directions=V, shift=mu, coord_scale=coord_scale,
                      seconds=time.perf_counter() - t0)
