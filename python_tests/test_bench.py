"""svp-fast bench: the grid runs, the table/CSV/PNG come out, and the baselines
compute what svp_fast computes (so the ratios compare like with like)."""

from __future__ import annotations

import argparse
import csv
import io
import re

import numpy as np
import pytest
import torch

import svp_fast
from svp_fast import bench

TINY = ["--n", "300,900", "--d", "6", "--dtype", "float32", "--budget", "12", "--repeat", "1",
        "--warmup", "0",
        "--classes", "5", "--baseline-steps", "5", "--threads", "1"]


def _run(argv, tmp_path):
    args = bench.build_parser().parse_args(argv)
    out = io.StringIO()
    b = bench.Bench(args, out=out)
    # run_bench prints to stdout; drive the same steps here to capture the text
    if not args.no_kcenter:
        b.kcenter_grid()
    if not args.no_uncertainty:
        b.uncertainty_grid()
    b.ratios()
    b.write_csv(tmp_path / "b.csv")
    b.plot(tmp_path / "b.png")
    return b, out.getvalue() + b.table()


def test_grid_table_csv_and_plot(tmp_path):
    b, text = _run(TINY, tmp_path)
    with open(tmp_path / "b.csv") as f:
        rows = list(csv.DictReader(f))
    kc = [r for r in rows if r["task"] == "kcenter"]
    un = [r for r in rows if r["task"] == "uncertainty"]
    # 2 N x (4 svp_fast methods + numpy + torch)
    assert len(kc) == 2 * 6
    assert {r["impl"] for r in kc} == {"svp_fast", "numpy", "torch"}
    assert {r["method"] for r in kc if r["impl"] == "svp_fast"} == {"scan", "lazy", "pruned", "batched"}
    # 2 N x 3 methods x (svp_fast + numpy + torch)
    assert len(un) == 2 * 3 * 3
    for r in rows:
        assert float(r["seconds"]) > 0 and float(r["seconds_per_step"]) > 0
    for r in kc:
        if r["impl"] == "svp_fast":
            assert float(r["speedup_vs_numpy"]) > 0 and float(r["speedup_vs_torch"]) > 0
            assert int(r["steps_timed"]) == 12
            # the batched driver's candidate updates come on top of its passes:
            # on a tiny input (T >= N) up to about twice a scan's distances
            assert 0 < float(r["evaluated_fraction"]) <= (2.5 if r["method"] == "batched" else 1)
        else:
            assert int(r["steps_timed"]) == 5
    png = (tmp_path / "b.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "x numpy" in text and "norms+matvec" in text and "least_confidence" in text


def test_plot_legends_do_not_cover_the_lines(tmp_path):
    """The issue: bench.png's uncertainty legend (a line per method, implementation
    and dtype) sat over the lines. Every legend is drawn outside its axes now."""
    b, _ = _run(TINY[:5] + ["float32,float16"] + TINY[6:], tmp_path)
    fig = b.plot(tmp_path / "c.png")
    renderer = fig.canvas.get_renderer()
    legends = 0
    for ax in fig.axes:
        if not ax.get_visible() or ax.get_legend() is None:
            continue
        legends += 1
        box, leg = ax.get_window_extent(renderer), ax.get_legend().get_window_extent(renderer)
        assert leg.y1 <= box.y0, (ax.get_title(), leg, box)  # entirely below the axes
        assert fig.bbox.y0 <= leg.y0  # and on the figure
    uncertainty = next(ax for ax in fig.axes if ax.get_title().startswith("uncertainty"))
    assert len(uncertainty.get_legend().get_texts()) == 3 * 3 * 2  # methods x impls x dtypes
    assert legends == len([ax for ax in fig.axes if ax.get_visible()])


def test_run_bench_prints_and_writes(tmp_path, capsys):
    args = bench.build_parser().parse_args(
        TINY[:4] + TINY[6:] + ["--no-uncertainty", "--methods", "scan", "--baselines", "numpy",
                               "--dtype", "float16", "--out", str(tmp_path / "o"), "--no-plot"])
    assert bench.run_bench(args) == 0
    out = capsys.readouterr().out
    assert "svp-fast bench:" in out and "wrote" in out and "float16" in out
    assert (tmp_path / "o" / "bench.csv").exists() and not (tmp_path / "o" / "bench.png").exists()


def test_out_folder_like_the_other_commands(tmp_path, capsys):
    """The issue: the README's `svp-fast bench --out bench/` failed (no --out)."""
    from svp_fast import cli

    argv = ["bench", "--quick", "--n", "300", "--no-uncertainty", "--methods", "scan",
            "--baselines", "numpy", "--out", str(tmp_path / "bench")]
    assert cli.main(argv) == 0
    assert {p.name for p in (tmp_path / "bench").iterdir()} == {"bench.csv", "bench.png"}
    capsys.readouterr()
    # files there are refused, as every command refuses to replace its outputs
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "already holds bench.csv, bench.png; pass --overwrite" in err
    assert cli.main(argv + ["--overwrite"]) == 0
    # without --out nothing is written
    assert cli.main(argv[:-2]) == 0
    assert not list(tmp_path.glob("*.csv")) and not list(tmp_path.glob("*.png"))


def test_compare_two_runs(tmp_path, capsys):
    argv = ["--quick", "--n", "300", "--no-uncertainty", "--methods", "scan,lazy",
            "--baselines", "numpy", "--no-plot"]
    assert bench.main(argv + ["--out", str(tmp_path / "a")]) == 0
    assert bench.main(argv[:5] + ["scan"] + argv[6:] + ["--n", "300,400", "--compare",
                                                      str(tmp_path / "a" / "bench.csv")]) == 0
    text = capsys.readouterr().out
    part = text[text.index("against"):]
    rows = [line for line in part.splitlines()[2:] if line.startswith("kcenter")]
    assert len(rows) == 4  # scan and numpy, at N=300 and 400
    assert sum(bool(re.search(r"\d\.\d\dx  ", line)) for line in rows) == 2  # N=300: both runs
    assert sum("(new)" in line for line in rows) == 2
    assert "(1 rows of" in part  # lazy at N=300: only in the first run
    # the same thread counts both times (--quick: svp_fast's default, numpy's one thread)
    assert "threads differ" not in part


def test_csv_records_threads_and_load_and_compare_flags_a_change(tmp_path, capsys):
    """bench.csv says how many threads ran and how loaded the machine was;
    --compare flags rows whose thread counts differ between the two runs."""
    argv = ["--quick", "--n", "300", "--no-uncertainty", "--methods", "scan", "--baselines",
            "numpy", "--no-plot"]
    assert bench.main(argv + ["--threads", "1", "--out", str(tmp_path / "a")]) == 0
    with open(tmp_path / "a" / "bench.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["impl"]: int(r["threads"]) for r in rows} == {"svp_fast": 1, "numpy": 1}
    assert all(float(r["load"]) >= 0 for r in rows)
    capsys.readouterr()
    assert bench.main(argv + ["--threads", "2", "--compare",
                              str(tmp_path / "a" / "bench.csv")]) == 0
    part = capsys.readouterr().out.split("against")[1]
    svp = next(line for line in part.splitlines() if " svp_fast " in line)
    numpy_row = next(line for line in part.splitlines() if " numpy " in line)
    assert "1->2" in svp and svp.endswith("* threads differ")
    assert "1->1" in numpy_row and "threads differ" not in numpy_row
    assert "1 rows were measured with different thread counts" in part
    # an older CSV without the columns: its thread counts are unknown, so flagged
    old = tmp_path / "old.csv"
    with open(tmp_path / "a" / "bench.csv") as f, open(old, "w", newline="") as g:
        reader = csv.DictReader(f)
        fields = [k for k in reader.fieldnames if k not in ("threads", "load")]
        w = csv.DictWriter(g, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(reader)
    assert bench.main(argv + ["--threads", "1", "--compare", str(old)]) == 0
    part = capsys.readouterr().out.split("against")[1]
    assert "?->1" in part and "2 rows were measured with different thread counts" in part


def test_own_embeddings_from_input(tmp_path):
    x = np.random.default_rng(0).standard_normal((700, 9)).astype(np.float32)
    np.save(tmp_path / "emb.npy", x)
    b, _ = _run(["--input", str(tmp_path / "emb.npy"), "--n", "500,2000", "--budget", "8",
                 "--repeat", "1", "--warmup", "0", "--no-uncertainty", "--methods", "scan",
                 "--dtype", "float32",
                 "--baselines", "torch"], tmp_path)
    assert [(r.n, r.d) for r in b.rows] == [(500, 9), (500, 9)]  # 2000 > 700 rows: skipped


def test_suite_points_are_the_pytest_suites_cases(capsys):
    """svp-fast bench --suite runs the grid points of benchmarks/test_latency.py."""
    points = bench.suite_points("small", ["cpu"])
    assert {p.task for p in points} == {"kcenter", "uncertainty"}
    assert {p.dtype for p in points if p.task == "kcenter"} == {"float32", "float16", "float64"}
    names = points[0].contender_names(svp_cuda=False)
    cands = bench.suite_contenders(points[0])
    assert names == [f"{c.row['impl']}:{c.row['method']}" for c in cands]
    assert all(c.steps == points[0].budget for c in cands)  # the baselines do the same work
    args = bench.build_parser().parse_args(["--suite", "small", "--no-uncertainty", "--repeat",
                                            "1", "--warmup", "0", "--baselines", "numpy"])
    b = bench.Bench(args, out=io.StringIO())
    b.kcenter_grid()
    assert {(r.n, r.d, r.dtype, r.budget) for r in b.rows} == \
        {(p.n, p.d, p.dtype, p.budget) for p in points if p.task == "kcenter"}


def test_subcommand_integration():
    parser = argparse.ArgumentParser(prog="svp-fast")
    sub = parser.add_subparsers(dest="command")
    bench.add_bench_parser(sub)
    args = parser.parse_args(["bench", "--quick", "--n", "100,200"])
    assert args.func is bench.run_bench and args.n == [100, 200] and args.quick


@pytest.mark.parametrize("argv", [["--n", "0"], ["--dtype", "int8"], ["--methods", "fast"],
                                  ["--n", "ten"]])
def test_bad_grid_flags_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        bench.build_parser().parse_args(argv)
    assert e.value.code == 2
    assert "expected" in capsys.readouterr().err


@pytest.mark.parametrize("argv,text", [(["--repeat", "0"], "--repeat must be >= 1"),
                                       (["--compare", "none.csv"], "--compare 'none.csv' does not")])
def test_bad_values_are_clear_errors(argv, text, capsys):
    assert bench.main(argv + ["--quick"]) == 2
    assert text in capsys.readouterr().err


def test_baselines_compute_the_same_picks():
    """The ratios compare like with like: the baselines pick what svp_fast picks."""
    x = np.random.default_rng(1).standard_normal((400, 5)).astype(np.float32)
    ref = svp_fast.kcenter(x, 30)
    np.testing.assert_array_equal(bench.numpy_kcenter_loop(x, 30), ref)
    xt = torch.from_numpy(x)
    picks = bench.torch_kcenter_loop(xt, (xt.double() ** 2).sum(1).float(), 30)
    np.testing.assert_array_equal(picks.numpy(), ref)


@pytest.mark.parametrize("method", bench.UNCERTAINTY_METHODS)
def test_uncertainty_baselines_match(method):
    logits = np.random.default_rng(2).standard_normal((500, 7)).astype(np.float32) * 3
    ref = svp_fast.uncertainty(logits, 50, method=method)
    np.testing.assert_array_equal(bench.numpy_uncertainty(logits, 50, method), ref)
    np.testing.assert_array_equal(bench.torch_uncertainty(torch.from_numpy(logits), 50, method).numpy(),
                                  ref)


def test_gpu_benchmark_baseline_is_a_correct_k_center():
    # bench_gpu.py's PyTorch loop (index_select / index_fill_, no host sync)
    # must pick what a k-center picks, or its timings compare nothing
    import importlib.util
    from pathlib import Path

    import torch

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"
    spec = importlib.util.spec_from_file_location("bench_gpu", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2000, 16)).astype(np.float32))
    picks = mod.torch_kcenter_steps(x, 60)
    np.testing.assert_array_equal(picks.numpy(), svp_fast.kcenter(x.numpy(), 60, method="scan"))
