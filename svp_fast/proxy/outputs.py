"""From a user's model and data to a selection.

Users hold a model (any ``torch.nn.Module``) and their data as a torch
``Dataset``, a ``DataLoader`` or a Hugging Face ``datasets.Dataset``.
:func:`model_outputs` runs the model over every row once, in order, and keeps
what selection needs:

* the **features**: the input of the model's last linear layer (its
  penultimate embedding, what k-center covers), or of the layer you name;
* the **logits** (and ``probs``, their softmax: what uncertainty ranks).

It runs without gradients (``torch.inference_mode``), in eval mode (each
module's training flag is put back afterwards), in minibatches, on the
model's device or the one you name (the model is moved back afterwards),
with mixed precision where the model allows it (``amp``), and with a tqdm
bar (``progress``). :func:`select` goes on to ``kcenter`` or ``uncertainty``
and returns the indices with a ``torch.utils.data.Subset`` of your data to
train the target on.

Batches become model inputs by a fixed rule (or your ``inputs`` function):
a tensor is the input; a tuple or list ``(x, y, ...)`` gives ``x``; a dict
(Hugging Face rows) gives its tensors other than the labels (``label``,
``labels``, ``target``, ``targets``, ``y``): one tensor is passed as the
input, several as keyword arguments. A model output may be the logits, an
object with ``.logits`` (Hugging Face models), a dict with ``"logits"``, or
a tuple whose first item they are.
"""

from __future__ import annotations

import contextlib
import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from torch import nn

from .._progress import check_progress

__all__ = ["ModelOutputs", "Selection", "model_outputs", "select"]

LABEL_KEYS = ("label", "labels", "target", "targets", "y")
SELECT_METHODS = ("kcenter", "least_confidence", "entropy", "margin")
AMP_CHOICES = ("auto", True, False)


@dataclass
class ModelOutputs:
    """What :func:`model_outputs` computed, row i for row i of the data.

    Attributes:
        features: (N, D) float32 numpy array (None with ``features=False``).
        logits: (N, C) float32 numpy array.
        seconds: wall time of the pass.
        device: where the model ran.
        amp: the autocast dtype used ("bfloat16", "float16") or "off", with
            the reason when autocast was asked for and not used.
    """

    features: Optional[np.ndarray]
    logits: np.ndarray
    seconds: float
    device: str
    amp: str

    @property
    def probs(self) -> np.ndarray:
        """softmax(logits), float32 (computed in float64)."""
        z = self.logits.astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z.astype(np.float32)

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1)


@dataclass
class Selection:
    """What :func:`select` chose: ``indices`` (int64 numpy, rows of the data,
    in selection order), ``subset`` (a ``torch.utils.data.Subset`` of the data
    with those rows), the model's ``outputs`` and the selection's ``stats``."""

    indices: np.ndarray
    subset: Any
    outputs: ModelOutputs
    method: str
    stats: Any = None
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- data


def _is_hf_dataset(data: Any) -> bool:
    """A Hugging Face ``datasets.Dataset`` (recognised without importing datasets)."""
    return type(data).__module__.split(".")[0] == "datasets" and hasattr(data, "with_format")


def _loader(data: Any, batch_size: int, num_workers: int):
    """(the DataLoader to iterate, the dataset its rows index, N)."""
    from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler

    if isinstance(data, DataLoader):
        sampler = getattr(data.batch_sampler, "sampler", None) or data.sampler
        if isinstance(data.dataset, IterableDataset) or not isinstance(sampler,
                                                                       SequentialSampler):
            raise ValueError("data must be a DataLoader that reads its dataset in order "
                             "(shuffle=False, no sampler), so that row i of the outputs is row "
                             f"i of the dataset; got one with a {type(sampler).__name__}. Pass "
                             "the dataset itself, or a loader with shuffle=False")
        return data, data.dataset, len(data.dataset)
    if _is_hf_dataset(data):
        rows = data.with_format("torch")
        return (DataLoader(rows, batch_size=batch_size, shuffle=False, num_workers=num_workers),
                data, len(data))
    from ..data.base import Dataset as SvpDataset

    if isinstance(data, SvpDataset):
        raise TypeError("data is a svp_fast.data.Dataset: use svp_fast.proxy.infer(model, "
                        "dataset) with a svp_fast model, or pass a torch Dataset / DataLoader")
    if isinstance(data, IterableDataset) or not isinstance(data, Dataset) and not (
            hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise TypeError("data must be a torch Dataset with __len__ and __getitem__, a "
                        "DataLoader that reads it in order, or a Hugging Face datasets.Dataset; "
                        f"got {type(data).__name__}")
    return (DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers),
            data, len(data))


