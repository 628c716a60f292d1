"""The command line's inputs: --device, the chunked loader, files that are not
.npy arrays, input errors before any bar, and errors in the command's words."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest
import torch

import svp_fast
from conftest import cuda_available, cuda_skip_reason, sized
from ml_helpers import one_torch_thread  # noqa: F401  (autouse fixture)
from svp_fast import _loading, cli


def run_cli(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code, err) -> str:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def emb_file(tmp_path, rng):
    x = rng.normal(size=(500, 6)).astype(np.float32)
    np.save(tmp_path / "emb.npy", x)
    return x, tmp_path / "emb.npy"


# ----------------------------------------------------------------------------- --device

@pytest.mark.parametrize("text,parsed", [("cpu", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda:1"),
                                         (" CUDA:0 ", "cuda:0")])
def test_device_parsing(text, parsed):
    assert _loading.device_arg(text) == parsed


@pytest.mark.parametrize("command", ["kcenter", "uncertainty"])
@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "cpu:0", "mps"])
def test_bad_device_is_an_argparse_error(emb_file, capsys, command, bad):
    _, path = emb_file
    with pytest.raises(SystemExit) as e:
        cli.main([command, str(path), "--budget", "3", "--out", "o.npy", "--device", bad])
    assert e.value.code == 2
    assert "expected cpu, cuda or cuda:N" in capsys.readouterr().err


@pytest.mark.skipif(cuda_available(), reason="this machine can select on CUDA")
@pytest.mark.parametrize("command", ["kcenter", "uncertainty"])
def test_cuda_without_cuda_is_one_clear_line(emb_file, tmp_path, capsys, command):
    """On a build without CUDA, or a CUDA build on a machine without a GPU (CI)."""
    _, path = emb_file
    code, _, err = run_cli([command, path, "--budget", 3, "--out", tmp_path / "o.npy",
                            "--device", "cuda"], capsys)
    line = one_line_error(code, err)
    if svp_fast.build_info()["cuda_compiled"]:
        assert line == (f"svp-fast {command}: error: --device cuda: torch sees no CUDA device on "
                        "this machine; use --device cpu")
    else:
        assert line.startswith(f"svp-fast {command}: error: --device cuda: this svp_fast was "
                               "built without CUDA")
        assert line.endswith("or use --device cpu")
    assert not (tmp_path / "o.npy").exists()


def test_cuda_without_a_device_and_a_missing_index(monkeypatch):
    monkeypatch.setattr(svp_fast, "build_info", lambda: {"cuda_compiled": True})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="--device cuda: torch sees no CUDA device on this "
                                         "machine; use --device cpu"):
        _loading.check_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    with pytest.raises(ValueError, match=r"--device cuda:2: this machine has 2 CUDA devices "
                                         r"\(cuda:0, cuda:1\)"):
        _loading.check_device("cuda:2")
    assert _loading.check_device("cuda") == "cuda:0"
    assert _loading.check_device("cuda:1") == "cuda:1"
    assert _loading.check_device("cpu") == "cpu"


def test_device_cpu_is_the_default_and_gives_the_same_picks(emb_file, tmp_path, capsys):
    x, path = emb_file
    for extra in ([], ["--device", "cpu"]):
        out = tmp_path / f"p{len(extra)}.npy"
        code, text, _ = run_cli(["kcenter", path, "--budget", 40, "--out", out, "--no-progress",
                                 *extra], capsys)
        assert code == 0 and " on cuda" not in text
        np.testing.assert_array_equal(np.load(out), svp_fast.kcenter(x, 40))


def test_device_with_distributed_is_refused(emb_file, tmp_path, capsys):
    _, path = emb_file
    code, _, err = run_cli(["kcenter", path, "--budget", 3, "--out", tmp_path / "o.npy",
                            "--distributed", "--device", "cuda"], capsys)
    assert "--device applies without --distributed" in one_line_error(code, err)


# ----------------------------------------------------------------------------- the loader

@pytest.mark.parametrize("chunk_rows", [1, 7, 499, 500, 10_000])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_loader_copies_in_chunks(tmp_path, rng, chunk_rows, dtype):
    """The path --device cuda takes (chunks through a staging buffer into a
    tensor), here with device "cpu" and chunks smaller than the file."""
    x = rng.normal(size=(500, 6)).astype(dtype)
    np.save(tmp_path / "e.npy", x)
    mapped = _loading.open_npy(str(tmp_path / "e.npy"), "embeddings")
    t = _loading.load_rows(mapped, "e.npy", "embeddings", "cpu", copy=True,
                           chunk_rows=chunk_rows, progress=False)
    assert isinstance(t, torch.Tensor) and t.dtype == getattr(torch, np.dtype(dtype).name)
    np.testing.assert_array_equal(t.numpy(), x)
    # without a copy, the CPU gets the mapped file itself, checked
    assert _loading.load_rows(mapped, "e.npy", "embeddings", "cpu", chunk_rows=chunk_rows,
                              progress=False) is mapped


@pytest.mark.parametrize("copy", [False, True])
def test_loader_finds_the_bad_value_in_a_later_chunk(tmp_path, rng, copy):
    x = rng.normal(size=(1000, 4)).astype(np.float32)
    x[737, 2] = np.inf
    x[910, 1] = np.nan
    with pytest.raises(ValueError, match=r"embeddings file 'e.npy' must be finite, got inf at "
                                         r"row 737, column 2"):
        _loading.load_rows(x, "e.npy", "embeddings", "cpu", copy=copy, chunk_rows=64,
                           progress=False)
    x[737, 2] = 1.0
    x[910, 1] = 0.0
    x[401] = 0.0
    with pytest.raises(ValueError, match="embeddings file 'e.npy' row 401 is all zeros; the "
                                         "cosine metric needs rows of nonzero norm"):
        _loading.load_rows(x, "e.npy", "embeddings", "cpu", copy=copy, chunk_rows=64,
                           progress=False, nonzero_rows=True)
    _loading.load_rows(x, "e.npy", "embeddings", "cpu", copy=copy, chunk_rows=64,
                       progress=False)  # zero rows are fine for the Euclidean metric


def test_loader_bar_follows_the_rows(rng, capsys):
    x = rng.normal(size=(300, 4)).astype(np.float32)
    _loading.load_rows(x, "dir/e.npy", "embeddings", "cpu", copy=True, chunk_rows=100,
                       bar_delay=0)
    err = capsys.readouterr().err
    assert "reading e.npy" in err and "300/300" in err


# ----------------------------------------------------------------------------- files

@pytest.mark.parametrize("command,what", [("kcenter", "embeddings"), ("uncertainty", "logits")])
def test_files_that_are_not_npy_arrays(tmp_path, capsys, command, what):
    cases = {
        "text.npy": (lambda p: p.write_text("0.1 0.2\n0.3 0.4\n"),
                     "is not a .npy file: a .npy file begins with b'\\x93NUMPY' (numpy.save "
                     "writes it), it begins with b'0.1 0.'"),
        "empty.npy": (lambda p: p.write_bytes(b""), "is not a .npy file"),
        "archive.npy": (lambda p: p.write_bytes(_npz_bytes(a=np.zeros((2, 2)))),
                        "is a zip archive (.npz?), not a .npy file"),
        "objects.npy": (lambda p: np.save(p, np.array([{"a": 1}, None], dtype=object),
                                          allow_pickle=True),
                        "holds Python objects (dtype object), not numbers"),
        "short.npy": (lambda p: p.write_bytes(_npy_bytes(np.zeros((100, 4), np.float32))[:300]),
                      "is damaged or truncated"),
        "ints.npy": (lambda p: np.save(p, np.zeros((5, 3), np.int64)),
                     "must hold float16, float32 or float64 values, got int64"),
        "flat.npy": (lambda p: np.save(p, np.zeros(5, np.float32)),
                     "must hold a 2-D (N, "),
    }
    for name, (make, expected) in cases.items():
        make(tmp_path / name)
        code, _, err = run_cli([command, tmp_path / name, "--budget", 1, "--out",
                                tmp_path / "o.npy"], capsys)
        line = one_line_error(code, err)
        assert f"{what} file '{tmp_path / name}' {expected}" in line, line
        assert "pickle" not in line  # the issue: a text file was reported as pickled data


@pytest.mark.parametrize("command,what", [("kcenter", "embeddings"), ("uncertainty", "logits")])
def test_a_directory_is_named_as_such(tmp_path, capsys, command, what):
    """The issue: `svp-fast kcenter adir ...` said "embeddings file 'adir' path
    'adir' is not a file"."""
    (tmp_path / "adir").mkdir()
    code, _, err = run_cli([command, tmp_path / "adir", "--budget", 1, "--out",
                            tmp_path / "o.npy"], capsys)
    line = one_line_error(code, err)
    assert line.endswith(f"error: {what} file '{tmp_path / 'adir'}' is a directory, not a "
                         ".npy file"), line
    np.save(tmp_path / "e.npy", np.ones((4, 2), np.float32))
    code, _, err = run_cli(["kcenter", tmp_path / "e.npy", "--budget", 1, "--out",
                            tmp_path / "o.npy", "--already-selected", tmp_path / "adir"], capsys)
    assert "already-selected file" in one_line_error(code, err)
    assert "is a directory, not a .npy file" in err


