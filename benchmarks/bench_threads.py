"""The default thread count beside other work (issue 22), side by side in one run.

Every case of the latency suite (``svp_fast.bench.suite_points``: k-center per
method and dtype, uncertainty per method) is timed with

* ``default``: ``num_threads=None``, the default this build chooses
  (``svp_fast/_threads.py``);
* ``1`` and ``all``: one thread and every thread (``os.cpu_count()``);
* ``today``, with ``--baseline-site DIR``: the default of another build (e.g.
  main, installed with ``pip install --target DIR``), in its own process;
* ``passive``, with ``--passive``: this build's default and all threads in a
  process started with ``OMP_WAIT_POLICY=passive`` (waiting threads sleep
  instead of spinning).

``--busy N`` starts N processes that spin on a core each for the whole run
(killed at the end, and on any error). The cases run in worker processes,
one per build and environment; every round runs each (worker, variant) once
in turn (in an order that turns every round, after a pause of ``--pause``
seconds: the threads of a run spin for a while after it), so a change in the
machine's load hits them alike, and the median of ``--repeat`` rounds is
kept. The load average is recorded beside every
case.

    python benchmarks/bench_threads.py --busy 2            # the shared machine
    python benchmarks/bench_threads.py --baseline-site /tmp/svp_main_site   # idle, against main
    python benchmarks/bench_threads.py --assume-free-cores 2     # the idle choice's own cost
    python benchmarks/bench_threads.py --baseline-site DIR --pause 2.1 --burst 5   # idle, awake

It prints, per case, the times and ``default / best(1, all)`` (target with
two busy processes: at most 1.3) and ``default / today`` (target on an idle
machine: at most 1.05), and writes them to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import site as sitelib
import statistics
import subprocess
import sys
import time
from pathlib import Path

from svp_fast import _threads

WORKER = r"""
import json, sys, time
import numpy as np
import svp_fast
from svp_fast import bench

size = sys.argv[1]
if size == "issue":  # the cases issue 22 reported
    points = [bench.SuitePoint("kcenter", "cpu", 20_000, 256, "float32", 300),
              bench.SuitePoint("uncertainty", "cpu", 2_000, 20, "float32", 200,
                               "least_confidence")]
else:
    points = bench.suite_points(size)
if len(sys.argv) > 2:  # --assume-free-cores: the default's load reading, replaced
    from svp_fast import _threads

    class Assumed:
        def free_cores(self, free=float(sys.argv[2])):
            return free

    _threads.LOAD = Assumed()
cache = {}

def case(i):
    if i not in cache:
        p = points[i]
        if p.task == "kcenter":
            x = bench.suite_embeddings(p.n, p.d, p.dtype)
            cache.clear()
            cache[i] = [(m, (lambda th, m=m, x=x, p=p: svp_fast.kcenter(
                x, p.budget, method=m, num_threads=th, return_stats=True)))
                for m in bench.KCENTER_METHODS]
        else:
            z = bench.suite_logits(p.n, p.d, p.dtype)
            cache.clear()
            cache[i] = [(p.method, (lambda th, z=z, p=p: svp_fast.uncertainty(
                z, p.budget, method=p.method, num_threads=th, return_stats=True)))]
    return cache[i]

