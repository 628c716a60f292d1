"""Small GPU cases for compute-sanitizer (memcheck, racecheck): every kernel family
once, on inputs small enough that the sanitizer finishes in about a minute.

    compute-sanitizer --tool memcheck python3 benchmarks/gpu_sanitize_case.py
    python3 benchmarks/gpu_sanitize_case.py --dry-run      (CI: the same calls on the CPU)

Each case's picks are compared with the CPU's, so a memory error that changes a
result is reported even when the sanitizer misses it.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def cases(device):
    import torch

    g = torch.Generator().manual_seed(0)
    base = torch.randn(3000, 64, generator=g)
    base[::7] = base[1::7][: base[::7].shape[0]]  # duplicates: ties and float64 phases
    clustered = (torch.randn(40, 24, generator=g) * 4)[torch.randint(0, 40, (4000,), generator=g)]
    clustered += 0.05 * torch.randn(4000, 24, generator=g)
    yield "scan f32", base, dict(budget=300, method="scan")
    yield "scan f16 cosine selected", base.half(), dict(budget=200, method="scan", metric="cosine",
                                                        already_selected=torch.arange(0, 3000, 97))
    yield "scan f64 odd D", torch.randn(1001, 33, generator=g, dtype=torch.float64), dict(budget=150)
    yield "scan bf16 D=1", torch.randn(999, 1, generator=g).bfloat16(), dict(budget=100)
    yield "pruned f32", clustered, dict(budget=400, method="pruned", n_cells=32)
    yield "pruned hand-off", base, dict(budget=300, method="pruned", n_cells=32, _force_fallback=True)
    yield "batched T=5", base, dict(budget=300, method="batched", batch_candidates=5)
    yield "batched cosine", clustered, dict(budget=400, method="batched", metric="cosine")
    lab = torch.arange(3000) % 7
    lab[:1500] = 0  # warp, block and multi-block teams of the grouped kernel
    yield "groups", base, dict(budget=600, groups=lab)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dry-run", action="store_true", help="run the same calls on the CPU")
    args = ap.parse_args(argv)
    import torch

    import svp_fast
    from svp_fast.selection import _plan

    device = "cpu" if args.dry_run else "cuda"
    todo = []  # (name, input, kwargs, budget, force, the CPU's picks)
    for name, x, kw in cases(device):
        kw = dict(kw)
        budget = kw.pop("budget")
        force = kw.pop("_force_fallback", False)
        ref = svp_fast.kcenter(x, budget, method="scan", metric=kw.get("metric", "euclidean"),
                               already_selected=kw.get("already_selected"), groups=kw.get("groups"))
        todo.append((name, x, kw, budget, force, np.asarray(ref)))
    z = torch.randn(2000, 100, generator=torch.Generator().manual_seed(1)) * 3
    unc_ref = {m: np.asarray(svp_fast.uncertainty(z, 200, method=m))
               for m in ("least_confidence", "entropy", "margin")}
    if args.dry_run:  # the CUDA backend's Python code on CPU tensors, a stand-in core
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from _dry_run import install_cuda_standin

        install_cuda_standin()
    failures = 0
    for name, x, kw, budget, force, ref in todo:
        # the hand-off from the cells to the scan, forced: on noise the cells cannot prune
        _plan.FALLBACK_FRACTION["pruned"] = 0.0 if force else 2.0
        got, st = svp_fast.kcenter(x.to(device), budget, return_stats=True, **kw)
        if force and st.fallback_step < 0:
            print(f"{name}: the hand-off did not happen", flush=True)
            failures += 1
        same = bool(np.array_equal(np.asarray(got.cpu()), ref))
        failures += not same
        print(f"{name}: {'ok' if same else 'DIFFERS FROM THE CPU'} ({st.backend})", flush=True)
    for method, ref in unc_ref.items():
        got = svp_fast.uncertainty(z.to(device), 200, method=method)
        same = bool(np.array_equal(np.asarray(got.cpu()), ref))
        failures += not same
        print(f"uncertainty {method}: {'ok' if same else 'DIFFERS FROM THE CPU'}", flush=True)
    where = ""
    if args.dry_run:
        where = (" (the emulated device)" if svp_fast.build_info().get("cuda_emulated")
                 else " (dry run, CPU)")
    print("sanitizer cases done" + where, flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
