"""The default thread count of the CPU core, on a machine shared with other work.

Selection runs beside DataLoader workers, a training process or other jobs.
An OpenMP team meets at a barrier once per k-center step (per pass over the
rows); when another process holds a core, a thread of the team waits for it,
often a whole time slice, and every step pays that. Measured on a 2-core
machine with two busy processes (BENCHMARKS.md, "Threads on a shared
machine"), all threads made k-center on 20,000 x 64 rows 3.5-16x slower than
one thread, and top-k uncertainty on 10,000 x 100 logits 20-50x.

So when ``num_threads`` is not given, each call chooses:

1. **One thread for work too small to share**: a region of work (one step of
   a scan, one pass of uncertainty) below ``kind.serial_below`` (measured:
   below it a second thread saves less than handing it its share costs, even
   on an idle machine).
2. **All threads for large regions**: from ``kind.share_from`` on, each
   thread's share of a region lasts several scheduler time slices, so a late
   thread costs a small part of it, and more threads hold more of the
   contested cores (measured: uncertainty on 100,000 x 100 logits and a scan
   step of 205 MB were 1.15-1.8x faster on all threads under load; a pass of
   the batched engine, several steps' work, from 32 MB of rows).
3. **Otherwise the cores that are free**: the machine's CPUs less the cores
   other processes kept busy over the last ``WINDOW`` seconds (from
   ``/proc/stat``, less this process's own CPU time; after a pause, the
   smaller of the threads running now and the 1-minute load average), at least one, at most
   OpenMP's maximum (``OMP_NUM_THREADS``, the CPU affinity). On an idle
   machine that is every thread, as before.

Passive waiting (``OMP_WAIT_POLICY=passive``) was measured too: it stops a
waiting thread from spinning on a core another thread needs, but it does not
stop the wait itself, and it can only be set in the environment before the
OpenMP runtime loads, for every library of the process (torch's too). It is
left to the user (README, "Threads").

An explicit ``num_threads`` is always obeyed. The choice never changes a
result: the picks and scores are the same on every thread count.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Optional

__all__ = ["KCENTER_BATCHED_PASS", "KCENTER_STEP", "LoadMeter", "ThreadChoice", "UNCERTAINTY_PASS", "WorkKind",
           "choose_threads", "max_threads"]


@dataclass(frozen=True)
class WorkKind:
    """A kind of region of work (what the team does between two barriers),
    measured in its own unit, and the two sizes of the rules above."""

    name: str
    unit: str
    serial_below: float  # rule 1: one thread below this size
    share_from: float    # rule 2: every thread from this size on, even under load


# One step of a k-center scan, in bytes of rows read. Measured on the 2-core
# AVX-512 machine (BENCHMARKS.md, "Threads on a shared machine"), idle: 2
# threads took 1.27x one thread's time at 25 KB a step, 1.09x at 77 KB and
# 0.69x at 256 KB. Under two busy processes and more: one thread was 1.3x
# faster at 51 MB a step (200,000 x 64 float32), all threads 1.15-1.8x
# faster at 205 MB (x 256; scan and batched).
KCENTER_STEP = WorkKind("k-center step", "bytes", serial_below=128 << 10,
                        share_from=128 << 20)
# One pass of the batched k-center engine, in bytes of rows read: each row
# meets the pass's candidates, so a pass is several scan steps of work
# between two barriers and shares from fewer rows. Under two busy processes:
# one thread 1.6-3.2x faster at 5 MB (20,000 x 64), even at 20 MB
# (20,000 x 256: 1.03), all threads 1.41x faster at 51 MB (200,000 x 64).
KCENTER_BATCHED_PASS = WorkKind("k-center batched pass", "bytes", serial_below=128 << 10,
                                share_from=32 << 20)
# One pass of top-k uncertainty, in elements of the logits. Idle: 2 threads
# took 0.95x one thread's time at 2,000 elements (100 x 20) and 0.83x at
# 20,000. Under load: one thread was 30-50x faster on 10,000 x 100, all
# threads 1.2-1.7x faster on 100,000 x 100.
UNCERTAINTY_PASS = WorkKind("uncertainty pass", "elements", serial_below=4_000,
                            share_from=5_000_000)

# The load is read again at most this often; the busy cores are averaged
# over the time between two readings (at most MAX_WINDOW; an older reading
# says nothing about now, and the instant count of running threads is used).
WINDOW = 0.1
MAX_WINDOW = 2.0


def max_threads() -> int:
    """OpenMP's maximum for this process (OMP_NUM_THREADS, the CPU affinity)."""
    global _MAX_THREADS
    if _MAX_THREADS is None:
        from . import _core

        _MAX_THREADS = max(1, int(_core.build_info()["omp_max_threads"]))
    return _MAX_THREADS