print(json.dumps({"cases": [[p.task, p.dtype, p.n, p.d, p.budget, p.method] for p in points],
                  "version": svp_fast.__file__}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    name, fn = case(req["case"])[req["method"]]
    t0 = time.perf_counter()
    out = fn(req["threads"])
    dt = time.perf_counter() - t0
    stats = out[-1]
    print(json.dumps({"seconds": dt, "method": name,
                      "threads_used": int(getattr(stats, "num_threads", 0) or 0)}), flush=True)
"""


class Worker:
    def __init__(self, name: str, size: str, env: dict, flags=(), extra=()):
        self.name = name
        self.proc = subprocess.Popen([sys.executable, *flags, "-c", WORKER, size, *extra],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env)
        self.info = json.loads(self.proc.stdout.readline())

    def run(self, case: int, method: int, threads):
        self.proc.stdin.write(json.dumps({"case": case, "method": method, "threads": threads})
                              + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} ended (exit code {self.proc.wait()})")
        return json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def reading_cost(n: int = 200) -> float:
    """Seconds of one fresh /proc reading of svp_fast._threads.LoadMeter (median)."""
    times = []
    for _ in range(n):
        meter = _threads.LoadMeter()
        meter.others_busy()  # the instant count
        meter._last = (meter._last[0] - 2 * _threads.WINDOW,) + meter._last[1:]
        t0 = time.perf_counter()
        meter.others_busy()  # a windowed reading: /proc/stat and the process's CPU time
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--busy", type=int, default=0, help="processes spinning on a core each")
    p.add_argument("--size", default="small", choices=("small", "large", "issue"),
                   help="the latency suite's small or large grid, or the issue's cases "
                        "(20,000 x 256 float32, 300 picks; uncertainty on 2,000 x 20)")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--baseline-site", metavar="DIR",
                   help="a folder holding another build of svp_fast (pip install --target DIR): "
                        "its default is timed as 'today'")
    p.add_argument("--passive", action="store_true",
                   help="also time this build under OMP_WAIT_POLICY=passive")
    p.add_argument("--only", default="", help="run only cases whose label contains this")
    p.add_argument("--pause", type=float, default=0.02,
                   help="seconds between two runs (default 0.02): OpenMP threads spin after "
                        "a run before they sleep, and would slow the next run down")
    p.add_argument("--burst", type=int, default=0, metavar="K",
                   help="after each pause, one untimed run and K timed runs back to back (the "
                        "idle comparison: a core idle for a pause takes milliseconds to wake "
                        "on some VMs, and workers that alternate run by run are load to each "
                        "other's default; with --pause over 2 s and K runs in one worker, the "
                        "default sees an idle machine and the cores are awake)")
    p.add_argument("--assume-free-cores", type=float, metavar="F",
                   help="this build's default reads F free cores instead of /proc (e.g. the "
                        "machine's CPU count: what it does on an idle machine, measured on a "
                        "busy one); the cost of a real reading is printed apart")
    p.add_argument("--out", metavar="JSON", help="write every measurement here")
    args = p.parse_args(argv)

    cpus = os.cpu_count() or 1
    env = dict(os.environ)
    workers, busy = [], []
    try:
        assumed = () if args.assume_free_cores is None else (str(args.assume_free_cores),)
        workers.append(Worker("new", args.size, env, extra=assumed))
        if args.baseline_site:
            # -S: no site-packages processing, so that an editable install's
            # import hook (.pth) cannot put this build ahead of the baseline
            site = str(Path(args.baseline_site).resolve())
            path = os.pathsep.join([site, *sitelib.getsitepackages()])
            workers.append(Worker("today", args.size, dict(env, PYTHONPATH=path), flags=("-S",)))
            if not workers[-1].info["version"].startswith(site):
                raise SystemExit(f"the baseline worker imported {workers[-1].info['version']}, "
                                 f"not a build under {site}")
        if args.passive:
            workers.append(Worker("passive", args.size, dict(env, OMP_WAIT_POLICY="passive")))
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(args.busy)]
        time.sleep(0.5)
        variants = {"new": [("default", None), ("1", 1), ("all", cpus)],
                    "today": [("today", None)],
                    "passive": [("passive default", None), ("passive all", cpus)]}
        plan = [(w, label, threads) for w in workers for label, threads in variants[w.name]]
        cases = workers[0].info["cases"]
        print(f"bench_threads: {cpus} CPUs, {args.busy} busy processes, suite {args.size}, "
              f"median of {args.repeat}" + (f" rounds of {args.burst} runs" if args.burst else "")
              + f"; load average {os.getloadavg()}"
              + ("" if args.assume_free_cores is None else
                 f"; the default assumes {args.assume_free_cores:g} free cores"), flush=True)
        print(f"one reading of the load: {reading_cost() * 1e6:.1f} us (at most one per "
              f"{_threads.WINDOW:g} s)", flush=True)
        records = []
        for ci, (task, dtype, n, d, budget, umethod) in enumerate(cases):
            methods = ["scan", "lazy", "pruned", "batched"] if task == "kcenter" else [umethod]
            for mi, method in enumerate(methods):
                label = (f"{task} {dtype} N={n} {'D' if task == 'kcenter' else 'C'}={d} "
                         f"{method}")
                if args.only and args.only not in label:
                    continue
                times = {lab: [] for _, lab, _ in plan}
                used = {}
                for r in range(args.warmup + args.repeat):
                    # the order turns every round, and each run starts after
                    # a pause: a team of threads spins for a while after its
                    # run, on a core the next run (whichever it is) needs
                    for w, lab, threads in plan[r % len(plan):] + plan[:r % len(plan)]:
                        time.sleep(args.pause)
                        if args.burst:
                            w.run(ci, mi, threads)  # wakes the cores, untimed
                        for _ in range(max(1, args.burst)):
                            res = w.run(ci, mi, threads)
                            if r >= args.warmup:
                                times[lab].append(res["seconds"])
                                used.setdefault(lab, set()).add(res["threads_used"])
                med = {lab: statistics.median(v) for lab, v in times.items()}
                rec = {"case": label, "ms": {k: v * 1e3 for k, v in med.items()},
                       "threads_used": {k: sorted(v) for k, v in used.items()},
                       "load": os.getloadavg()[0]}
                rec["default_over_best"] = med["default"] / min(med["1"], med["all"])
                if "today" in med:
                    rec["default_over_today"] = med["default"] / med["today"]
                records.append(rec)
                extra = "".join(f" {k} {v * 1e3:9.3f}" for k, v in med.items()
                                if k not in ("default", "1", "all"))
                vs_today = (f"  /today {rec['default_over_today']:5.2f}"
                            if "default_over_today" in rec else "")
                print(f"{label:46s} default {med['default'] * 1e3:9.3f} (threads "
                      f"{','.join(map(str, rec['threads_used']['default']))}) 1 "
                      f"{med['1'] * 1e3:9.3f} all {med['all'] * 1e3:9.3f}{extra}  "
                      f"default/best {rec['default_over_best']:5.2f}{vs_today}  "
                      f"load {rec['load']:.1f}", flush=True)
        worst = max(records, key=lambda r: r["default_over_best"]) if records else None
        if worst:
            print(f"\nworst default / best(1, all): {worst['default_over_best']:.2f} "
                  f"({worst['case']})")
        if records and "default_over_today" in records[0]:
            ratios = [r["default_over_today"] for r in records]
            print(f"default / today: median {statistics.median(ratios):.3f}, max "
                  f"{max(ratios):.2f} "
                  f"({max(records, key=lambda r: r['default_over_today'])['case']})")
        if args.out:
            Path(args.out).write_text(json.dumps({
                "date": time.strftime("%Y-%m-%d %H:%M"), "cpus": cpus, "busy": args.busy,
                "size": args.size, "repeat": args.repeat, "records": records}, indent=1))
    finally:
        for b in busy:
            b.kill()
            b.wait()
        for w in workers:
            w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
