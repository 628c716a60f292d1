"""svp-fast bench: the grid runs, the table/CSV/PNG come out, and the baselines
compute what svp_fast computes (so the ratios compare like with like)."""

from __future__ import annotations

import argparse
import csv
import io

import numpy as np
import pytest
import torch

import svp_fast
from svp_fast import bench

TINY = ["--n", "300,900", "--d", "6", "--dtype", "float32", "--budget", "12", "--repeat", "1",
        "--warmup", "0",
        "--classes", "5", "--baseline-steps", "5", "--threads", "1"]


def _run(argv, tmp_path):
    args = bench.build_parser().parse_args(argv + ["--csv", str(tmp_path / "b.csv"),
                                                   "--plot", str(tmp_path / "b.png")])
    out = io.StringIO()
    b = bench.Bench(args, out=out)
    # run_bench prints to stdout; drive the same steps here to capture the text
    if not args.no_kcenter:
        b.kcenter_grid()
    if not args.no_uncertainty:
        b.uncertainty_grid()
    b.ratios()
    b.write_csv(args.csv)
    b.plot(args.plot)
    return b, out.getvalue() + b.table()


def test_grid_table_csv_and_plot(tmp_path):
    b, text = _run(TINY, tmp_path)
    with open(tmp_path / "b.csv") as f:
        rows = list(csv.DictReader(f))
    kc = [r for r in rows if r["task"] == "kcenter"]
    un = [r for r in rows if r["task"] == "uncertainty"]
    # 2 N x (3 svp_fast methods + numpy + torch)
    assert len(kc) == 2 * 5
    assert {r["impl"] for r in kc} == {"svp_fast", "numpy", "torch"}
    assert {r["method"] for r in kc if r["impl"] == "svp_fast"} == {"scan", "lazy", "pruned"}
    # 2 N x 3 methods x (svp_fast + numpy + torch)
    assert len(un) == 2 * 3 * 3
    for r in rows:
        assert float(r["seconds"]) > 0 and float(r["seconds_per_step"]) > 0
    for r in kc:
        if r["impl"] == "svp_fast":
            assert float(r["speedup_vs_numpy"]) > 0 and float(r["speedup_vs_torch"]) > 0
            assert int(r["steps_timed"]) == 12
            assert 0 < float(r["evaluated_fraction"]) <= 1
        else:
            assert int(r["steps_timed"]) == 5
    png = (tmp_path / "b.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "x numpy" in text and "norms+matvec" in text and "least_confidence" in text


def test_run_bench_prints_and_writes(tmp_path, capsys):
    args = bench.build_parser().parse_args(
        TINY[:4] + TINY[6:] + ["--no-uncertainty", "--methods", "scan", "--baselines", "numpy",
                               "--dtype", "float16",
                "--csv", str(tmp_path / "o.csv"), "--plot", ""])
    assert bench.run_bench(args) == 0
    out = capsys.readouterr().out
    assert "svp-fast bench:" in out and "wrote" in out and "float16" in out
    assert (tmp_path / "o.csv").exists() and not (tmp_path / "b.png").exists()


def test_own_embeddings_from_input(tmp_path):
    x = np.random.default_rng(0).standard_normal((700, 9)).astype(np.float32)
    np.save(tmp_path / "emb.npy", x)
    b, _ = _run(["--input", str(tmp_path / "emb.npy"), "--n", "500,2000", "--budget", "8",
                 "--repeat", "1", "--warmup", "0", "--no-uncertainty", "--methods", "scan",
                 "--dtype", "float32",
                 "--baselines", "torch"], tmp_path)
    assert [(r.n, r.d) for r in b.rows] == [(500, 9), (500, 9)]  # 2000 > 700 rows: skipped


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
                                       (["--csv", "x.txt"], "--csv must end in .csv")])
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
