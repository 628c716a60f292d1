"""Per-step cost of the collectives of distributed k-center, measured with gloo on this host.

    python benchmarks/distributed_step_overhead.py [--ranks 1,2,4] [--n 8192] [--d 64]

For each world size it launches torchrun and measures, on rank 0:

* the two collectives of a common step alone, back to back (all-gather of 4
  float64 per rank, broadcast of one D-float32 row), median over 2000 rounds;
* svp_fast.distributed.kcenter (scan) on N x D float32 split over the ranks:
  time per step and the part of it spent inside collectives;

and, in this process, single-process svp_fast.kcenter on the same data. The
numbers feed the model in docs/distributed.md. Keep N small: the point is the
fixed cost per step, not the scan.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def worker(n: int, d: int, budget: int, rounds: int) -> None:
    import torch
    import torch.distributed as dist

    from svp_fast.distributed._kcenter import kcenter

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    gather_in = torch.zeros(4, dtype=torch.float64)
    gather_out = torch.zeros(4 * world, dtype=torch.float64)
    row = torch.zeros(d * 4, dtype=torch.uint8)
    all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    pair = []
    for i in range(rounds + 100):
        t0 = time.perf_counter()
        all_gather(gather_out, gather_in, async_op=True).wait()
        dist.broadcast(row, src=i % world, async_op=True).wait()
        if i >= 100:  # warm-up
            pair.append(time.perf_counter() - t0)
    x = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    lo, hi = n * rank // world, n * (rank + 1) // world
    runs = []
    for _ in range(3):
        _, st = kcenter(x[lo:hi], budget, method="scan", num_threads=1, return_stats=True)
        runs.append((st.seconds_per_step, st.communication_seconds_per_step))
    runs.sort()
    step, comm = runs[1]
    if rank == 0:
        print(json.dumps({"world": world, "pair_us": statistics.median(pair) * 1e6,
                          "step_us": step * 1e6, "comm_us": comm * 1e6}), flush=True)
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", default="1,2,4")
    p.add_argument("--n", type=int, default=8192)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=2000)
    if "SVP_OVERHEAD_WORKER" in os.environ:  # a rank under torchrun
        worker(**json.loads(os.environ["SVP_OVERHEAD_WORKER"]))
        return
    a = p.parse_args()
    import svp_fast

    x = np.random.default_rng(0).standard_normal((a.n, a.d)).astype(np.float32)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        svp_fast.kcenter(x, a.budget, method="scan", num_threads=1)
        times.append((time.perf_counter() - t0) / a.budget)
    single = statistics.median(times) * 1e6
    print(f"host: {os.cpu_count()} CPUs; N={a.n}, D={a.d} float32, {a.budget} picks, scan, 1 thread per rank")
    print(f"single process (svp_fast.kcenter): {single:.1f} us/step")
    print(f"{'ranks':>5}  {'2 collectives alone':>20}  {'distributed step':>16}  {'of it in collectives':>20}")
    # (torchrun would read --n and the like as its own abbreviated options)
    env = dict(os.environ, OMP_NUM_THREADS="1", SVP_OVERHEAD_WORKER=json.dumps(
        {"n": a.n, "d": a.d, "budget": a.budget, "rounds": a.rounds}))
    for world in [int(w) for w in a.ranks.split(",")]:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
               str(world), os.path.abspath(__file__)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if out.returncode != 0 or not lines:
            print(f"{world:>5}  failed: {out.stderr[-800:]}")
            continue
        r = json.loads(lines[-1])
        print(f"{world:>5}  {r['pair_us']:>17.1f} us  {r['step_us']:>13.1f} us  {r['comm_us']:>17.1f} us")


if __name__ == "__main__":
    main()
