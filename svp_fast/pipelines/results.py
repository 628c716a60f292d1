"""What a pipeline run returns and writes: summary rows, a table, a plot."""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .common import STAGES, StageLog
from .run_folder import RunFolder

# summary columns holding seconds, in stage order
SECONDS_COLUMNS = tuple(f"{s}_seconds" for s in STAGES)


@dataclass
class RunResult:
    """A pipeline run.

    Attributes:
        kind: "coreset" or "active".
        config: everything that defines the run (JSON-able; ``config.json``).
        stages: timed stages (``stages.csv``): method ("shared" for a stage
            several methods use, e.g. the proxy trained once for all of them),
            stage, model, round, labelled-set size, seconds, test accuracy of the
            model trained there.
        summary: one row per method (and "all data" for a core-set run with the
            full-data reference): target accuracy, the labelled-set size, seconds
            per stage (``<stage>_seconds``), ``selection_runtime_seconds``
            (selector training + inference + selection: the cost SVP cuts) and
            ``total_seconds``.
        rounds: active learning only: one row per method and round (labelled-set
            size, selector and, where trained, target accuracy).
        selected: method -> selected dataset indices (int64; for active
            learning the final labelled set in acquisition order).
        out_dir: the run folder, when one was written.
    """

    kind: str
    config: dict
    stages: list
    summary: list
    selected: dict
    rounds: list = field(default_factory=list)
    out_dir: Optional[Path] = None

    def accuracy(self, method: str) -> Optional[float]:
        """Target accuracy of ``method``'s row in the summary."""
        for row in self.summary:
            if row["method"] == method:
                return row["accuracy"]
        raise KeyError(f"no summary row for method {method!r}; have "
                       f"{[r['method'] for r in self.summary]}")

    def table(self) -> str:
        return format_table(self.summary)

    def to_json(self) -> dict:
        return {"kind": self.kind, "summary": self.summary, "rounds": self.rounds,
                "stages": self.stages,
                "selected_sizes": {m: int(v.size) for m, v in self.selected.items()}}


def run_metadata() -> dict:
    import torch

    from .. import __version__

    return {"svp_fast": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def summary_row(method: str, selector: Optional[str], labelled: int, accuracy: Optional[float],
                selector_accuracy: Optional[float], seconds: dict) -> dict:
    row = {"method": method, "selector": selector or "", "labelled": int(labelled),
           "accuracy": accuracy, "selector_accuracy": selector_accuracy}
    for stage in STAGES:
        row[f"{stage}_seconds"] = float(seconds.get(stage, 0.0))
    # the paper's "data selection runtime": training the selector, inference, selection
    row["selection_runtime_seconds"] = sum(row[f"{s}_seconds"] for s in STAGES[:3])
    row["total_seconds"] = row["selection_runtime_seconds"] + row["target_training_seconds"]
    return row


def _fmt_acc(a) -> str:
    return "-" if a is None or (isinstance(a, float) and math.isnan(a)) else f"{100 * a:.2f}"


def _fmt_s(s) -> str:
    return "-" if not s else f"{s:.1f}"


def format_table(summary: list, reference: Optional[dict] = None) -> str:
    """A plain-text table: accuracy (%) and seconds per stage, one row per
    summary row; with a ``reference`` row (e.g. the target on all data), also
    each row's end-to-end speed-up over it."""
    head = ["method", "selector", "labelled", "acc %", "sel. acc %", "train sel. s", "infer s",
            "select s", "train target s", "total s"]
    if reference is not None:
        head.append("speed-up")
    rows = [head]
    for r in summary:
        row = ([r["method"], r["selector"] or "-", str(r["labelled"]), _fmt_acc(r["accuracy"]),
                _fmt_acc(r["selector_accuracy"])]
               + [_fmt_s(r[c]) for c in SECONDS_COLUMNS] + [_fmt_s(r["total_seconds"])])
        if reference is not None:
            ratio = reference["total_seconds"] / r["total_seconds"] if r["total_seconds"] else None
            row.append("-" if ratio is None else f"{ratio:.2f}x")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for k, row in enumerate(rows):
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot(result: RunResult, path: Path) -> None:
    """Accuracy against labelled-set size, and seconds per stage, to a PNG (Agg backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # a Figure on an Agg canvas, without pyplot: no global state, no GUI
    # backend (works on headless machines), nothing left open afterwards
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax_acc, ax_time = fig.subplots(1, 2)
    # one colour per method across the curves and the final point
    methods = list(dict.fromkeys([r["method"] for r in result.rounds]
                                 + [r["method"] for r in result.summary]))
    colour = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    for method in dict.fromkeys(r["method"] for r in result.rounds):
        rows = [r for r in result.rounds if r["method"] == method]
        xs = [r["labelled"] for r in rows]
        for key, style, what in (("selector_accuracy", "o--", "selector"),
                                 ("target_accuracy", "s-", "target")):
            ys = [r.get(key) for r in rows]
            if any(a is not None for a in ys):
                ax_acc.plot(xs, [np.nan if a is None else 100 * a for a in ys], style,
                            color=colour[method], alpha=0.8, label=f"{method}: {what}")
    for r in result.summary:
        if r["accuracy"] is not None:
            label = f"{r['method']}" + (f" ({r['selector']})" if r["selector"] else "")
            ax_acc.plot([r["labelled"]], [100 * r["accuracy"]], "*", markersize=12,
                        color=colour[r["method"]], label=f"{label}: final target")
    ax_acc.set_xlabel("labelled-set size")
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.set_title("accuracy")
    ax_acc.grid(alpha=0.3)
    if ax_acc.get_legend_handles_labels()[0]:
        ax_acc.legend(fontsize=7)
    names = [r["method"] + (f" ({r['selector']})" if r["selector"] else "") for r in result.summary]
    left = np.zeros(len(names))
    for stage, col in zip(STAGES, SECONDS_COLUMNS):
        vals = np.array([r[col] for r in result.summary], dtype=float)
        ax_time.barh(names, vals, left=left, label=stage.replace("_", " "))
        left += vals
    ax_time.invert_yaxis()
    ax_time.set_xlabel("seconds")
    ax_time.set_title("time per stage")
    ax_time.legend(fontsize=7, loc="best")
    fig.savefig(path, dpi=110)


def write_run(folder: RunFolder, result: RunResult, log: StageLog) -> None:
    """config.json, selected_<method>.npy, stages.csv/json, summary.csv, results.json, plot.png."""
    folder.write_json("config.json", result.config)
    for method, idx in result.selected.items():
        folder.write_npy(f"selected_{method}.npy", idx.astype(np.int64))
    folder.write_csv("stages.csv", log.to_rows())
    folder.write_json("stages.json", log.to_rows())
    folder.write_csv("summary.csv", result.summary)
    if result.rounds:
        folder.write_csv("rounds.csv", result.rounds)
    folder.write_json("results.json", result.to_json())
    plot(result, folder.file("plot.png"))