def _model_inputs(batch: Any, inputs: Optional[Callable]):
    """(args, kwargs) for the model from one batch (see the module docstring)."""
    if inputs is not None:
        got = inputs(batch)
        if isinstance(got, dict):
            return (), got
        if isinstance(got, (tuple, list)):
            return tuple(got), {}
        return (got,), {}
    if isinstance(batch, torch.Tensor):
        return (batch,), {}
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError("a batch is an empty tuple: nothing to feed the model")
        return (batch[0],), {}
    if isinstance(batch, dict):
        kept = {k: v for k, v in batch.items()
                if k not in LABEL_KEYS and isinstance(v, torch.Tensor)}
        if not kept:
            raise ValueError(f"a batch of keys {sorted(batch)} holds no tensor other than the "
                             f"labels ({', '.join(LABEL_KEYS)}); pass inputs=lambda batch: ... "
                             "to say what the model takes")
        if len(kept) == 1:
            return (next(iter(kept.values())),), {}
        return (), kept
    raise TypeError(f"a batch of type {type(batch).__name__} is not a tensor, tuple, list or "
                    "dict; pass inputs=lambda batch: ... to say what the model takes")


def _to_device(value: Any, device: torch.device):
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    return value


def _logits_of(out: Any) -> torch.Tensor:
    if hasattr(out, "logits") and isinstance(out.logits, torch.Tensor):
        out = out.logits
    elif isinstance(out, dict) and isinstance(out.get("logits"), torch.Tensor):
        out = out["logits"]
    elif isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model must return (batch, classes) logits (a tensor, .logits, "
                         f"['logits'] or a tuple's first item), got {got}")
    return out


# ----------------------------------------------------------------------------- the model


def _feature_layer(model: nn.Module, feature_layer: Any) -> nn.Module:
    """The module whose input are the features: ``feature_layer`` (a module of
    the model or its name), a svp_fast Classifier's ``head``, or the model's
    last ``nn.Linear``."""
    if isinstance(feature_layer, str):
        try:
            return model.get_submodule(feature_layer)
        except AttributeError:
            raise ValueError(f"feature_layer {feature_layer!r} is not a module of the model; "
                             f"its modules: {[n for n, _ in model.named_modules() if n][:20]}"
                             ) from None
    if isinstance(feature_layer, nn.Module):
        if not any(m is feature_layer for m in model.modules()):
            raise ValueError("feature_layer is not a module of the model")
        return feature_layer
    if feature_layer is not None:
        raise TypeError(f"feature_layer must be None, a module of the model or its name, got "
                        f"{type(feature_layer).__name__}")
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the model has no nn.Linear layer whose input would be the features; "
                         "pass feature_layer= (the module whose input are the features), or "
                         "features=False for logits only")
    return linears[-1]


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _autocast(amp: Any, device: torch.device, model: nn.Module):
    """(autocast dtype or None, why not): "auto" on CUDA for float32 models;
    True also on the CPU (bfloat16)."""
    if amp is False:
        return None, "off"
    floats = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if floats and floats != {torch.float32}:
        return None, f"off (the model is {', '.join(sorted(str(f) for f in floats))})"
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        return (torch.bfloat16 if bf16 else torch.float16), ""
    if amp is True:
        return torch.bfloat16, ""
    return None, "off (auto: mixed precision on CUDA only)"


