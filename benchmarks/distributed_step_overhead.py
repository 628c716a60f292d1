"""Cost of distributed k-center's protocols, measured with gloo on this host.

    python benchmarks/distributed_step_overhead.py [--ranks 1,2,4] [--n 8192] [--d 64]
        [--budget 1000] [--configs stepwise:lazy,stepwise:scan,batched:scan] [--repeats 3]

For each world size it launches torchrun and measures, on rank 0:

* the two collectives of a common stepwise step alone, back to back
  (all-gather of 4 float64 per rank, broadcast of one D-float32 row), median
  over 2000 rounds;
* svp_fast.distributed.kcenter on N x D float32 (Gaussian) split over the
  ranks, for each protocol:engine of ``--configs``: wall time per pick
  (setup included), the part of it inside collectives, collectives per pick
  and picks per pass (median of ``--repeats`` runs each, the configurations
  alternating so that they see the same machine load);

and, in this process, single-process svp_fast.kcenter on the same data: the
plain driver of each engine named, and the batched driver (method="batched",
same T).
Every run's picks are compared with the single-process ones. The numbers feed
docs/distributed.md and BENCHMARKS.md.
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


def _data(n: int, d: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)


def worker(n: int, d: int, budget: int, rounds: int, configs: list, repeats: int, T: int) -> None:
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
    x = _data(n, d)
    lo, hi = n * rank // world, n * (rank + 1) // world
    out = {"world": world, "pair_us": statistics.median(pair) * 1e6}
    runs = {c: [] for c in configs}
    picks = {}
    for _ in range(repeats):
        for config in configs:  # alternating: all see the same machine load
            protocol, method = config.split(":")
            extra = {"batch_candidates": T} if protocol == "batched" else {}
            dist.barrier()
            t0 = time.perf_counter()
            p, st = kcenter(x[lo:hi], budget, method=method, num_threads=1, return_stats=True,
                            protocol=protocol, **extra)
            wall = time.perf_counter() - t0
            runs[config].append((wall / budget, st.communication_seconds / budget,
                                 st.collectives / budget, st.picks_per_pass))
            picks[config] = p
    for config, rs in runs.items():
        rs.sort()
        wall, comm, coll, ppp = rs[len(rs) // 2]
        out[config] = {"us_per_pick": wall * 1e6, "comm_us_per_pick": comm * 1e6,
                         "collectives_per_pick": coll, "picks_per_pass": ppp,
                         "spread_us": [rs[0][0] * 1e6, rs[-1][0] * 1e6]}
    out["picks"] = {k: v.tolist() for k, v in picks.items()}
    if rank == 0:
        print(json.dumps(out), flush=True)
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", default="1,2,4")
    p.add_argument("--n", type=int, default=8192)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--configs", default="stepwise:lazy,stepwise:scan,batched:scan",
                   help="protocol:engine pairs of the distributed runs")
    p.add_argument("--candidates", type=int, default=256, help="T of the batched protocol")
    p.add_argument("--rounds", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    if "SVP_OVERHEAD_WORKER" in os.environ:  # a rank under torchrun
        worker(**json.loads(os.environ["SVP_OVERHEAD_WORKER"]))
        return
    a = p.parse_args()
    import svp_fast

    configs = a.configs.split(",")
    x = _data(a.n, a.d)
    single = {}
    ref = None
    engines = sorted({c.split(":")[1] for c in configs})
    drivers = [(e, {"method": e}) for e in engines] + [
        ("batched", {"method": "batched", "batch_candidates": a.candidates})]
    for name, kw in drivers:
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            picks = svp_fast.kcenter(x, a.budget, num_threads=1, **kw)
            times.append((time.perf_counter() - t0) / a.budget)
        ref = picks if ref is None else ref
        assert np.array_equal(picks, ref), "single-process drivers disagree"
        times.sort()
        single[name] = (statistics.median(times) * 1e6, times[0] * 1e6, times[-1] * 1e6)
    best = min(single, key=lambda k: single[k][0])
    print(f"host: {os.cpu_count()} CPUs; N={a.n}, D={a.d} float32, {a.budget} picks, "
          f"T={a.candidates}, 1 thread per rank, median of {a.repeats} (spread min-max)")
    for name, (med, lo, hi) in single.items():
        print(f"single process, method={name}: {med:.1f} us/pick ({lo:.1f}-{hi:.1f})")
    print(f"'vs stepwise': against {configs[0]}; 'vs 1 process': against the fastest "
          f"single-process method ({best})")
    print(f"{'ranks':>5}  {'stepwise pair':>13}  {'protocol:engine':>15}  {'us/pick':>20}  "
          f"{'in collectives':>14}  {'collectives/pick':>16}  {'picks/pass':>10}  "
          f"{'vs stepwise':>11}  {'vs 1 process':>12}")
    # (torchrun would read --n and the like as its own abbreviated options)
    env = dict(os.environ, OMP_NUM_THREADS="1", SVP_OVERHEAD_WORKER=json.dumps(
        {"n": a.n, "d": a.d, "budget": a.budget, "rounds": a.rounds, "configs": configs,
         "repeats": a.repeats, "T": a.candidates}))
    for world in [int(w) for w in a.ranks.split(",")]:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
               str(world), os.path.abspath(__file__)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if out.returncode != 0 or not lines:
            print(f"{world:>5}  failed: {out.stderr[-800:]}")
            continue
        r = json.loads(lines[-1])
        for config in configs:
            assert np.array_equal(np.asarray(r["picks"][config]), ref), (world, config)
        step = r[configs[0]]["us_per_pick"]
        for config in configs:
            q = r[config]
            lo, hi = q["spread_us"]
            print(f"{world:>5}  {r['pair_us']:>10.1f} us  {config:>15}  "
                  f"{q['us_per_pick']:>8.1f} ({lo:.0f}-{hi:.0f})  {q['comm_us_per_pick']:>11.1f} us  "
                  f"{q['collectives_per_pick']:>16.3f}  {q['picks_per_pass']:>10.1f}  "
                  f"{step / q['us_per_pick']:>10.2f}x  {single[best][0] / q['us_per_pick']:>11.2f}x")


if __name__ == "__main__":
    main()