def _npy_bytes(a) -> bytes:
    import io

    f = io.BytesIO()
    np.save(f, a)
    return f.getvalue()


def _npz_bytes(**arrays) -> bytes:
    import io

    f = io.BytesIO()
    np.savez(f, **arrays)
    return f.getvalue()


# ----------------------------------------------------------------------------- validate first

@pytest.mark.parametrize("command,what", [("kcenter", "embeddings"), ("uncertainty", "logits")])
def test_nan_is_reported_before_any_bar(tmp_path, rng, capsys, command, what):
    """The issue: NaN errors printed after a progress bar had started."""
    x = rng.normal(size=(5000, 8)).astype(np.float32)
    x[4000, 3] = np.nan
    np.save(tmp_path / "nan.npy", x)
    code, _, err = run_cli([command, tmp_path / "nan.npy", "--budget", 100, "--out",
                            tmp_path / "o.npy"], capsys)
    assert one_line_error(code, err) == (
        f"svp-fast {command}: error: {what} file '{tmp_path / 'nan.npy'}' must be finite, got "
        "nan at row 4000, column 3")
    assert "%" not in err and "\r" not in err  # no bar at all


def test_cosine_zero_row_is_reported_before_any_bar(tmp_path, rng, capsys):
    x = rng.normal(size=(3000, 8)).astype(np.float32)
    x[2500] = 0
    np.save(tmp_path / "z.npy", x)
    code, _, err = run_cli(["kcenter", tmp_path / "z.npy", "--budget", 100, "--metric", "cosine",
                            "--out", tmp_path / "o.npy"], capsys)
    assert "row 2500 is all zeros" in one_line_error(code, err) and "%" not in err


