"""`svp-fast kcenter --checkpoint`: a run killed with SIGKILL and restarted with the
same command resumes and ends with exactly the picks of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import child_process
import numpy as np
import pytest

import svp_fast

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
    # (child_process: the run is killed if the test fails before it does)
    with child_process(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=dict(os.environ, OMP_NUM_THREADS="1")) as proc:
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


def _interrupted(x, budget, path, after, **kw):
    """A checkpointed run stopped (an exception in its callback) once it has
    made more than ``after`` picks, as a crash would stop it."""
    class Stop(Exception):
        pass

    def stop(p, r):
        if len(p) > after:
            raise Stop()

    with pytest.raises(Stop):
        svp_fast.kcenter(x, budget, checkpoint=path, checkpoint_every=1e-3, callback=stop, **kw)
    assert path.exists()


@pytest.mark.parametrize("method", ["scan", "lazy", "pruned", "batched", "auto"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_resume_gives_the_uninterrupted_picks_and_radii(tmp_path, method, metric):
    # the issue: a resume re-applied every earlier pick to every row, and its
    # radii differed from the uninterrupted run's by about 4e-7 in places
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((40, 12)) * 4)[rng.integers(0, 40, 8000)]
    x = (x + 0.3 * rng.standard_normal((8000, 12))).astype(np.float32)
    kw = dict(method=method, metric=metric, n_cells=32, return_radii=True)
    ref, ref_r = svp_fast.kcenter(x, 2000, **kw)
    ck = tmp_path / "run.ckpt.npz"
    _interrupted(x, 2000, ck, 700, **kw)
    with np.load(ck) as z:
        saved = int(z["picks"].size)
        assert "state_m" in z.files  # the engine's state, not only the picks
    picks, radii, st = svp_fast.kcenter(x, 2000, checkpoint=ck, return_stats=True, **kw)
    assert st.extra["resumed_from"] == saved > 700
    np.testing.assert_array_equal(picks, ref)
    np.testing.assert_array_equal(radii, ref_r)  # bit for bit
    assert not ck.exists()  # removed once the run completes
    # the resume applied no earlier pick again: a scan of its own picks at most
    # (re-applying them would add saved x N distances)
    assert st.scan_evals <= (2000 - saved) * x.shape[0]
    assert st.distance_evals < st.scan_evals + saved * x.shape[0] / 2


def test_resume_on_another_engine_keeps_the_picks(tmp_path):
    # a lazy run's state has stale rows: a scan or pruned resume continues it
    # on the lazy engine; a scan state goes anywhere
    x = np.random.default_rng(4).standard_normal((5000, 8)).astype(np.float32)
    ref = svp_fast.kcenter(x, 1500, method="scan")
    for first, then in [("lazy", "scan"), ("lazy", "pruned"), ("scan", "pruned"), ("scan", "batched")]:
        ck = tmp_path / f"{first}-{then}.npz"
        _interrupted(x, 1500, ck, 400, method=first)
        got, st = svp_fast.kcenter(x, 1500, method=then, checkpoint=ck, n_cells=16,
                                   return_stats=True)
        np.testing.assert_array_equal(got, ref)
        assert st.method == ("lazy" if first == "lazy" else then)


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    x = np.random.default_rng(1).standard_normal((2000, 8)).astype(np.float32)
    ck = tmp_path / "c.npz"
    _interrupted(x, 600, ck, 100)
    for other in (dict(budget=601), dict(metric="cosine"), dict(start=3)):
        kw = dict(budget=600)
        kw.update(other)
        with pytest.raises(ValueError, match="written by a different run"):
            svp_fast.kcenter(x, kw.pop("budget"), checkpoint=ck, **kw)
    y = x.copy()
    y[0] += 1  # other data of the same shape
    with pytest.raises(ValueError, match=r"different run \(data differ\)"):
        svp_fast.kcenter(y, 600, checkpoint=ck)
    ck.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a svp-fast k-center checkpoint"):
        svp_fast.kcenter(x, 600, checkpoint=ck)
    with pytest.raises(ValueError, match="checkpoint_every must be a number of seconds > 0"):
        svp_fast.kcenter(x, 600, checkpoint=tmp_path / "d.npz", checkpoint_every=0)
    with pytest.raises(TypeError, match="checkpoint must be a path"):
        svp_fast.kcenter(x, 600, checkpoint=3)


def test_checkpoint_of_another_run_is_refused_on_the_command_line(tmp_path, capsys):
    x = np.random.default_rng(1).standard_normal((20000, 8)).astype(np.float32)
    emb = tmp_path / "e.npy"
    np.save(emb, x)
    ckpt = tmp_path / "c.npz"
    from svp_fast.cli import _source_facts  # noqa: PLC0415
    from svp_fast.selection.checkpoint import KCenterCheckpoint  # noqa: PLC0415

    class A:
        embeddings = str(emb)

    _interrupted(x, 1000, ckpt, 200)
    # the command line's checkpoint also names the source file: the library's
    # file (no source facts) is another run's
    rc = main(["kcenter", str(emb), "--budget", "1000", "--out", str(tmp_path / "o.npy"),
               "--checkpoint", str(ckpt)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "different run" in err and "pass another --checkpoint" in err
    assert KCenterCheckpoint(ckpt, extra=_source_facts(A)).extra["embeddings"] == str(emb.resolve())
    ckpt.write_bytes(b"not a checkpoint")
    rc = main(["kcenter", str(emb), "--budget", "1000", "--out", str(tmp_path / "o.npy"),
               "--checkpoint", str(ckpt)])
    assert rc == 2
    assert "is not a svp-fast k-center checkpoint" in capsys.readouterr().err
