"""The CUDA emulation's own tests (csrc/cuda_emu, builds with SVP_FAST_CUDA=EMU).

Each planted mistake lives in a small kernel of its own (csrc/cuda_emu/tests/planted.cu)
beside a correct twin; the emulator must catch every one: as the error a device
would give (a refused launch, a sticky launch failure with a report naming the
kernel and the call site) or, for a missing barrier, as a wrong result.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import EMULATED

pytestmark = pytest.mark.skipif(not EMULATED, reason="the CUDA emulation's own tests need the emulated "
                                                      "build (SVP_FAST_CUDA=EMU)")

KBLOCK = 128
# an AddressSanitizer build of the emulation, run with libasan preloaded
# (gpu_check.sh --emulate, its sanitizer stage)
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")


@pytest.fixture
def emu():
    from svp_fast import _emu_selftest

    seed = _emu_selftest.seed()
    yield _emu_selftest
    _emu_selftest.set_seed(seed)
    _emu_selftest.reset()


def run(emu, name, seed=None):
    if seed is not None:
        emu.set_seed(seed)
    out = emu.run(name)
    emu.reset()  # a failed kernel's error is sticky, as on a device
    return out


def block_sums(blocks):
    # the inputs of planted.cu's iota_input, summed per block
    out = []
    for b in range(blocks):
        out.append(sum((i % 1000) + 0.25 * (i // KBLOCK) for i in range(b * KBLOCK, (b + 1) * KBLOCK)))
    return out


def assert_failure(out, error, *phrases):
    assert out["error"] == error, out
    for p in phrases:
        assert p in out["message"], (p, out["message"])
    assert out["values"] == []


def test_a_block_sum_written_the_usual_way_is_right(emu):
    # the reduction HIP-CPU gets wrong (its shuffles waited for the whole block)
    for seed in (1, 2, 3):
        out = run(emu, "block_sum", seed)
        assert out["error"] == "cudaSuccess", out
        assert out["values"] == block_sums(6)


def test_a_missing_syncthreads_gives_wrong_sums(emu):
    # warp 0 reads the other warps' sums before they are written: the order the
    # seed draws decides what it reads, and no order gives every right sum
    results = [run(emu, "missing_syncthreads", seed)["values"] for seed in (1, 2, 3)]
    for got in results:
        assert got != block_sums(6)
    assert len({tuple(r) for r in results}) > 1  # the result depends on the order


def test_a_shuffle_that_half_the_warp_skips_fails_naming_it(emu):
    assert_failure(run(emu, "half_warp_shuffle"), "cudaErrorLaunchFailure",
                   "__shfl_xor_sync", "planted.cu:", "half_warp_shuffle", "SVP_EMU_SEED=")


def test_a_shuffle_mask_without_the_caller_fails(emu):
    assert_failure(run(emu, "mask_without_caller"), "cudaErrorLaunchFailure",
                   "mask 0x0000ffff, which does not include it", "planted.cu:")


def run_alone(name, **env):
    """A case in a process of its own: (return code, its result or None, stderr)."""
    import json

    code = f"from svp_fast import _emu_selftest as e; import json; print(json.dumps(e.run({name!r})))"
    env = dict(os.environ, SVP_EMU_QUIET="1", **env)
    if UNDER_ASAN:  # its report on stderr, here
        env["ASAN_OPTIONS"] = "detect_leaks=0:halt_on_error=1"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    out = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    return proc.returncode, out, proc.stderr


def test_a_write_through_a_null_pointer_is_an_illegal_address():
    # (a process of its own: under AddressSanitizer, ASan reports the fault and ends it)
    rc, out, err = run_alone("write_through_null")
    if UNDER_ASAN:
        assert rc != 0 and "AddressSanitizer: SEGV" in err, err[-3000:]
        return
    assert rc == 0, err
    assert_failure(out, "cudaErrorIllegalAddress", "illegal memory access", "write_through_null")


@pytest.mark.skipif(not UNDER_ASAN, reason="only AddressSanitizer sees a read past the end of device "
                                           "memory (gpu_check.sh --emulate runs this under it)")
def test_a_read_past_the_end_of_device_memory_is_reported_by_asan():
    rc, out, err = run_alone("read_past_the_end")
    assert rc != 0 and "heap-buffer-overflow" in err and "READ of size 8" in err, err[-3000:]


def test_too_much_shared_memory_without_the_attribute_is_refused(emu):
    # 9 KB static (nvcc's count, from the real build) + 40 KB dynamic > 48 KB
    assert_failure(run(emu, "static_plus_dynamic"), "cudaErrorInvalidValue",
                   "40960 bytes of dynamic shared memory (+ 9216 static)", "cudaFuncSetAttribute")
    out = run(emu, "static_plus_dynamic_with_attribute")
    assert out["error"] == "cudaSuccess", out
    assert out["values"] == [3.0 * t for t in range(KBLOCK)]


def test_a_write_past_dynamic_shared_memory_is_caught():
    rc, out, err = run_alone("past_dynamic_smem")
    if UNDER_ASAN:
        assert rc != 0 and "heap-buffer-overflow" in err and "WRITE of size 8" in err, err[-3000:]
        return
    assert rc == 0, err
    assert_failure(out, "cudaErrorIllegalAddress", "past the end of its dynamic shared memory (512 bytes")


def test_a_cooperative_grid_must_fit_the_device(emu):
    out = run(emu, "cooperative_fits")
    assert out["error"] == "cudaSuccess", out
    blocks = int(out["values"][1])
    assert out["values"][0] == sum(block_sums(blocks))
    assert_failure(run(emu, "cooperative_too_large"), "cudaErrorCooperativeLaunchTooLarge",
                   f"{blocks + 1} blocks", f"at most {blocks} resident")


@pytest.mark.emulated_sms(132)
def test_a_cooperative_grid_of_a_whole_h200(emu):
    assert emu.sm_count() == 132
    out = run(emu, "cooperative_fits")
    assert out["error"] == "cudaSuccess", out
    blocks = int(out["values"][1])
    assert blocks % 132 == 0 and blocks >= 132
    assert out["values"][0] == sum(block_sums(blocks))
    assert_failure(run(emu, "cooperative_too_large"), "cudaErrorCooperativeLaunchTooLarge")


def test_a_grid_sync_that_some_blocks_skip_fails(emu):
    assert_failure(run(emu, "grid_sync_some_blocks"), "cudaErrorLaunchFailure", "grid.sync()",
                   "planted.cu:")


def test_a_grid_sync_outside_a_cooperative_launch_fails(emu):
    assert_failure(run(emu, "grid_sync_not_cooperative"), "cudaErrorLaunchFailure",
                   "not launched with cudaLaunchCooperativeKernel")


def test_block_barriers_reached_by_some_threads_or_at_two_sites_fail(emu):
    assert_failure(run(emu, "divergent_syncthreads"), "cudaErrorLaunchFailure", "__syncthreads",
                   "every thread of the block")
    assert_failure(run(emu, "two_barrier_sites"), "cudaErrorLaunchFailure",
                   "__syncthreads reached at two call sites")


def test_an_order_decided_by_atomics_changes_with_the_seed(emu):
    outs = [run(emu, "slots_by_atomic", seed)["values"] for seed in (1, 2)]
    for o in outs:
        assert sorted(o) == list(range(4 * KBLOCK))
    assert outs[0] != outs[1]


def test_grids_launched_back_to_back_between_copies_outlive_their_slot_threads():
    # The stream's thread runs a grid and waits, on its own stack, for the grid's
    # slot threads to count themselves out. A slot thread that woke it after
    # letting go of the lock could touch that stack once the thread had moved on
    # (a crash seen in a distributed CUDA-shard test). With this setting each
    # slot thread pauses before its last touch of the grid, and the emulator
    # aborts if the stream's thread has left the grid by then.
    rc, out, err = run_alone("launches_then_copies", SVP_EMU_SLOT_EXIT_PAUSE_US="2000")
    assert rc == 0, f"the process ended with {rc}: {err[-3000:]}"
    assert out["error"] == "cudaSuccess", out
    assert out["values"] == [32.0 * sum(range(16))] * 50


def test_cub_given_less_temporary_storage_than_it_asked_for(emu):
    assert_failure(run(emu, "cub_temp_too_small"), "cudaErrorInvalidValue",
                   "SortPairsDescending", "smaller than")
    out = run(emu, "cub_temp_enough")
    assert out["error"] == "cudaSuccess"
    assert out["values"] == sorted(out["values"], reverse=True) and len(out["values"]) == 1000


def test_a_spin_loop_that_never_ends_is_reported_with_where_it_waits():
    rc, out, err = run_alone("spin_forever", SVP_EMU_HANG_SECONDS="2")
    assert rc == 0, err
    assert out["error"] == "cudaErrorLaunchTimeout", out
    assert "no progress" in out["message"] and "sleeping (spin loop) at planted.cu:" in out["message"]


def test_a_spin_loop_without_any_switch_point_is_interrupted():
    # (nothing in the loop reaches the scheduler: the watchdog interrupts the fiber)
    rc, out, err = run_alone("spin_without_yield", SVP_EMU_HANG_SECONDS="2")
    assert rc == 0, err
    assert out["error"] == "cudaErrorLaunchTimeout", out
    assert "without reaching a barrier" in out["message"] and "spin_without_yield" in out["message"]


def test_every_planted_case_has_a_test():
    from svp_fast import _emu_selftest

    import inspect

    src = inspect.getsource(sys.modules[__name__])
    for name in _emu_selftest.cases():
        assert f'"{name}"' in src or f"'{name}'" in src, name
