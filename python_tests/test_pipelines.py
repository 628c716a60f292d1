"""Core-set and active-learning pipelines end to end on digits, and their run folders."""

import csv
import json

import numpy as np
import pytest

import svp_fast.pipelines.coreset as coreset_module
from conftest import child_process
from ml_helpers import one_torch_thread, quick  # noqa: F401  (one_torch_thread: an autouse fixture)
from svp_fast.pipelines.active import active_sizes, run_active
from svp_fast.pipelines.common import METHODS, ModelSetup
from svp_fast.pipelines.coreset import FULL, run_coreset
from svp_fast.pipelines.run_folder import RunFolder, RunFolderExistsError
from svp_fast.proxy import infer, load_checkpoint
from svp_fast.selection.kcenter import kcenter
from svp_fast.selection.uncertainty import uncertainty

PROXY = quick("mlp_small", "3@0.1")
TARGET = quick("mlp_large", "4@0.1")
# labelled sets of a few hundred examples need more epochs for as many steps
SMALL_SET_TARGET = quick("mlp_large", "15@0.1")


@pytest.fixture(scope="module")
def coreset_run(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("runs") / "coreset"
    result = run_coreset(digits.train, digits.test, methods=list(METHODS), size=0.5,
                         proxy=PROXY, target=TARGET, include_full=True, seed=3, out_dir=out)
    return result, out


# ----------------------------------------------------------------------------- core-set

def test_coreset_selects_and_trains_every_method(coreset_run, digits):
    result, _ = coreset_run
    n, budget = len(digits.train), round(0.5 * len(digits.train))
    assert [r["method"] for r in result.summary] == [FULL] + list(METHODS)
    for method in METHODS:
        idx = result.selected[method]
        assert idx.dtype == np.int64 and idx.size == budget
        assert np.unique(idx).size == budget and idx.min() >= 0 and idx.max() < n
    for row in result.summary:
        assert row["accuracy"] > 0.85, row  # chance is 0.1
        assert row["total_seconds"] == pytest.approx(
            row["selection_runtime_seconds"] + row["target_training_seconds"])
    full = result.summary[0]
    assert full["labelled"] == n and full["selection_runtime_seconds"] == 0
    rand = next(r for r in result.summary if r["method"] == "random")
    assert rand["selector"] == "" and rand["selector_training_seconds"] == 0
    kc = next(r for r in result.summary if r["method"] == "kcenter")
    assert kc["selector"] == "proxy" and kc["selector_training_seconds"] > 0
    assert kc["inference_seconds"] > 0 and kc["selector_accuracy"] > 0.8
    fg = next(r for r in result.summary if r["method"] == "forgetting")
    assert fg["inference_seconds"] == 0  # forgetting needs no inference pass


def test_coreset_selections_equal_the_selection_api_on_the_proxy(coreset_run, digits):
    """The pipeline's picks are those of kcenter/uncertainty on the saved proxy's outputs."""
    result, out = coreset_run
    proxy = load_checkpoint(out / "selector.pt")
    outputs = infer(proxy, digits.train)
    picks = result.selected["kcenter"]
    # k-center continues exactly from its first pick
    rest = kcenter(outputs.features, picks.size - 1, already_selected=picks[:1])
    assert np.array_equal(rest, picks[1:])
    for method in ("least_confidence", "entropy", "margin"):
        expected = uncertainty(outputs.logits, picks.size, method=method)
        assert np.array_equal(result.selected[method], expected), method


def test_run_folder_contents(coreset_run):
    result, out = coreset_run
    names = {p.name for p in out.iterdir()}
    expected = {"config.json", "stages.csv", "stages.json", "summary.csv", "results.json",
                "plot.png", "selector.pt", "target_all.pt"}
    expected |= {f"selected_{m}.npy" for m in METHODS} | {f"target_{m}.pt" for m in METHODS}
    assert names == expected
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no partial folders
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "coreset" and config["seed"] == 3 and config["budget"] == 674
    assert config["proxy"]["train"]["schedule"] == "3@0.1"
    assert config["train_set"]["name"] == "digits/train"
    for m in METHODS:
        assert np.array_equal(np.load(out / f"selected_{m}.npy"), result.selected[m])
    with open(out / "stages.csv") as f:
        stages = list(csv.DictReader(f))
    assert {s["stage"] for s in stages} == {"selector_training", "inference", "selection",
                                            "target_training"}
    assert json.loads((out / "stages.json").read_text()) == json.loads(
        json.dumps(result.stages))
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert [s["method"] for s in summary] == [r["method"] for r in result.summary]
    assert float(summary[1]["accuracy"]) == pytest.approx(result.summary[1]["accuracy"])
    results = json.loads((out / "results.json").read_text())
    assert results["selected_sizes"]["kcenter"] == 674
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_target_selector_is_the_full_data_reference(digits):
    result = run_coreset(digits.train, digits.test, methods=["least_confidence"], size=300,
                         selector="target", proxy=PROXY, target=TARGET, include_full=True)
    full, lc = result.summary
    # one target trained on all data serves as selector and as the reference row
    assert full["accuracy"] == lc["selector_accuracy"]
    assert full["target_training_seconds"] == lc["selector_training_seconds"]
    trainings = [s for s in result.stages if s["labelled"] == len(digits.train)
                 and s["stage"].endswith("training")]
    assert len(trainings) == 1 and trainings[0]["model"] == "mlp_large"
    assert lc["labelled"] == 300 and result.selected["least_confidence"].size == 300


def test_random_only_trains_no_selector(digits, monkeypatch):
    calls = []
    real_fit = coreset_module.fit
    monkeypatch.setattr(coreset_module, "fit", lambda setup, *a, **k: calls.append(setup.name)
                        or real_fit(setup, *a, **k))
    result = run_coreset(digits.train, digits.test, methods="random", size=100,
                         proxy=PROXY, target=TARGET)
    assert calls == ["mlp_large"] and result.selected["random"].size == 100


def test_existing_folder_refused_before_any_work(tmp_path, digits, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("old run")
    monkeypatch.setattr(coreset_module, "fit", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(RunFolderExistsError, match="already exists.*overwrite"):
        run_coreset(digits.train, digits.test, size=10, out_dir=out)
    assert (out / "keep.txt").read_text() == "old run"


def test_overwrite_replaces_the_old_run(tmp_path, digits):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("old run")
    run_coreset(digits.train, digits.test, methods="random", size=50, proxy=PROXY,
                target=TARGET, out_dir=out, overwrite=True, save_models=False)
    names = {p.name for p in out.iterdir()}
    assert "keep.txt" not in names and "selected_random.npy" in names
    assert not any(n.endswith(".pt") for n in names)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_a_crash_leaves_no_folder(tmp_path, digits, monkeypatch):
    out = tmp_path / "run"
    real_fit = coreset_module.fit
    calls = []

    def failing_fit(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash while training the target")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(coreset_module, "fit", failing_fit)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_coreset(digits.train, digits.test, methods="kcenter", size=50, proxy=PROXY,
                    target=TARGET, out_dir=out)
    assert list(tmp_path.iterdir()) == []


def test_run_folder_commit_is_atomic(tmp_path):
    with RunFolder(tmp_path / "r") as run:
        run.write_json("a.json", {"x": float("nan"), "y": np.int64(3)})
        assert not (tmp_path / "r").exists() and run.tmp.parent == tmp_path
    assert json.loads((tmp_path / "r" / "a.json").read_text()) == {"x": None, "y": 3}


@pytest.mark.parametrize("kwargs,error,match", [
    ({"methods": "kmeans"}, ValueError, "method must be one of .*got 'kmeans'"),
    ({"methods": ["random", "random"]}, ValueError, "must not repeat"),
    ({"size": 5000}, ValueError, r"size must be at most the number of examples \(1347\), got 5000"),
    ({"size": 1.5}, ValueError, r"size as a float is a fraction of the N rows and must be below 1"),
    ({"size": 1.0}, ValueError, r"size as a float .* pass an integer for a count"),
    ({"size": 0.0001}, ValueError, "size 0.0001 of 1347 rows rounds to no pick"),
    ({"size": 0}, ValueError, "size must keep at least one of the 1347 examples"),
    ({"size": "half"}, TypeError, "size must be a count .* or a fraction"),
    ({"selector": "oracle"}, ValueError, "selector must be one of"),
    ({"proxy": "resnet9"}, ValueError, "model must be one of .*got 'resnet9'"),
    ({"metric": "manhattan"}, ValueError, "metric must be"),
    ({"seed": -1}, ValueError, "seed must be a non-negative integer"),
])
def test_coreset_errors(digits, kwargs, error, match):
    with pytest.raises(error, match=match):
        run_coreset(digits.train, digits.test, **kwargs)


# ----------------------------------------------------------------------------- active learning

def test_active_learning_end_to_end(tmp_path, digits):
    out = tmp_path / "active"
    sizes = [60, 120, 200]
    result = run_active(digits.train, digits.test, methods=["least_confidence", "kcenter", "random"],
                        sizes=sizes, proxy=PROXY, target=SMALL_SET_TARGET, target_each_round=True,
                        seed=1,
                        out_dir=out)
    initial = {m: result.selected[m][:60] for m in result.selected}
    # every method starts from the same random initial set
    assert all(np.array_equal(initial["random"], v) for v in initial.values())
    for method, labelled in result.selected.items():
        assert labelled.size == 200 and np.unique(labelled).size == 200
    for row in result.summary:
        assert row["labelled"] == 200 and row["accuracy"] > 0.8, row
    rounds = [r for r in result.rounds if r["method"] == "least_confidence"]
    assert [r["labelled"] for r in rounds] == sizes
    assert all(r["target_accuracy"] is not None for r in rounds)
    assert rounds[0]["selector_accuracy"] is not None and rounds[-1]["selector_accuracy"] is None
    lc = next(r for r in result.summary if r["method"] == "least_confidence")
    assert lc["selector_training_seconds"] > 0 and lc["inference_seconds"] > 0
    # per-round targets are not charged to the selection runtime
    per_round = sum(s["seconds"] for s in result.stages if s["stage"] == "target_per_round"
                    and s["method"] == "least_confidence")
    assert per_round > 0
    assert lc["total_seconds"] == pytest.approx(lc["selection_runtime_seconds"]
                                                + lc["target_training_seconds"])
    assert {p.name for p in out.iterdir()} >= {"config.json", "rounds.csv", "plot.png",
                                                "selected_kcenter.npy", "target_random.pt"}


def test_active_least_confidence_picks_the_proxys_most_uncertain_pool_rows(digits, monkeypatch):
    """One round, checked against the selection API on the same proxy."""
    import svp_fast.pipelines.active as active_module

    models = []
    real_fit = active_module.fit

    def keep(*args, **kwargs):
        trained = real_fit(*args, **kwargs)
        models.append(trained.model)
        return trained

    monkeypatch.setattr(active_module, "fit", keep)
    result = run_active(digits.train, digits.test, methods="least_confidence", sizes=[50, 80],
                        proxy=PROXY, target=TARGET, seed=2)
    labelled = result.selected["least_confidence"]
    pool = np.setdiff1d(np.arange(len(digits.train)), labelled[:50])
    logits = infer(models[0], digits.train, indices=pool).logits
    assert np.array_equal(labelled[50:], pool[uncertainty(logits, 30)])


def test_active_kcenter_covers_from_the_labelled_set(digits, monkeypatch):
    import svp_fast.pipelines.active as active_module

    models = []
    real_fit = active_module.fit
    monkeypatch.setattr(active_module, "fit", lambda *a, **k: models.append(real_fit(*a, **k))
                        or models[-1])
    result = run_active(digits.train, digits.test, methods="kcenter", sizes=[40, 70],
                        proxy=PROXY, target=TARGET, seed=0)
    labelled = result.selected["kcenter"]
    features = infer(models[0].model, digits.train).features
    assert np.array_equal(labelled[40:], kcenter(features, 30, already_selected=labelled[:40]))


def test_active_with_the_target_as_selector(digits):
    result = run_active(digits.train, digits.test, methods="margin", sizes=[50, 90],
                        selector="target", proxy=PROXY, target=TARGET, target_each_round=True)
    first = result.rounds[0]
    assert first["selector_accuracy"] == first["target_accuracy"]  # the same model
    assert not [s for s in result.stages if s["stage"] == "target_per_round"]
    assert result.summary[0]["selector"] == "target"


def test_active_sizes_helper():
    assert active_sizes(1000, 1000, 10000) == list(range(1000, 10001, 1000))
    assert active_sizes(100, 300, 500) == [100, 400, 500]
    with pytest.raises(ValueError, match="final"):
        active_sizes(100, 10, 50)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"methods": "forgetting"}, ValueError, "core-set method"),
    ({"sizes": [100, 100]}, ValueError, "increase strictly"),
    ({"sizes": [0, 10]}, ValueError, r"sizes\[0\].*>= 1"),
    ({"sizes": [100, 2000]}, ValueError, r"at most the training-set size \(1347\)"),
    ({"sizes": []}, ValueError, "at least the initial"),
    ({"sizes": [10, 20.5]}, TypeError, "integers"),
    ({"methods": "coreset"}, ValueError, "method must be one of"),
    ({"proxy": ModelSetup.__name__}, ValueError, "model must be one of"),
])
def test_active_errors(digits, kwargs, error, match):
    with pytest.raises(error, match=match):
        run_active(digits.train, digits.test, **kwargs)


