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


# the summary's method name of the reference row (the target on all data;
# svp_fast.pipelines.FULL)
FULL_DATA = "all data"


def _row_label(r: dict) -> str:
    return r["method"] + (f" ({r['selector']})" if r["selector"] else "")


def _new_figure(height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # a Figure on an Agg canvas, without pyplot: no global state, no GUI
    # backend (works on headless machines), nothing left open afterwards
    fig = Figure(figsize=(11, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _time_panel(ax, rows: list) -> None:
    """Seconds per stage, one stacked bar per row, the legend below the axes."""
    names = [_row_label(r) for r in rows]
    left = np.zeros(len(names))
    for stage, col in zip(STAGES, SECONDS_COLUMNS):
        vals = np.array([r[col] for r in rows], dtype=float)
        ax.barh(names, vals, left=left, label=stage.replace("_", " "))
        left += vals
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title("time per stage")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(STAGES),
              frameon=False)


def plot_coreset(rows: list, path: Path, title: str = ""):
    """Core-set rows (summary rows, "all data" among them or not): test accuracy
    of each, one row per method, with the all-data accuracy as a reference line;
    seconds per stage beside it, rows in the same order. A PNG at ``path``."""
    rows = list(rows)
    full = [r for r in rows if r["method"] == FULL_DATA]
    fig = _new_figure(max(3.2, 0.42 * len(rows) + 1.8))
    ax_acc, ax_time = fig.subplots(1, 2)
    y = np.arange(len(rows))
    acc = [None if r["accuracy"] is None else 100 * r["accuracy"] for r in rows]
    shown = [a for a in acc if a is not None]
    # room on the right for the values, but never past 100%: values near the
    # top are written to the left of their point instead
    lo, hi = (min(shown), max(shown)) if shown else (0.0, 100.0)
    pad = max(0.5, 0.15 * (hi - lo))
    right = min(100.0, hi + 2 * pad)
    for i, (r, a) in enumerate(zip(rows, acc)):
        if a is None:
            continue
        colour = "0.35" if r["method"] == FULL_DATA else f"C{i % 10}"
        ax_acc.plot([a], [i], "o", color=colour, markersize=7, clip_on=False)
        left_side = a > right - pad
        ax_acc.annotate(f"{a:.2f}", (a, i), textcoords="offset points",
                        xytext=(-7 if left_side else 7, -3),
                        ha="right" if left_side else "left", fontsize=8)
    ax_acc.set_yticks(y, [f"{_row_label(r)}, {r['labelled']}" for r in rows])
    ax_acc.invert_yaxis()
    ax_acc.set_ylim(len(rows) - 0.5, -0.5)
    if full and full[0]["accuracy"] is not None:
        ax_acc.axvline(100 * full[0]["accuracy"], color="0.35", linestyle="--", linewidth=1,
                       label=f"target on all data ({full[0]['labelled']} examples)")
        ax_acc.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                      frameon=False)
    if shown:
        ax_acc.set_xlim(max(0.0, lo - pad), right)
    ax_acc.set_xlabel("target test accuracy (%)")
    ax_acc.set_title("accuracy of the target trained on each selection (method, size)")
    ax_acc.grid(axis="x", alpha=0.3)
    _time_panel(ax_time, rows)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    return fig


def plot_active(result: RunResult, path: Path):
    """Accuracy against labelled-set size per method (selector per round, the
    target per round where trained, the final target as a star), and seconds
    per stage. Only series with data get a legend entry."""
    fig = _new_figure(4.6)
    ax_acc, ax_time = fig.subplots(1, 2)
    # one colour per method across the curves and the final point
    methods = list(dict.fromkeys([r["method"] for r in result.rounds]
                                 + [r["method"] for r in result.summary]))
    colour = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    last_round = max((r["round"] for r in result.rounds), default=0)
    for method in dict.fromkeys(r["method"] for r in result.rounds):
        rows = [r for r in result.rounds if r["method"] == method]
        for key, style, what in (("selector_accuracy", "o--", "selector"),
                                 ("target_accuracy", "s-", "target per round")):
            pts = [(r["labelled"], 100 * r[key]) for r in rows if r.get(key) is not None
                   # the final target is the star below; a curve needs earlier rounds
                   and not (key == "target_accuracy" and r["round"] == last_round)]
            if not pts:
                continue
            if key == "target_accuracy":
                pts += [(r["labelled"], 100 * r[key]) for r in rows
                        if r["round"] == last_round and r.get(key) is not None]
            ax_acc.plot([p[0] for p in pts], [p[1] for p in pts], style,
                        color=colour[method], alpha=0.8, label=f"{method}: {what}",
                        clip_on=False)
    for r in result.summary:
        if r["accuracy"] is not None:
            ax_acc.plot([r["labelled"]], [100 * r["accuracy"]], "*", markersize=12,
                        color=colour[r["method"]], label=f"{_row_label(r)}: final target",
                        clip_on=False)
    cap_percent_axis(ax_acc, "y")
    ax_acc.set_xlabel("labelled-set size")
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.set_title("accuracy")
    ax_acc.grid(alpha=0.3)
    if ax_acc.get_legend_handles_labels()[0]:
        ax_acc.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2,
                      frameon=False)
    _time_panel(ax_time, result.summary)
    fig.savefig(path, dpi=110)
    return fig


def cap_percent_axis(ax, which: str) -> None:
    """An accuracy axis (percent) ends at 100 at most: matplotlib's margins
    would run it to 100.5 or 100.8 (points on the edge are drawn unclipped)."""
    lo, hi = ax.get_ylim() if which == "y" else ax.get_xlim()
    if hi > 100.0:
        (ax.set_ylim if which == "y" else ax.set_xlim)(lo, 100.0)


def plot(result: RunResult, path: Path):
    """The run's plot.png: :func:`plot_coreset` or :func:`plot_active`; returns the Figure."""
    if result.kind == "coreset":
        sel = result.config.get("selector", "")
        return plot_coreset(result.summary, path,
                            title=f"core-set, selected by the {sel}" if sel else "")
    return plot_active(result, path)


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
