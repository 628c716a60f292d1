"""The ``svp-fast`` command.

Subcommands (``svp-fast COMMAND --help`` for each):

* ``coreset``: core-set selection via proxy on a dataset, with a run folder.
* ``active``: active learning via proxy on a dataset, with a run folder.
* ``kcenter``: greedy k-center on a ``.npy`` of embeddings -> ``.npy`` of indices.
* ``uncertainty``: top-k uncertainty on a ``.npy`` of logits/probabilities -> ``.npy``.
* ``demo``: a core-set run on the bundled digits (about 25 s on an idle 2-core machine).
* ``bench``: selection latency on this machine beside numpy/PyTorch loops (table, CSV, PNG).

``kcenter --distributed`` (under ``torchrun``) shards the .npy over the ranks;
``kcenter --checkpoint FILE`` saves progress and resumes after a crash;
``kcenter/uncertainty --device cuda[:N]`` copy the .npy onto a GPU in chunks and
select there (svp_fast._loading). Every input file is checked (finite values,
a real .npy array) before the selection and its progress bar start.

Each subcommand is one ``add_<name>_parser(subparsers)`` function that sets
``func`` to one ``run_<name>(args)`` function, so a new subcommand (e.g.
``bench``) or a new flag is added in one place. User errors (missing data,
unknown models or methods, budgets out of range, an existing output) end with
exit code 2 and a one-line message on stderr; ``--traceback`` shows the stack
instead.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from .bench import add_bench_parser  # imports no torch
from .selection._plan import METHODS as KCENTER_METHODS
from .selection.checkpoint import DEFAULT_CHECKPOINT_EVERY

# Heavy modules (torch, the pipelines) are imported inside the subcommands that
# need them, so that `svp-fast kcenter` and `--help` start fast.

PROG = "svp-fast"


class UsageError(Exception):
    """A mistake in the command line found by a subcommand (exit code 2)."""


# Errors that mean "the user asked for something that cannot be done", shown
# as one line. Anything else is a bug and keeps its traceback.
USER_ERRORS = (UsageError, ValueError, TypeError, FileNotFoundError, NotADirectoryError,
               FileExistsError, PermissionError, IsADirectoryError, ImportError)


# ----------------------------------------------------------------------------- argument types

# the rule of svp_fast._arrays.BUDGET_RULE, as the API applies it
BUDGET_HELP = ("a count (an integer: 1 is one row) or a fraction of all N rows (a float in "
               "[0, 1): 0.1 is 10%%, rounded to the nearest count; 1.0 is refused as ambiguous)")


def size_arg(text: str):
    """'5000' -> 5000 examples; '0.5' -> the fraction 0.5."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count (e.g. 5000) or a fraction "
                                         f"(e.g. 0.5), got {text!r}") from None
    return value


def sizes_arg(text: str) -> list:
    """'1000,2000,4000' or 'start:stop:step' (stop included) -> a list of ints."""
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) != 3 or parts[2] < 1:
                raise ValueError
            from .pipelines.active import active_sizes

            return active_sizes(parts[0], parts[2], parts[1])
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected sizes like 1000,2000,4000 or 1000:10000:1000 (start:stop:step), "
            f"got {text!r}") from None


def start_arg(text: str):
    """--start: a row index, or 'random' (a row drawn with --seed)."""
    if text.strip().lower() == "random":
        return "random"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a row index (e.g. 0) or 'random', got "
                                         f"{text!r}") from None


def methods_arg(text: str) -> list:
    return [m.strip() for m in text.split(",") if m.strip()]


# ----------------------------------------------------------------------------- shared options

# Models and schedules used when --proxy/--target/--*-schedule are not given.
# Fashion-MNIST's are the settings of benchmarks/experiment_fashion_mnist.py; the
# 32x32 ones are the paper's (ResNet-20 proxy, ResNet-164 target, 181 epochs).
PAPER_SCHEDULE = "1@0.01,90@0.1,45@0.01,45@0.001"
DEFAULTS = {
    "digits": ("mlp_small", "mlp_large", "10@0.1", "30@0.1"),
    "fashion-mnist": ("cnn_small", "cnn_large", "2@0.05", "2@0.05,1@0.005"),
    "image32": ("preact20", "preact164", PAPER_SCHEDULE, PAPER_SCHEDULE),
    "image": ("cnn_small", "cnn_large", "10@0.05", "30@0.05"),
    "vector": ("mlp_small", "mlp_large", "10@0.05", "30@0.05"),
    # fastText trains with Adagrad (its schedule is Adagrad's rate); the
    # char-CNN with SGD. vdcnn9/vdcnn29 are the paper-sized targets (GPUs).
    "text": ("fasttext", "charcnn_small", "5@0.2", "8@0.05,2@0.005"),
}


def _defaults_for(dataset_name: str, spec) -> tuple:
    if dataset_name in DEFAULTS:
        return DEFAULTS[dataset_name]
    if spec.kind == "image" and spec.input_shape and min(spec.input_shape[1:]) >= 32:
        return DEFAULTS["image32"]
    return DEFAULTS.get(spec.kind, DEFAULTS["vector"])