def test_package_level_names():
    import svp_fast.pipelines as pipelines

    assert pipelines.run_coreset is run_coreset and pipelines.run_active is run_active
    assert pipelines.METHODS == METHODS and pipelines.ModelSetup is ModelSetup


# ----------------------------------------------------------------------------- leftovers of a killed run

def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid  # exited and reaped: no process has this id now (barring reuse)


def _leftover(parent, name, writer):
    from svp_fast.pipelines.run_folder import WRITER_FILE

    d = parent / f".{name}.partial-abc123"
    d.mkdir()
    (d / "selected_random.npy").write_bytes(b"half written")
    if writer is not None:
        (d / WRITER_FILE).write_text(json.dumps(writer))
    return d


def test_a_killed_runs_partial_folder_is_removed_and_reported(tmp_path, digits, capsys):
    """The issue: a killed run left a hidden .NAME.partial-* folder that a later run
    neither removed nor mentioned."""
    import socket

    from svp_fast.pipelines.run_folder import _process_start

    dead = _leftover(tmp_path, "run", {"pid": _dead_pid(), "host": socket.gethostname(),
                                        "started": None})
    run_coreset(digits.train, digits.test, methods="random", size=50, proxy=PROXY,
                target=TARGET, out_dir=tmp_path / "run", save_models=False)
    err = capsys.readouterr().err
    assert not dead.exists()
    assert f"svp_fast: removed {str(dead)!r}, the unfinished run folder of a run that was killed" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert not (tmp_path / "run" / ".svp_fast_writer.json").exists()  # not in the final folder

    # a writer that still runs (here: this process), and one from an older svp_fast: reported only
    import os

    live = _leftover(tmp_path, "other", {"pid": os.getpid(), "host": socket.gethostname(),
                                          "started": _process_start(os.getpid())})
    unknown = _leftover(tmp_path, "old2", None)
    run_coreset(digits.train, digits.test, methods="random", size=50, proxy=PROXY,
                target=TARGET, out_dir=tmp_path / "other", save_models=False)
    run_coreset(digits.train, digits.test, methods="random", size=50, proxy=PROXY,
                target=TARGET, out_dir=tmp_path / "old2", save_models=False)
    err = capsys.readouterr().err
    assert live.exists() and f"{str(live)!r} is being written by another run (process " \
        f"{os.getpid()})" in err
    assert unknown.exists() and f"{str(unknown)!r} is an unfinished run folder of an earlier run " \
        "that did not record its process" in err


