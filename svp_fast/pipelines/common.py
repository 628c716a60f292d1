"""Pieces both pipelines share: model set-ups, stage timing, selection dispatch."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from ..data.base import Dataset
from ..proxy.registry import create_model, model_builder
from ..proxy.training import Inference, TrainConfig, TrainResult, infer, train
from ..selection.forgetting import ForgettingTracker, forgetting
from ..selection.kcenter import kcenter
from ..selection.random import random_selection
from ..selection.uncertainty import uncertainty

METHODS = ("kcenter", "least_confidence", "entropy", "margin", "forgetting", "random")
UNCERTAINTY_METHODS = ("least_confidence", "entropy", "margin")
SELECTORS = ("proxy", "target")
STAGES = ("selector_training", "inference", "selection", "target_training")


@dataclass
class ModelSetup:
    """A model by name (see :data:`svp_fast.proxy.MODELS`), its builder options
    and how to train it."""

    name: str
    train: TrainConfig = field(default_factory=TrainConfig)
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        model_builder(self.name)  # a registered name or "package.module:builder"
        if not isinstance(self.train, TrainConfig):
            raise TypeError(f"train must be a TrainConfig, got {type(self.train).__name__}")

    def to_json(self) -> dict:
        return {"name": self.name, "options": self.options, "train": self.train.to_json()}


def check_methods(methods: Union[str, Sequence[str]], allowed: Sequence[str] = METHODS) -> list[str]:
    """A list of distinct method names from a name or a sequence of names."""
    items = [methods] if isinstance(methods, str) else list(methods)
    if not items:
        raise ValueError("methods must name at least one selection method")
    for m in items:
        if m not in allowed:
            raise ValueError(f"method must be one of {', '.join(repr(a) for a in allowed)}, got {m!r}")
    if len(set(items)) != len(items):
        raise ValueError(f"methods must not repeat, got {', '.join(items)}")
    return items


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def derive_seed(seed: int, *parts: Any) -> int:
    """A seed for one role (model init, shuffling, a round) of a run with ``seed``;
    stable across Python runs (no hash randomisation)."""
    words = [seed] + [sum(ord(c) * 31 ** i for i, c in enumerate(p)) if isinstance(p, str) else int(p)
                      for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1)[0] & 0x7FFFFFFF)


@dataclass
class StageRecord:
    """One timed stage of a run (a row of ``stages.csv``)."""

    method: str
    stage: str
    model: str
    round: int
    labelled: int
    seconds: float
    accuracy: Optional[float] = None


class StageLog:
    """Collects :class:`StageRecord` rows; ``with log.time(...) as rec`` times a block.

    ``on_stage(record)``, when given, is called as each stage ends (the command
    line prints a line per stage with it)."""

    def __init__(self, on_stage: Optional[Callable[[StageRecord], None]] = None):
        self.records: list[StageRecord] = []
        self.on_stage = on_stage

    def add(self, **kwargs) -> StageRecord:
        rec = StageRecord(**kwargs)
        self.records.append(rec)
        if self.on_stage is not None:
            self.on_stage(rec)
        return rec

    class _Timer:
        def __init__(self, log, kwargs):
            self.log, self.kwargs, self.record = log, kwargs, None

        def __enter__(self):
            self.t0 = time.perf_counter()
            self.record = StageRecord(seconds=0.0, **self.kwargs)
            self.log.records.append(self.record)
            return self.record

        def __exit__(self, exc_type, *exc):
            self.record.seconds = time.perf_counter() - self.t0
            if exc_type is None and self.log.on_stage is not None:
                self.log.on_stage(self.record)
            return False

    def time(self, **kwargs) -> "_Timer":
        return StageLog._Timer(self, kwargs)

    def to_rows(self) -> list[dict]:
        return [dataclasses.asdict(r) for r in self.records]


@dataclass
class TrainedModel:
    model: Any
    result: TrainResult
    accuracy: Optional[float]
    tracker: Optional[ForgettingTracker] = None


def fit(setup: ModelSetup, train_set: Dataset, test_set: Optional[Dataset], indices: Optional[np.ndarray],
        seed: int, role: str, *, desc: str, track_forgetting: bool = False,
        checkpoint: Any = None) -> TrainedModel:
    """Build ``setup``'s model, train it on ``indices`` and evaluate on ``test_set``.

    Initial weights and shuffling are seeded from (``seed``, ``role``): models
    in the same role (e.g. the target trained on each method's subset) start
    from the same weights, so that methods differ only by their data.
    """
    model = create_model(setup.name, train_set.spec, seed=derive_seed(seed, "init", role),
                         **setup.options)
    tracker = ForgettingTracker(len(train_set)) if track_forgetting else None
    result = train(model, train_set, setup.train, indices=indices, eval_dataset=test_set,
                   seed=derive_seed(seed, "shuffle", role), tracker=tracker, checkpoint=checkpoint,
                   desc=desc)
    return TrainedModel(model, result, result.final_accuracy, tracker)


def model_outputs(trained: TrainedModel, dataset: Dataset, indices: Optional[np.ndarray],
                  need_features: bool, setup: ModelSetup) -> Inference:
    return infer(trained.model, dataset, indices=indices, batch_size=setup.train.eval_batch_size,
                 features=need_features, num_workers=setup.train.num_workers,
                 progress=setup.train.progress, desc="inference")


def select(method: str, budget: int, *, outputs: Optional[Inference] = None,
           tracker: Optional[ForgettingTracker] = None, pool: Optional[np.ndarray] = None,
           already_selected: Optional[np.ndarray] = None, n: Optional[int] = None,
           metric: str = "euclidean", seed: int = 0, progress: bool = False,
           groups: Optional[np.ndarray] = None) -> np.ndarray:
    """Pick ``budget`` dataset indices with ``method``.

    ``outputs`` holds the selector's features/logits of rows ``outputs.indices``
    (for k-center: all rows; for uncertainty: the candidates). ``pool`` is the
    candidate rows for random selection (default ``range(n)``). ``already_selected``
    (k-center only) are the labelled rows, never picked again. ``groups``
    (one class per dataset row) selects per class (balanced): the budget is
    split over the classes in proportion to their candidates (the
    largest-remainder rule of ``svp_fast.selection.groups``) and every method
    selects inside each class.
    """
    if method == "random":
        cand = pool if pool is not None else np.arange(n)
        return random_selection(cand, budget, seed=seed,
                                groups=None if groups is None else groups[cand])
    if method == "forgetting":
        if tracker is None:
            raise ValueError("method 'forgetting' needs the selector's forgetting tracker")
        return forgetting(tracker, budget, groups=groups)
    if outputs is None:
        raise ValueError(f"method {method!r} needs the selector's outputs")
    if method == "kcenter":
        rows = outputs.indices
        by_group = {} if groups is None else {"groups": groups[rows]}
        if already_selected is not None and already_selected.size:
            # map dataset rows to positions in the features (rows may be any order)
            pos = np.empty(int(rows.max()) + 1, dtype=np.int64)
            pos[rows] = np.arange(rows.size)
            picks = kcenter(outputs.features, budget, already_selected=pos[already_selected],
                            metric=metric, progress=progress, **by_group)
        elif groups is not None:
            # each class starts at a seeded random row of its own
            picks = kcenter(outputs.features, budget, start="random", seed=seed, metric=metric,
                            progress=progress, **by_group)
        else:
            start = int(np.random.default_rng(seed).integers(rows.size)) if rows.size else None
            picks = kcenter(outputs.features, budget, start=start, metric=metric, progress=progress)
        return rows[picks]
    if method in UNCERTAINTY_METHODS:
        by_group = {} if groups is None else {"groups": groups[outputs.indices]}
        picks = uncertainty(outputs.logits, budget, method=method, inputs="logits", **by_group)
        return outputs.indices[picks]
    raise ValueError(f"method must be one of {', '.join(repr(m) for m in METHODS)}, got {method!r}")