# Names spelled out here so that building the parser does not import torch
# (a test checks them against svp_fast.data.DATASETS and the pipelines).
DATASET_NAMES = ("arrays", "cifar10", "cifar100", "digits", "fashion-mnist", "imagefolder",
                 "amazon-csv", "text-csv", "jsonl")
TEXT_DATASETS = ("amazon-csv", "text-csv", "jsonl")
MODEL_NAMES = ("preact20", "preact56", "preact110", "preact164", "cnn_small", "cnn_large",
               "mlp_small", "mlp_large", "fasttext", "charcnn_small", "vdcnn9", "vdcnn17",
               "vdcnn29")
# text options: argparse destination -> load_text keyword
TEXT_OPTIONS = {"text_field": "text_field", "label_field": "label_field",
                "delimiter": "delimiter", "test_data": "test_path",
                "test_fraction": "test_fraction", "max_chars": "max_chars", "buckets": "buckets",
                "ngrams": "ngrams", "cache_dir": "cache_dir"}
CORESET_METHODS = ("kcenter", "least_confidence", "entropy", "margin", "forgetting", "random")
ACTIVE_METHODS = ("kcenter", "least_confidence", "entropy", "margin", "random")


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", required=True, choices=DATASET_NAMES,
                   help="which dataset (see svp_fast.data); amazon-csv, text-csv and jsonl are "
                        "text (see svp_fast.data.text)")
    g.add_argument("--data-dir", metavar="PATH",
                   help="folder (or .npz file for 'arrays', or a text file) holding the data; "
                        "fashion-mnist defaults to /usr/share/datasets/fashion-mnist, digits "
                        "needs none; a text folder holds train.csv/test.csv (train.jsonl ...)")
    g.add_argument("--augmentation", choices=["auto", "none", "crop_flip"], default="auto",
                   help="training augmentation (auto: crop+flip for 32x32 images, else none)")
    g.add_argument("--image-size", type=int, default=32,
                   help="imagefolder only: side of the square images (default 32)")
    t = p.add_argument_group("text data (amazon-csv, text-csv, jsonl)")
    t.add_argument("--text-field", metavar="NAME[,NAME]",
                   help="text-csv/jsonl: the text field(s), joined (default text)")
    t.add_argument("--label-field", metavar="NAME", help="text-csv/jsonl: the class field "
                   "(default label)")
    t.add_argument("--delimiter", help="text-csv: the field delimiter (default ','; '\\t' for TSV)")
    t.add_argument("--test-data", metavar="PATH",
                   help="a test file (default: test.<ext> beside train.<ext> in --data-dir)")
    t.add_argument("--test-fraction", type=float, metavar="F",
                   help="without test data: the share of each class held out (default 0.1)")
    t.add_argument("--max-chars", type=int, metavar="N",
                   help="characters per text for char-CNNs (default 1024)")
    t.add_argument("--buckets", type=int, metavar="N",
                   help="hash buckets of the word n-grams for fastText (default 2^20)")
    t.add_argument("--ngrams", type=int, metavar="N", help="longest word n-gram hashed (default 2)")
    t.add_argument("--cache-dir", metavar="DIR",
                   help="where the tokenised text is cached (default: .svp_fast_cache beside "
                        "the data, or ~/.cache/svp_fast/text)")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("models and training")
    g.add_argument("--proxy", metavar="MODEL", help=f"proxy model: {', '.join(MODEL_NAMES)}, "
                   "or package.module:builder for your own (default: by dataset)")
    g.add_argument("--target", metavar="MODEL", help="target model (default: by dataset)")
    g.add_argument("--proxy-schedule", metavar="E@LR,...",
                   help="proxy learning-rate schedule, epochs@rate pairs (e.g. 1@0.1,2@0.01)")
    g.add_argument("--target-schedule", metavar="E@LR,...", help="target schedule")
    g.add_argument("--batch-size", type=int, default=128)
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--weight-decay", type=float, default=5e-4)
    g.add_argument("--eval-every", type=int, default=1,
                   help="evaluate on the test set every N epochs (0: only at the end)")
    g.add_argument("--workers", type=int, default=0,
                   help="processes building minibatches (helps image folders)")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    g.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, all cores)")