def test_a_reused_process_id_is_not_taken_for_the_writer(tmp_path, capsys):
    import os
    import socket

    from svp_fast.pipelines.run_folder import _process_start, clean_leftovers

    if _process_start(os.getpid()) is None:
        pytest.skip("no /proc here: process start times are unknown")
    stale = _leftover(tmp_path, "run", {"pid": os.getpid(), "host": socket.gethostname(),
                                         "started": "1"})  # this id, but an earlier process
    messages = clean_leftovers(tmp_path / "run", report=lambda m: None)
    assert not stale.exists() and "was killed" in messages[0]


def test_a_killed_active_run_is_cleaned_by_the_next(tmp_path):
    """The real thing: SIGKILL a running `svp-fast active`, run it again."""
    import signal
    import subprocess
    import sys
    import time

    argv = [sys.executable, "-m", "svp_fast", "active", "--dataset", "digits", "--sizes",
            "100,200", "--method", "random", "--proxy", "mlp_small", "--target", "mlp_large",
            "--target-schedule", "400@0.1", "--quiet", "--threads", "1", "--out",
            str(tmp_path / "al")]
    # (child_process: the 400-epoch run is killed if the test fails before it does)
    with child_process(argv, cwd=tmp_path, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE) as p:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".al.partial-*")) and time.monotonic() < deadline:
            assert p.poll() is None, p.stderr.read()
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
        p.wait()
    [partial] = list(tmp_path.glob(".al.partial-*"))
    argv[argv.index("400@0.1")] = "1@0.1"
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"removed {str(partial)!r}" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["al"]


