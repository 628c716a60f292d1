"""Active learning via proxy.

A random initial labelled set of ``sizes[0]`` examples, then one round per
further entry of ``sizes``: train the selector from scratch on the labelled
set, infer on the unlabelled pool (k-center also needs the labelled rows'
features: they are its initial centers), select up to the next size, reveal
those labels. Finally the target trains on the final labelled set.

The selector is the proxy (SVP) or the target itself (the baseline). Each
method follows its own trajectory from the same initial set. The selection
runtime SVP cuts is the sum over rounds of selector training, inference and
selection (``selection_runtime_seconds`` in the summary). With ``target_each_round``
the target is also trained on every round's labelled set to draw its accuracy
against the labelled-set size (not counted as selection time; free when the
selector is the target).
"""

from __future__ import annotations

import numbers
from contextlib import nullcontext
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from ..data.base import Dataset
from ..selection.random import random_selection
from .common import (ModelSetup, StageLog, StageRecord, check_methods, derive_seed, fit,
                     model_outputs, select)
from .coreset import check_datasets, check_selection_setup
from .results import RunResult, run_metadata, summary_row, write_run
from .run_folder import RunFolder, check_run_folder

ACTIVE_METHODS = ("kcenter", "least_confidence", "entropy", "margin", "random")


def active_sizes(initial: int, round_size: int, final: int) -> list[int]:
    """Labelled-set sizes ``initial, initial + round_size, ...`` up to ``final`` (included)."""
    for name, v in (("initial", initial), ("round_size", round_size), ("final", final)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if final < initial:
        raise ValueError(f"final ({final}) must be >= initial ({initial})")
    sizes = list(range(initial, final, round_size)) + [final]
    return sizes


def check_sizes(sizes: Sequence[int], n: int) -> list[int]:
    try:
        out = [int(s) for s in sizes]
    except (TypeError, ValueError):
        raise TypeError(f"sizes must be a sequence of integers, got {sizes!r}") from None
    if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) for s in sizes):
        raise TypeError(f"sizes must be integers, got {list(sizes)!r}")
    if not out:
        raise ValueError("sizes must hold at least the initial labelled-set size")
    if out[0] < 1:
        raise ValueError(f"sizes[0] (the initial labelled set) must be >= 1, got {out[0]}")
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"sizes must increase strictly, got {out}")
    if out[-1] > n:
        raise ValueError(f"sizes must be at most the training-set size ({n}), got {out[-1]}")
    return out


