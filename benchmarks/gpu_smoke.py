"""The first thing a GPU run does: one k-center and one uncertainty on the GPU,
compared with the CPU. About 10 s. Exits 1 with one clear line when they differ.

    python3 benchmarks/gpu_smoke.py [--dry-run] [--out DIR]

``--dry-run`` (CI, no GPU) builds the inputs and the CPU answers and stops
before the first CUDA call, so that the script's own mistakes never reach a
device.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    import torch

    import svp_fast

    info = svp_fast.build_info()
    print(f"svp_fast from {os.path.dirname(svp_fast.__file__)}; build: {info}", flush=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3001, 64)).astype(np.float32)
    z = (rng.standard_normal((2000, 100)) * 3).astype(np.float32)
    cpu_picks, cpu_radii = svp_fast.kcenter(x, 300, method="scan", return_radii=True)
    cpu_top = svp_fast.uncertainty(z, 200, method="margin")
    result = {"stage": "smoke", "dry_run": args.dry_run}
    if args.dry_run:
        # the same calls through the CUDA backend's Python code, on a stand-in core
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from _dry_run import install_cuda_standin

        install_cuda_standin()
        gp, gr, st = svp_fast.kcenter(torch.from_numpy(x), 300, method="scan", return_radii=True,
                                      return_stats=True)
        same = np.array_equal(gp.numpy(), cpu_picks) and st.backend == "cuda"
        print(f"dry run: CUDA glue on the stand-in {'ok' if same else 'DIFFERS'}; stopping "
              "before the first CUDA call", flush=True)
        result["ok"] = bool(same)
    else:
        if not info["cuda_compiled"]:
            print("SMOKE FAILED: this svp_fast was built without CUDA", flush=True)
            return 1
        if not torch.cuda.is_available():
            print("SMOKE FAILED: torch sees no CUDA device", flush=True)
            return 1
        xg, zg = torch.from_numpy(x).cuda(), torch.from_numpy(z).cuda()
        gp, gr = svp_fast.kcenter(xg, 300, method="scan", return_radii=True)
        gt = svp_fast.uncertainty(zg, 200, method="margin")
        torch.cuda.synchronize()
        gp, gr, gt = gp.cpu().numpy(), gr.cpu().numpy(), gt.cpu().numpy()
        first_kc = int(np.argmax(gp != cpu_picks)) if (gp != cpu_picks).any() else -1
        first_unc = int(np.argmax(gt != cpu_top)) if (gt != cpu_top).any() else -1
        radii_ok = bool(np.allclose(gr[1:], cpu_radii[1:], rtol=1e-5))
        result.update(kcenter_first_difference=first_kc, uncertainty_first_difference=first_unc,
                      radii_close=radii_ok)
        result["ok"] = first_kc < 0 and first_unc < 0 and radii_ok
        if not result["ok"]:
            print(f"SMOKE FAILED: GPU differs from CPU (k-center first differing pick "
                  f"{first_kc}, uncertainty first differing rank {first_unc}, radii close "
                  f"{radii_ok})", flush=True)
    result["seconds"] = time.perf_counter() - t0
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "smoke.json"), "w") as f:
        json.dump(result, f, indent=1)
    if result["ok"]:
        print(f"smoke ok ({result['seconds']:.1f} s)", flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