def add_run_arguments(p: argparse.ArgumentParser, methods: Sequence[str], default_method: str) -> None:
    g = p.add_argument_group("selection and output")
    g.add_argument("--method", type=methods_arg, default=[default_method], metavar="M[,M...]",
                   help=f"selection method(s), comma-separated: {', '.join(methods)} "
                        f"(default {default_method})")
    g.add_argument("--selector", choices=["proxy", "target"], default="proxy",
                   help="which model selects: the proxy (SVP) or the target itself (baseline)")
    g.add_argument("--metric", choices=["euclidean", "cosine"], default="euclidean",
                   help="k-center distance")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", metavar="DIR", help="write the run folder here (refused if it "
                   "exists, unless --overwrite)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing run folder (the old one stays until the new one "
                        "is complete)")
    g.add_argument("--no-checkpoints", action="store_true",
                   help="do not write model checkpoints into the run folder")
    g.add_argument("--quiet", action="store_true", help="no progress bars or epoch logs")
    g.add_argument("--balanced", action="store_true",
                   help="select inside each class: the size is split over the classes in "
                        "proportion to their candidates and every method selects per class "
                        "(active learning: a pool row's class is the selector's prediction)")


def set_threads(threads: Optional[int]) -> None:
    if threads is None:
        return
    if threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def load_data(args):
    from .data import load_dataset

    options: dict[str, Any] = {}
    if args.augmentation != "auto":
        options["augmentation"] = args.augmentation
    if args.dataset == "imagefolder":
        options["image_size"] = args.image_size
    given = {dest: getattr(args, dest) for dest in TEXT_OPTIONS if getattr(args, dest) is not None}
    if args.dataset in TEXT_DATASETS:
        options.update({TEXT_OPTIONS[dest]: value for dest, value in given.items()})
        if options.get("delimiter") == "\\t":
            options["delimiter"] = "\t"  # typed as backslash-t
        options["progress"] = False if args.quiet else None
    elif given:
        flag = "--" + next(iter(given)).replace("_", "-")
        raise UsageError(f"{flag} applies to text datasets ({', '.join(TEXT_DATASETS)}), not "
                         f"{args.dataset!r}")
    splits = load_dataset(args.dataset, args.data_dir, **options)
    return splits


def model_setups(args, train_set):
    from .pipelines.common import ModelSetup
    from .proxy.training import TrainConfig

    proxy, target, proxy_sched, target_sched = _defaults_for(args.dataset, train_set.spec)

    def config(schedule):
        return TrainConfig(schedule, batch_size=args.batch_size, momentum=args.momentum,
                           weight_decay=args.weight_decay, eval_every=args.eval_every,
                           num_workers=args.workers, device=args.device,
                           progress=not args.quiet)

    return (ModelSetup(args.proxy or proxy, config(args.proxy_schedule or proxy_sched)),
            ModelSetup(args.target or target, config(args.target_schedule or target_sched)))


def stage_printer():
    """A pipeline's ``on_stage``: one line per finished stage on stderr, with the
    time since the run started, so that a long run is never silent."""
    t0 = time.perf_counter()

    def show(rec) -> None:
        n = f"{rec.labelled} examples"
        what = {"selector_training": f"trained the selector {rec.model} on {n}",
                "inference": f"the selector {rec.model} inferred on {n}",
                "selection": f"selected {n}",
                "target_training": f"trained the target {rec.model} on {n}",
                "target_per_round": f"trained the target {rec.model} on {n}"}.get(rec.stage,
                                                                                  rec.stage)
        who = "" if rec.method == "shared" else f"{rec.method}: "
        where = f"round {rec.round}: " if rec.stage != "target_training" and rec.round else ""
        acc = f", test accuracy {100 * rec.accuracy:.2f}%" if rec.accuracy is not None else ""
        print(f"{time.perf_counter() - t0:7.1f} s  {who}{where}{what} in {rec.seconds:.1f} s{acc}",
              file=sys.stderr, flush=True)

    return show


def command_line(argv: Optional[Sequence[str]]) -> str:
    import shlex

    words = list(sys.argv[1:] if argv is None else argv)
    return " ".join(shlex.quote(w) for w in [PROG, *words])


# ----------------------------------------------------------------------------- coreset

def add_coreset_parser(sub) -> None:
    p = sub.add_parser("coreset", help="core-set selection via proxy",
                       description="Train the selector on all the training data, select a subset "
                                   "with each method, train the target on it; report accuracy and "
                                   "the time of every stage.")
    add_data_arguments(p)
    add_model_arguments(p)
    add_run_arguments(p, CORESET_METHODS, "kcenter")
    p.add_argument("--size", type=size_arg, default=0.5,
                   help="subset size: a count (5000) or a fraction of the training set (a "
                        "float in [0, 1), default 0.5; rounded to the nearest count)")
    p.add_argument("--full", action="store_true",
                   help="also train the target on all the data (the reference row)")
    p.set_defaults(func=run_coreset_command)


def run_coreset_command(args) -> int:
    from .pipelines.coreset import run_coreset

    set_threads(args.threads)
    splits = load_data(args)
    proxy, target = model_setups(args, splits.train)
    result = run_coreset(splits.train, splits.test, methods=args.method, size=args.size,
                         selector=args.selector, proxy=proxy, target=target,
                         include_full=args.full, metric=args.metric, seed=args.seed,
                         out_dir=args.out, overwrite=args.overwrite,
                         save_models=not args.no_checkpoints, progress=not args.quiet,
                         balanced=args.balanced, extra_config={"command": args.command_line},
                         on_stage=None if args.quiet else stage_printer())
    _report(result, args)
    return 0


