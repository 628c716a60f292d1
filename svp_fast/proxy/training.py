"""Training, evaluation, inference and checkpoints for any :class:`Classifier`
on any :class:`~svp_fast.data.Dataset`.

Nothing here knows the input modality: a minibatch is ``dataset.batch(indices)``
(a tuple of tensors) fed to ``model(*inputs)``, and labels come from
``dataset.labels``.

Training: SGD with momentum and weight decay (or what a model's parameter
groups ask for, see :func:`make_optimizers`), cross-entropy, a piecewise
constant learning rate given as ``"epochs@rate"`` pairs (``"1@0.01,90@0.1,45@0.01,45@0.001"``
is the paper's ResNet schedule: one warm-up epoch at 0.01, then 90 at 0.1, ...),
shuffled minibatches, the dataset's augmentation, evaluation on a held-out set
every epoch, tqdm progress bars, an optional forgetting-events tracker fed with
every minibatch's predictions, and an optional checkpoint of the final model.

Inference (:func:`infer`) runs the model in eval mode on the data *without*
augmentation and returns the penultimate features and the logits of every
example, from one forward pass. The original SVP code computed them on
augmented views (random crops and flips of the training transform); svp_fast
uses the plain images, which makes selections deterministic for a given model.
"""

from __future__ import annotations

import math
import numbers
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .._util import atomic_write
from ..data.base import Dataset, as_indices
from .classifier import Classifier
from .registry import create_model

Schedule = list[tuple[int, float]]


def parse_schedule(schedule: Union[str, Sequence[Sequence[Any]]]) -> Schedule:
    """``"1@0.1,2@0.01"`` (or ``[(1, 0.1), (2, 0.01)]``) -> ``[(1, 0.1), (2, 0.01)]``:
    1 epoch at learning rate 0.1, then 2 epochs at 0.01 (each pair is a duration)."""
    what = "schedule must be 'epochs@rate' pairs separated by commas, e.g. '1@0.1,2@0.01'"
    pairs: list = []
    if isinstance(schedule, str):
        text = schedule.replace(" ", "")
        if not text:
            raise ValueError(f"{what}; got an empty string")
        for part in text.split(","):
            if part.count("@") != 1:
                raise ValueError(f"{what}; got {schedule!r}")
            e, r = part.split("@")
            try:
                pairs.append((int(e), float(r)))
            except ValueError:
                raise ValueError(f"{what}; got {schedule!r}") from None
    else:
        try:
            pairs = [(p[0], p[1]) for p in schedule]
        except (TypeError, IndexError):
            raise ValueError(f"{what} or a list of (epochs, rate) pairs; got {schedule!r}") from None
    out = []
    for e, r in pairs:
        if isinstance(e, bool) or not isinstance(e, numbers.Integral) or e < 0:
            raise ValueError(f"schedule: epochs must be integers >= 0, got {e!r} in {schedule!r}")
        if isinstance(r, bool) or not isinstance(r, numbers.Real) or not math.isfinite(r) or r < 0:
            raise ValueError(f"schedule: rates must be finite and >= 0, got {r!r} in {schedule!r}")
        if e:
            out.append((int(e), float(r)))
    if not out:
        raise ValueError(f"schedule must train for at least one epoch, got {schedule!r}")
    return out


def format_schedule(schedule: Schedule) -> str:
    return ",".join(f"{e}@{r:g}" for e, r in schedule)