_MAX_THREADS: Optional[int] = None


class LoadMeter:
    """How many cores other processes keep busy, read from ``/proc``.

    ``others_busy()`` averages over the time since the last reading: the
    machine's busy time (``/proc/stat``, all CPUs) less this process's own
    CPU time (``time.process_time``: every thread of it, spinning ones too).
    With no reading in the last ``MAX_WINDOW`` seconds it counts the threads
    running right now (``/proc/loadavg``) other than the caller. Returns None
    where /proc is missing (then every thread is used, as OpenMP would)."""

    def __init__(self, stat_path: str = "/proc/stat", loadavg_path: str = "/proc/loadavg"):
        self.stat_path, self.loadavg_path = stat_path, loadavg_path
        self.cpus = os.cpu_count() or 1
        self.tick = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self._last = None  # (wall, busy seconds of the machine, own CPU seconds)
        self._value: Optional[float] = None
        self._lock = threading.Lock()
        self._fds: dict = {}

    def _read(self, path: str, size: int) -> bytes:
        # the file stays open: a pread from offset 0 makes the kernel write it
        # afresh, at half the cost of open, read and close (7 against 14 us)
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        return os.pread(fd, size, 0)

    def __del__(self, _close=os.close):  # os may be gone at interpreter exit
        for fd in getattr(self, "_fds", {}).values():
            try:
                _close(fd)
            except OSError:  # pragma: no cover - already closed
                pass

    def _machine_busy_seconds(self) -> float:
        # "cpu  user nice system idle iowait irq softirq steal ...", in ticks
        fields = self._read(self.stat_path, 512).split(b"\n", 1)[0].split()
        ticks = [int(v) for v in fields[1:]]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        return (sum(ticks[:8]) - idle) / self.tick

    def _running_now(self) -> float:
        # "0.52 0.58 0.59 3/250 12345": the 1-minute load average, threads
        # running now / all threads. The instant count alone counts whoever
        # happens to be on a core at that moment (measured on an idle machine:
        # the parent of a worker process, just back from writing it a request,
        # made every first call of the worker run one thread); the 1-minute
        # average alone lags a load that has just started. Busy others are
        # the smaller of the two: sustained load raises both.
        fields = self._read(self.loadavg_path, 128).split()
        running = int(fields[3].split(b"/")[0])
        return float(max(0.0, min(running - 1, float(fields[0]))))  # less the caller

    def others_busy(self) -> Optional[float]:
        """Cores that other processes kept busy lately (a float >= 0), or None."""
        now = time.monotonic()
        with self._lock:
            last = self._last
            if last is not None and now - last[0] < WINDOW and self._value is not None:
                return self._value
            try:
                busy, own = self._machine_busy_seconds(), time.process_time()
                if last is None or now - last[0] > MAX_WINDOW:
                    value = self._running_now()
                else:
                    value = ((busy - last[1]) - (own - last[2])) / (now - last[0])
            except (OSError, ValueError, IndexError):
                return None
            self._last = (now, busy, own)
            self._value = max(0.0, value)
            return self._value

    def free_cores(self) -> Optional[float]:
        others = self.others_busy()
        return None if others is None else max(0.0, self.cpus - others)


LOAD = LoadMeter()


@dataclass(frozen=True)
class ThreadChoice:
    """A thread count and why (for statistics, benchmarks and tests)."""

    threads: int
    reason: str  # "requested", "serial", "share", "free cores", "no load reading"
    free_cores: Optional[float] = None


def choose_threads(requested: int, kind: WorkKind, size: float, *,
                   meter: Optional[LoadMeter] = None, share: bool = True) -> ThreadChoice:
    """The thread count of one call.

    Args:
        requested: the caller's ``num_threads`` (checked; 0 for the default).
        kind, size: the call's region of work between two barriers (a
            k-center step, an uncertainty pass), in ``kind.unit``.
        share: whether a large region may take every thread under load (rule
            2 of the module docstring); False for engines whose large steps
            come with many small regions (lazy, pruned, k-d tree).
    """
    top = max_threads()
    if requested:
        return ThreadChoice(int(requested), "requested")
    if top == 1 or size < kind.serial_below:
        return ThreadChoice(1, "serial")
    if share and size >= kind.share_from:
        return ThreadChoice(top, "share")
    free = (meter or LOAD).free_cores()
    if free is None:
        return ThreadChoice(top, "no load reading")
    return ThreadChoice(int(min(top, max(1, round(free)))), "free cores", free)
