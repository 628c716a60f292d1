"""``svp-fast kcenter --distributed``: k-center over one .npy file, one slice per rank.

Run under torchrun, one process per GPU or per share of the CPU cores::

    torchrun --nproc-per-node 4 -m svp_fast kcenter emb.npy --budget 1000 \\
        --out picks.npy --distributed

``python -m svp_fast.distributed.cli`` takes the same arguments (with or
without ``--distributed``). Every rank memory-maps the file and reads only its
slice of rows, ``N*r//P`` to ``N*(r+1)//P``; rank 0 writes the picks (and the
radii with ``--radii``).

Exit codes, as for the other subcommands: 0 on success; 2 for a user error
(bad arguments or data, an existing output), reported once by rank 0, every
rank exiting with 2; 1 when a rank died or stopped answering, reported by
every surviving rank.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

PROG = "svp-fast kcenter --distributed"
_LAUNCH_HINT = ("run it under torchrun, e.g. torchrun --nproc-per-node 4 -m svp_fast kcenter "
                "emb.npy --budget 1000 --out picks.npy --distributed")


def _size_arg(text: str):
    """'5000' -> 5000 picks; '0.5' -> half of N."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a count (e.g. 5000) or a fraction (e.g. 0.5), got {text!r}") from None


def _start_arg(text: str):
    """--start: a row index, or 'random' (the row single-process kcenter draws with --seed)."""
    if text.strip().lower() == "random":
        return "random"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a row index (e.g. 0) or 'random', got "
                                         f"{text!r}") from None


def add_distributed_arguments(parser: argparse.ArgumentParser, *, include_common: bool = False) -> None:
    """Add ``--distributed`` and its options to the ``kcenter`` subcommand's parser.

    The run reads the ``kcenter`` subcommand's own attributes too: ``embeddings``
    (positional .npy path), ``budget`` (count or fraction), ``out``,
    ``already_selected``, ``start``, ``metric``, ``method``, ``radii``,
    ``threads``, ``overwrite``, ``no_progress`` (and ``traceback`` if present).
    ``include_common=True`` adds those as well, for the standalone entry point.
    """
    if include_common:
        parser.add_argument("embeddings", help="(N, D) .npy file (float16/32/64), memory-mapped: "
                                               "each rank reads only its slice of rows")
        parser.add_argument("--budget", type=_size_arg, required=True,
                            help="new picks: a count (an integer) or a fraction of N (a float "
                                 "in [0, 1), rounded to the nearest count)")
        parser.add_argument("--out", required=True, help="output .npy of picked indices (rank 0 writes it)")
        parser.add_argument("--already-selected", metavar="NPY",
                            help=".npy of global indices already selected (initial centers)")
        parser.add_argument("--start", type=_start_arg, metavar="ROW|random",
                            help="first pick when nothing is already selected: a row (default "
                                 "0), or 'random', a row drawn with --seed")
        parser.add_argument("--seed", type=int, default=0,
                            help="seed of --start random and of the k-means cells (default 0)")
        parser.add_argument("--metric", choices=["euclidean", "cosine"], default="euclidean")
        parser.add_argument("--method", choices=["auto", "scan", "pruned", "lazy"], default="auto",
                            help="local engine on every rank (the picks do not depend on it)")
        parser.add_argument("--radii", metavar="NPY", help="also write the coverage radius of every pick")
        parser.add_argument("--threads", type=int,
                            help="CPU threads per rank (default: the host's cores / ranks on the host)")
        parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar (on rank 0)")
        parser.add_argument("--traceback", action="store_true", help="show the full traceback of errors")
    group = parser.add_argument_group("distributed (under torchrun)")
    group.add_argument("--distributed", action="store_true",
                       help="select over all ranks of a torchrun launch, each reading its slice of "
                            "the .npy; identical picks to the single-process run")
    group.add_argument("--dist-backend", choices=("auto", "gloo", "nccl"), default="auto",
                       help="process-group backend (auto: nccl with --dist-device cuda, else gloo)")
    group.add_argument("--dist-device", choices=("cpu", "cuda"), default="cpu",
                       help="where each rank keeps its rows (cuda: the GPU of its LOCAL_RANK)")
    group.add_argument("--dist-timeout", type=float, default=600.0, metavar="SECONDS",
                       help="how long a rank waits for the others before failing (default 600)")
    group.add_argument("--protocol", choices=("auto", "batched", "stepwise"), default="auto",
                       help="batched: many picks per pass, two collectives a pass; stepwise: two "
                            "collectives per pick (auto: batched on two ranks or more)")
    group.add_argument("--batch-candidates", type=int, metavar="T",
                       help="batched protocol: candidates each rank offers per pass (default 256)")


