"""Many sets in one call (issue 15), side by side with the peers in one run.

    python benchmarks/bench_groups.py [--only clouds,batch,classes] [--repeat 3] [--quick]
    python3 benchmarks/bench_groups.py --gpu [--out DIR]        (one GPU; see below)

CPU (this machine):
clouds   3-D points, one set: 100,000 x 3 with 50,000 picks and 1,000,000 x 3 with
         100,000 picks: fpsample's bucket method (QuickFPS, bucket_fps_kdline_sampling,
         tree height 7) against svp_fast (method="auto", which runs the k-d tree
         engine on points of at most 8 coordinates).
batch    32 clouds of 16,384 x 3 points, 2,048 picks each: fpsample in a Python loop
         (it has no batch call) against one svp_fast call on the (B, P, D) array.
classes  a class-balanced core-set: 1,000 classes of about 1,281 rows, D = 512,
         10% per class: svp_fast.kcenter called once per class from Python (the
         way DeepCore's balance=True does it), with its default threads and with
         one thread, against one kcenter(..., groups=labels) call.
Every row reports the picks: svp_fast's are the float64 reference's (the test
suite checks that); for fpsample the first pick where it departs from them
(its float32 arithmetic), starting both from fpsample's own first pick.

GPU (--gpu): a batch of 64 clouds x 16,384 x 3 (2,048 picks each) and the
1,000-class core-set, against the plain PyTorch batched loop (one (B, P)
min-update per step, norms and a batched product: no per-step host sync), and
the picks against the CPU's.

Writes benchmarks/results/groups_<part>.json (CPU) or DIR/groups_gpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import svp_fast

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "svp_fast": svp_fast.build_info(),
            "date": time.strftime("%Y-%m-%d %H:%M"),
            # this machine is shared: the load others put on it moves every timing
            "load_average": list(os.getloadavg())}


def spread(ts) -> dict:
    ts = sorted(ts)
    return {"min": ts[0], "median": ts[len(ts) // 2], "max": ts[-1], "runs": ts}


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def first_difference(a, b) -> int:
    a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    n = min(a.size, b.size)
    d = np.flatnonzero(a[:n] != b[:n])
    return int(d[0]) if d.size else -1


def table(rows, cols):
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")


# ---------------------------------------------------------------- CPU parts


def bench_clouds(repeat: int, quick: bool) -> list:
    import fpsample

    rows = []
    cases = [(100_000, 50_000), (1_000_000, 100_000)]
    if quick:
        cases = [(20_000, 5_000)]
    for n, k in cases:
        x = np.random.default_rng(n).random((n, 3)).astype(np.float32)
        t_fp, t_svp = [], []
        for _ in range(repeat):
            # alternate: neither gets a warmer cache every time
            dt, fp = timed(lambda: fpsample.bucket_fps_kdline_sampling(x, k, 7, start_idx=0))
            t_fp.append(dt)
            fp = fp.astype(np.int64)
            # fpsample's bucket method maps start_idx through its tree order:
            # start from its actual first pick
            dt, (ours, st) = timed(lambda: svp_fast.kcenter(x, k, start=int(fp[0]),
                                                            return_stats=True))
            t_svp.append(dt)
        a, b = spread(t_fp), spread(t_svp)
        rows.append({"case": f"{n:,} x 3, {k:,} picks", "fpsample_s": a, "svp_fast_s": b,
                     "ratio_median": a["median"] / b["median"],
                     "engine": st.method, "evaluated_fraction": st.evaluated_fraction,
                     "fpsample_departs_at": first_difference(fp, ours)})
    table([{"case": r["case"], "fpsample (s)": f"{r['fpsample_s']['min']:.3f}-{r['fpsample_s']['max']:.3f}",
            "svp_fast (s)": f"{r['svp_fast_s']['min']:.3f}-{r['svp_fast_s']['max']:.3f}",
            "ratio": f"{r['ratio_median']:.2f}x", "engine": r["engine"],
            "fpsample departs at": r["fpsample_departs_at"]} for r in rows],
          ["case", "fpsample (s)", "svp_fast (s)", "ratio", "engine", "fpsample departs at"])
    return rows


def bench_batch(repeat: int, quick: bool) -> list:
    import fpsample

    B, P, K = (32, 16_384, 2_048) if not quick else (8, 4_096, 512)
    pts = np.random.default_rng(7).random((B, P, 3)).astype(np.float32)
    t_fp, t_svp = [], []
    for _ in range(repeat):
        dt, fp = timed(lambda: np.stack([fpsample.bucket_fps_kdline_sampling(pts[b], K, 7, start_idx=0)
                                         for b in range(B)]).astype(np.int64))
        t_fp.append(dt)
        dt, ours = timed(lambda: svp_fast.kcenter(pts, K, start=fp[:, 0]))
        t_svp.append(dt)
    a, b = spread(t_fp), spread(t_svp)
    departs = [first_difference(fp[i], ours[i]) for i in range(B)]
    row = {"case": f"{B} x {P:,} x 3, {K:,} picks each", "fpsample_loop_s": a,
           "svp_fast_batch_s": b, "ratio_median": a["median"] / b["median"],
           "sets_where_fpsample_departs": int(sum(d >= 0 for d in departs)),
           "fpsample_first_departure": min([d for d in departs if d >= 0], default=-1)}
    table([{"case": row["case"], "fpsample loop (s)": f"{a['min']:.3f}-{a['max']:.3f}",
            "svp_fast batch (s)": f"{b['min']:.3f}-{b['max']:.3f}",
            "ratio": f"{row['ratio_median']:.2f}x",
            "sets where fpsample departs": row["sets_where_fpsample_departs"]}],
          ["case", "fpsample loop (s)", "svp_fast batch (s)", "ratio", "sets where fpsample departs"])
    return [row]


def class_data(G: int, n: int, D: int, seed: int = 0):
    """Classes as clusters of proxy-like features: a centre per class plus
    noise, labels shuffled over the rows (float32)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((G, D)).astype(np.float32) * 2
    labels = np.repeat(np.arange(G), n)
    labels = labels[rng.permutation(labels.size)]
    x = np.empty((labels.size, D), np.float32)
    for s in range(0, labels.size, 100_000):
        lab = labels[s:s + 100_000]
        x[s:s + 100_000] = centers[lab] + rng.standard_normal((lab.size, D), dtype=np.float32)
    return x, labels


