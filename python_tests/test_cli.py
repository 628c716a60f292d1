"""The svp-fast command: every subcommand, its outputs and its error messages."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import svp_fast
from ml_helpers import one_torch_thread  # noqa: F401  (autouse fixture)
from svp_fast import cli

QUICK = ["--proxy", "mlp_small", "--target", "mlp_large", "--proxy-schedule", "2@0.1",
         "--target-schedule", "3@0.1", "--quiet", "--threads", "1"]


def run_cli(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_usage_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err  # one line, no traceback
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def subprocess_cli(*args, cwd=None):
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    return subprocess.run([sys.executable, "-m", "svp_fast", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def embeddings(tmp_path, rng):
    x = rng.normal(size=(300, 8)).astype(np.float32)
    path = tmp_path / "emb.npy"
    np.save(path, x)
    return x, path


# ----------------------------------------------------------------------------- kcenter

def test_kcenter_command_matches_the_api(tmp_path, embeddings, capsys):
    x, path = embeddings
    np.save(tmp_path / "sel.npy", np.array([4, 100]))
    code, out, _ = run_cli(["kcenter", path, "--budget", 20, "--out", tmp_path / "p.npy",
                            "--already-selected", tmp_path / "sel.npy", "--radii",
                            tmp_path / "r.npy", "--no-progress"], capsys)
    assert code == 0 and "20 picks from 300 points" in out
    picks, radii = svp_fast.kcenter(x, 20, already_selected=[4, 100], return_radii=True)
    assert np.array_equal(np.load(tmp_path / "p.npy"), picks)
    np.testing.assert_array_equal(np.load(tmp_path / "r.npy"), radii)
    # a fraction of N, and a start index
    code, _, _ = run_cli(["kcenter", path, "--budget", "0.1", "--start", 7, "--metric", "cosine",
                          "--out", tmp_path / "q.npy", "--no-progress"], capsys)
    assert code == 0
    assert np.array_equal(np.load(tmp_path / "q.npy"), svp_fast.kcenter(x, 30, start=7,
                                                                        metric="cosine"))


def test_kcenter_command_shows_a_progress_bar(tmp_path, embeddings):
    _, path = embeddings
    res = subprocess_cli("kcenter", path, "--budget", 200, "--out", tmp_path / "p.npy")
    assert res.returncode == 0, res.stderr
    assert "k-center" in res.stderr and "pick" in res.stderr  # the tqdm bar
    assert np.load(tmp_path / "p.npy").size == 200


def test_kcenter_command_errors(tmp_path, embeddings, capsys):
    _, path = embeddings
    out = tmp_path / "p.npy"
    code, _, err = run_cli(["kcenter", path, "--budget", 301, "--out", out], capsys)
    assert_usage_error(code, err, "budget must be at most", "300", "301")
    code, _, err = run_cli(["kcenter", tmp_path / "none.npy", "--budget", 1, "--out", out], capsys)
    assert_usage_error(code, err, "embeddings file", "none.npy", "does not exist")
    np.save(tmp_path / "one_d.npy", np.zeros(5, np.float32))
    code, _, err = run_cli(["kcenter", tmp_path / "one_d.npy", "--budget", 1, "--out", out], capsys)
    assert_usage_error(code, err, "2-D (N, D)", "(5,)")
    np.save(out, np.zeros(1))
    code, _, err = run_cli(["kcenter", path, "--budget", 1, "--out", out], capsys)
    assert_usage_error(code, err, "already exists", "--overwrite")
    assert run_cli(["kcenter", path, "--budget", 1, "--out", out, "--overwrite",
                    "--no-progress"], capsys)[0] == 0
    code, _, err = run_cli(["kcenter", path, "--budget", 1, "--out", tmp_path / "p.txt"], capsys)
    assert_usage_error(code, err, "must end in .npy")
    (tmp_path / "obj.npy").write_bytes(b"\x93NUMPY garbage")
    code, _, err = run_cli(["kcenter", tmp_path / "obj.npy", "--budget", 1, "--out",
                            tmp_path / "z.npy"], capsys)
    assert_usage_error(code, err, "obj.npy", "is damaged or truncated")


def test_kcenter_command_with_groups(tmp_path, embeddings, capsys):
    x, path = embeddings
    labels = np.arange(300) % 4
    np.save(tmp_path / "lab.npy", labels)
    code, out, _ = run_cli(["kcenter", path, "--budget", "0.1", "--groups", tmp_path / "lab.npy",
                            "--out", tmp_path / "p.npy", "--offsets", tmp_path / "o.npy",
                            "--radii", tmp_path / "r.npy", "--no-progress"], capsys)
    assert code == 0 and "30 picks in 4 groups from 300 points" in out
    picks, offsets, radii = svp_fast.kcenter(x, 0.1, groups=labels, return_offsets=True,
                                             return_radii=True)
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), picks)
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), offsets)
    np.testing.assert_array_equal(np.load(tmp_path / "r.npy"), radii)
    np.save(tmp_path / "short.npy", labels[:10])
    code, _, err = run_cli(["kcenter", path, "--budget", 3, "--groups", tmp_path / "short.npy",
                            "--out", tmp_path / "q.npy"], capsys)
    assert_usage_error(code, err, "groups must be a 1-D array of one label per row (300,)")
    code, _, err = run_cli(["kcenter", path, "--budget", 3, "--groups", tmp_path / "lab.npy",
                            "--checkpoint", tmp_path / "c.npz", "--out", tmp_path / "q.npy"],
                           capsys)
    assert_usage_error(code, err, "--checkpoint is not supported with --groups")
    code, _, err = run_cli(["kcenter", path, "--budget", 3, "--offsets", tmp_path / "o2.npy",
                            "--out", tmp_path / "q.npy"], capsys)
    assert_usage_error(code, err, "--offsets applies with --groups")


# ----------------------------------------------------------------------------- uncertainty

def test_uncertainty_in_chunks_equals_the_api_with_ties(rng):
    x = rng.normal(size=(200_000, 4)).astype(np.float32)
    for method in ("least_confidence", "entropy", "margin"):
        expected_scores = svp_fast.uncertainty_scores(x, method=method)
        # rows whose float32 scores tie: the index decides, across chunk boundaries
        assert np.unique(expected_scores).size < x.shape[0] - 100
        picks, scores = cli.uncertainty_with_progress(x, 150_000, method=method, inputs="logits",
                                                      progress=False, chunk_rows=30_011)
        assert np.array_equal(picks, svp_fast.uncertainty(x, 150_000, method=method)), method
        np.testing.assert_array_equal(scores, expected_scores)


def test_uncertainty_command(tmp_path, rng, capsys):
    probs = rng.dirichlet(np.ones(4), size=500)
    np.save(tmp_path / "p.npy", probs)
    code, out, _ = run_cli(["uncertainty", tmp_path / "p.npy", "--budget", 40, "--inputs", "probs",
                            "--method", "entropy", "--out", tmp_path / "i.npy", "--scores-out",
                            tmp_path / "s.npy", "--no-progress"], capsys)
    assert code == 0 and "40 of 500 rows" in out
    assert np.array_equal(np.load(tmp_path / "i.npy"),
                          svp_fast.uncertainty(probs, 40, method="entropy", inputs="probs"))
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"),
                                  svp_fast.uncertainty_scores(probs, method="entropy",
                                                              inputs="probs"))


def test_uncertainty_command_shows_a_progress_bar(tmp_path, rng):
    np.save(tmp_path / "l.npy", rng.normal(size=(1000, 10)).astype(np.float32))
    res = subprocess_cli("uncertainty", tmp_path / "l.npy", "--budget", 10, "--out",
                         tmp_path / "i.npy")
    assert res.returncode == 0, res.stderr
    assert "uncertainty (least_confidence)" in res.stderr and "row" in res.stderr


def test_uncertainty_command_errors(tmp_path, rng, capsys):
    x = rng.normal(size=(100, 3)).astype(np.float32)
    x[73, 2] = np.nan
    np.save(tmp_path / "nan.npy", x)
    code, _, err = run_cli(["uncertainty", tmp_path / "nan.npy", "--budget", 5, "--out",
                            tmp_path / "i.npy", "--no-progress"], capsys)
    assert_usage_error(code, err, "finite", "row 73")  # the row in the whole file
    np.save(tmp_path / "ok.npy", rng.normal(size=(10, 3)))
    code, _, err = run_cli(["uncertainty", tmp_path / "ok.npy", "--budget", 11, "--out",
                            tmp_path / "i.npy"], capsys)
    assert_usage_error(code, err, "budget must be at most", "10")
    code, _, err = run_cli(["uncertainty", tmp_path / "ok.npy", "--budget", "1.5", "--out",
                            tmp_path / "i.npy"], capsys)
    assert_usage_error(code, err, "--budget as a float is a fraction", "below 1, got 1.5")
    with pytest.raises(SystemExit) as e:  # argparse rejects unknown methods itself
        cli.main(["uncertainty", str(tmp_path / "ok.npy"), "--budget", "1", "--out",
                  str(tmp_path / "i.npy"), "--method", "variance"])
    assert e.value.code == 2 and "invalid choice: 'variance'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- coreset / active

def test_coreset_command(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(["coreset", "--dataset", "digits", "--method", "kcenter,random",
                               "--size", 300, "--full", "--out", out, *QUICK], capsys)
    assert code == 0
    assert "all data" in stdout and "kcenter" in stdout and f"run folder: {out}" in stdout
    config = json.loads((out / "config.json").read_text())
    assert config["methods"] == ["kcenter", "random"] and config["budget"] == 300
    assert config["command"].startswith("svp-fast coreset --dataset digits")
    assert np.load(out / "selected_kcenter.npy").size == 300
    code, _, err = run_cli(["coreset", "--dataset", "digits", "--out", out, *QUICK], capsys)
    assert_usage_error(code, err, "already exists", "--overwrite")


def test_coreset_and_active_commands_balanced(tmp_path, capsys):
    out = tmp_path / "bal"
    code, _, _ = run_cli(["coreset", "--dataset", "digits", "--method", "kcenter,margin,random",
                          "--size", 0.2, "--balanced", "--out", out, "--no-checkpoints", *QUICK],
                         capsys)
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["balanced"] is True
    from svp_fast.data import load_digits
    from svp_fast.selection.groups import largest_remainder

    labels = load_digits(seed=0).train.labels
    want = largest_remainder(round(0.2 * labels.size), np.bincount(labels))
    for m in ("kcenter", "margin", "random"):
        picked = np.load(out / f"selected_{m}.npy")
        np.testing.assert_array_equal(np.bincount(labels[picked], minlength=10), want)
    code, _, _ = run_cli(["active", "--dataset", "digits", "--sizes", "50,90", "--method",
                          "kcenter", "--balanced", "--out", tmp_path / "al", "--no-checkpoints",
                          *QUICK], capsys)
    assert code == 0
    assert np.load(tmp_path / "al" / "selected_kcenter.npy").size == 90


def test_active_command(tmp_path, capsys):
    out = tmp_path / "al"
    code, stdout, _ = run_cli(["active", "--dataset", "digits", "--sizes", "50:110:30",
                               "--method", "margin", "--out", out, "--no-checkpoints", *QUICK],
                              capsys)
    assert code == 0 and "margin" in stdout
    config = json.loads((out / "config.json").read_text())
    assert config["sizes"] == [50, 80, 110]
    assert np.load(out / "selected_margin.npy").size == 110
    assert not list(out.glob("*.pt"))


@pytest.mark.parametrize("argv,fragments", [
    (["coreset", "--dataset", "fashion-mnist", "--data-dir", "/nonexistent/fm"],
     ["/nonexistent/fm", "does not exist", "train-images-idx3-ubyte.gz"]),
    (["coreset", "--dataset", "cifar10"], ["needs a root", "cifar-10-batches-py"]),
    (["coreset", "--dataset", "digits", "--proxy", "resnet9"], ["model must be one of", "resnet9"]),
    (["coreset", "--dataset", "digits", "--method", "kmeans"], ["method must be one of", "kmeans"]),
    (["coreset", "--dataset", "digits", "--size", 99999], ["size must be at most the number of examples (1347)", "99999"]),
    (["coreset", "--dataset", "digits", "--proxy-schedule", "ten@0.1"], ["schedule", "ten@0.1"]),
    (["active", "--dataset", "digits", "--sizes", "100,50"], ["increase strictly"]),
    (["active", "--dataset", "digits", "--sizes", "10,5000"], ["at most the training-set size"]),
    (["active", "--dataset", "digits", "--sizes", "10,20", "--method", "forgetting"],
     ["core-set method"]),
    (["coreset", "--dataset", "digits", "--threads", 0], ["--threads must be >= 1"]),
])
def test_pipeline_command_errors(argv, fragments, capsys):
    code, _, err = run_cli(argv, capsys)
    assert_usage_error(code, err, *fragments)


def test_unknown_dataset_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["coreset", "--dataset", "imagenet-1k"])
    assert e.value.code == 2 and "invalid choice: 'imagenet-1k'" in capsys.readouterr().err


def test_traceback_flag_reraises(capsys):
    with pytest.raises(ValueError, match="resnet9"):
        cli.main(["--traceback", "coreset", "--dataset", "digits", "--proxy", "resnet9"])


# ----------------------------------------------------------------------------- demo and entry points

def test_demo_with_tiny_models(tmp_path, capsys, monkeypatch):
    # the real demo takes cli.DEMO_TIME; the same code path with tiny schedules takes ~1 s
    monkeypatch.setattr(cli, "DEMO_PROXY", ("mlp_small", "1@0.1"))
    monkeypatch.setattr(cli, "DEMO_TARGET", ("mlp_small", "2@0.1"))
    code, out, err = run_cli(["demo", "--out", tmp_path / "demo"], capsys)
    assert code == 0
    # the issue: the demo printed nothing for its first 40 s. Now a line per stage:
    stages = [line for line in err.splitlines() if line.strip()]
    # each run: selector training, inference, then selection + target per method
    assert len(stages) == (2 + 2 * 2) + (2 + 6 * 2) and all(" s  " in line for line in stages)
    assert "trained the selector mlp_small on 1347 examples" in err
    assert "kcenter: trained the target mlp_small on 674 examples" in err
    assert cli.DEMO_TIME in out.splitlines()[0]
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("method"))
    rows = [line.split()[0] for line in lines[header + 2:] if line.strip()][:9]
    assert rows == ["all", "random", "kcenter", "least_confidence", "entropy", "margin",
                    "forgetting", "kcenter", "least_confidence"]
    assert "speed-up" in lines[header] and "1.00x" in lines[header + 2]
    assert (tmp_path / "demo" / "proxy-selected" / "plot.png").is_file()
    assert (tmp_path / "demo" / "target-selected" / "selected_kcenter.npy").is_file()
    # one plot of every row of the table
    assert (tmp_path / "demo" / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = run_cli(["demo", "--out", tmp_path / "demo"], capsys)
    assert_usage_error(code, err, "already exists")
    code, out, err = run_cli(["demo", "--quiet"], capsys)
    assert code == 0 and err == "" and "demo finished" in out


def test_the_demo_length_is_stated_once():
    """The issue: README said about 20 s, --help about 30 s; one measured figure now."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    parser = cli.build_parser()
    demo_help = parser.parse_args(["demo"]).subparsers["demo"].format_help()
    assert cli.DEMO_TIME in " ".join(demo_help.split())
    assert readme.count(cli.DEMO_TIME) >= 2  # the set-up command and the command list
    for stale in ("about 20 s", "~20 s", "~30 s", "well under a minute"):
        assert stale not in readme and stale not in " ".join(demo_help.split())