@dataclass
class TrainConfig:
    """How to train.

    Attributes:
        schedule: ``"epochs@rate"`` pairs (see :func:`parse_schedule`).
        batch_size: minibatch size (the last minibatch of an epoch may be smaller).
        momentum, weight_decay, nesterov: SGD settings.
        augment: use the dataset's augmentation during training (crop and flip
            for 32x32 images; datasets without one ignore it).
        eval_every: evaluate on the held-out set every this many epochs (and
            always after the last); 0 evaluates only after the last epoch.
        eval_batch_size: minibatch size for evaluation and inference (on CPUs
            small batches keep activations in cache and run fastest; raise it
            on GPUs).
        num_workers: processes that build minibatches (useful for image
            folders, which decode files; 0 builds them in the training process).
        device: "cpu", "cuda", "cuda:1", ..., or "auto" (CUDA when available).
        progress: show tqdm bars (one per epoch).
    """

    schedule: Union[str, Schedule] = "1@0.1"
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    augment: bool = True
    eval_every: int = 1
    eval_batch_size: int = 128
    num_workers: int = 0
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self):
        self.schedule = parse_schedule(self.schedule)
        for name in ("batch_size", "eval_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name in ("eval_every", "num_workers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        for name in ("momentum", "weight_decay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (0 <= v < math.inf):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        resolve_device(self.device)

    @property
    def epochs(self) -> int:
        return sum(e for e, _ in self.schedule)

    def to_json(self) -> dict:
        d = asdict(self)
        d["schedule"] = format_schedule(self.schedule)
        return d


def resolve_device(device: Any) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda[:N]' or 'auto', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda[:N]' or 'auto', got {device!r}")
    return dev


# ----------------------------------------------------------------------------- minibatches

class _Batches(torch.utils.data.Dataset):
    """Item k = minibatch k; lets a DataLoader build minibatches in worker processes.

    Each minibatch carries its own augmentation seed, so results do not depend
    on the number of workers.
    """

    def __init__(self, dataset: Dataset, chunks: list[np.ndarray], augment: bool, seed: int):
        self.dataset, self.chunks, self.augment, self.seed = dataset, chunks, augment, seed

    def __len__(self):
        return len(self.chunks)

    def __getitem__(self, k):
        idx = self.chunks[k]
        gen = None
        if self.augment:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + k)
        return idx, self.dataset.batch(idx, augment=self.augment, generator=gen)


def _as_is(item):
    """Keep minibatches as built (the default would turn index arrays into tensors)."""
    return item


def iterate_batches(dataset: Dataset, indices: np.ndarray, batch_size: int, *,
                    augment: bool = False, seed: int = 0,
                    num_workers: int = 0) -> Iterator[tuple[np.ndarray, tuple]]:
    """Yield ``(indices_chunk, inputs)`` over ``indices`` in order, ``batch_size`` at a time."""
    chunks = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    batches = _Batches(dataset, chunks, augment, seed)
    if num_workers == 0:
        for k in range(len(batches)):
            yield batches[k]
        return
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False,
                                         num_workers=num_workers, collate_fn=_as_is)
    yield from loader


def _to(inputs: tuple, device: torch.device) -> tuple:
    if device.type == "cpu":
        return inputs
    return tuple(t.to(device, non_blocking=True) for t in inputs)


# ----------------------------------------------------------------------------- training

@dataclass
class EpochRecord:
    epoch: int
    lr: float
    train_loss: float
    train_accuracy: float
    eval_accuracy: Optional[float]
    train_seconds: float
    eval_seconds: float


@dataclass
class TrainResult:
    """What :func:`train` did: one record per epoch, and totals.

    ``train_seconds`` excludes evaluation (kept apart in ``eval_seconds``), so
    that stage times compare the work the method needs.
    """

    history: list[EpochRecord] = field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    examples: int = 0

    @property
    def final_accuracy(self) -> Optional[float]:
        return self.history[-1].eval_accuracy if self.history else None

    def to_json(self) -> dict:
        return {"train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds,
                "examples": self.examples, "history": [asdict(h) for h in self.history]}


#: Optimizers a parameter group may name (key "optimizer"); SGD by default.
OPTIMIZERS = ("sgd", "adagrad")
_GROUP_KEYS = {"params", "optimizer", "momentum", "weight_decay", "nesterov", "lr_scale"}