def bench_classes(repeat: int, quick: bool) -> list:
    G, n, D = (1000, 1281, 512) if not quick else (100, 1281, 512)
    x, labels = class_data(G, n, D)
    rows_of = [np.flatnonzero(labels == g) for g in range(G)]
    t_loop, t_loop1, t_grp = [], [], []
    for _ in range(repeat):
        dt, (picks, offsets) = timed(lambda: svp_fast.kcenter(x, 0.1, groups=labels,
                                                              return_offsets=True))
        t_grp.append(dt)
        budgets = np.diff(offsets)

        def loop(threads):
            return np.concatenate([rows_of[g][svp_fast.kcenter(x[rows_of[g]], int(budgets[g]),
                                                               num_threads=threads)]
                                   for g in range(G)])
        dt, ref = timed(lambda: loop(None))
        t_loop.append(dt)
        dt, ref1 = timed(lambda: loop(1))
        t_loop1.append(dt)
    a, a1, b = spread(t_loop), spread(t_loop1), spread(t_grp)
    row = {"case": f"{G:,} classes x {n:,} rows, D = {D}, 10% per class",
           "loop_default_threads_s": a, "loop_one_thread_s": a1, "groups_s": b,
           "ratio_median": a["median"] / b["median"],
           "ratio_median_vs_one_thread_loop": a1["median"] / b["median"],
           "same_picks": bool(np.array_equal(ref, picks) and np.array_equal(ref1, picks))}
    table([{"case": row["case"], "loop (s)": f"{a['min']:.2f}-{a['max']:.2f}",
            "loop, 1 thread (s)": f"{a1['min']:.2f}-{a1['max']:.2f}",
            "groups= (s)": f"{b['min']:.2f}-{b['max']:.2f}",
            "ratio": f"{row['ratio_median']:.1f}x / {row['ratio_median_vs_one_thread_loop']:.1f}x",
            "same picks": row["same_picks"]}],
          ["case", "loop (s)", "loop, 1 thread (s)", "groups= (s)", "ratio", "same picks"])
    return [row]


# ---------------------------------------------------------------- GPU parts


