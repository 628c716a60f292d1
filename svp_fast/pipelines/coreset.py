"""Core-set selection via proxy.

train the selector on all training data -> infer features/logits (no
augmentation) -> select a subset with each method -> train the target on each
subset -> test accuracy, with the time of every stage.

The selector is the proxy (``selector="proxy"``, SVP) or the target itself
(``selector="target"``, the baseline SVP speeds up). Several methods share one
trained selector and one inference pass; each method's summary row charges
them in full, so its ``total_seconds`` is what that method alone would cost.
``include_full=True`` adds the reference row "all data": the target trained on
the whole training set.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, Optional, Sequence, Union

from .._util import count_from_size
from ..data.base import Dataset
from ..proxy.training import TrainConfig
from .common import (SELECTORS, UNCERTAINTY_METHODS, ModelSetup, StageLog, StageRecord,
                     check_methods, check_seed, fit, model_outputs, select)
from .results import FULL_DATA, RunResult, run_metadata, summary_row, write_run
from .run_folder import RunFolder, check_run_folder

FULL = FULL_DATA  # the reference row: the target trained on all the data


def as_setup(value: Union[str, ModelSetup], name: str) -> ModelSetup:
    if isinstance(value, ModelSetup):
        return value
    if isinstance(value, str):
        return ModelSetup(value, TrainConfig(progress=False))
    raise TypeError(f"{name} must be a model name or a ModelSetup, got {type(value).__name__}")


def check_datasets(train_set: Any, test_set: Any) -> None:
    if not isinstance(train_set, Dataset):
        raise TypeError(f"train_set must be a svp_fast Dataset, got {type(train_set).__name__}")
    if test_set is not None and not isinstance(test_set, Dataset):
        raise TypeError(f"test_set must be a svp_fast Dataset or None, got {type(test_set).__name__}")
    if len(train_set) == 0:
        raise ValueError("train_set is empty")


def check_selection_setup(selector: str, metric: str, proxy: Union[str, ModelSetup],
                          target: Union[str, ModelSetup], seed: Any):
    """The arguments both pipelines share; returns (proxy, target, seed) as the
    pipelines use them."""
    if selector not in SELECTORS:
        raise ValueError(f"selector must be one of {SELECTORS}, got {selector!r}")
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    return as_setup(proxy, "proxy"), as_setup(target, "target"), check_seed(seed)


def run_coreset(train_set: Dataset, test_set: Optional[Dataset] = None, *,
                methods: Union[str, Sequence[str]] = "kcenter", size: Union[int, float] = 0.5,
                selector: str = "proxy", proxy: Union[str, ModelSetup] = "mlp_small",
                target: Union[str, ModelSetup] = "mlp_large", include_full: bool = False,
                metric: str = "euclidean", seed: int = 0, out_dir: Any = None,
                overwrite: bool = False, save_models: bool = True,
                progress: bool = False, balanced: bool = False,
                extra_config: Optional[dict] = None,
                on_stage: Optional[Callable[[StageRecord], None]] = None) -> RunResult:
    """Run the core-set pipeline; see the module docstring.

    Args:
        train_set, test_set: datasets (test accuracy is None without a test set).
        methods: one or several of "kcenter", "least_confidence", "entropy",
            "margin", "forgetting", "random".
        size: the subset: a count of examples (int) or a fraction (float) of the
            training set.
        selector: "proxy" or "target": which model selects.
        proxy, target: model names (default training) or :class:`ModelSetup`.
        include_full: also train the target on all the data (the reference). With
            ``selector="target"`` the selector *is* that model and is reused.
        metric: k-center metric, "euclidean" or "cosine".
        seed: seeds model initialisation, shuffling, augmentation, the k-center
            start and random selection.
        out_dir: write the run folder here (see :mod:`svp_fast.pipelines.run_folder`);
            refused before any work if it exists, unless ``overwrite``.
        save_models: write the selector and target checkpoints into the run folder.
        progress: progress bars for k-center (training bars follow each
            setup's ``TrainConfig.progress``).
        balanced: select inside each class (the training labels): the
            subset's size is split over the classes in proportion to their
            sizes by the largest-remainder rule, and every method selects
            inside each class (k-center from a seeded random start per class).
        extra_config: recorded in config.json (e.g. the command line).
        on_stage: called with each :class:`~svp_fast.pipelines.common.StageRecord`
            as its stage ends (training, inference, selection), e.g. to print
            progress.
    """
    check_datasets(train_set, test_set)
    methods = check_methods(methods)
    proxy, target, seed = check_selection_setup(selector, metric, proxy, target, seed)
    n = len(train_set)
    budget = count_from_size(size, n, "size")
    if budget < 1:
        raise ValueError(f"size must keep at least one of the {n} examples, got {size!r}")
    if out_dir is not None:
        check_run_folder(out_dir, overwrite)
    sel_setup = proxy if selector == "proxy" else target
    needs_selector = any(m != "random" for m in methods)
    config = {
        "kind": "coreset", "methods": methods, "size": size, "budget": budget, "selector": selector,
        "proxy": proxy.to_json(), "target": target.to_json(), "include_full": include_full,
        "metric": metric, "seed": seed, "save_models": save_models, "balanced": bool(balanced),
        "train_set": train_set.describe(),
        "test_set": test_set.describe() if test_set is not None else None,
        "meta": run_metadata(), **(extra_config or {}),
    }
    log = StageLog(on_stage)
    folder = RunFolder(out_dir, overwrite=overwrite) if out_dir is not None else None
    with folder if folder is not None else nullcontext():
        def ckpt(name):
            return folder.file(name) if folder is not None and save_models else None

        shared: dict[str, float] = {}
        sel = sel_acc = outputs = None
        if needs_selector:
            sel = fit(sel_setup, train_set, test_set, None, seed, f"{selector}/all",
                      desc=f"{selector} ({sel_setup.name})",
                      track_forgetting="forgetting" in methods, checkpoint=ckpt("selector.pt"))
            sel_acc = sel.accuracy
            shared["selector_training"] = sel.result.train_seconds
            log.add(method="shared", stage="selector_training", model=sel_setup.name, round=0,
                    labelled=n, seconds=sel.result.train_seconds, accuracy=sel_acc)
            if any(m == "kcenter" or m in UNCERTAINTY_METHODS for m in methods):
                outputs = model_outputs(sel, train_set, None, "kcenter" in methods, sel_setup)
                shared["inference"] = outputs.seconds
                log.add(method="shared", stage="inference", model=sel_setup.name, round=0,
                        labelled=n, seconds=outputs.seconds)

        summary, selected = [], {}
        if include_full:
            if selector == "target" and sel is not None:
                full_acc, full_seconds = sel.accuracy, sel.result.train_seconds
            else:
                full = fit(target, train_set, test_set, None, seed, "target/all",
                           desc=f"target ({target.name}) on all",
                           checkpoint=ckpt("target_all.pt"))
                full_acc, full_seconds = full.accuracy, full.result.train_seconds
                log.add(method=FULL, stage="target_training", model=target.name, round=0,
                        labelled=n, seconds=full_seconds, accuracy=full_acc)
            summary.append(summary_row(FULL, None, n, full_acc, None,
                                       {"target_training": full_seconds}))

        for method in methods:
            with log.time(method=method, stage="selection", model=sel_setup.name
                          if method != "random" else "", round=0, labelled=budget) as rec:
                idx = select(method, budget, outputs=outputs,
                             tracker=sel.tracker if sel is not None else None, n=n, metric=metric,
                             seed=seed, progress=progress,
                             groups=train_set.labels if balanced else None)
            selected[method] = idx
            tgt = fit(target, train_set, test_set, idx, seed, "target/subset",
                      desc=f"target ({target.name}) on {method}",
                      checkpoint=ckpt(f"target_{method}.pt"))
            log.add(method=method, stage="target_training", model=target.name, round=0,
                    labelled=budget, seconds=tgt.result.train_seconds, accuracy=tgt.accuracy)
            seconds = {"selection": rec.seconds, "target_training": tgt.result.train_seconds}
            if method != "random":
                seconds["selector_training"] = shared["selector_training"]
            if method == "kcenter" or method in UNCERTAINTY_METHODS:
                seconds["inference"] = shared["inference"]
            summary.append(summary_row(method, selector if method != "random" else None, budget,
                                       tgt.accuracy, sel_acc if method != "random" else None,
                                       seconds))

        result = RunResult("coreset", config, log.to_rows(), summary, selected)
        if folder is not None:
            write_run(folder, result, log)
    if folder is not None:
        result.out_dir = folder.path
    return result