def test_python_dash_m_and_console_script(tmp_path):
    res = subprocess_cli("--help")
    assert res.returncode == 0
    for command in ("coreset", "active", "kcenter", "uncertainty", "demo"):
        assert command in res.stdout
    script = Path(sys.executable).parent / "svp-fast"
    if not script.exists():
        pytest.skip(f"the console script is not installed at {script}")
    res = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and svp_fast.__version__ in res.stdout


def test_static_name_lists_match_the_registries():
    from svp_fast.data import DATASETS
    from svp_fast.pipelines.active import ACTIVE_METHODS
    from svp_fast.pipelines.common import METHODS
    from svp_fast.proxy import MODELS

    assert set(cli.DATASET_NAMES) == set(DATASETS)
    assert set(cli.MODEL_NAMES) == set(MODELS)
    assert tuple(cli.CORESET_METHODS) == METHODS
    assert tuple(cli.ACTIVE_METHODS) == ACTIVE_METHODS
    for name in ("digits", "fashion-mnist"):
        assert name in cli.DEFAULTS


# ----------------------------------------------------------------------------- one language

def test_every_library_method_is_a_command_line_method(tmp_path, embeddings, capsys):
    """The issue: --method batched was refused, though the README's method table lists it."""
    from svp_fast.selection._plan import METHODS

    x, path = embeddings
    kcenter_help = cli.build_parser().parse_args(["kcenter", "e.npy", "--budget", "1", "--out",
                                                  "o.npy"]).subparsers["kcenter"]
    method = next(a for a in kcenter_help._actions if a.dest == "method")
    assert tuple(method.choices) == METHODS
    for m in METHODS:
        code, out, err = run_cli(["kcenter", path, "--budget", 30, "--out", tmp_path / f"{m}.npy",
                                  "--method", m, "--no-progress"], capsys)
        assert code == 0, err
        np.testing.assert_array_equal(np.load(tmp_path / f"{m}.npy"), svp_fast.kcenter(x, 30))