# ----------------------------------------------------------------------------- the command's words

PYTHON_SPEAK = re.compile(r"\w+=(True|False|'|\")|run_coreset|run_active|already_selected|"
                          r"^svp-fast \w+: error: x ")


def test_errors_name_flags_and_files_not_python(tmp_path, rng, capsys):
    """The issue: command-line errors said "pass overwrite=True", "inputs='logits'",
    "use run_coreset" and called the logits "x"."""
    x = rng.normal(size=(50, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "probs.npy", np.full((10, 3), 0.2, np.float32))
    np.save(tmp_path / "dup.npy", np.array([3, 3]))
    np.save(tmp_path / "two.npy", np.array([3, 4]))
    np.save(tmp_path / "far.npy", np.array([3, 400]))
    (tmp_path / "run").mkdir()
    quick = ["--proxy-schedule", "1@0.1", "--target-schedule", "1@0.1", "--quiet"]
    cases = [
        (["uncertainty", tmp_path / "probs.npy", "--budget", 2, "--inputs", "probs", "--out",
          tmp_path / "o.npy"],
         f"logits file '{tmp_path / 'probs.npy'}' row 0 is not a probability distribution "
         "(entries must be >= 0 and sum to 1 within 0.001); pass --inputs logits if these are "
         "logits"),
        (["coreset", "--dataset", "digits", "--out", tmp_path / "run", *quick],
         f"run folder '{tmp_path / 'run'}' already exists; choose another folder or pass "
         "--overwrite to replace it"),
        (["active", "--dataset", "digits", "--sizes", "10,20", "--method", "forgetting", *quick],
         "--method forgetting needs every example to be trained on; it is a core-set method "
         "(use svp-fast coreset)"),
        (["active", "--dataset", "digits", "--sizes", "10,20", "--method", "random,random",
          *quick], "--method must not repeat, got random, random"),
        (["kcenter", tmp_path / "x.npy", "--budget", 2, "--already-selected",
          tmp_path / "dup.npy", "--out", tmp_path / "o.npy"],
         "--already-selected must not repeat an index, got 3 more than once"),
        (["kcenter", tmp_path / "x.npy", "--budget", 2, "--already-selected",
          tmp_path / "far.npy", "--out", tmp_path / "o.npy"],
         "--already-selected[1] = 400 is out of range [0, 50)"),
        (["kcenter", tmp_path / "x.npy", "--budget", 2, "--already-selected",
          tmp_path / "two.npy", "--start", 7, "--out", tmp_path / "o.npy"],
         "--start applies only when --already-selected is empty; got --start 7 and 2 already "
         "selected"),
        (["kcenter", tmp_path / "x.npy", "--budget", 2, "--start", 70, "--out",
          tmp_path / "o.npy"], "--start must be in [0, 50), got 70"),
        (["kcenter", tmp_path / "x.npy", "--budget", 0.99, "--already-selected",
          tmp_path / "two.npy", "--out", tmp_path / "o.npy"],
         "--budget 0.99 of 50 rows is 50, more than the number of points not already selected "
         "(48)"),
    ]
    for argv, expected in cases:
        code, _, err = run_cli(argv, capsys)
        line = one_line_error(code, err)
        assert line == f"svp-fast {argv[0]}: error: {expected}", line
        assert not PYTHON_SPEAK.search(line), line


def test_library_words_are_kept_where_no_flag_matches():
    args = argparse.Namespace(command="kcenter", embeddings="e.npy",
                              subparsers=cli.build_parser().parse_args(
                                  ["kcenter", "e.npy", "--budget", "1", "--out", "o.npy"]
                              ).subparsers)
    # not an argument name: left alone; 'embeddings' as the subject: the file
    assert cli.command_words("embeddings must be rescaled: max_abs=3", args) == \
        "embeddings file 'e.npy' must be rescaled: max_abs=3"
    assert cli.command_words("delete it to start over", args) == "delete it to start over"
    assert cli.command_words("metric must be one of", args) == "--metric must be one of"


# ----------------------------------------------------------------------------- the GPU

def gpu(test):
    return pytest.mark.gpu(pytest.mark.skipif(not cuda_available(), reason=cuda_skip_reason())(test))


@gpu
def test_kcenter_and_uncertainty_commands_on_cuda(tmp_path, rng, capsys):
    budget = sized(300, 60)
    x = rng.normal(size=(sized(20_000, 3_000), 16)).astype(np.float32)
    np.save(tmp_path / "e.npy", x)
    code, text, err = run_cli(["kcenter", tmp_path / "e.npy", "--budget", budget, "--device", "cuda",
                               "--radii", tmp_path / "r.npy", "--out", tmp_path / "p.npy"], capsys)
    assert code == 0, err
    assert "on cuda:0" in text
    picks, radii = svp_fast.kcenter(x, budget, return_radii=True)
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), picks)
    np.testing.assert_allclose(np.load(tmp_path / "r.npy"), radii, rtol=1e-6)
    logits = (rng.normal(size=(sized(30_000, 4_000), 10)) * 3).astype(np.float32)
    np.save(tmp_path / "l.npy", logits)
    code, text, err = run_cli(["uncertainty", tmp_path / "l.npy", "--budget", 0.1, "--device",
                               "cuda:0", "--method", "margin", "--scores-out", tmp_path / "s.npy",
                               "--out", tmp_path / "u.npy"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "u.npy"),
                                  svp_fast.uncertainty(logits, 0.1, method="margin"))
    assert np.load(tmp_path / "s.npy").shape == (logits.shape[0],)