# ----------------------------------------------------------------------------- plots and stage lines

def _png_size(path):
    import struct

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_coreset_plot_puts_methods_on_their_own_rows_with_the_reference(tmp_path, monkeypatch,
                                                                         coreset_run):
    """The issue: every method sat at one x position, the legend hid the top
    points, and there was no all-data reference line."""
    from matplotlib.axes import Axes

    from svp_fast.pipelines import results

    result, out = coreset_run
    seen = {}
    real_axvline, real_legend = Axes.axvline, Axes.legend

    def axvline(self, x=0, *a, **k):
        seen.setdefault("axvline", []).append(x)
        return real_axvline(self, x, *a, **k)

    def legend(self, *a, **k):
        seen.setdefault("legend", []).append(k)
        return real_legend(self, *a, **k)

    monkeypatch.setattr(Axes, "axvline", axvline)
    monkeypatch.setattr(Axes, "legend", legend)
    results.plot(result, tmp_path / "p.png")
    full = result.summary[0]
    assert seen["axvline"] == [pytest.approx(100 * full["accuracy"])]  # the all-data line
    # legends sit below the axes (outside them), never over the points
    assert all(k.get("bbox_to_anchor", (0, 1))[1] < 0 for k in seen["legend"])
    w, h = _png_size(tmp_path / "p.png")
    assert w > 1000 and h > 300
    assert _png_size(out / "plot.png") == _png_size(tmp_path / "p.png")