def test_start_random_on_the_command_line_is_the_librarys(tmp_path, embeddings, capsys):
    x, path = embeddings
    code, _, err = run_cli(["kcenter", path, "--budget", 10, "--out", tmp_path / "p.npy",
                            "--start", "random", "--seed", 3, "--no-progress"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"),
                                  svp_fast.kcenter(x, 10, start="random", seed=3))
    labels = np.arange(300) % 3
    np.save(tmp_path / "lab.npy", labels)
    code, _, err = run_cli(["kcenter", path, "--budget", 12, "--out", tmp_path / "g.npy",
                            "--groups", tmp_path / "lab.npy", "--start", "random", "--seed", 5,
                            "--no-progress"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "g.npy"), svp_fast.kcenter(
        x, 12, groups=labels, start="random", seed=5))
    code, _, err = run_cli(["kcenter", path, "--budget", 12, "--out", tmp_path / "h.npy",
                            "--groups", tmp_path / "lab.npy", "--start", 4], capsys)
    assert_usage_error(code, err, "--start with --groups must be 'random'")
    with pytest.raises(SystemExit) as e:
        cli.main(["kcenter", str(path), "--budget", "3", "--out", "o.npy", "--start", "first"])
    assert e.value.code == 2
    assert "expected a row index (e.g. 0) or 'random', got 'first'" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["before", "after"])