# ----------------------------------------------------------------------------- active

def add_active_parser(sub) -> None:
    p = sub.add_parser("active", help="active learning via proxy",
                       description="A random initial labelled set, then rounds of (train the "
                                   "selector on the labelled set, select from the pool, reveal "
                                   "labels); finally the target trains on the labelled set.")
    add_data_arguments(p)
    add_model_arguments(p)
    add_run_arguments(p, ACTIVE_METHODS, "least_confidence")
    p.add_argument("--sizes", type=sizes_arg, required=True, metavar="SIZES",
                   help="labelled-set sizes: initial, then after each round; "
                        "'1000,2000,4000' or '1000:10000:1000' (start:stop:step)")
    p.add_argument("--target-each-round", action="store_true",
                   help="also train the target on every round's labelled set (accuracy curve)")
    p.set_defaults(func=run_active_command)


def run_active_command(args) -> int:
    from .pipelines.active import run_active

    set_threads(args.threads)
    splits = load_data(args)
    proxy, target = model_setups(args, splits.train)
    result = run_active(splits.train, splits.test, methods=args.method, sizes=args.sizes,
                        selector=args.selector, proxy=proxy, target=target,
                        target_each_round=args.target_each_round, metric=args.metric,
                        seed=args.seed, out_dir=args.out, overwrite=args.overwrite,
                        save_models=not args.no_checkpoints, progress=not args.quiet,
                        balanced=args.balanced, extra_config={"command": args.command_line},
                        on_stage=None if args.quiet else stage_printer())
    _report(result, args)
    return 0


def _report(result, args) -> None:
    print(result.table())
    if result.out_dir is not None:
        print(f"run folder: {result.out_dir}")


# ----------------------------------------------------------------------------- .npy helpers

def load_npy(path: str, what: str):
    """``path`` memory-mapped, with errors that name ``what`` and the file (a text
    file, an .npz, pickled objects, a truncated file: see svp_fast._loading)."""
    from ._loading import open_npy

    return open_npy(path, what)


def check_output(path: str, overwrite: bool, what: str = "output") -> Path:
    p = Path(path)
    if p.suffix != ".npy":
        raise UsageError(f"{what} {path!r} must end in .npy")
    if p.exists() and not overwrite:
        raise UsageError(f"{what} {path!r} already exists; pass --overwrite to replace it")
    if p.is_dir():
        raise UsageError(f"{what} {path!r} is a folder")
    return p


def save_npy(path: Path, array) -> None:
    import numpy as np

    from ._util import atomic_write

    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


# ----------------------------------------------------------------------------- kcenter

def add_kcenter_parser(sub) -> None:
    p = sub.add_parser("kcenter", help="greedy k-center on a .npy of embeddings",
                       description="Exact greedy k-center (farthest-first traversal) on an (N, D) "
                                   ".npy; writes the picks (int64, pick order) to a .npy.")
    p.add_argument("embeddings", help="(N, D) .npy file (float16/32/64), read memory-mapped")
    p.add_argument("--budget", type=size_arg, required=True,
                   help=f"new picks: {BUDGET_HELP}")
    p.add_argument("--out", required=True, help="output .npy of picked indices")
    p.add_argument("--already-selected", metavar="NPY",
                   help=".npy of indices already selected (initial centers, never returned)")
    p.add_argument("--start", type=start_arg, metavar="ROW|random",
                   help="first pick when nothing is already selected: a row (default 0), or "
                        "'random', a row drawn with --seed (with --groups: one per group)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of --start random and of the pruned method's k-means (which never "
                        "changes the picks; default 0)")
    p.add_argument("--metric", choices=["euclidean", "cosine"], default="euclidean")
    # the library's methods, named once (svp_fast.selection._plan.METHODS)
    p.add_argument("--method", choices=KCENTER_METHODS, default="auto",
                   help=f"{', '.join(KCENTER_METHODS)}: every method gives the same picks "
                        "(README, the method table; default auto)")
    p.add_argument("--groups", metavar="NPY",
                   help="(N,) .npy of labels: select inside each group (e.g. per class); "
                        "--budget is split over the groups in proportion to their points; the "
                        "picks are written group after group (ascending labels)")
    p.add_argument("--offsets", metavar="NPY",
                   help="with --groups: also write where each group's picks start (G + 1)")
    p.add_argument("--radii", metavar="NPY", help="also write the coverage radius of every pick")
    p.add_argument("--threads", type=int,
                   help="CPU threads (default: the library's choice, from the size of the work "
                        "and the cores other processes leave free)")
    add_device_argument(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="save the picks so far to FILE (.npz, atomically, every "
                        "--checkpoint-every seconds). Rerunning the same command after a crash "
                        "or kill resumes from it and ends with exactly the picks of an "
                        "uninterrupted run; FILE is removed when the run completes")
    p.add_argument("--checkpoint-every", type=float, default=DEFAULT_CHECKPOINT_EVERY,
                   metavar="SECONDS", help="seconds between checkpoint saves (default "
                                           f"{DEFAULT_CHECKPOINT_EVERY:g}, as in the library)")
    from .distributed.cli import add_distributed_arguments

    add_distributed_arguments(p)
    p.set_defaults(func=run_kcenter_command)