def test_coreset_plot_rows_are_distinct(tmp_path, monkeypatch, coreset_run):
    from matplotlib.axes import Axes

    from svp_fast.pipelines import results

    result, _ = coreset_run
    ys = []
    real_plot = Axes.plot

    def plot(self, xs, ys_, *a, **k):
        if k.get("markersize") == 7:  # the accuracy dots
            ys.append(ys_[0])
        return real_plot(self, xs, ys_, *a, **k)

    monkeypatch.setattr(Axes, "plot", plot)
    results.plot(result, tmp_path / "p.png")
    assert sorted(ys) == list(range(len(result.summary)))  # one row per method


def test_active_plot_lists_only_lines_with_data(tmp_path, monkeypatch):
    """The issue: the legend listed target lines that had no data."""
    from matplotlib.axes import Axes

    from svp_fast.pipelines import results

    labels = []
    real_plot = Axes.plot

    def plot(self, *a, label=None, **k):
        if label is not None:
            labels.append(label)
        return real_plot(self, *a, label=label, **k)

    monkeypatch.setattr(Axes, "plot", plot)
    rounds = [{"method": "random", "round": 0, "labelled": 10, "selector_accuracy": None,
               "target_accuracy": None},
              {"method": "random", "round": 1, "labelled": 20, "selector_accuracy": None,
               "target_accuracy": 0.8},
              {"method": "margin", "round": 0, "labelled": 10, "selector_accuracy": 0.5,
               "target_accuracy": None},
              {"method": "margin", "round": 1, "labelled": 20, "selector_accuracy": None,
               "target_accuracy": 0.9}]
    summary = [summary_like("random", "", 20, 0.8), summary_like("margin", "proxy", 20, 0.9)]
    result = results.RunResult("active", {}, [], summary, {}, rounds)
    results.plot(result, tmp_path / "a.png")
    assert labels == ["margin: selector", "random: final target", "margin (proxy): final target"]
    labels.clear()
    rounds[0]["target_accuracy"], rounds[2]["target_accuracy"] = 0.6, 0.7  # target each round
    results.plot(result, tmp_path / "b.png")
    assert labels == ["random: target per round", "margin: selector", "margin: target per round",
                      "random: final target", "margin (proxy): final target"]