@gpu
def test_kcenter_command_on_cuda_resumes_a_checkpoint(tmp_path, rng, capsys):
    # a checkpoint of this command's run (the source file's identity with the
    # library's facts), holding its first picks, as a crash would leave it
    from svp_fast._arrays import as_matrix
    from svp_fast.cli import _source_facts
    from svp_fast.selection.checkpoint import KCenterCheckpoint
    from svp_fast.selection.single import _checkpoint_facts

    n, budget, done = sized(5000, 1500), sized(400, 120), sized(150, 50)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    np.save(tmp_path / "e.npy", x)
    ref, ref_r = svp_fast.kcenter(x, budget, return_radii=True)
    argv = ["kcenter", tmp_path / "e.npy", "--budget", budget, "--out", tmp_path / "p.npy",
            "--checkpoint", tmp_path / "c.npz", "--device", "cuda"]
    args = cli.build_parser().parse_args([str(a) for a in argv])
    ck = KCenterCheckpoint(tmp_path / "c.npz", extra=_source_facts(args))
    ck.bind(_checkpoint_facts(as_matrix(x, "embeddings"), "euclidean", budget,
                              np.zeros(0, dtype=np.int64), 0))
    ck.save(ref[:done], ref_r[:done], float(ref_r[done - 1]) ** 2)
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "resuming" in err and f"{done} of {budget}" in err
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), ref)
    assert not (tmp_path / "c.npz").exists()  # removed when the run completes