def add_device_argument(p: argparse.ArgumentParser) -> None:
    from ._loading import device_arg

    p.add_argument("--device", type=device_arg, default="cpu", metavar="DEVICE",
                   help="where to compute: cpu (default; the selection reads the memory-mapped "
                        "file), cuda or cuda:N (the file is copied onto that GPU in chunks, "
                        "with a progress bar, and selected there)")


def read_input(args, x, path: str, what: str, nonzero_rows: bool = False):
    """``x`` (the memory-mapped file) checked row by row and put on ``args.device``,
    before the selection and its bar (see svp_fast._loading.load_rows)."""
    from ._loading import load_rows

    return load_rows(x, path, what, args.device, nonzero_rows=nonzero_rows,
                     progress=not args.no_progress, threads=args.threads)


def _budget(value, n: int, upper: Optional[int] = None,
            what: str = "the number of points") -> int:
    """--budget as a count: the API's rule (``svp_fast._arrays.BUDGET_RULE``: an
    integer is a count, a float a fraction of all N rows, 1.0 refused), checked
    against ``upper`` (default N), the most that can be picked."""
    from ._arrays import check_budget

    return check_budget(value, n if upper is None else upper, what, total=n, name="--budget")


def _source_facts(args) -> dict:
    """The source file's identity, which a checkpoint must match too (the
    library already checks the data's shape, a sample of its rows, the
    arguments and the budget)."""
    src = Path(args.embeddings).resolve()
    st = src.stat()
    return {"embeddings": str(src), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def run_kcenter_command(args) -> int:
    import numpy as np

    from .selection.kcenter import kcenter

    from ._loading import check_device, check_matrix_file, to_numpy

    if getattr(args, "distributed", False):
        if args.method in ("batched", "kdtree"):
            raise UsageError(f"--method {args.method} is not a local engine of --distributed: "
                             "choose --method auto, scan, lazy or pruned"
                             + (", and --protocol batched for the batched passes over the ranks"
                                if args.method == "batched" else ""))
        if args.checkpoint:
            raise UsageError("--checkpoint is not supported with --distributed yet")
        if args.device != "cpu":
            raise UsageError("--device applies without --distributed; under torchrun, "
                             "--dist-device cuda puts every rank's rows on its GPU")
        if args.groups:
            raise UsageError("--groups is not supported with --distributed")
        from .distributed.cli import run_kcenter_distributed

        return run_kcenter_distributed(args)
    if args.groups:
        return run_kcenter_groups_command(args)
    if args.offsets:
        raise UsageError("--offsets applies with --groups")

    args.device = check_device(args.device)
    out = check_output(args.out, args.overwrite)
    radii_out = check_output(args.radii, args.overwrite, "radii output") if args.radii else None
    x = load_npy(args.embeddings, "embeddings")
    check_matrix_file(x, args.embeddings, "embeddings")
    selected = None
    if args.already_selected:
        selected = np.asarray(load_npy(args.already_selected, "already-selected"))
    n_selected = selected.size if selected is not None else 0
    budget = _budget(args.budget, x.shape[0], x.shape[0] - n_selected,
                     "the number of points not already selected")
    ckpt = None
    if args.checkpoint:
        from .selection.checkpoint import KCenterCheckpoint

        if args.checkpoint_every <= 0:
            raise UsageError(f"--checkpoint-every must be > 0 seconds, got {args.checkpoint_every}")
        ckpt = KCenterCheckpoint(args.checkpoint, extra=_source_facts(args))
        if ckpt.path.exists():
            # the library checks the file and continues from its state (no
            # earlier pick is applied again); this says so before it loads
            try:
                with np.load(ckpt.path, allow_pickle=False) as z:
                    n_done = f"{int(z['picks'].size)} of {budget} picks"
            except Exception:  # the library names what is wrong with the file
                n_done = "a checkpoint"
            print(f"k-center: resuming from {n_done} ({ckpt.path})", file=sys.stderr, flush=True)
    kwargs = {"already_selected": selected, "start": args.start, "seed": args.seed}
    data = read_input(args, x, args.embeddings, "embeddings",
                      nonzero_rows=args.metric == "cosine")
    t0 = time.perf_counter()
    try:
        picks, radii, st = kcenter(data, budget, metric=args.metric, method=args.method,
                                   return_radii=True, return_stats=True,
                                   progress=not args.no_progress, num_threads=args.threads,
                                   checkpoint=ckpt, checkpoint_every=args.checkpoint_every,
                                   **kwargs)
    except ValueError as e:
        if ckpt is not None and "checkpoint" in str(e):
            raise UsageError(str(e).replace("use another checkpoint",
                                            "pass another --checkpoint")) from None
        raise
    seconds = time.perf_counter() - t0
    picks = to_numpy(picks)
    radii = to_numpy(radii)
    save_npy(out, picks)
    if radii_out is not None:
        save_npy(radii_out, radii)
    where = "" if args.device == "cpu" else f" on {args.device}"
    print(f"k-center: {picks.size} picks from {x.shape[0]} points{where} in {seconds:.2f} s "
          f"-> {out}")
    return 0


def run_kcenter_groups_command(args) -> int:
    """``svp-fast kcenter --groups labels.npy``: k-center inside each group, one core call."""
    import numpy as np

    from .selection.kcenter import kcenter

    if args.checkpoint:
        raise UsageError("--checkpoint is not supported with --groups (the groups run side by "
                         "side in one call)")
    out = check_output(args.out, args.overwrite)
    radii_out = check_output(args.radii, args.overwrite, "radii output") if args.radii else None
    offsets_out = check_output(args.offsets, args.overwrite, "offsets output") if args.offsets else None
    x = load_npy(args.embeddings, "embeddings")
    if x.ndim != 2:
        raise UsageError(f"embeddings must be a 2-D (N, D) array, got shape {x.shape}")
    labels = np.asarray(load_npy(args.groups, "groups"))
    selected = None
    if args.already_selected:
        selected = np.asarray(load_npy(args.already_selected, "already-selected"))
    if args.start is not None and args.start != "random":
        raise UsageError("--start with --groups must be 'random' (a row of each group drawn "
                         "with --seed); without it each group starts at its lowest row")
    t0 = time.perf_counter()
    res = kcenter(x, args.budget, groups=labels, already_selected=selected, metric=args.metric,
                  method=args.method, return_offsets=True, return_radii=radii_out is not None,
                  progress=not args.no_progress, num_threads=args.threads, start=args.start,
                  seed=args.seed)
    picks, offsets = res[0], res[1]
    seconds = time.perf_counter() - t0
    save_npy(out, picks)
    if radii_out is not None:
        save_npy(radii_out, res[2])
    if offsets_out is not None:
        save_npy(offsets_out, offsets)
    print(f"k-center: {picks.size} picks in {offsets.size - 1} groups from {x.shape[0]} points "
          f"in {seconds:.2f} s -> {out}")
    return 0


# ----------------------------------------------------------------------------- uncertainty

def add_uncertainty_parser(sub) -> None:
    p = sub.add_parser("uncertainty", help="top-k uncertainty on a .npy of logits or probabilities",
                       description="The budget most uncertain rows of an (N, C) .npy, most "
                                   "uncertain first, ties to the lowest index (the same picks as "
                                   "svp_fast.uncertainty).")
    p.add_argument("scores_input", metavar="LOGITS", help="(N, C) .npy of logits or probabilities")
    p.add_argument("--budget", type=size_arg, required=True, help=f"rows to pick: {BUDGET_HELP}")
    p.add_argument("--out", required=True, help="output .npy of indices")
    p.add_argument("--method", choices=["least_confidence", "entropy", "margin"],
                   default="least_confidence")
    p.add_argument("--inputs", choices=["logits", "probs"], default="logits")
    p.add_argument("--scores-out", metavar="NPY", help="also write every row's score")
    p.add_argument("--threads", type=int,
                   help="CPU threads (default: the library's choice, from the size of the work "
                        "and the cores other processes leave free)")
    add_device_argument(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_uncertainty_command)


def uncertainty_with_progress(x, budget: int, *, method: str, inputs: str, progress: bool,
                              num_threads: Optional[int] = None, chunk_rows: int = 1 << 16):
    """:func:`svp_fast.uncertainty` in chunks of rows, with a progress bar.

    Returns (indices, scores of every row). Rows are scored independently, so
    chunking changes no score. The indices are :func:`svp_fast.uncertainty`'s
    (the float64 top-k, which float32 scores alone cannot give): one more call
    over the whole array, whose rows the scoring pass has just read. Reading a
    large memory-mapped file is what takes the time: the bar follows it.
    """
    import numpy as np
    from tqdm.auto import tqdm

    from ._arrays import check_budget
    from .selection.uncertainty import uncertainty, uncertainty_scores

    n = x.shape[0]
    budget = check_budget(budget, n, "the number of rows")
    parts = []
    bar = None  # shown once the first chunk is scored: a bad row there comes alone
    try:
        for lo in range(0, n, chunk_rows):
            hi = min(n, lo + chunk_rows)
            try:
                parts.append(uncertainty_scores(x[lo:hi], method=method, inputs=inputs,
                                                num_threads=num_threads))
            except ValueError:
                if bar is not None:
                    bar.close()
                    bar = None
                # a bad row: let the whole-array call raise, naming the row in the file
                uncertainty_scores(x, method=method, inputs=inputs, num_threads=num_threads)
                raise
            if bar is None and progress:
                bar = tqdm(total=n, desc=f"uncertainty ({method})", unit="row", leave=False,
                           dynamic_ncols=True, initial=lo)
            if bar is not None:
                bar.update(hi - lo)
    finally:
        if bar is not None:
            bar.close()
    scores = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    order = uncertainty(x, budget, method=method, inputs=inputs, num_threads=num_threads)
    return order, scores


def run_uncertainty_command(args) -> int:
    from ._loading import check_device, check_matrix_file, to_numpy

    args.device = check_device(args.device)
    out = check_output(args.out, args.overwrite)
    scores_out = (check_output(args.scores_out, args.overwrite, "scores output")
                  if args.scores_out else None)
    x = load_npy(args.scores_input, "logits")
    check_matrix_file(x, args.scores_input, "logits", "C")
    budget = _budget(args.budget, x.shape[0], what="the number of rows")
    data = read_input(args, x, args.scores_input, "logits")
    t0 = time.perf_counter()
    if args.device == "cpu":
        picks, scores = uncertainty_with_progress(data, budget, method=args.method,
                                                  inputs=args.inputs,
                                                  progress=not args.no_progress,
                                                  num_threads=args.threads)
    else:  # one pass on the GPU needs no bar
        from .selection.uncertainty import uncertainty, uncertainty_scores

        picks = to_numpy(uncertainty(data, budget, method=args.method, inputs=args.inputs))
        scores = None
        if scores_out is not None:
            scores = to_numpy(uncertainty_scores(data, method=args.method, inputs=args.inputs))
    seconds = time.perf_counter() - t0
    save_npy(out, picks)
    if scores_out is not None:
        save_npy(scores_out, scores)
    where = "" if args.device == "cpu" else f" on {args.device}"
    print(f"uncertainty ({args.method}): {picks.size} of {x.shape[0]} rows{where} in "
          f"{seconds:.2f} s -> {out}")
    return 0


# ----------------------------------------------------------------------------- demo

# How long the demo takes, measured (README.md says the same): 23.8 s from the
# command to its last line on an idle 2-core machine (load average 0.7); 51-85 s
# in five runs while other processes kept the load average at 5-11.
DEMO_TIME = "about 25 s on an idle 2-core machine"


def add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help=f"core-set selection via proxy on the bundled digits "
                                    f"({DEMO_TIME})",
                       description="Core-set selection on scikit-learn's digits: the target on "
                                   "all data, on a random half, on halves selected by a small "
                                   "proxy with each method, and by the target itself; prints "
                                   "a line per stage as it ends, then the accuracy and the time "
                                   f"of every stage. Takes {DEMO_TIME}; longer when other "
                                   "processes compete for the cores.")
    p.add_argument("--size", type=size_arg, default=0.5, help="subset size (default 0.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="DIR", help="also write the two run folders (proxy- and "
                   "target-selected) under DIR, and DIR/plot.png of every row of the table")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--progress", action="store_true", help="also show training progress bars")
    p.add_argument("--quiet", action="store_true", help="no line per stage, only the table")
    # Models this small gain nothing from more threads, and on a shared machine
    # OpenMP threads waiting for a busy core can stall each step many times over.
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.set_defaults(func=run_demo_command)


# the demo's models: a small MLP proxy, a CNN target ~10x its cost per epoch
DEMO_PROXY = ("mlp_small", "15@0.1")
DEMO_TARGET = ("cnn_large", "20@0.05,10@0.005")


def run_demo_command(args) -> int:
    from .data import load_digits
    from .pipelines.common import METHODS, ModelSetup
    from .pipelines.coreset import FULL, run_coreset
    from .pipelines.results import format_table, plot_coreset
    from .proxy.training import TrainConfig

    set_threads(args.threads)
    splits = load_digits(seed=args.seed)

    def setup(name_schedule):
        name, schedule = name_schedule
        return ModelSetup(name, TrainConfig(schedule, batch_size=64, eval_every=0,
                                            progress=args.progress))

    proxy, target = setup(DEMO_PROXY), setup(DEMO_TARGET)
    out = Path(args.out) if args.out else None
    if out is not None:
        from .pipelines.run_folder import check_run_folder

        for name in ("target-selected", "proxy-selected"):
            check_run_folder(out / name, args.overwrite)
        if (out / "plot.png").exists() and not args.overwrite:
            raise UsageError(f"{str(out / 'plot.png')!r} already exists; pass --overwrite to "
                             "replace it")
    print(f"svp-fast demo: digits ({len(splits.train)} train / {len(splits.test)} test images), "
          f"keep {args.size} of the training set ({DEMO_TIME})\n"
          f"  proxy  {proxy.name} ({proxy.train.epochs} epochs)\n"
          f"  target {target.name} ({target.train.epochs} epochs)\n", flush=True)
    t0 = time.perf_counter()
    common = dict(size=args.size, proxy=proxy, target=target, seed=args.seed,
                  overwrite=args.overwrite, extra_config={"command": args.command_line},
                  on_stage=None if args.quiet else stage_printer())
    # selector=target trains the target on all data: that model is also the reference row
    by_target = run_coreset(splits.train, splits.test, methods=["kcenter", "least_confidence"],
                            selector="target", include_full=True,
                            out_dir=out / "target-selected" if out else None, **common)
    by_proxy = run_coreset(splits.train, splits.test, methods=[m for m in METHODS],
                           selector="proxy", out_dir=out / "proxy-selected" if out else None,
                           **common)
    full = [r for r in by_target.summary if r["method"] == FULL]
    rows = full + [r for r in by_proxy.summary if r["method"] == "random"] + \
        [r for r in by_proxy.summary if r["method"] != "random"] + \
        [r for r in by_target.summary if r["method"] != FULL]
    if not args.quiet:
        print(file=sys.stderr, flush=True)
    print(format_table(rows, reference=full[0] if full else None))
    print(f"\nselection runtime = training the selector + inference + selection; "
          f"speed-up = total time of '{FULL}' / total time of the row.")
    print(f"demo finished in {time.perf_counter() - t0:.1f} s")
    if out is not None:
        from ._util import atomic_write

        atomic_write(out / "plot.png", lambda f: plot_coreset(
            rows, f, title=f"svp-fast demo: digits, keep {args.size} of the training set"))
        print(f"run folders: {out / 'target-selected'}, {out / 'proxy-selected'}; "
              f"plot: {out / 'plot.png'}")
    return 0


# ----------------------------------------------------------------------------- main

# One function per subcommand; a new one (e.g. `bench`) is one more entry here.
SUBCOMMANDS = [add_coreset_parser, add_active_parser, add_kcenter_parser, add_uncertainty_parser,
               add_demo_parser, add_bench_parser]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG, description="Selection via Proxy: train a cheap proxy, select data with it, "
                               "train the target on the selection.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="show the full traceback of errors (for bug reports)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    for command in sub.choices.values():
        # also after the subcommand (svp-fast kcenter ... --traceback); SUPPRESS
        # keeps a subcommand from resetting a --traceback given before it
        command.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS,
                             help="show the full traceback of errors (for bug reports)")
    parser.set_defaults(subparsers=sub.choices)
    return parser