def test_traceback_before_or_after_the_subcommand(where, capsys):
    """The issue: --traceback was accepted only before the subcommand."""
    words = ["coreset", "--dataset", "digits", "--proxy", "resnet9"]
    argv = ["--traceback", *words] if where == "before" else [*words, "--traceback"]
    with pytest.raises(ValueError, match="resnet9"):
        cli.main(argv)
    # and without it, the one-line error
    assert_usage_error(*run_cli(words, capsys)[::2], "resnet9")
    for command in ("kcenter", "uncertainty", "demo", "bench", "active"):
        assert "--traceback" in cli.build_parser().parse_args(["demo"]).subparsers[
            command].format_help()


def test_one_checkpoint_interval_for_the_library_and_the_command():
    import inspect

    from svp_fast.selection.checkpoint import DEFAULT_CHECKPOINT_EVERY

    library = inspect.signature(svp_fast.kcenter).parameters["checkpoint_every"].default
    command = cli.build_parser().parse_args(["kcenter", "e.npy", "--budget", "1", "--out",
                                             "o.npy"]).checkpoint_every
    assert library == command == DEFAULT_CHECKPOINT_EVERY


def test_distributed_refuses_the_methods_it_has_not(tmp_path, embeddings, capsys):
    _, path = embeddings
    code, _, err = run_cli(["kcenter", path, "--budget", 3, "--out", tmp_path / "o.npy",
                            "--method", "batched", "--distributed"], capsys)
    assert_usage_error(code, err, "--method batched is not a local engine of --distributed",
                       "--protocol batched")
