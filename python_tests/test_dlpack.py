"""Any array library through DLPack: read in place (same data pointer, no copy),
outputs back in the caller's library where it takes them (CuPy, JAX), otherwise
numpy for CPU input and torch for CUDA input.

CI runs the CPU path through numpy's and torch's DLPack, behind a stand-in class
that offers nothing but ``__dlpack__`` and ``__dlpack_device__`` (a library
svp_fast knows nothing about). The CuPy and JAX tests run where those are
installed (JAX's CPU tests on any machine with jax; the GPU ones on a GPU).
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

import svp_fast
from conftest import cuda_available, cuda_skip_reason, on_gpu, to_gpu
from svp_fast._arrays import as_matrix, speaks_dlpack, to_callers_library

# JAX takes 75% of a GPU's memory at its first use unless told otherwise
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


class UnknownLibraryArray:
    """An array of a library svp_fast has never heard of: DLPack and nothing else."""

    def __init__(self, base):
        self._base = base

    def __dlpack__(self, **kwargs):
        return self._base.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._base.__dlpack_device__()


def _pointer(a) -> int:
    return a.data_ptr() if isinstance(a, torch.Tensor) else a.__array_interface__["data"][0]


@pytest.fixture
def emb(rng):
    return rng.normal(size=(600, 7)).astype(np.float32)


def numpy_dlpack(x):
    return UnknownLibraryArray(x)


def torch_dlpack(x):
    return UnknownLibraryArray(torch.from_numpy(x))


@pytest.mark.parametrize("wrap", [numpy_dlpack, torch_dlpack], ids=["numpy", "torch"])
def test_read_in_place(emb, wrap):
    foreign = wrap(emb)
    assert not hasattr(foreign, "__array__") and speaks_dlpack(foreign)
    m = as_matrix(foreign, "embeddings")
    assert m.ptr == _pointer(emb) and not m.copied  # the caller's memory, no copy
    assert (m.rows, m.cols, m.row_stride) == (600, 7, 7)


@pytest.mark.parametrize("wrap", [numpy_dlpack, torch_dlpack], ids=["numpy", "torch"])
def test_strided_rows_are_read_in_place(emb, wrap):
    view = emb[::3]
    m = as_matrix(wrap(view), "embeddings")
    assert m.ptr == _pointer(emb) and m.row_stride == 21 and m.rows == 200 and not m.copied
    np.testing.assert_array_equal(svp_fast.kcenter(wrap(view), 30), svp_fast.kcenter(view, 30))


@pytest.mark.parametrize("wrap", [numpy_dlpack, torch_dlpack], ids=["numpy", "torch"])
def test_kcenter_outputs(emb, wrap):
    before = emb.copy()
    picks, radii, stats = svp_fast.kcenter(wrap(emb), 40, already_selected=[3, 9],
                                           return_radii=True, return_stats=True)
    ref, ref_radii = svp_fast.kcenter(emb, 40, already_selected=[3, 9], return_radii=True)
    # an unknown CPU library gets numpy back (the documented fallback)
    assert isinstance(picks, np.ndarray) and isinstance(radii, np.ndarray)
    np.testing.assert_array_equal(picks, ref)
    np.testing.assert_array_equal(radii, ref_radii)
    assert stats.backend == "cpu"
    np.testing.assert_array_equal(emb, before)  # never written


@pytest.mark.parametrize("wrap", [numpy_dlpack, torch_dlpack], ids=["numpy", "torch"])
def test_uncertainty_outputs(rng, wrap):
    logits = (rng.normal(size=(500, 9)) * 3).astype(np.float32)
    for method in ("least_confidence", "entropy", "margin"):
        idx, top = svp_fast.uncertainty(wrap(logits), 50, method=method, return_scores=True)
        ref_idx, ref_top = svp_fast.uncertainty(logits, 50, method=method, return_scores=True)
        assert isinstance(idx, np.ndarray)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(top, ref_top)
        scores = svp_fast.uncertainty_scores(wrap(logits), method=method)
        np.testing.assert_array_equal(scores, svp_fast.uncertainty_scores(logits, method=method))


def test_bfloat16_which_numpy_lacks_goes_through_torch(emb):
    t = torch.from_numpy(emb).to(torch.bfloat16)
    m = as_matrix(UnknownLibraryArray(t), "embeddings")
    assert m.ptr == t.data_ptr() and m.kind == "torch" and not m.copied
    picks = svp_fast.kcenter(UnknownLibraryArray(t), 25)
    assert isinstance(picks, np.ndarray)  # CPU input: numpy back
    np.testing.assert_array_equal(picks, svp_fast.kcenter(t, 25).numpy())


def test_input_errors_name_the_argument_and_the_device(emb):
    class OnRocm(UnknownLibraryArray):
        def __dlpack_device__(self):
            return (10, 0)

    class Broken(UnknownLibraryArray):
        def __dlpack_device__(self):
            raise RuntimeError("device query failed")

    with pytest.raises(TypeError, match=r"embeddings \(.*OnRocm\) lives on a ROCm device; "
                                        "svp_fast computes on the CPU and CUDA devices only"):
        svp_fast.kcenter(OnRocm(emb), 3)
    with pytest.raises(TypeError, match=r"x \(.*Broken\) offers DLPack, but __dlpack_device__\(\) "
                                        "failed: device query failed"):
        svp_fast.uncertainty(Broken(emb), 3)
    ints = UnknownLibraryArray(np.zeros((4, 3), np.int32))
    with pytest.raises(TypeError, match="embeddings must have a floating dtype"):
        svp_fast.kcenter(ints, 1)
    with pytest.raises(ValueError, match="embeddings must be finite, got nan at row 2"):
        bad = emb.copy()
        bad[2, 1] = np.nan
        svp_fast.kcenter(UnknownLibraryArray(bad), 5)


def test_numpy_torch_and_array_likes_keep_their_types(emb):
    picks = svp_fast.kcenter(emb, 5)
    assert to_callers_library(emb, picks) is picks
    t = torch.from_numpy(emb)
    assert isinstance(svp_fast.kcenter(t, 5), torch.Tensor)
    assert isinstance(svp_fast.kcenter(emb.tolist(), 5), np.ndarray)


# ----------------------------------------------------------------------------- JAX

needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")


@needs_jax
def test_jax_cpu_arrays_in_place_and_back_as_jax(emb):
    import jax
    import jax.numpy as jnp

    j = jax.device_put(jnp.asarray(emb), jax.devices("cpu")[0])
    m = as_matrix(j, "embeddings")
    assert m.ptr == j.unsafe_buffer_pointer() and not m.copied
    picks, radii = svp_fast.kcenter(j, 30, return_radii=True)
    ref, ref_radii = svp_fast.kcenter(emb, 30, return_radii=True)
    assert isinstance(picks, jax.Array) and isinstance(radii, jax.Array)
    np.testing.assert_array_equal(np.asarray(picks), ref)
    # jax_enable_x64 off (JAX's default): JAX keeps 64-bit outputs as 32-bit
    np.testing.assert_allclose(np.asarray(radii), ref_radii, rtol=1e-6)
    idx = svp_fast.uncertainty(j, 10)
    assert idx.devices() == j.devices()
    assert isinstance(idx, jax.Array)
    np.testing.assert_array_equal(np.asarray(idx), svp_fast.uncertainty(emb, 10))


@needs_jax
def test_jax_x64_keeps_int64_and_float64(emb):
    import jax
    import jax.numpy as jnp

    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        j = jax.device_put(jnp.asarray(emb), jax.devices("cpu")[0])
        picks, radii = svp_fast.kcenter(j, 30, return_radii=True)
        assert picks.dtype == jnp.int64 and radii.dtype == jnp.float64
        ref, ref_radii = svp_fast.kcenter(emb, 30, return_radii=True)
        np.testing.assert_array_equal(np.asarray(picks), ref)
        np.testing.assert_array_equal(np.asarray(radii), ref_radii)
    finally:
        jax.config.update("jax_enable_x64", old)


# ----------------------------------------------------------------------------- CUDA

def gpu(test):
    return pytest.mark.gpu(pytest.mark.skipif(not cuda_available(), reason=cuda_skip_reason())(test))


@gpu
def test_cuda_unknown_library_in_place_and_torch_back(emb):
    t = to_gpu(torch.from_numpy(emb))
    m = as_matrix(UnknownLibraryArray(t), "embeddings")
    assert m.ptr == t.data_ptr() and m.device == "cuda" and not m.copied
    picks = svp_fast.kcenter(UnknownLibraryArray(t), 40)
    assert isinstance(picks, torch.Tensor) and on_gpu(picks)  # the CUDA fallback: torch
    np.testing.assert_array_equal(picks.cpu().numpy(), svp_fast.kcenter(emb, 40))


@gpu
@pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="cupy is not installed")
def test_cupy_in_place_and_back_as_cupy(emb, rng):
    import cupy

    c = cupy.asarray(emb)
    m = as_matrix(c, "embeddings")
    assert m.ptr == c.data.ptr and m.device == "cuda" and not m.copied
    picks, radii = svp_fast.kcenter(c, 40, return_radii=True)
    assert isinstance(picks, cupy.ndarray) and isinstance(radii, cupy.ndarray)
    ref, ref_radii = svp_fast.kcenter(emb, 40, return_radii=True)
    np.testing.assert_array_equal(cupy.asnumpy(picks), ref)
    np.testing.assert_array_equal(cupy.asnumpy(radii), ref_radii)
    logits = (rng.normal(size=(700, 11)) * 3).astype(np.float32)
    idx, top = svp_fast.uncertainty(cupy.asarray(logits), 70, method="margin", return_scores=True)
    assert isinstance(idx, cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(idx), svp_fast.uncertainty(logits, 70, method="margin"))
    scores = svp_fast.uncertainty_scores(cupy.asarray(logits), method="entropy")
    assert isinstance(scores, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(scores),
                               svp_fast.uncertainty_scores(logits, method="entropy"), rtol=1e-5)


@gpu
@needs_jax
def test_jax_gpu_in_place_and_back_as_jax(emb):
    import jax
    import jax.numpy as jnp

    try:
        device = jax.devices("gpu")[0]
    except RuntimeError:
        pytest.skip("jax has no GPU backend here")
    j = jax.device_put(jnp.asarray(emb), device)
    m = as_matrix(j, "embeddings")
    assert m.ptr == j.unsafe_buffer_pointer() and m.device == "cuda" and not m.copied
    picks = svp_fast.kcenter(j, 40)
    assert isinstance(picks, jax.Array) and picks.devices() == {device}
    np.testing.assert_array_equal(np.asarray(picks), svp_fast.kcenter(emb, 40))


def test_outputs_go_back_through_the_callers_importer(emb, monkeypatch):
    """The mechanism CuPy and JAX use, with a library made up here: its arrays
    come back through its importer; when that fails, the documented fallback."""
    from svp_fast import _arrays

    class MadeUpArray(UnknownLibraryArray):
        pass

    MadeUpArray.__module__ = "madeup.core"
    taken = []

    def importer(value):
        taken.append(value)
        return ("madeup", value)

    monkeypatch.setitem(_arrays._IMPORTERS, "madeup", importer)
    picks, radii, stats = svp_fast.kcenter(MadeUpArray(emb), 20, return_radii=True,
                                           return_stats=True)
    assert picks[0] == "madeup" and radii[0] == "madeup" and stats.backend == "cpu"
    np.testing.assert_array_equal(picks[1], svp_fast.kcenter(emb, 20))
    assert len(taken) == 2  # picks and radii, not the stats
    scores = svp_fast.uncertainty_scores(MadeUpArray(emb))
    assert scores[0] == "madeup"

    def failing(value):
        raise RuntimeError("this build cannot take CUDA arrays")

    monkeypatch.setitem(_arrays._IMPORTERS, "madeup", failing)
    picks = svp_fast.kcenter(MadeUpArray(emb), 20)
    assert isinstance(picks, np.ndarray)  # the fallback, not a lost selection