def make_optimizers(model: Classifier, config: TrainConfig) -> list[torch.optim.Optimizer]:
    """One optimizer per kind named in ``model.parameter_groups()`` (see
    :meth:`~svp_fast.proxy.models.Classifier.parameter_groups`).

    SGD groups take ``config``'s momentum, weight decay and Nesterov setting
    unless they override them; Adagrad groups (for sparse embedding tables:
    torch applies SGD's momentum and weight decay to every row, and plain SGD
    on large minibatches diverges on the most frequent rows) take its weight
    decay unless they override it. Every trainable parameter must be in exactly
    one group. The learning rate of a group is the schedule's times its
    ``lr_scale`` (default 1).
    """
    name = f"{type(model).__name__}.parameter_groups()"
    seen: set[int] = set()
    by_kind: dict[str, list[dict]] = {}
    for g in model.parameter_groups():
        if not isinstance(g, dict) or "params" not in g or not set(g) <= _GROUP_KEYS:
            raise ValueError(f"{name} must return dicts with 'params' and optionally "
                             f"{sorted(_GROUP_KEYS - {'params'})}, got {g!r}")
        params = list(g["params"])
        for p in params:
            if id(p) in seen:
                raise ValueError(f"{name} lists a parameter twice")
            seen.add(id(p))
        kind = g.get("optimizer", "sgd")
        if kind not in OPTIMIZERS:
            raise ValueError(f"{name}: optimizer must be one of {OPTIMIZERS}, got {kind!r}")
        if kind != "sgd" and ("momentum" in g or "nesterov" in g):
            raise ValueError(f"{name}: momentum and nesterov are SGD settings, not {kind}'s")
        scale = g.get("lr_scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (
                math.isfinite(scale) and scale > 0):
            raise ValueError(f"{name}: lr_scale must be finite and > 0, got {scale!r}")
        if params:
            group = {k: v for k, v in g.items() if k != "optimizer"}
            by_kind.setdefault(kind, []).append({**group, "params": params,
                                                 "lr_scale": float(scale)})
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        raise ValueError(f"{name} leaves out the parameters {missing[:5]}")
    lr = config.schedule[0][1]
    optimizers: list[torch.optim.Optimizer] = []
    if "sgd" in by_kind:
        optimizers.append(torch.optim.SGD(by_kind["sgd"], lr=lr, momentum=config.momentum,
                                          weight_decay=config.weight_decay,
                                          nesterov=config.nesterov and config.momentum > 0))
    if "adagrad" in by_kind:
        optimizers.append(torch.optim.Adagrad(by_kind["adagrad"], lr=lr,
                                              weight_decay=config.weight_decay))
    return optimizers


