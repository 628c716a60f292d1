"""The cost of resuming `svp-fast kcenter --checkpoint` (issue 16's case).

    python benchmarks/checkpoint_resume.py [--n 200000] [--d 64] [--budget 60000] [--kill-at 28000]

One run uninterrupted; one run of the same command killed with SIGKILL once
its checkpoint holds --kill-at picks, then the same command again. Prints
the three wall times (the resumed run from its start to its end), whether
the picks and radii equal the uninterrupted run's, and the checkpoint's size.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--budget", type=int, default=60_000)
    ap.add_argument("--kill-at", type=int, default=28_000)
    ap.add_argument("--method", default="auto")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="svp_ckpt_"))
    emb = tmp / "emb.npy"
    np.save(emb, np.random.default_rng(0).standard_normal((args.n, args.d)).astype(np.float32))
    base = [sys.executable, "-m", "svp_fast", "kcenter", str(emb), "--budget", str(args.budget),
            "--method", args.method, "--no-progress"]
    t = time.perf_counter()
    subprocess.run(base + ["--out", str(tmp / "ref.npy"), "--radii", str(tmp / "ref_r.npy")],
                   check=True, cwd=tmp)
    t_ref = time.perf_counter() - t
    ck = tmp / "run.ckpt.npz"
    cmd = base + ["--out", str(tmp / "o.npy"), "--radii", str(tmp / "r.npy"), "--checkpoint",
                  str(ck), "--checkpoint-every", "1"]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = 0
    while proc.poll() is None:
        time.sleep(0.2)
        try:
            with np.load(ck) as z:
                saved = int(z["picks"].size)
        except Exception:
            continue
        if saved >= args.kill_at:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    t_killed = time.perf_counter() - t
    size = ck.stat().st_size if ck.exists() else 0
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
    t_resume = time.perf_counter() - t
    same_p = np.array_equal(np.load(tmp / "o.npy"), np.load(tmp / "ref.npy"))
    same_r = np.array_equal(np.load(tmp / "r.npy"), np.load(tmp / "ref_r.npy"))
    print(f"uninterrupted {t_ref:.1f} s; killed after {t_killed:.1f} s with {saved} picks saved "
          f"({size / 2**20:.1f} MiB); resumed run {t_resume:.1f} s; picks equal {same_p}, radii "
          f"equal {same_r}")
    print(done.stderr.strip().splitlines()[0] if done.stderr.strip() else "")
    return 0 if same_p and same_r else 1


if __name__ == "__main__":
    sys.exit(main())