def test_accuracy_axes_end_at_100_percent(tmp_path):
    """The issue: accuracy axes ran past 100 (100.5, 100.8) where a method
    reached 99-100%; every point stays drawn, and its value readable."""
    from svp_fast.pipelines import results

    summary = [summary_like("all data", "", 1347, 1.0), summary_like("random", "", 674, 0.995),
               summary_like("kcenter", "proxy", 674, 0.97)]
    fig = results.plot(results.RunResult("coreset", {}, [], summary, {}, []), tmp_path / "c.png")
    ax = fig.axes[0]
    assert ax.get_xlim()[1] == 100.0 and ax.get_xlim()[0] < 97.0
    assert all(line.get_clip_on() is False for line in ax.get_lines() if line.get_marker() == "o")
    texts = {t.get_text(): t.get_ha() for t in ax.texts}
    assert texts["100.00"] == "right" and texts["97.00"] == "left"
    rounds = [{"method": "margin", "round": r, "labelled": 10 * (r + 1),
               "selector_accuracy": a, "target_accuracy": None}
              for r, a in enumerate((0.9, 0.99, 1.0))]
    fig = results.plot(results.RunResult("active", {}, [], summary[2:], {}, rounds),
                       tmp_path / "a.png")
    assert fig.axes[0].get_ylim()[1] == 100.0 and fig.axes[0].get_ylim()[0] < 90.0
    # an axis that does not reach 100 keeps its own limits
    low = [dict(r, selector_accuracy=a) for r, a in zip(rounds, (0.5, 0.6, 0.7))]
    fig = results.plot(results.RunResult("active", {}, [], [summary_like("margin", "proxy", 30,
                                                                         0.7)], {}, low),
                       tmp_path / "l.png")
    assert fig.axes[0].get_ylim()[1] < 100.0


def summary_like(method, selector, labelled, accuracy):
    from svp_fast.pipelines.results import summary_row

    return summary_row(method, selector, labelled, accuracy, None, {"target_training": 1.0})


def test_stage_lines(digits):
    seen = []
    run_coreset(digits.train, digits.test, methods=["kcenter", "random"], size=50, proxy=PROXY,
                target=TARGET, include_full=True, save_models=False, on_stage=seen.append)
    assert [(r.method, r.stage) for r in seen] == [
        ("shared", "selector_training"), ("shared", "inference"), ("all data", "target_training"),
        ("kcenter", "selection"), ("kcenter", "target_training"), ("random", "selection"),
        ("random", "target_training")]
    assert all(r.seconds > 0 for r in seen)


# ----------------------------------------------------------------------------- balanced

def test_coreset_balanced_selects_inside_each_class(tmp_path, digits):
    out = tmp_path / "bal"
    methods = ["kcenter", "margin", "random"]  # forgetting per class: test_grouped.py
    result = run_coreset(digits.train, None, methods=methods, size=0.3, proxy=PROXY,
                         target=quick("mlp_small", "1@0.1"), seed=4, out_dir=out,
                         balanced=True)
    labels = digits.train.labels
    from svp_fast.selection.groups import largest_remainder

    want = largest_remainder(round(0.3 * labels.size), np.bincount(labels))
    for method in methods:  # every kind of method, per class, the same split
        idx = result.selected[method]
        assert np.unique(idx).size == idx.size
        np.testing.assert_array_equal(np.bincount(labels[idx], minlength=want.size), want)
    assert result.config["balanced"] is True
    # the picks are those of the grouped selection API on the saved proxy's outputs
    outputs = infer(load_checkpoint(out / "selector.pt"), digits.train)
    np.testing.assert_array_equal(
        result.selected["kcenter"],
        kcenter(outputs.features, int(want.sum()), groups=labels, start="random", seed=4))
    np.testing.assert_array_equal(
        result.selected["margin"],
        uncertainty(outputs.logits, int(want.sum()), method="margin", groups=labels))


def test_active_balanced_uses_the_selectors_predictions(digits):
    result = run_active(digits.train, None, methods=["kcenter", "least_confidence"],
                        sizes=[60, 100], proxy=PROXY, target=quick("mlp_small", "1@0.1"),
                        seed=2, balanced=True, save_models=False)
    for method in ("kcenter", "least_confidence"):
        final = result.selected[method]
        assert final.size == 100 and np.unique(final).size == 100