@contextlib.contextmanager
def _eval_mode(model: nn.Module, device: torch.device):
    """Eval mode and ``device`` for the pass; every module's training flag and
    the model's device as they were afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    before = _model_device(model)
    model.eval()
    if device != before:
        model.to(device)
    try:
        yield
    finally:
        if device != before:
            model.to(before)
        for m, flag in flags:
            m.training = flag


def _positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def model_outputs(model: nn.Module, data: Any, *, batch_size: int = 256,
                  device: Union[str, torch.device, None] = None, amp: Any = "auto",
                  features: bool = True, feature_layer: Any = None,
                  inputs: Optional[Callable] = None, num_workers: int = 0,
                  progress: Any = False) -> ModelOutputs:
    """Features and logits of every row of ``data``, from one pass of ``model``.

    Args:
        model: any ``torch.nn.Module`` that maps a batch's inputs to logits
            (see the module docstring for batches and outputs).
        data: a torch ``Dataset`` (map-style), a ``DataLoader`` that reads its
            dataset in order, or a Hugging Face ``datasets.Dataset``.
        batch_size: rows per forward pass (a DataLoader keeps its own).
        device: where to run (default: where the model's parameters are); the
            model is moved there for the pass and back afterwards.
        amp: mixed precision. "auto" (default): autocast (bfloat16, or float16
            where the GPU lacks it) on CUDA for float32 models, off on the CPU;
            True: also on the CPU (bfloat16); False: off. Where an autocast
            pass fails (an operation without a reduced-precision kernel), the
            batch runs again in full precision, and so do the rest.
        features: also keep the features (k-center needs them).
        feature_layer: the module whose input are the features, or its name
            (``model.get_submodule``). Default: a svp_fast model's ``head``,
            else the model's last ``nn.Linear``.
        inputs: ``inputs(batch)`` -> a tensor, a tuple (positional) or a dict
            (keyword arguments) for the model, when the fixed rule does not fit.
        num_workers: DataLoader processes (datasets only).
        progress: True for a tqdm bar over the rows, or a tqdm-like object.

    Returns:
        a :class:`ModelOutputs` (``features``, ``logits``, ``probs``, ...).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    batch_size = _positive(batch_size, "batch_size")
    if isinstance(num_workers, bool) or not isinstance(num_workers, numbers.Integral) \
            or num_workers < 0:
        raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
    if amp not in AMP_CHOICES or (amp != "auto" and not isinstance(amp, bool)):
        raise ValueError(f"amp must be 'auto', True or False, got {amp!r}")
    if inputs is not None and not callable(inputs):
        raise TypeError(f"inputs must be callable or None, got {type(inputs).__name__}")
    progress = check_progress(progress)
    loader, _, n = _loader(data, batch_size, num_workers)
    if n == 0:
        raise ValueError("data has no rows")
    from .training import resolve_device

    dev = _model_device(model) if device is None else resolve_device(device)
    layer = _feature_layer(model, feature_layer) if features else None
    amp_dtype, amp_note = _autocast(amp, dev, model)

    captured: list = []
    hook = None
    if layer is not None:
        hook = layer.register_forward_pre_hook(
            lambda module, args: captured.append(args[0] if args else None))
    feats = logits = None
    pos = 0
    t0 = time.perf_counter()
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="model outputs", unit="row", leave=False, dynamic_ncols=True)
    elif progress is not False:
        bar = progress
    try:
        with _eval_mode(model, dev), torch.inference_mode():
            for batch in loader:
                args, kwargs = _model_inputs(batch, inputs)
                args = tuple(_to_device(a, dev) for a in args)
                kwargs = {k: _to_device(v, dev) for k, v in kwargs.items()}
                out = None
                if amp_dtype is not None:
                    captured.clear()
                    try:
                        with torch.autocast(dev.type, dtype=amp_dtype):
                            out = model(*args, **kwargs)
                    except RuntimeError as e:  # no reduced-precision kernel for an op
                        amp_dtype, amp_note = None, f"off (autocast failed: {str(e)[:120]})"
                if out is None:
                    captured.clear()
                    out = model(*args, **kwargs)
                z = _logits_of(out)
                rows = z.shape[0]
                if pos + rows > n:
                    raise ValueError(f"the batches gave more rows than the data's {n}")
                if logits is None:
                    logits = np.empty((n, z.shape[1]), dtype=np.float32)
                logits[pos:pos + rows] = z.float().cpu().numpy()
                if layer is not None:
                    if not captured or captured[-1] is None:
                        raise ValueError("feature_layer was not called in the model's forward "
                                         "pass; pass the module whose input are the features")
                    f = captured[-1].reshape(rows, -1)
                    if feats is None:
                        feats = np.empty((n, f.shape[1]), dtype=np.float32)
                    feats[pos:pos + rows] = f.float().cpu().numpy()
                pos += rows
                if bar is not None:
                    bar.update(rows)
    finally:
        if hook is not None:
            hook.remove()
        if progress is True and bar is not None:
            bar.close()
    if pos != n:
        raise ValueError(f"the batches gave {pos} rows for data of {n} (a DataLoader with "
                         "drop_last=True?): every row needs its outputs")
    used = "off" if amp_dtype is None else str(amp_dtype).replace("torch.", "")
    return ModelOutputs(features=feats, logits=logits, seconds=time.perf_counter() - t0,
                        device=str(dev), amp=amp_note if amp_dtype is None else used)