class _UserError(Exception):
    """A mistake in the command line or the files (exit code 2)."""


def _init_group(args) -> bool:
    """Initialise the default group from torchrun's environment; True if this call did."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise _UserError(f"--distributed needs the environment torchrun sets ({', '.join(missing)} "
                         f"not set): {_LAUNCH_HINT}")
    if args.dist_timeout <= 0:
        raise _UserError(f"--dist-timeout must be > 0 seconds, got {args.dist_timeout}")
    backend = args.dist_backend
    if backend == "auto":
        backend = "nccl" if args.dist_device == "cuda" else "gloo"
    if args.dist_device == "cuda":
        if not torch.cuda.is_available():
            raise _UserError("--dist-device cuda: torch sees no CUDA device on this host")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=args.dist_timeout))
    return True


def _check_output(path: Optional[str], overwrite: bool, what: str) -> None:
    if path is None:
        return
    p = Path(path)
    if p.suffix != ".npy":
        raise _UserError(f"{what} {path!r} must end in .npy")
    if p.is_dir():
        raise _UserError(f"{what} {path!r} is a folder")
    if p.exists() and not overwrite:
        raise _UserError(f"{what} {path!r} already exists; pass --overwrite to replace it")


def _save_atomic(path: str, array: np.ndarray) -> None:
    """Write beside ``path`` and rename: never a truncated file under the final name."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp files are private (0600); outputs are not
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load(path: str, what: str):
    p = Path(path)
    if p.is_dir():
        raise _UserError(f"{what} file {path!r} is a directory, not a .npy file")
    if not p.is_file():
        raise _UserError(f"{what} file {path!r} does not exist" if not p.exists()
                         else f"{what} file {path!r} is not a regular file")
    try:
        return np.load(p, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise _UserError(f"{what} file {path!r} is not a plain .npy array: {e}") from None


def _preflight(args, rank: int):
    """This rank's checks before any selection work; returns the memmapped array."""
    x = _load(args.embeddings, "embeddings")
    if x.ndim != 2:
        raise _UserError(f"embeddings must be a 2-D (N, D) array, got shape {x.shape}")
    if rank == 0:  # the writer
        _check_output(args.out, args.overwrite, "output")
        _check_output(getattr(args, "radii", None), args.overwrite, "radii output")
        if getattr(args, "radii", None) and Path(args.radii).resolve() == Path(args.out).resolve():
            raise _UserError("--radii and --out name the same file")
    return x


def _budget(value, n: int):
    """A fraction of N becomes a count by the rule of every budget
    (``svp_fast._arrays.BUDGET_RULE``); counts go to the API, which checks them
    against what is left to pick."""
    if isinstance(value, float):
        from .._arrays import check_budget

        try:
            return check_budget(value, n, "the number of points", name="--budget")
        except ValueError as e:
            raise _UserError(str(e)) from None
    return value


def run_kcenter_distributed(args) -> int:
    """Run ``kcenter --distributed`` on this rank; returns the exit code."""
    import torch
    import torch.distributed as dist

    from ._comm import Communicator, DistributedKCenterError
    from ._kcenter import kcenter

    rank = int(os.environ.get("RANK", 0))
    show_traceback = bool(getattr(args, "traceback", False))
    created = False
    try:
        created = _init_group(args)
        rank, world = dist.get_rank(), dist.get_world_size()
        # Preflight on every rank, then agree: a rank that fails alone (a file
        # missing on its host, an existing output on rank 0) must not leave the
        # others waiting.
        x, failure = None, None
        try:
            x = _preflight(args, rank)
        except _UserError as e:
            failure = str(e)
        comm = Communicator(None, torch.device("cpu") if args.dist_device == "cpu"
                            else torch.device("cuda", torch.cuda.current_device()))
        reports = comm.all_gather_json("all-gather of the command-line checks",
                                       {"error": failure, "shape": list(x.shape) if x is not None else None})
        for r, rep in enumerate(reports):
            if rep["error"]:
                raise _UserError(rep["error"] if r == rank else f"rank {r}: {rep['error']}")
        shapes = {tuple(rep["shape"]) for rep in reports}
        if len(shapes) > 1:
            raise _UserError(f"the embeddings file differs between ranks: shapes {sorted(shapes)}")

        n = x.shape[0]
        lo, hi = n * rank // world, n * (rank + 1) // world
        local = x[lo:hi]
        if args.dist_device == "cuda":
            local = torch.from_numpy(np.ascontiguousarray(local)).to(torch.cuda.current_device())
        threads = args.threads
        if threads is None:
            per_host = int(os.environ.get("LOCAL_WORLD_SIZE", world))
            threads = max(1, (os.cpu_count() or 1) // max(1, per_host))
        selected = None
        if args.already_selected:
            selected = np.asarray(_load(args.already_selected, "already-selected"))
        t0 = time.perf_counter()
        picks, radii, stats = kcenter(
            local, _budget(args.budget, n), already_selected=selected, start=args.start,
            seed=getattr(args, "seed", 0),
            metric=args.metric, method=args.method, return_radii=True, return_stats=True,
            progress=not args.no_progress, num_threads=threads,
            protocol=getattr(args, "protocol", "auto"),
            batch_candidates=getattr(args, "batch_candidates", None))
        seconds = time.perf_counter() - t0
        if rank == 0:
            picks = picks.cpu().numpy() if isinstance(picks, torch.Tensor) else picks
            radii = radii.cpu().numpy() if isinstance(radii, torch.Tensor) else radii
            _save_atomic(args.out, picks)
            if getattr(args, "radii", None):
                _save_atomic(args.radii, radii)
            passes = (f", {stats.passes} passes of {stats.picks_per_pass:.1f} picks"
                      if stats.protocol == "batched" else "")
            print(f"k-center: {picks.size} picks from {n} points on {world} ranks "
                  f"({stats.backend}, {stats.method}, {stats.protocol}{passes}) in {seconds:.2f} s "
                  f"({stats.seconds_per_step * 1e3:.3f} ms/pick, "
                  f"{stats.communication_seconds_per_step * 1e3:.3f} ms of it in collectives) "
                  f"-> {args.out}")
        if created:
            dist.barrier()
            dist.destroy_process_group()
        return 0
    except DistributedKCenterError as e:
        if show_traceback:
            raise
        print(f"{PROG}: error on rank {rank}: {e}", file=sys.stderr)
        return 1
    except (_UserError, ValueError, TypeError) as e:
        # These are raised on every rank alike (a rank's own problem is named
        # "rank r: ..." on the others): rank 0 reports, every rank exits with 2.
        if show_traceback:
            raise
        if rank == 0:
            print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except OSError as e:  # this rank's own (writing the output, reading its rows)
        if show_traceback:
            raise
        print(f"{PROG}: error on rank {rank}: {e}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m svp_fast.distributed.cli",
        description="Exact greedy k-center over the ranks of a torchrun launch, each reading its "
                    "slice of one .npy file; the picks equal the single-process run's. "
                    + _LAUNCH_HINT[0].upper() + _LAUNCH_HINT[1:] + ".")
    add_distributed_arguments(parser, include_common=True)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    args.distributed = True  # implied by this entry point
    return run_kcenter_distributed(args)


if __name__ == "__main__":
    sys.exit(main())
