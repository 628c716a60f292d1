"""The default thread count (svp_fast/_threads.py): its rules, the load it reads
from /proc, and what the selection calls report. The picks never depend on it
(test_kcenter.py compares thread counts); here: that the choice is the one the
rules give, with the load replaced by a stand-in so that no test depends on how
busy the machine is."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import child_process

import svp_fast
from svp_fast import _threads
from svp_fast._threads import KCENTER_STEP, UNCERTAINTY_PASS, LoadMeter, choose_threads


class FixedLoad:
    """A LoadMeter stand-in: this many cores are free (None: no reading)."""

    def __init__(self, free):
        self.free = free
        self.calls = 0

    def free_cores(self):
        self.calls += 1
        return self.free


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(_threads, "_MAX_THREADS", 2)


def test_the_rules(two_cores):
    busy, idle = FixedLoad(0.0), FixedLoad(2.0)
    small, medium, large = 64 << 10, 5 << 20, 256 << 20
    # an explicit count always wins
    assert choose_threads(3, KCENTER_STEP, small, meter=busy).threads == 3
    # rule 1: too small to share, whatever the load (and no reading of it)
    c = choose_threads(0, KCENTER_STEP, small, meter=idle)
    assert (c.threads, c.reason, idle.calls) == (1, "serial", 0)
    # rule 3: the free cores, at least one, at most OpenMP's maximum
    assert choose_threads(0, KCENTER_STEP, medium, meter=idle).threads == 2
    assert choose_threads(0, KCENTER_STEP, medium, meter=busy).threads == 1
    assert choose_threads(0, KCENTER_STEP, medium, meter=FixedLoad(1.4)).threads == 1
    assert choose_threads(0, KCENTER_STEP, medium, meter=FixedLoad(1.6)).threads == 2
    assert choose_threads(0, KCENTER_STEP, medium, meter=FixedLoad(7.0)).threads == 2
    c = choose_threads(0, KCENTER_STEP, medium, meter=busy)
    assert (c.reason, c.free_cores) == ("free cores", 0.0)
    # rule 2: large regions take every thread under load, unless the engine's
    # large steps come with many small regions
    assert choose_threads(0, KCENTER_STEP, large, meter=busy).threads == 2
    assert choose_threads(0, KCENTER_STEP, large, meter=busy, share=False).threads == 1
    # no /proc: every thread, as OpenMP would
    assert choose_threads(0, KCENTER_STEP, medium, meter=FixedLoad(None)).reason == \
        "no load reading"
    # uncertainty counts elements
    assert choose_threads(0, UNCERTAINTY_PASS, 150 * 20, meter=idle).threads == 1
    assert choose_threads(0, UNCERTAINTY_PASS, 10_000 * 100, meter=busy).threads == 1
    assert choose_threads(0, UNCERTAINTY_PASS, 100_000 * 100, meter=busy).threads == 2


def test_a_batched_pass_shares_from_fewer_rows_than_a_scan_step(two_cores, monkeypatch):
    # a pass meets the pass's candidates at each row: several steps of work
    from types import SimpleNamespace

    from svp_fast.selection import _planner

    monkeypatch.setattr(_threads, "LOAD", FixedLoad(0.0))  # every core busy elsewhere
    cpu = SimpleNamespace(name="cpu")

    def threads(rows, cols, engine):
        m = SimpleNamespace(rows=rows, cols=cols, itemsize=4)
        return _planner.step_threads(0, m, cpu, engine)

    # 200,000 x 64 float32 (51 MB): all threads were 1.41x faster for batched under load,
    # one thread as fast as two for the scan
    assert (threads(200_000, 64, "batched").threads, threads(200_000, 64, "batched").reason) == \
        (2, "share")
    assert threads(200_000, 64, "scan").threads == 1
    # 20,000 x 256 (20 MB): even; 20,000 x 64 (5 MB): one thread 1.6-3.2x faster
    assert threads(20_000, 256, "batched").threads == 1
    assert threads(20_000, 64, "batched").threads == 1
    assert _threads.KCENTER_BATCHED_PASS.share_from < _threads.KCENTER_STEP.share_from


def test_one_core_is_always_serial(monkeypatch):
    monkeypatch.setattr(_threads, "_MAX_THREADS", 1)
    c = choose_threads(0, KCENTER_STEP, 1 << 30, meter=FixedLoad(8.0))
    assert (c.threads, c.reason) == (1, "serial")


def _fake_proc(tmp_path, busy_ticks, idle_ticks, running, load1=4.0):
    (tmp_path / "stat").write_text(
        f"cpu  {busy_ticks} 0 0 {idle_ticks} 0 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\n")
    (tmp_path / "loadavg").write_text(f"{load1:.2f} 0.40 0.30 {running}/200 4242\n")


def test_load_meter_reads_proc_less_its_own_time(tmp_path, monkeypatch):
    """Busy cores of others = (machine busy time - own CPU time) / wall time,
    between two readings; the first reading counts the threads running now."""
    clock = {"wall": 100.0, "cpu": 10.0}
    monkeypatch.setattr(_threads.time, "monotonic", lambda: clock["wall"])
    monkeypatch.setattr(_threads.time, "process_time", lambda: clock["cpu"])
    meter = LoadMeter(str(tmp_path / "stat"), str(tmp_path / "loadavg"))
    meter.cpus, meter.tick = 2, 100.0
    _fake_proc(tmp_path, busy_ticks=1000, idle_ticks=5000, running=3)
    assert meter.others_busy() == 2.0  # 3 running now, less the caller
    assert meter.free_cores() == 0.0   # (cached: read at most every WINDOW seconds)
    # 0.5 s later: 100 ticks (1.0 s of CPU) busy on the machine, 0.25 s of it ours
    clock["wall"] += 0.5
    clock["cpu"] += 0.25
    _fake_proc(tmp_path, busy_ticks=1100, idle_ticks=5000, running=1)
    assert meter.others_busy() == pytest.approx(1.5)
    assert meter.free_cores() == pytest.approx(0.5)
    # our own threads alone kept the machine busy: nobody else is
    clock["wall"] += 0.5
    clock["cpu"] += 1.0
    _fake_proc(tmp_path, busy_ticks=1200, idle_ticks=5000, running=3)
    assert meter.others_busy() == 0.0
    # after a long pause the average says nothing about now: the instant count,
    # unless the 1-minute load average says the machine has been quieter (a
    # thread that happens to be running at that instant is not a busy core)
    clock["wall"] += 60
    assert meter.others_busy() == 2.0
    clock["wall"] += 60
    _fake_proc(tmp_path, busy_ticks=1300, idle_ticks=5000, running=3, load1=0.3)
    assert meter.others_busy() == pytest.approx(0.3)
    assert meter.free_cores() == pytest.approx(1.7)
    # no /proc: no reading
    assert LoadMeter(str(tmp_path / "none"), str(tmp_path / "none")).free_cores() is None


def test_load_meter_sees_busy_processes(tmp_path):
    """The real /proc: two processes spinning on a core each are at least
    1.5 busy cores of others (more when others load the machine too)."""
    if not (LoadMeter().free_cores() is not None):
        pytest.skip("no /proc/stat on this system")
    spin = [sys.executable, "-c", "while True: pass"]
    with child_process(spin), child_process(spin):
        meter = LoadMeter()
        meter.others_busy()
        time.sleep(0.6)
        assert meter.others_busy() >= 1.5


def test_calls_report_the_threads_they_ran_on(rng, monkeypatch):
    monkeypatch.setattr(_threads, "_MAX_THREADS", 2)
    x = rng.standard_normal((20_000, 64)).astype(np.float32)  # 5 MB a step
    z = rng.standard_normal((20_000, 50)).astype(np.float32)  # 1,000,000 elements
    ref = svp_fast.kcenter(x, 30, method="scan")
    for free, want in ((0.0, 1), (2.0, 2)):
        monkeypatch.setattr(_threads, "LOAD", FixedLoad(free))
        for method in ("scan", "lazy", "pruned", "batched"):
            picks, st = svp_fast.kcenter(x, 30, method=method, return_stats=True)
            np.testing.assert_array_equal(picks, ref)
            assert st.num_threads == want and st.extra["threads_reason"] == "free cores"
        _, st = svp_fast.uncertainty(z, 10, return_stats=True)
        assert st.num_threads == want and st.extra["threads_reason"] == "free cores"
        _, st = svp_fast.kcenter(x, 30, groups=np.arange(20_000) % 4, return_stats=True)
        assert st.num_threads == want
    # explicit counts, tiny inputs
    _, st = svp_fast.kcenter(x, 5, num_threads=2, return_stats=True)
    assert (st.num_threads, st.extra["threads_reason"]) == (2, "requested")
    _, st = svp_fast.kcenter(x[:100], 5, return_stats=True)
    assert (st.num_threads, st.extra["threads_reason"]) == (1, "serial")
    _, st = svp_fast.uncertainty(z[:50], 5, return_stats=True)
    assert (st.num_threads, st.extra["threads_reason"]) == (1, "serial")


def test_a_busy_machine_makes_small_calls_single_threaded(monkeypatch):
    """The issue's case end to end: with every core busy elsewhere, the default
    runs the call on one thread (a stand-in says the cores are busy)."""
    monkeypatch.setattr(_threads, "_MAX_THREADS", 2)
    monkeypatch.setattr(_threads, "LOAD", FixedLoad(0.0))
    z = np.random.default_rng(0).standard_normal((2_000, 20)).astype(np.float32) * 3
    _, st = svp_fast.uncertainty(z, 200, return_stats=True)
    assert st.num_threads == 1


def test_subprocess_default_reads_the_real_load():
    """In a fresh process (no stand-in) the first call reads /proc and chooses
    a count in [1, OpenMP's maximum]."""
    code = ("import numpy as np, svp_fast\n"
            "x = np.random.default_rng(0).standard_normal((20000, 64)).astype(np.float32)\n"
            "_, st = svp_fast.kcenter(x, 5, method='scan', return_stats=True)\n"
            "print(st.num_threads, st.extra['threads_reason'], "
            "svp_fast.build_info()['omp_max_threads'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    threads, reason, top = int(out[0]), " ".join(out[1:-1]), int(out[-1])
    assert 1 <= threads <= top and reason in ("free cores", "no load reading", "share")


def test_bench_threads_times_bursts_and_records_the_threads(tmp_path):
    """benchmarks/bench_threads.py end to end on one small case, with --burst:
    every variant's timings, the threads each used, and the ratio it reports."""
    import json
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_threads.py"
    out = tmp_path / "threads.json"
    proc = subprocess.run(
        [sys.executable, str(script), "--only", "kcenter float32 N=2000 D=64 lazy", "--repeat", "2",
         "--warmup", "0", "--burst", "2", "--pause", "0", "--out", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rounds of 2 runs" in proc.stdout
    (rec,) = json.loads(out.read_text())["records"]
    assert rec["case"] == "kcenter float32 N=2000 D=64 lazy"
    assert set(rec["ms"]) == {"default", "1", "all"} and min(rec["ms"].values()) > 0
    assert rec["threads_used"]["1"] == [1]
    assert rec["default_over_best"] == pytest.approx(
        rec["ms"]["default"] / min(rec["ms"]["1"], rec["ms"]["all"]))
