"""`svp-fast kcenter --checkpoint`: a run killed with SIGKILL and restarted with the
same command resumes and ends with exactly the picks of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from svp_fast.cli import main


def _cmd(*args):
    return [sys.executable, "-m", "svp_fast", *args]


@pytest.fixture
def big_npy(tmp_path):
    x = np.random.default_rng(0).standard_normal((100_000, 32)).astype(np.float32)
    path = tmp_path / "emb.npy"
    np.save(path, x)
    return path


def test_sigkill_and_resume_gives_the_uninterrupted_picks(tmp_path, big_npy):
    budget = "4000"
    ref_out = tmp_path / "ref.npy"
    ref_r = tmp_path / "ref_r.npy"
    assert main(["kcenter", str(big_npy), "--budget", budget, "--out", str(ref_out),
                 "--radii", str(ref_r), "--method", "scan", "--no-progress"]) == 0
    out, radii, ckpt = tmp_path / "picks.npy", tmp_path / "radii.npy", tmp_path / "run.ckpt.npz"
    cmd = _cmd("kcenter", str(big_npy), "--budget", budget, "--out", str(out), "--radii", str(radii),
               "--checkpoint", str(ckpt), "--checkpoint-every", "0.2", "--method", "scan",
               "--no-progress")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.time() + 120
    saved = 0
    while time.time() < deadline:  # wait for a checkpoint with some picks
        time.sleep(0.2)
        if ckpt.exists():
            try:
                with np.load(ckpt) as z:
                    saved = z["picks"].size
            except Exception:  # being replaced right now: atomic rename, retry
                continue
            if saved >= 200:
                break
    assert saved >= 200, "no checkpoint was written"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    # the same command again: resumes
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming from" in done.stderr
    np.testing.assert_array_equal(np.load(out), np.load(ref_out))
    np.testing.assert_allclose(np.load(radii), np.load(ref_r), rtol=1e-6)
    assert not ckpt.exists()  # removed once the run completes


def test_checkpoint_of_another_run_is_refused(tmp_path, capsys):
    x = np.random.default_rng(1).standard_normal((500, 8)).astype(np.float32)
    emb = tmp_path / "e.npy"
    np.save(emb, x)
    ckpt = tmp_path / "c.npz"
    from svp_fast.cli import _run_fingerprint, _save_checkpoint  # noqa: PLC0415

    class A:
        embeddings, start, metric = str(emb), None, "euclidean"

    fp = _run_fingerprint(A, x, 100, None)
    _save_checkpoint(ckpt, fp, np.arange(10), None)
    rc = main(["kcenter", str(emb), "--budget", "50", "--out", str(tmp_path / "o.npy"),
               "--checkpoint", str(ckpt)])
    assert rc == 2
    assert "different run (budget differ)" in capsys.readouterr().err
    ckpt.write_bytes(b"not a checkpoint")
    rc = main(["kcenter", str(emb), "--budget", "100", "--out", str(tmp_path / "o.npy"),
               "--checkpoint", str(ckpt)])
    assert rc == 2
    assert "is not a svp-fast k-center checkpoint" in capsys.readouterr().err


def test_resume_from_a_partial_checkpoint_in_process(tmp_path):
    x = np.random.default_rng(2).standard_normal((3000, 16)).astype(np.float32)
    emb = tmp_path / "e.npy"
    np.save(emb, x)
    ref = tmp_path / "ref.npy"
    assert main(["kcenter", str(emb), "--budget", "700", "--start", "42", "--out", str(ref),
                 "--no-progress"]) == 0
    from svp_fast.cli import _run_fingerprint, _save_checkpoint  # noqa: PLC0415

    class A:
        embeddings, start, metric = str(emb), 42, "euclidean"

    ckpt = tmp_path / "c.npz"
    _save_checkpoint(ckpt, _run_fingerprint(A, x, 700, None), np.load(ref)[:123], None)
    out = tmp_path / "o.npy"
    assert main(["kcenter", str(emb), "--budget", "700", "--start", "42", "--out", str(out),
                 "--checkpoint", str(ckpt), "--no-progress", "--method", "lazy"]) == 0
    np.testing.assert_array_equal(np.load(out), np.load(ref))