def torch_batched_kcenter(x, mask, K, start):
    """The plain PyTorch batched loop: (B, P, D) points, (B, P) validity, K picks
    from per-set starts; one (B, P) min-update per step from row norms and a
    batched product, no host synchronisation per step."""
    import torch

    B, P, _ = x.shape
    norms = (x * x).sum(-1)
    mind = torch.where(mask, torch.full_like(norms, float("inf")), torch.full_like(norms, -1.0))
    idx = torch.empty((B, K), dtype=torch.long, device=x.device)
    far = start.clone()
    ar = torch.arange(B, device=x.device)
    for t in range(K):
        idx[:, t] = far
        c = x[ar, far]                                       # (B, D)
        d = norms - 2 * torch.bmm(x, c[:, :, None])[:, :, 0] + (c * c).sum(-1, keepdim=True)
        mind = torch.minimum(mind, d)
        mind.scatter_(1, far[:, None], -1.0)
        far = mind.argmax(1)
    return idx


def bench_gpu(out_dir: Path, quick: bool) -> dict:
    import torch

    def sync_timed(fn, repeat=3):
        ts = []
        out = None
        for _ in range(repeat):
            torch.cuda.synchronize()
            t = time.perf_counter()
            out = fn()
            torch.cuda.synchronize()
            ts.append(time.perf_counter() - t)
        return spread(ts), out

    res = {"machine": machine(), "device": torch.cuda.get_device_name()}
    # 1. a batch of clouds
    B, P, K = (64, 16_384, 2_048) if not quick else (16, 4_096, 512)
    pts = torch.rand(B, P, 3, generator=torch.Generator().manual_seed(3))
    g_pts = pts.cuda()
    start = torch.zeros(B, dtype=torch.long, device="cuda")
    mask = torch.ones(B, P, dtype=torch.bool, device="cuda")
    t_torch, tp = sync_timed(lambda: torch_batched_kcenter(g_pts, mask, K, start))
    t_svp, ours = sync_timed(lambda: svp_fast.kcenter(g_pts, K))
    cpu = svp_fast.kcenter(pts, K)
    res["clouds"] = {"case": f"{B} x {P:,} x 3, {K:,} picks", "torch_s": t_torch, "svp_fast_s": t_svp,
                     "ratio_median": t_torch["median"] / t_svp["median"],
                     "same_as_cpu": bool(torch.equal(ours.cpu(), cpu)),
                     "torch_departs_from_cpu_at": first_difference(tp.cpu().numpy(), cpu.numpy())}
    print(res["clouds"])
    # 2. the class-balanced core-set
    G, n, D = (1000, 1281, 512) if not quick else (100, 1281, 512)
    x, labels = class_data(G, n, D)
    g_x, g_lab = torch.from_numpy(x).cuda(), torch.from_numpy(labels).cuda()
    t_svp, (picks, offsets) = sync_timed(lambda: svp_fast.kcenter(g_x, 0.1, groups=g_lab,
                                                                  return_offsets=True))
    cpu_picks = svp_fast.kcenter(x, 0.1, groups=labels)
    # the PyTorch loop on the classes padded to one (G, max, D) batch
    order = np.argsort(labels, kind="stable")
    sizes = np.bincount(labels)
    width = int(sizes.max())
    pad = torch.zeros(G, width, D, device="cuda")
    pmask = torch.zeros(G, width, dtype=torch.bool, device="cuda")
    at = 0
    for g in range(G):
        pad[g, :sizes[g]] = g_x[torch.from_numpy(order[at:at + sizes[g]]).cuda()]
        pmask[g, :sizes[g]] = True
        at += sizes[g]
    k_max = int(np.diff(offsets.cpu().numpy()).max())
    t_torch, _ = sync_timed(lambda: torch_batched_kcenter(pad, pmask, k_max,
                                                          torch.zeros(G, dtype=torch.long,
                                                                      device="cuda")))
    res["classes"] = {"case": f"{G:,} classes x {n:,}, D = {D}, 10%", "torch_s": t_torch,
                      "svp_fast_s": t_svp, "ratio_median": t_torch["median"] / t_svp["median"],
                      "same_as_cpu": bool(np.array_equal(picks.cpu().numpy(), cpu_picks))}
    print(res["classes"])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "groups_gpu.json").write_text(json.dumps(res, indent=1))
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="clouds,batch,classes")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    ap.add_argument("--gpu", action="store_true", help="the GPU parts instead (needs CUDA)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.gpu:
        bench_gpu(Path(args.out), args.quick)
        return 0
    parts = {"clouds": bench_clouds, "batch": bench_batch, "classes": bench_classes}
    for name in args.only.split(","):
        print(f"\n## {name}")
        rows = parts[name](args.repeat, args.quick)
        if not args.quick:
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / f"groups_{name}.json").write_text(
                json.dumps({"machine": machine(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
