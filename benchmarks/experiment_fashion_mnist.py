#!/usr/bin/env python
"""Selection via proxy on Fashion-MNIST (issue 5, "The experiment"; see EXPERIMENTS.md).

Three parts, each over several seeds, on a 2-core CPU within about an hour:

1. Core-set, 50% of the training set: the target (cnn_large) trained on all
   data, on a random half, and on halves selected by the proxy (cnn_small, fewer
   epochs) with k-center, least confidence, entropy, margin and forgetting events.
2. Active learning from 1,000 labelled examples to 10,000 with least
   confidence: selected by the proxy against selected by the target itself
   (and random), target accuracy at every labelled-set size, and the selection
   runtime (training the selector + inference + selection, summed over rounds).
3. Spearman rank correlation between proxy and target uncertainty scores on
   the unlabelled pool after training both on the initial 1,000 examples, and
   between the full-data proxy and target of part 1 on the test set.

Usage:
    python benchmarks/experiment_fashion_mnist.py --out runs/fashion-mnist        # ~1 hour
    python benchmarks/experiment_fashion_mnist.py --quick --out runs/fm-quick     # ~3 minutes

Every run (one part, one seed) is written as a complete run folder or not at
all, so ``--resume`` continues an interrupted experiment where it stopped.
The tables go to ``<out>/summary.md`` and ``<out>/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Settings:
    """Sizes chosen so the full experiment fits about an hour on 2 CPU cores.

    Measured on this machine (2 torch threads, other jobs running): cnn_small
    trains at ~10,000 images/s and infers at ~26,000/s; cnn_large (the target,
    ~6x the compute per image, like ResNet-164 against ResNet-20) trains at
    ~1,700/s and infers at ~4,000/s. Estimated time per seed: core-set ~7.5 min
    (the target trains 7 times for 3 epochs: on all 60,000 images and on six
    halves), active learning ~8 min (each selector run trains on 21,000
    labelled examples in all, 8 epochs, plus the targets), correlation ~0.5 min:
    ~48 min for three seeds. Fewer target epochs than a converged model (~93%)
    would need are the price of the hour; the comparisons are between runs
    with the same budget.
    """

    seeds: tuple = (0, 1, 2)
    train_size: int | None = None      # None: all 60,000 (quick mode subsamples)
    test_size: int | None = None       # None: all 10,000
    coreset_fraction: float = 0.5
    proxy: str = "cnn_small"
    target: str = "cnn_large"
    coreset_proxy_schedule: str = "2@0.05"
    coreset_target_schedule: str = "2@0.05,1@0.005"
    coreset_methods: tuple = ("kcenter", "least_confidence", "entropy", "margin", "forgetting",
                              "random")
    al_sizes: tuple = (1000, 2000, 4000, 6000, 8000, 10000)
    al_method: str = "least_confidence"
    # small labelled sets need more epochs for enough steps
    al_proxy_schedule: str = "6@0.05,2@0.005"
    al_target_schedule: str = "6@0.05,2@0.005"
    batch_size: int = 128
    extra: dict = field(default_factory=dict)


FULL = Settings()
QUICK = Settings(seeds=(0,), train_size=4000, test_size=1000,
                 coreset_proxy_schedule="1@0.05", coreset_target_schedule="2@0.05",
                 al_sizes=(200, 400, 800), al_proxy_schedule="4@0.05",
                 al_target_schedule="4@0.05")


# ----------------------------------------------------------------------------- helpers

def subsample(dataset, size, seed, norm=None):
    """A class-balanced random subset of an in-memory dataset (quick mode)."""
    from svp_fast.data import ArrayDataset

    if size is None or size >= len(dataset):
        return dataset
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(dataset), size=size, replace=False))
    return ArrayDataset(dataset.inputs[idx], dataset.labels[idx], num_classes=dataset.num_classes,
                        augmentation=dataset.augmentation, name=f"{dataset.name}[{size}]",
                        **(norm or dataset.normalisation()))


def setup(name, schedule, settings):
    from svp_fast.pipelines.common import ModelSetup
    from svp_fast.proxy import TrainConfig

    # evaluation only after the last epoch: per-epoch test passes would cost
    # ~15% more time and change no result
    return ModelSetup(name, TrainConfig(schedule, batch_size=settings.batch_size, eval_every=0,
                                        progress=False))


def load_json(path: Path):
    return json.loads(path.read_text())


def mean_sd(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    m = float(np.mean(values))
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return m, sd


def fmt(values, scale=1.0, digits=2):
    m, sd = mean_sd(values)
    if m is None:
        return "-"
    return f"{m * scale:.{digits}f} ± {sd * scale:.{digits}f}"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- the three parts

def run_or_resume(folder: Path, args, run):
    """Run one part for one seed into ``folder`` unless it is already complete."""
    if (folder / "results.json").is_file() and args.resume:
        log(f"  {folder.relative_to(args.out)}: already done, reused")
        return
    t0 = time.perf_counter()
    run(folder)
    log(f"  {folder.relative_to(args.out)}: done in {time.perf_counter() - t0:.0f} s")


def coreset_part(args, settings, train, test):
    from svp_fast.pipelines.coreset import run_coreset

    for seed in settings.seeds:
        run_or_resume(args.out / "coreset" / f"seed{seed}", args, lambda folder: run_coreset(
            train, test, methods=list(settings.coreset_methods), size=settings.coreset_fraction,
            selector="proxy", include_full=True, seed=seed, out_dir=folder,
            overwrite=args.overwrite,
            proxy=setup(settings.proxy, settings.coreset_proxy_schedule, settings),
            target=setup(settings.target, settings.coreset_target_schedule, settings)))


AL_RUNS = {  # run folder -> (selector, method, target at every size)
    "active-proxy": ("proxy", None, True),
    "active-target": ("target", None, True),
    "active-random": ("proxy", "random", False),
}


def active_part(args, settings, train, test):
    from svp_fast.pipelines.active import run_active

    for name, (selector, method, each_round) in AL_RUNS.items():
        for seed in settings.seeds:
            run_or_resume(args.out / name / f"seed{seed}", args, lambda folder: run_active(
                train, test, methods=method or settings.al_method, sizes=list(settings.al_sizes),
                selector=selector, target_each_round=each_round, seed=seed, out_dir=folder,
                overwrite=args.overwrite, save_models=False,
                proxy=setup(settings.proxy, settings.al_proxy_schedule, settings),
                target=setup(settings.target, settings.al_target_schedule, settings)))


def spearman_part(args, settings, train, test):
    from scipy.stats import spearmanr

    from svp_fast._util import atomic_write
    from svp_fast.pipelines.common import derive_seed, fit
    from svp_fast.proxy import infer, load_checkpoint
    from svp_fast.selection.random import random_selection
    from svp_fast.selection.uncertainty import uncertainty_scores

    methods = ("least_confidence", "entropy", "margin")

    def correlations(proxy_logits, target_logits):
        out = {}
        for m in methods:
            p = uncertainty_scores(proxy_logits, method=m)
            t = uncertainty_scores(target_logits, method=m)
            rho = spearmanr(p, t).statistic
            k = max(1, len(p) // 10)  # overlap of the 10% most uncertain
            top_p = set(np.argsort(-p, kind="stable")[:k].tolist())
            top_t = set(np.argsort(-t, kind="stable")[:k].tolist())
            out[m] = {"spearman": float(rho), "top10_overlap": len(top_p & top_t) / k}
        return out

    for seed in settings.seeds:
        path = args.out / "spearman" / f"seed{seed}.json"
        if path.is_file() and args.resume:
            log(f"  spearman/seed{seed}.json: already done, reused")
            continue
        if path.exists() and not args.overwrite:
            raise FileExistsError(f"{path} exists; pass --resume or --overwrite")
        t0 = time.perf_counter()
        record = {"seed": seed}
        # (a) the active-learning setting: both models trained on the same random
        # initial set as the active-learning runs (same seeds and roles, so the
        # same models as their first round), scored on the unlabelled pool
        initial = random_selection(len(train), settings.al_sizes[0],
                                   seed=derive_seed(seed, "initial"))
        pool = np.setdiff1d(np.arange(len(train)), initial)
        logits = {}
        for role, name, schedule in (("proxy", settings.proxy, settings.al_proxy_schedule),
                                     ("target", settings.target, settings.al_target_schedule)):
            trained = fit(setup(name, schedule, settings), train, test, initial, seed,
                          f"{role}/round0", desc=role)
            logits[role] = infer(trained.model, train, indices=pool, features=False).logits
        record["initial_pool"] = {"labelled": int(initial.size), "pool": int(pool.size),
                                  **correlations(logits["proxy"], logits["target"])}
        # (b) the core-set models trained on all data, scored on the test set
        run = args.out / "coreset" / f"seed{seed}"
        if (run / "selector.pt").is_file() and (run / "target_all.pt").is_file():
            p = infer(load_checkpoint(run / "selector.pt"), test, features=False).logits
            t = infer(load_checkpoint(run / "target_all.pt"), test, features=False).logits
            record["full_data_test"] = {"examples": len(test), **correlations(p, t)}
        atomic_write(path, lambda f: f.write(json.dumps(record, indent=2).encode()))
        log(f"  spearman/seed{seed}.json: done in {time.perf_counter() - t0:.0f} s")


# ----------------------------------------------------------------------------- summary

def summarise(args, settings) -> str:
    """Tables of mean ± sd over seeds, from the run folders on disk."""
    lines = [f"# Selection via proxy on Fashion-MNIST{' (QUICK RUN: reduced setting)' if args.quick else ''}",
             "", f"Seeds: {list(settings.seeds)}. Mean ± sample standard deviation over seeds. "
             f"Proxy {settings.proxy}, target {settings.target}.", ""]
    summary: dict = {"settings": {k: v for k, v in settings.__dict__.items()}, "quick": args.quick}
    meta_path = args.out / "experiment.json"
    if meta_path.is_file():
        meta = load_json(meta_path)
        summary["experiment"] = meta
        load = [meta.get(k) for k in ("load_average_at_start", "load_average_at_end")]
        load = ", ".join("?" if v is None else f"{v[0]:.1f}" for v in load)
        lines += [f"Command: `{meta.get('command')}`; {meta.get('torch_threads')} torch threads; "
                  f"{meta.get('train')} training / {meta.get('test')} test images; "
                  f"{meta.get('minutes', float('nan')):.1f} min; 1-minute load average at start, "
                  f"end: {load} (on 2 cores, a load above 2 means other jobs shared the cores "
                  "and stretched the times).", ""]

    # 1. core-set
    runs = [load_json(p) for p in sorted((args.out / "coreset").glob("seed*/results.json"))]
    if runs:
        rows = {}
        for r in runs:
            for row in r["summary"]:
                rows.setdefault(row["method"], []).append(row)
        full = rows.get("all data", [])
        full_acc = {i: row["accuracy"] for i, row in enumerate(full)}
        full_total = {i: row["total_seconds"] for i, row in enumerate(full)}
        lines += ["## 1. Core-set: 50% of the training set", "",
                  f"Proxy schedule {settings.coreset_proxy_schedule}, target schedule "
                  f"{settings.coreset_target_schedule}. Δ = accuracy minus the same seed's "
                  "all-data accuracy (points); speed-up = all-data total time / this row's total "
                  "time (proxy training + inference + selection + target training).", "",
                  "| method | labelled | target acc % | Δ vs all data (pts) | selection runtime s "
                  "| target training s | total s | end-to-end speed-up |",
                  "|---|---|---|---|---|---|---|---|"]
        table = []
        for method, rs in rows.items():
            delta = [100 * (row["accuracy"] - full_acc[i]) for i, row in enumerate(rs)
                     if i in full_acc]
            speed = [full_total[i] / row["total_seconds"] for i, row in enumerate(rs)
                     if i in full_total and row["total_seconds"]]
            entry = {"method": method, "labelled": rs[0]["labelled"],
                     "accuracy": mean_sd([row["accuracy"] for row in rs]),
                     "delta_points": mean_sd(delta),
                     "selection_runtime_seconds": mean_sd([row["selection_runtime_seconds"] for row in rs]),
                     "target_training_seconds": mean_sd([row["target_training_seconds"] for row in rs]),
                     "total_seconds": mean_sd([row["total_seconds"] for row in rs]),
                     "speedup": mean_sd(speed)}
            table.append(entry)
            lines.append(
                f"| {method} | {rs[0]['labelled']} | {fmt([row['accuracy'] for row in rs], 100)} | "
                f"{'-' if method == 'all data' else fmt(delta)} | "
                f"{fmt([row['selection_runtime_seconds'] for row in rs], digits=1)} | "
                f"{fmt([row['target_training_seconds'] for row in rs], digits=1)} | "
                f"{fmt([row['total_seconds'] for row in rs], digits=1)} | "
                f"{'-' if method == 'all data' else fmt(speed) + 'x'} |")
        summary["coreset"] = table
        lines.append("")

    # 2. active learning
    al = {}
    for name in AL_RUNS:
        rs = [load_json(p) for p in sorted((args.out / name).glob("seed*/results.json"))]
        if rs:
            al[name] = rs
    if al:
        lines += ["## 2. Active learning: "
                  f"{settings.al_sizes[0]:,} -> {settings.al_sizes[-1]:,} labelled, "
                  f"{settings.al_method}", "",
                  f"Selector schedules: proxy {settings.al_proxy_schedule}, target "
                  f"{settings.al_target_schedule}. Selection runtime = training the selector + "
                  "inference on the pool + selection, summed over rounds.", "",
                  "| selected by | final target acc % | selection runtime s | target training s "
                  "| total s |", "|---|---|---|---|---|"]
        table = []
        for name, rs in al.items():
            rows = [r["summary"][0] for r in rs]
            table.append({"run": name, "accuracy": mean_sd([row["accuracy"] for row in rows]),
                          "selection_runtime_seconds": mean_sd(
                              [row["selection_runtime_seconds"] for row in rows])})
            lines.append(f"| {name.split('-')[1]} | {fmt([row['accuracy'] for row in rows], 100)} | "
                         f"{fmt([row['selection_runtime_seconds'] for row in rows], digits=1)} | "
                         f"{fmt([row['target_training_seconds'] for row in rows], digits=1)} | "
                         f"{fmt([row['total_seconds'] for row in rows], digits=1)} |")
        summary["active"] = table
        if "active-proxy" in al and "active-target" in al:
            ratios = [t["summary"][0]["selection_runtime_seconds"] /
                      p["summary"][0]["selection_runtime_seconds"]
                      for p, t in zip(al["active-proxy"], al["active-target"])]
            summary["active_selection_speedup"] = mean_sd(ratios)
            lines += ["", f"Selection runtime speed-up (target-selected / proxy-selected, per seed): "
                      f"{fmt(ratios)}x", ""]
        # accuracy per round (target trained on each labelled set)
        lines += ["Target accuracy (%) at each labelled-set size:", "",
                  "| labelled | " + " | ".join(n.split("-")[1] for n in al) + " |",
                  "|---|" + "---|" * len(al)]
        per_round = {}
        for size in settings.al_sizes:
            cells = []
            for name, rs in al.items():
                accs = [r["target_accuracy"] for run in rs for r in run["rounds"]
                        if r["labelled"] == size and r.get("target_accuracy") is not None]
                per_round.setdefault(name, {})[size] = mean_sd(accs)
                cells.append(fmt(accs, 100))
            lines.append(f"| {size} | " + " | ".join(cells) + " |")
        summary["active_per_round"] = per_round
        lines.append("")
        plot_active(args.out / "active_learning.png", per_round, al)

    # 3. Spearman
    recs = [load_json(p) for p in sorted((args.out / "spearman").glob("seed*.json"))]
    if recs:
        lines += ["## 3. Rank correlation of proxy and target uncertainty", "",
                  "Spearman's rho between the proxy's and the target's scores, and the share of "
                  "the 10% most uncertain examples they agree on.", "",
                  "| method | rho, pool after the initial set | top-10% overlap | rho, full-data "
                  "models on the test set | top-10% overlap |", "|---|---|---|---|---|"]
        table = {}
        for m in ("least_confidence", "entropy", "margin"):
            a = [r["initial_pool"][m] for r in recs]
            b = [r["full_data_test"][m] for r in recs if "full_data_test" in r]
            table[m] = {"initial_pool": mean_sd([x["spearman"] for x in a]),
                        "full_data_test": mean_sd([x["spearman"] for x in b])}
            lines.append(f"| {m} | {fmt([x['spearman'] for x in a], digits=3)} | "
                         f"{fmt([x['top10_overlap'] for x in a], digits=3)} | "
                         f"{fmt([x['spearman'] for x in b], digits=3)} | "
                         f"{fmt([x['top10_overlap'] for x in b], digits=3)} |")
        summary["spearman"] = table
        lines.append("")
    summary["markdown"] = "\n".join(lines)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (args.out / "summary.md").write_text(summary["markdown"] + "\n")
    return summary["markdown"]


def plot_active(path: Path, per_round: dict, al: dict) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax, bx = fig.subplots(1, 2)
    for name, points in per_round.items():
        xs = [s for s, (m, _) in points.items() if m is not None]
        if not xs:
            continue
        ms = np.array([points[s][0] for s in xs]) * 100
        sds = np.array([points[s][1] for s in xs]) * 100
        ax.errorbar(xs, ms, yerr=sds, marker="o", capsize=3, label=name.split("-")[1] + "-selected")
    from svp_fast.pipelines.results import cap_percent_axis

    cap_percent_axis(ax, "y")  # mean + sd may pass 100; accuracy cannot
    ax.set_xlabel("labelled-set size")
    ax.set_ylabel("target test accuracy (%)")
    ax.set_title("active learning (mean ± sd over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    names = [n for n in al if n != "active-random"]
    means = [np.mean([r["summary"][0]["selection_runtime_seconds"] for r in al[n]]) for n in names]
    bx.bar([n.split("-")[1] + "-selected" for n in names], means, color=["C0", "C1"][:len(names)])
    bx.set_ylabel("selection runtime (s)")
    bx.set_title("training the selector + inference + selection")
    fig.savefig(path, dpi=110)


# ----------------------------------------------------------------------------- main

PARTS = ("coreset", "active", "spearman")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="experiment folder")
    parser.add_argument("--quick", action="store_true",
                        help="reduced setting (4,000 training images, 1 seed, short schedules): "
                             "checks the whole experiment end to end in a few minutes")
    parser.add_argument("--seeds", help="comma-separated seeds (default 0,1,2; quick: 0)")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"which parts to run, comma-separated (default {','.join(PARTS)})")
    parser.add_argument("--data-dir", help="Fashion-MNIST folder (default: the Debian package's)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs already complete in --out and do the rest")
    parser.add_argument("--overwrite", action="store_true", help="redo runs that exist")
    parser.add_argument("--summary-only", action="store_true",
                        help="only rebuild summary.md/json and the plot from the runs on disk")
    args = parser.parse_args(argv)

    settings = QUICK if args.quick else FULL
    if args.seeds:
        settings = Settings(**{**settings.__dict__,
                               "seeds": tuple(int(s) for s in args.seeds.split(","))})
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"--parts: unknown {unknown}; choose from {PARTS}")
    if args.summary_only:
        print(summarise(args, settings))
        return 0
    if args.out.exists() and any(args.out.iterdir()) and not (args.resume or args.overwrite):
        parser.error(f"{args.out} exists and is not empty; pass --resume to continue it or "
                     "--overwrite to redo its runs")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from svp_fast.data import load_fashion_mnist

    args.out.mkdir(parents=True, exist_ok=True)
    splits = load_fashion_mnist(args.data_dir)
    train = subsample(splits.train, settings.train_size, seed=1234)
    test = subsample(splits.test, settings.test_size, seed=5678, norm=train.normalisation())
    meta = {"command": " ".join([Path(sys.argv[0]).name] + (sys.argv[1:] if argv is None else list(argv))),
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "train": len(train), "test": len(test), "settings": settings.__dict__,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            # other jobs on the machine skew times: keep the load next to them
            "load_average_at_start": os.getloadavg()}
    (args.out / "experiment.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    log(f"Fashion-MNIST: {len(train)} train / {len(test)} test, seeds {list(settings.seeds)}, "
        f"{torch.get_num_threads()} torch threads")
    t0 = time.perf_counter()
    for part, fn in (("coreset", coreset_part), ("active", active_part), ("spearman", spearman_part)):
        if part in parts:
            log(f"part {part}")
            fn(args, settings, train, test)
    minutes = (time.perf_counter() - t0) / 60
    meta.update({"minutes": minutes, "load_average_at_end": os.getloadavg()})
    (args.out / "experiment.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    log(f"all parts done in {minutes:.1f} min (load average now {os.getloadavg()[0]:.1f})")
    print(summarise(args, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