# ----------------------------------------------------------------------------- selection


def select(model: nn.Module, data: Any, budget: Any, *, method: str = "kcenter",
           already_selected: Any = None, metric: str = "euclidean", seed: int = 0,
           outputs: Optional[ModelOutputs] = None, **model_options) -> Selection:
    """Select ``budget`` rows of ``data`` with ``model``: its outputs
    (:func:`model_outputs`, with ``model_options``), then greedy k-center on
    the features (``method="kcenter"``) or top-k uncertainty on the logits
    (``"least_confidence"``, ``"entropy"``, ``"margin"``).

    ``budget`` is a count or a fraction, as for :func:`svp_fast.kcenter`.
    ``already_selected`` (rows that are centers already, e.g. the labelled
    ones; never returned), ``metric`` and ``seed`` (of the k-means cells,
    which never change the picks) go to k-center. ``outputs`` reuses an
    earlier pass instead of running the model again. For a Hugging Face
    dataset, ``data.select(selection.indices)`` is the subset as a dataset.

    Returns:
        a :class:`Selection`: ``indices``, ``subset`` (``torch.utils.data.Subset``
        of the data, or of a DataLoader's dataset), ``outputs``, ``stats``.
    """
    from ..selection.kcenter import kcenter
    from ..selection.uncertainty import uncertainty

    if method not in SELECT_METHODS:
        raise ValueError(f"method must be one of {', '.join(repr(m) for m in SELECT_METHODS)}, "
                         f"got {method!r}")
    if method != "kcenter" and already_selected is not None:
        raise ValueError("already_selected applies to method='kcenter' (uncertainty ranks "
                         "rows on their own); drop those rows from the data instead")
    _, base, _ = _loader(data, 1, 0)
    if outputs is None:
        outputs = model_outputs(model, data, features=method == "kcenter", **model_options)
    elif model_options:
        raise ValueError(f"outputs= given: the model does not run again, so "
                         f"{', '.join(sorted(model_options))} would do nothing")
    if method == "kcenter":
        if outputs.features is None:
            raise ValueError("outputs has no features (computed with features=False); "
                             "k-center needs them")
        idx, stats = kcenter(outputs.features, budget, already_selected=already_selected,
                             metric=metric, seed=seed, return_stats=True)
    else:
        idx, stats = uncertainty(outputs.logits, budget, method=method, return_stats=True)
    from torch.utils.data import Subset

    return Selection(indices=idx, subset=Subset(base, idx.tolist()), outputs=outputs,
                     method=method, stats=stats)