# ----------------------------------------------------------------------------- error wording

# The library's errors name its Python arguments (overwrite=True, inputs='logits',
# already_selected, x); the command's user typed flags and file names. These
# rewrite a library message into the command's words, once, where it is printed.
PHRASES = {
    "pass overwrite=True (--overwrite)": "pass --overwrite",
    "(use run_coreset / `svp-fast coreset`)": "(use svp-fast coreset)",
}
# API argument names that differ from the command's destinations
API_NAMES = {"methods": "method"}
_ASSIGNMENT = re.compile(r"\b([a-z][a-z_]*)=('([^']*)'|\"([^\"]*)\"|([^\s,;)]+))")
_IDENTIFIER = re.compile(r"\b[a-z]+(?:_[a-z]+)+\b")
_SUBJECT = re.compile(r"^([a-z][a-z_]*)\b(?! file)(?: '([^' ]*)')?")


def command_words(message: str, args) -> str:
    """``message`` (from the library) with Python argument names replaced by the
    flags of ``args.command`` and the library's names for arrays by the files."""
    sub = getattr(args, "subparsers", {}).get(args.command)
    if sub is None:
        return message
    flags, switches = {}, set()
    for action in sub._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs:
            flags[action.dest] = longs[0]
            if action.nargs == 0:
                switches.add(action.dest)
    # what the library calls the command's input arrays
    files = {}
    if getattr(args, "embeddings", None):
        files["embeddings"] = f"embeddings file {args.embeddings!r}"
    if getattr(args, "scores_input", None):
        files["x"] = f"logits file {args.scores_input!r}"

    def flag(name: str) -> Optional[str]:
        return flags.get(API_NAMES.get(name, name))

    for old, new in PHRASES.items():
        message = message.replace(old, new)

    def assignment(m: re.Match) -> str:
        f = flag(m.group(1))
        if f is None:
            return m.group(0)
        value = next(g for g in m.groups()[2:] if g is not None)
        if m.group(1) in switches:
            return f if value == "True" else m.group(0)
        return f"{f} {value}"

    message = _ASSIGNMENT.sub(assignment, message)
    message = _IDENTIFIER.sub(lambda m: flag(m.group(0)) or m.group(0), message)

    def subject(m: re.Match) -> str:
        name, value = m.group(1), m.group(2)
        if name in files:
            return files[name] + (f" '{value}'" if value is not None else "")
        f = flag(name)
        if f is None:
            return m.group(0)
        return f if value is None else f"{f} {value}"  # method 'forgetting' -> --method forgetting

    return _SUBJECT.sub(subject, message, count=1)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``svp-fast``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = command_line(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if args.traceback:
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        if not isinstance(e, UsageError):
            message = command_words(message, args)
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