def train(model: Classifier, dataset: Dataset, config: Optional[TrainConfig] = None, *,
          indices: Any = None, eval_dataset: Optional[Dataset] = None, seed: int = 0,
          tracker: Any = None, checkpoint: Optional[Union[str, os.PathLike]] = None,
          desc: str = "train", on_epoch: Optional[Callable[[EpochRecord], None]] = None) -> TrainResult:
    """Train ``model`` in place on ``dataset`` (rows ``indices``, default all).

    Args:
        config: a :class:`TrainConfig` (default: its defaults).
        indices: the rows to train on (e.g. the labelled set); any 1-D integer array.
        eval_dataset: held-out data evaluated each ``config.eval_every`` epochs.
        seed: seeds the shuffling and augmentation (the initial weights are
            seeded by :func:`create_model`).
        tracker: an object with ``update(indices, correct)`` (e.g.
            :class:`svp_fast.selection.forgetting.ForgettingTracker`), called
            after every minibatch with the dataset indices of the minibatch and
            whether the model, before the step, classified each one correctly.
        checkpoint: write the final model here (see :func:`save_checkpoint`).
        on_epoch: called with each :class:`EpochRecord`.

    Returns:
        a :class:`TrainResult`.
    """
    config = config or TrainConfig()
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(model, Classifier):
        raise TypeError(f"model must be a svp_fast Classifier, got {type(model).__name__}")
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a svp_fast Dataset, got {type(dataset).__name__}")
    if model.num_classes < dataset.num_classes:
        raise ValueError(f"model has {model.num_classes} outputs but the dataset has "
                         f"{dataset.num_classes} classes")
    rows = np.arange(len(dataset)) if indices is None else as_indices(indices, len(dataset))
    if rows.size == 0:
        raise ValueError("indices must select at least one example to train on")
    device = resolve_device(config.device)
    model.to(device)
    # lr is set per epoch from the schedule; a model's parameter groups may name
    # their optimizer, override momentum / weight decay and scale the rate
    optimizers = make_optimizers(model, config)
    # a copy on the device (dataset labels may be read-only numpy arrays)
    labels = torch.tensor(dataset.labels, dtype=torch.long, device=device)
    rng = np.random.default_rng(seed)
    lrs = [r for e, r in config.schedule for _ in range(e)]
    result = TrainResult()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    for epoch, lr in enumerate(lrs, start=1):
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
        order = rows[rng.permutation(rows.size)]
        model.train()
        t0 = time.perf_counter()
        # summed on the device: no host sync per step on GPUs
        loss_sum = torch.zeros((), device=device)
        correct_sum = torch.zeros((), dtype=torch.long, device=device)
        bar = tqdm(total=rows.size, desc=f"{desc} {epoch}/{len(lrs)}", unit="ex", leave=False,
                   disable=not config.progress, dynamic_ncols=True)
        batch_seed = int(rng.integers(2**31))
        for idx, inputs in iterate_batches(dataset, order, config.batch_size,
                                           augment=config.augment, seed=batch_seed,
                                           num_workers=config.num_workers):
            y = labels[torch.from_numpy(idx).to(device, non_blocking=True)]
            logits = model(*_to(inputs, device))
            loss = loss_fn(logits, y)
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            (loss / len(idx)).backward()
            # sparse gradients (embedding tables) are built by torch itself: skip
            # its invariant checks, and its warning that they are off
            with torch.sparse.check_sparse_tensor_invariants(enable=False):
                for optimizer in optimizers:
                    optimizer.step()
            correct = logits.detach().argmax(1) == y
            if tracker is not None:
                tracker.update(idx, correct.cpu().numpy())
            loss_sum += loss.detach()
            correct_sum += correct.sum()
            bar.update(len(idx))
        bar.close()
        total_loss, total_correct = float(loss_sum), int(correct_sum)
        train_seconds = time.perf_counter() - t0
        eval_acc, eval_seconds = None, 0.0
        last = epoch == len(lrs)
        if eval_dataset is not None and (last or (config.eval_every and epoch % config.eval_every == 0)):
            t1 = time.perf_counter()
            eval_acc = evaluate(model, eval_dataset, batch_size=config.eval_batch_size,
                                device=device, num_workers=config.num_workers)
            eval_seconds = time.perf_counter() - t1
        record = EpochRecord(epoch, lr, total_loss / rows.size, total_correct / rows.size,
                             eval_acc, train_seconds, eval_seconds)
        result.history.append(record)
        result.train_seconds += train_seconds
        result.eval_seconds += eval_seconds
        result.examples += int(rows.size)
        if config.progress:
            shown = "" if eval_acc is None else f", eval acc {eval_acc:.4f}"
            tqdm.write(f"{desc} epoch {epoch}/{len(lrs)}: lr {lr:g}, loss {record.train_loss:.4f}, "
                       f"train acc {record.train_accuracy:.4f}{shown} ({train_seconds:.1f} s)")
        if on_epoch is not None:
            on_epoch(record)
    if checkpoint is not None:
        save_checkpoint(model, checkpoint, extra={"train": result.to_json(),
                                                  "config": config.to_json()})
    return result


# ----------------------------------------------------------------------------- inference

@dataclass
class Inference:
    """Outputs of :func:`infer` for the rows ``indices`` (in that order).

    ``features`` (N, feature_dim) float32 and ``logits`` (N, C) float32 numpy
    arrays; ``probabilities`` is the softmax of the logits.
    """

    indices: np.ndarray
    features: Optional[np.ndarray]
    logits: np.ndarray
    seconds: float

    @property
    def probabilities(self) -> np.ndarray:
        z = self.logits - self.logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1)


