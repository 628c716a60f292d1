"""Uncertainty top-k, this build against another build of svp_fast, side by side.

    python benchmarks/uncertainty_ab.py --baseline-python OLD/.venv/bin/python \\
        [--baseline-path OLD] [--n 1000000] [--classes 1000] [--budget 0.1] [--rounds 3]

Each round runs the baseline and then this build in fresh processes on the same
logits (standard normal x 3, float32, written once to a .npy under /tmp and
read from the page cache), every method, the best of three calls each. Prints
the seconds of both, their ratio per round, and the rows this build refined in
float64. OLD is a build of an earlier commit (e.g. `git archive <commit>` into a
folder, built with cmake, its _core copied into its svp_fast/), run by a Python
that does not have this build installed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

WORKER = r"""
import json, sys, time
import numpy as np
import svp_fast
x = np.load(sys.argv[1])
k = int(sys.argv[2])
out = {}
for method in ("least_confidence", "entropy", "margin"):
    svp_fast.uncertainty(x[:1000], 10, method=method)
    best = cpu = float("inf")
    for _ in range(3):
        t, c = time.perf_counter(), time.process_time()
        svp_fast.uncertainty(x, k, method=method)
        best = min(best, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
    row = {"seconds": best, "cpu_seconds": cpu}
    try:
        row.update(svp_fast.uncertainty(x, k, method=method, return_stats=True)[1])
    except TypeError:  # builds before return_stats
        pass
    out[method] = row
print(json.dumps(out))
"""


def run(python: str, path: str | None, data: str, k: int) -> dict:
    env = dict(os.environ)
    if path:
        env["PYTHONPATH"] = path
    res = subprocess.run([python, "-c", WORKER, data, str(k)], env=env, cwd="/tmp",
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline-python", required=True)
    ap.add_argument("--baseline-path")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--budget", type=float, default=0.1, help="a fraction of n, or a count")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import numpy as np

    data = f"/tmp/svp_unc_ab_{args.n}x{args.classes}.npy"
    if not os.path.exists(data):
        z = np.random.default_rng(2).standard_normal((args.n, args.classes), dtype=np.float32) * 3
        np.save(data, z)
        del z
    k = int(args.budget * args.n) if args.budget < 1 else int(args.budget)
    print(f"{args.n:,} x {args.classes:,} float32 logits, top {k:,}; best of 3 per call")
    rows = []
    for r in range(args.rounds):
        old = run(args.baseline_python, args.baseline_path, data, k)
        new = run(sys.executable, None, data, k)
        for m in old:
            rows.append((r, m, old[m]["seconds"], new[m]["seconds"], old[m]["cpu_seconds"],
                         new[m]["cpu_seconds"]))
            print(f"round {r}  {m:16s}  baseline {old[m]['seconds']:.3f} s (cpu {old[m]['cpu_seconds']:.3f})  "
                  f"this build {new[m]['seconds']:.3f} s (cpu {new[m]['cpu_seconds']:.3f})  "
                  f"ratio {new[m]['seconds'] / old[m]['seconds']:.2f}  "
                  f"rows refined {new[m].get('rows_refined')}", flush=True)
    # wall time swings with other work on a shared machine; the CPU time of the
    # two threads much less
    print("\nmethod            ratio (this build / baseline) per round: wall | cpu")
    for m in ("least_confidence", "entropy", "margin"):
        wall = " ".join(f"{b / a:.2f}" for (_, mm, a, b, _, _) in rows if mm == m)
        cpu = " ".join(f"{d / c:.2f}" for (_, mm, _, _, c, d) in rows if mm == m)
        print(f"{m:16s}  {wall} | {cpu}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