def run_active(train_set: Dataset, test_set: Optional[Dataset] = None, *,
               methods: Union[str, Sequence[str]] = "least_confidence",
               sizes: Sequence[int] = (100, 200, 300), selector: str = "proxy",
               proxy: Union[str, ModelSetup] = "mlp_small",
               target: Union[str, ModelSetup] = "mlp_large", target_each_round: bool = False,
               metric: str = "euclidean", seed: int = 0, out_dir: Any = None,
               overwrite: bool = False, save_models: bool = True, progress: bool = False,
               balanced: bool = False, extra_config: Optional[dict] = None,
               on_stage: Optional[Callable[[StageRecord], None]] = None) -> RunResult:
    """Run active learning; see the module docstring.

    Args:
        methods: one or several of "kcenter", "least_confidence", "entropy",
            "margin", "random" (forgetting events need every example to be
            trained on, so they are a core-set method only).
        sizes: labelled-set sizes: the random initial set, then after each round
            (strictly increasing, at most the training-set size). See
            :func:`active_sizes`.
        balanced: select inside each class. The pool's labels are unknown, so
            a pool row's class is the selector's prediction (labelled rows
            keep their label); the round's budget is split over the classes
            in proportion to their predicted pool sizes. Random selection has
            no selector and stays uniform.
        Other arguments as in :func:`svp_fast.pipelines.run_coreset`.
    """
    check_datasets(train_set, test_set)
    if isinstance(methods, str) and methods == "forgetting" or (
            not isinstance(methods, str) and "forgetting" in list(methods)):
        raise ValueError("method 'forgetting' needs every example to be trained on; it is a "
                         "core-set method (use run_coreset / `svp-fast coreset`)")
    methods = check_methods(methods, ACTIVE_METHODS)
    proxy, target, seed = check_selection_setup(selector, metric, proxy, target, seed)
    n = len(train_set)
    sizes = check_sizes(sizes, n)
    if out_dir is not None:
        check_run_folder(out_dir, overwrite)
    sel_setup = proxy if selector == "proxy" else target
    config = {
        "kind": "active", "methods": methods, "sizes": sizes, "selector": selector,
        "proxy": proxy.to_json(), "target": target.to_json(),
        "target_each_round": target_each_round, "metric": metric, "seed": seed,
        "save_models": save_models, "balanced": bool(balanced),
        "train_set": train_set.describe(),
        "test_set": test_set.describe() if test_set is not None else None,
        "meta": run_metadata(), **(extra_config or {}),
    }
    initial = random_selection(n, sizes[0], seed=derive_seed(seed, "initial"))
    log = StageLog(on_stage)
    folder = RunFolder(out_dir, overwrite=overwrite) if out_dir is not None else None
    summary, rounds, selected = [], [], {}
    with folder if folder is not None else nullcontext():
        for method in methods:
            labelled = initial.copy()
            totals = {"selector_training": 0.0, "inference": 0.0, "selection": 0.0}
            sel_acc = None
            for r, next_size in enumerate(sizes[1:]):
                size = labelled.size
                row = {"method": method, "round": r, "labelled": size, "selector_accuracy": None,
                       "target_accuracy": None}
                in_labelled = np.zeros(n, dtype=bool)
                in_labelled[labelled] = True
                pool = np.flatnonzero(~in_labelled)
                sel = outputs = None
                if method != "random":
                    sel = fit(sel_setup, train_set, test_set, labelled, seed, f"{selector}/round{r}",
                              desc=f"{method} round {r}: {selector} ({sel_setup.name})")
                    sel_acc = row["selector_accuracy"] = sel.accuracy
                    log.add(method=method, stage="selector_training", model=sel_setup.name,
                            round=r, labelled=size, seconds=sel.result.train_seconds,
                            accuracy=sel.accuracy)
                    totals["selector_training"] += sel.result.train_seconds
                    # k-center measures distances to the labelled rows too
                    rows = None if method == "kcenter" else pool
                    outputs = model_outputs(sel, train_set, rows, method == "kcenter", sel_setup)
                    log.add(method=method, stage="inference", model=sel_setup.name, round=r,
                            labelled=size, seconds=outputs.seconds)
                    totals["inference"] += outputs.seconds
                if target_each_round:
                    if selector == "target" and sel is not None:
                        row["target_accuracy"] = sel.accuracy
                    else:
                        tgt = fit(target, train_set, test_set, labelled, seed, f"target/round{r}",
                                  desc=f"{method} round {r}: target ({target.name})")
                        row["target_accuracy"] = tgt.accuracy
                        log.add(method=method, stage="target_per_round", model=target.name,
                                round=r, labelled=size, seconds=tgt.result.train_seconds,
                                accuracy=tgt.accuracy)
                with log.time(method=method, stage="selection", model=sel_setup.name
                              if sel is not None else "", round=r, labelled=size) as rec:
                    groups = None
                    if balanced and outputs is not None:
                        # the labelled rows' classes, the pool's as the selector predicts
                        groups = train_set.labels.copy()
                        groups[outputs.indices] = np.where(in_labelled[outputs.indices],
                                                           groups[outputs.indices],
                                                           outputs.predictions)
                    picks = select(method, next_size - size, outputs=outputs, pool=pool,
                                   already_selected=labelled, metric=metric,
                                   seed=derive_seed(seed, "random", method, r), progress=progress,
                                   groups=groups)
                totals["selection"] += rec.seconds
                rounds.append(row)
                labelled = np.concatenate([labelled, picks.astype(np.int64)])
            final = fit(target, train_set, test_set, labelled, seed, "target/final",
                        desc=f"{method} final: target ({target.name})",
                        checkpoint=folder.file(f"target_{method}.pt")
                        if folder is not None and save_models else None)
            log.add(method=method, stage="target_training", model=target.name,
                    round=len(sizes) - 1, labelled=labelled.size,
                    seconds=final.result.train_seconds, accuracy=final.accuracy)
            rounds.append({"method": method, "round": len(sizes) - 1, "labelled": int(labelled.size),
                           "selector_accuracy": None, "target_accuracy": final.accuracy})
            selected[method] = labelled
            summary.append(summary_row(method, selector if method != "random" else None,
                                       labelled.size, final.accuracy,
                                       sel_acc if method != "random" else None,
                                       {**totals, "target_training": final.result.train_seconds}))
        result = RunResult("active", config, log.to_rows(), summary, selected, rounds)
        if folder is not None:
            write_run(folder, result, log)
    if folder is not None:
        result.out_dir = folder.path
    return result