def infer(model: Classifier, dataset: Dataset, *, indices: Any = None, batch_size: int = 128,
          features: bool = True, device: Any = None, num_workers: int = 0,
          progress: bool = False, desc: str = "infer") -> Inference:
    """Features and logits of ``dataset`` rows ``indices`` (default all), in
    eval mode, without augmentation, from one forward pass per minibatch.

    Args:
        features: also return the penultimate features (k-center needs them;
            uncertainty needs only logits).
        device: default: where the model's parameters are.
    """
    if not isinstance(model, Classifier):
        raise TypeError(f"model must be a svp_fast Classifier, got {type(model).__name__}")
    rows = np.arange(len(dataset)) if indices is None else as_indices(indices, len(dataset))
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    device = resolve_device(device)
    model.to(device)
    was_training = model.training
    model.eval()
    feats = np.empty((rows.size, model.feature_dim), dtype=np.float32) if features else None
    logits = np.empty((rows.size, model.num_classes), dtype=np.float32)
    t0 = time.perf_counter()
    pos = 0
    try:
        with torch.inference_mode():
            bar = tqdm(total=rows.size, desc=desc, unit="ex", leave=False, disable=not progress,
                       dynamic_ncols=True)
            for idx, inputs in iterate_batches(dataset, rows, batch_size, num_workers=num_workers):
                f = model.features(*_to(inputs, device))
                z = model.head(f)
                logits[pos:pos + len(idx)] = z.float().cpu().numpy()
                if feats is not None:
                    feats[pos:pos + len(idx)] = f.float().cpu().numpy()
                pos += len(idx)
                bar.update(len(idx))
            bar.close()
    finally:
        model.train(was_training)
    return Inference(rows, feats, logits, time.perf_counter() - t0)


def evaluate(model: Classifier, dataset: Dataset, *, indices: Any = None, batch_size: int = 128,
             device: Any = None, num_workers: int = 0) -> float:
    """Top-1 accuracy of ``model`` on ``dataset`` (no augmentation)."""
    out = infer(model, dataset, indices=indices, batch_size=batch_size, features=False,
                device=device, num_workers=num_workers)
    if out.indices.size == 0:
        return float("nan")
    return float((out.predictions == dataset.labels[out.indices]).mean())


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(model: Classifier, path: Union[str, os.PathLike], *,
                    name: Optional[str] = None, spec: Any = None, options: Optional[dict] = None,
                    extra: Optional[dict] = None) -> Path:
    """Write ``model``'s weights (and what rebuilds it, when known) to ``path``.

    Written to a temporary file in the same folder and renamed into place, so a
    crash never leaves a truncated checkpoint. ``name``/``spec``/``options``
    default to what :func:`create_model` recorded on the model.
    """
    built = getattr(model, "_svp_build", {})
    state = {
        "format": "svp_fast.checkpoint/1",
        "model": name or built.get("name"),
        "spec": asdict(spec) if spec is not None else built.get("spec"),
        "options": options if options is not None else built.get("options", {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra or {},
    }
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Union[str, os.PathLike], *, device: Any = "cpu") -> Classifier:
    """Rebuild a model saved by :func:`save_checkpoint` (models made by
    :func:`create_model`; for others, build the model and load ``state_dict``)."""
    from ..data.base import DataSpec

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != "svp_fast.checkpoint/1":
        raise ValueError(f"{str(path)!r} is not a svp_fast checkpoint")
    if not state.get("model") or not state.get("spec"):
        raise ValueError(f"checkpoint {str(path)!r} does not say how to rebuild its model; "
                         "build it yourself and load state['state_dict']")
    spec = dict(state["spec"])
    spec["input_shape"] = tuple(spec["input_shape"]) if spec["input_shape"] is not None else None
    model = create_model(state["model"], DataSpec(**spec), **state["options"])
    model.load_state_dict(state["state_dict"])
    return model.to(resolve_device(device))
