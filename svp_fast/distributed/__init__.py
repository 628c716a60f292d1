"""Distributed exact k-center over torch.distributed (gloo on CPUs, NCCL on GPUs).

Every rank of a process group holds a contiguous shard of the embeddings and
calls :func:`kcenter` with the same arguments; every rank gets the same global
picks, equal to those of single-process :func:`svp_fast.kcenter` on the
concatenated shards.

    torchrun --nproc-per-node 4 my_script.py

    # my_script.py
    import numpy as np, torch.distributed as dist, svp_fast.distributed as sd
    dist.init_process_group("gloo")
    x = np.load("emb.npy", mmap_mode="r")
    r, p = dist.get_rank(), dist.get_world_size()
    mine = x[len(x) * r // p: len(x) * (r + 1) // p]
    picks = sd.kcenter(mine, 1000)          # the same global indices on every rank

The command line does the same: ``torchrun --nproc-per-node 4 -m svp_fast kcenter
--distributed --input emb.npy --budget 1000 --output picks.npy``. The protocol,
its messages and a model of its cost at scale are in docs/distributed.md.
"""

__all__ = ["DistributedKCenterError", "DistributedKCenterStats", "kcenter"]


def __getattr__(name):
    # torch is imported on first use, not with the package: `svp-fast --help`
    # and the command line's argument parsing (svp_fast.distributed.cli) stay fast.
    if name in __all__:
        from . import _kcenter

        return getattr(_kcenter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
