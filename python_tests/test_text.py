"""Text: the reader (Amazon/Yelp CSV, CSV with a header, JSONL), its cache and
streaming, the fastText proxy and VDCNN targets, both pipelines and the CLI."""

import csv
import json
import pickle
import random
import sys
import tracemalloc

import numpy as np
import pytest
import torch
from torch import nn

from ml_helpers import one_torch_thread  # noqa: F401  (autouse fixture)
from svp_fast import cli
from svp_fast.data import DataSpec, TextDataset, TextFormatError, load_dataset, load_text
from svp_fast.data import text as text_mod
from svp_fast.pipelines import ModelSetup, run_active, run_coreset
from svp_fast.proxy import (MODELS, Classifier, FastText, ModuleClassifier, TrainConfig, create_model,
                            infer, load_checkpoint, register_model, save_checkpoint, train)
from svp_fast.proxy.text_models import TEXT_MODELS, VDCNN, kmax_pool
from svp_fast.proxy.training import make_optimizers

POSITIVE = ["great", "excellent", "love", "wonderful", "perfect", "amazing"]
NEGATIVE = ["awful", "terrible", "hate", "broken", "poor", "worst"]
FILLER = ("the it was and this a for my i of to in with product one day box time "
          "works use bought").split()


def reviews(n, seed=0):
    """(class number 1 or 2, title, body): bodies carry the sentiment words."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        y = 1 + i % 2
        words = rng.choices(FILLER, k=rng.randint(3, 8))
        words += rng.choices(POSITIVE if y == 2 else NEGATIVE, k=2)
        rng.shuffle(words)
        title = rng.choice(["ok", "my review", "read this, please", 'a "quoted" title'])
        out.append((y, title, " ".join(words)))
    return out


def write_amazon(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, quoting=csv.QUOTE_ALL).writerows(rows)
    return path


def decode(codes):
    """Character codes back to text (unknown characters as '?')."""
    table = {i + 2: c for i, c in enumerate(text_mod.ALPHABET)}
    return "".join(table.get(int(c), "?") for c in codes if c != text_mod.PAD)


def ngram_ids(text, buckets, ngrams=2):
    ids, _ = text_mod.hash_ngrams([text_mod.tokenize(text)], buckets, ngrams)
    return ids


def quick(name, schedule, **options):
    return ModelSetup(name, TrainConfig(schedule, batch_size=32, progress=False), options)


@pytest.fixture(scope="module")
def review_folder(tmp_path_factory):
    """An Amazon-layout folder: train.csv (400 reviews), test.csv (100)."""
    folder = tmp_path_factory.mktemp("reviews")
    write_amazon(folder / "train.csv", reviews(400, seed=1))
    write_amazon(folder / "test.csv", reviews(100, seed=2))
    return folder


@pytest.fixture(scope="module")
def review_splits(review_folder, tmp_path_factory):
    return load_text(review_folder, max_chars=64, buckets=1 << 14,
                     cache_dir=tmp_path_factory.mktemp("cache"))


# ----------------------------------------------------------------------------- the reader

def test_amazon_layout_quoting_commas_newlines_and_empty_bodies(tmp_path):
    path = tmp_path / "tricky.csv"
    path.write_text(
        '"1","Title, with a comma","Body with ""quotes"", commas, and\n'
        'a newline inside"\n'
        '"2","",""\n'
        '"1","t","escaped\\nnewline"\n'
        '\n'
        '2,unquoted title,unquoted body\r\n', encoding="utf-8")
    splits = load_text(path, test_fraction=0, buckets=1000, max_chars=40)
    assert splits.test is None
    ds = splits.train
    assert len(ds) == 4 and ds.num_classes == 2 and ds.classes is None
    assert ds.labels.tolist() == [0, 1, 0, 1]
    assert ds.lines.tolist() == [1, 3, 4, 6]  # each record's first line
    texts = ['Title, with a comma Body with "quotes", commas, and\na newline inside', " ",
             "t escaped newline", "unquoted title unquoted body"]
    ids, offsets, chars = ds.batch(np.arange(4))
    assert chars.shape == (4, 40) and chars.dtype == torch.uint8
    bounds = offsets.tolist() + [ids.numel()]
    for k, t in enumerate(texts):
        assert decode(chars[k]) == " ".join(t.lower().split("\n"))[:40]
        assert ids[bounds[k]:bounds[k + 1]].tolist() == ngram_ids(t, 1000).tolist()
    # the empty body: no n-grams at all, and only the joining space as characters
    assert bounds[2] - bounds[1] == 0 and decode(chars[1]) == " "
    # the same rows in another order, and one row alone
    ids2, off2, chars2 = ds.batch(np.array([3, 0]))
    assert torch.equal(chars2, chars[[3, 0]])
    assert ids2[:off2[1]].tolist() == ids[bounds[3]:].tolist()


def test_tokens_and_ngrams():
    assert text_mod.tokenize("Don't STOP, it's great!!") == ["don't", "stop", ",", "it's", "great",
                                                             "!", "!"]
    a = ngram_ids("good movie", 1 << 20)
    b = ngram_ids("movie good", 1 << 20)
    # the same unigrams, different bigrams
    assert len(a) == 3 and sorted(a[:2]) == sorted(b[:2]) and a[2] != b[2]
    assert ngram_ids("good movie", 1 << 20, ngrams=1).tolist() == a[:2].tolist()
    three = ngram_ids("a b c", 1 << 20, ngrams=3)
    assert len(three) == 3 + 2 + 1 and len(set(three.tolist())) == 6
    ids, counts = text_mod.hash_ngrams([["x"], [], ["y", "z"]], 50)
    assert counts.tolist() == [1, 0, 3] and ids.min() >= 0 and ids.max() < 50
    # stable across runs and machines (crc32 and splitmix64): pinned values
    assert ngram_ids("Great product", 1 << 20).tolist() == [490695, 516891, 1659]
    assert text_mod.encode_chars(["Ab é\t"], 10)[0].tolist() == [2, 3, 38, 1, 38]


def test_two_column_layout_and_more_classes(tmp_path):
    rows = [(5, "five stars"), (1, "one star"), (3, "three, with comma")]
    splits = load_text(write_amazon(tmp_path / "yelp.csv", rows), test_fraction=0)
    assert splits.train.labels.tolist() == [4, 0, 2] and splits.train.num_classes == 5


@pytest.mark.parametrize("content,line,fragment", [
    ('"1","a","b"\n"0","a","b"\n', 2, "label '0' is not a class number >= 1"),
    ('"label","title","body"\n"1","a","b"\n', 1, "a header row?"),
    ('"1","a","b"\n"2.5","a","b"\n', 2, "label '2.5'"),
    ('"1","a","b"\n"1","a","b"\n"2","a"\n', 3, "has 2 fields, but the first record has 3"),
    ('"1","a","b"\n"2","a","unterminated\nquote\n', 2, "is not valid CSV"),
    ('"1","a","b"\n"2","a","x"y"\n', 2, "is not valid CSV"),
    ('"1"\n', 1, "a class number and at least one text field"),
])
def test_amazon_layout_errors_name_the_file_and_line(tmp_path, content, line, fragment):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TextFormatError, match=fragment) as info:
        load_text(path, test_fraction=0)
    assert info.value.line == line and info.value.path == str(path.resolve())
    assert f"bad.csv, line {line}:" in str(info.value)


def test_undecodable_bytes_name_their_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b'"1","a","ok"\n' * 3000 + b'"2","caf\xe9","b"\n"1","a","c"\n')
    with pytest.raises(TextFormatError, match=r"line 3001: is not valid UTF-8 \(byte 0xe9") as info:
        load_text(path, test_fraction=0, cache_dir=tmp_path / "c")
    assert "encoding_errors='replace'" in str(info.value)
    ds = load_text(path, test_fraction=0, encoding_errors="replace", cache_dir=tmp_path / "c").train
    assert len(ds) == 3002
    # the replacement character is outside the alphabet: unknown
    assert decode(ds.batch([3000])[2][0]) == "caf? b"
    # nothing half-built is left behind by the failed attempt
    assert all(not p.name.endswith(".tmp") for p in (tmp_path / "c").iterdir())


def test_text_csv_with_a_header_and_class_names(tmp_path):
    path = tmp_path / "reviews.tsv"
    path.write_text("id\tlabel\ttitle\tbody\n1\tpos\tGood\tloved it\n2\tneg\tBad\t\n"
                    "3\tneutral\tMeh\t\"tab\tinside\"\n", encoding="utf-8")
    ds = load_text(path, format="text-csv", text_field="title,body", delimiter="\t",
                   test_fraction=0).train
    assert ds.classes == ["neg", "neutral", "pos"] and ds.labels.tolist() == [2, 0, 1]
    assert decode(ds.batch([2])[2][0]) == "meh tab inside"
    # integer names sort as numbers; a separate test file must use the training classes
    (tmp_path / "train.csv").write_text("text,label\na,10\nb,2\nc,10\n", encoding="utf-8")
    (tmp_path / "test.csv").write_text("text,label\nd,2\ne,7\n", encoding="utf-8")
    with pytest.raises(TextFormatError, match=r"test.csv, line 3: label '7' is not one of the 2 "
                                              r"classes"):
        load_text(tmp_path, format="text-csv")
    (tmp_path / "test.csv").write_text("text,label\nd,2\n", encoding="utf-8")
    splits = load_text(tmp_path, format="text-csv")
    assert splits.train.classes == ["2", "10"] and splits.train.labels.tolist() == [1, 0, 1]
    assert splits.test.labels.tolist() == [0]


def test_text_csv_errors(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("body,stars\nx,1\n", encoding="utf-8")
    with pytest.raises(TextFormatError, match=r"line 1: the header \['body', 'stars'\] lacks the "
                                              r"field\(s\) \['text', 'label'\]"):
        load_text(path, format="text-csv")
    path.write_text("text,label\nx,1\ny, \n", encoding="utf-8")
    with pytest.raises(TextFormatError, match="line 3: the label .* is empty"):
        load_text(path, format="text-csv")
    path.write_text("text,label\nx,1\ny,1,extra\n", encoding="utf-8")
    with pytest.raises(TextFormatError, match="line 3: has 3 fields, but the header has 2"):
        load_text(path, format="text-csv")
    with pytest.raises(ValueError, match="'amazon-csv' has fixed columns"):
        load_text(path, text_field="body")
    with pytest.raises(ValueError, match="text datasets have no augmentation"):
        load_text(path, format="text-csv", augmentation="crop_flip")
    with pytest.raises(FileNotFoundError, match="has no train.jsonl"):
        load_text(tmp_path, format="jsonl")
    with pytest.raises(ValueError, match="format must be one of"):
        load_text(path, format="xml")


def test_jsonl(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"text": "great, really", "label": 1}, {"text": "awful", "label": 0},
            {"text": None, "label": 1}, {"text": "line\nbreak \ud83d", "label": 0}]
    path.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n\n"
                    + "\n".join(json.dumps(r) for r in rows[2:]) + "\n", encoding="utf-8")
    ds = load_text(path, format="jsonl", test_fraction=0).train
    assert ds.labels.tolist() == [1, 0, 1, 0] and ds.classes == ["0", "1"]
    assert ds.lines.tolist() == [1, 2, 4, 5]
    assert decode(ds.batch([3])[2][0]) == "line break ?"
    for bad, fragment in [('{"text": "a", "label": 1}\n{"text": "b"', "line 2: is not valid JSON"),
                          ('{"text": "a", "label": 1}\n[1, 2]\n', "line 2: is a JSON list"),
                          ('{"text": "a"}\n', r"line 1: lacks the field\(s\) \['label'\]"),
                          ('{"text": 3, "label": 1}\n', "the field 'text' is a int"),
                          ('{"text": "a", "label": true}\n', "the label True is not a string")]:
        path.write_text(bad, encoding="utf-8")
        with pytest.raises(TextFormatError, match=fragment):
            load_text(path, format="jsonl", test_fraction=0)


def test_compressed_files_and_held_out_split(tmp_path):
    import gzip

    with gzip.open(tmp_path / "r.csv.gz", "wt", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(reviews(200))
    splits = load_text(tmp_path / "r.csv.gz", test_fraction=0.25, seed=3)
    assert len(splits.train) == 150 and len(splits.test) == 50
    assert np.bincount(splits.test.labels).tolist() == [25, 25]  # stratified
    assert not set(splits.train.rows) & set(splits.test.rows)
    again = load_text(tmp_path / "r.csv.gz", test_fraction=0.25, seed=3)
    assert np.array_equal(again.test.rows, splits.test.rows)
    assert splits.train.name == "r/train"


# ----------------------------------------------------------------------------- the cache

def test_cache_is_reused_and_invalidated_by_a_changed_file(tmp_path, monkeypatch):
    path = write_amazon(tmp_path / "data.csv", reviews(50))
    builds = []
    real_build = text_mod._build

    def counting_build(*args, **kwargs):
        builds.append(args[0])
        return real_build(*args, **kwargs)

    monkeypatch.setattr(text_mod, "_build", counting_build)
    first = load_text(path, test_fraction=0).train
    cache_root = tmp_path / ".svp_fast_cache"  # default: beside the data
    assert len(builds) == 1 and first.store.folder.parent == cache_root
    second = load_text(path, test_fraction=0).train
    assert len(builds) == 1 and second.store.folder == first.store.folder  # not re-tokenised
    # other options: another entry, and the first one stays
    other = load_text(path, test_fraction=0, max_chars=32).train
    assert len(builds) == 2 and other.store.folder != first.store.folder
    assert len(list(cache_root.iterdir())) == 2
    # a changed file (the same size and first bytes, a different last record) is re-read
    rows = reviews(50)
    rows[-1] = (1 if rows[-1][0] == 2 else 2,) + rows[-1][1:]
    write_amazon(path, rows)
    changed = load_text(path, test_fraction=0).train
    assert len(builds) == 3 and changed.labels[-1] != first.labels[-1]
    # the older version's entries are gone, only the new one is left
    assert [p.name for p in cache_root.iterdir()] == [changed.store.folder.name]
    # a damaged entry is rebuilt
    (changed.store.folder / "ngrams.bin").write_bytes(b"\0")
    load_text(path, test_fraction=0)
    assert len(builds) == 4


def test_cache_dir_option_and_environment(tmp_path, monkeypatch):
    path = write_amazon(tmp_path / "d.csv", reviews(20))
    ds = load_text(path, test_fraction=0, cache_dir=tmp_path / "mine").train
    assert ds.store.folder.parent == tmp_path / "mine"
    monkeypatch.setenv("SVP_FAST_CACHE", str(tmp_path / "env"))
    ds = load_text(path, test_fraction=0).train
    assert ds.store.folder.parent == tmp_path / "env"
    meta = json.loads((ds.store.folder / "meta.json").read_text())
    assert meta["rows"] == 20 and meta["source"]["path"] == str(path)


def test_streaming_encodes_in_chunks_within_a_memory_budget(tmp_path, monkeypatch):
    """Files of 2.9 and 5.8 MB are encoded 500 records at a time: the peak of the
    memory Python allocates (numpy's arrays included) does not grow with the file."""
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(300)]
    monkeypatch.setattr(text_mod, "CHUNK_ROWS", 500)
    calls = []
    real = text_mod.encode_chunk
    monkeypatch.setattr(text_mod, "encode_chunk",
                        lambda texts, *a: calls.append(len(texts)) or real(texts, *a))
    peaks, sizes = [], []
    for rows in (12_000, 24_000):
        path = tmp_path / f"big{rows}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            for i in range(rows):
                w.writerow([1 + i % 3, "title", " ".join(rng.choices(vocab, k=50))])
        sizes.append(path.stat().st_size)
        calls.clear()
        tracemalloc.start()
        try:
            ds = load_text(path, test_fraction=0, max_chars=256, cache_dir=tmp_path / "c").train
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert calls == [500] * (rows // 500)
        assert len(ds) == rows and ds.num_classes == 3
    assert sizes[1] > 5_500_000
    # ~100 bytes per token and ~11 per character of a chunk, whatever the file's size
    assert peaks[1] < sizes[1] / 2 and peaks[1] < 1.2 * peaks[0], (peaks, sizes)
    # the arrays are memory-mapped from the cache, not loaded
    assert isinstance(ds.store.ngrams, np.memmap) and isinstance(ds.store.chars, np.memmap)


def test_dataset_pickles_by_reference(review_splits):
    ds = review_splits.train
    data = pickle.dumps(ds)
    assert len(data) < 50_000  # the memory maps are reopened, not copied
    back = pickle.loads(data)
    for a, b in zip(ds.batch([3, 1, 4]), back.batch([3, 1, 4])):
        assert torch.equal(a, b)
    assert np.array_equal(back.labels, ds.labels)


def test_dataset_interface(review_splits):
    train_set, test_set = review_splits.train, review_splits.test
    assert len(train_set) == 400 and len(test_set) == 100
    assert train_set.spec == DataSpec("text", None, 2, {
        "inputs": ("ngrams", "ngram_offsets", "chars"), "buckets": 1 << 14, "ngrams": 2,
        "alphabet_size": text_mod.ALPHABET_SIZE, "max_chars": 64})
    with pytest.raises(ValueError, match="read-only"):
        train_set.labels[0] = 1
    d = train_set.describe()
    assert d["kind"] == "text" and d["format"] == "amazon-csv" and d["input_shape"] is None
    json.dumps(d)
    shorter = TextDataset(train_set.store, max_chars=16)
    assert shorter.batch([0])[2].shape == (1, 16)
    with pytest.raises(ValueError, match="max_chars must be in"):
        TextDataset(train_set.store, max_chars=65)
    with pytest.raises(ValueError, match="needs a root"):
        load_dataset("jsonl")


# ----------------------------------------------------------------------------- models

TEXT_SPEC = DataSpec("text", None, 3, {"inputs": ("ngrams", "ngram_offsets", "chars"),
                                       "buckets": 500, "ngrams": 2, "alphabet_size": 71,
                                       "max_chars": 64})


def text_batch(b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, 6, (b,), generator=g)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
    ids = torch.randint(0, 500, (int(lengths.sum()),), generator=g)
    chars = torch.randint(0, 71, (b, 64), generator=g).to(torch.uint8)
    return ids, offsets, chars


@pytest.mark.parametrize("name,dim", [("fasttext", 10), ("charcnn_small", 256), ("vdcnn9", 2048),
                                      ("vdcnn17", 2048), ("vdcnn29", 2048)])
def test_text_models_features_are_the_head_input(name, dim):
    assert set(TEXT_MODELS) <= set(MODELS)
    model = create_model(name, TEXT_SPEC, seed=0).eval()
    x = text_batch()
    seen = []
    hook = model.head.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            logits = model(*x)
            feats = model.features(*x)
    finally:
        hook.remove()
    assert logits.shape == (4, 3) and feats.shape == (4, dim) == (4, model.feature_dim)
    # what features() returns is exactly what the head receives in a forward pass
    # (the original SVP code looked for a layer named `fc`, which VDCNN's head is not)
    assert len(seen) == 1 and torch.equal(seen[0], feats)
    torch.testing.assert_close(model.head(feats), logits)


def test_vdcnn_depth_and_kmax_pooling():
    for name, depth in (("vdcnn9", 9), ("vdcnn17", 17), ("vdcnn29", 29)):
        model = create_model(name, TEXT_SPEC)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv1d)]
        assert len(convs) == depth == model.depth
    x = torch.tensor([[[1.0, 9.0, 3.0, 7.0, 5.0]]])
    assert kmax_pool(x, 3).tolist() == [[[9.0, 7.0, 5.0]]]  # the largest, in their order
    with pytest.raises(ValueError, match="at least 57 characters"):
        VDCNN(71, 56, 2)
    with pytest.raises(ValueError, match="depth must be one of"):
        VDCNN(71, 64, 2, depth=10)
    # padding (code 0) embeds to zeros
    model = create_model("charcnn_small", TEXT_SPEC)
    assert torch.count_nonzero(model.embed.weight[0]) == 0


def test_text_models_check_the_inputs():
    with pytest.raises(ValueError, match="'fasttext' needs text data with 'ngrams' inputs"):
        create_model("fasttext", DataSpec("image", (1, 8, 8), 10))
    only_chars = DataSpec("text", None, 2, {"inputs": ("chars",), "alphabet_size": 71,
                                            "max_chars": 64})
    with pytest.raises(ValueError, match="needs text data with 'ngrams'"):
        create_model("fasttext", only_chars)
    model = create_model("charcnn_small", only_chars)  # finds its input by name
    assert model(torch.zeros(2, 64, dtype=torch.uint8)).shape == (2, 2)
    with pytest.raises(ValueError, match="needs images"):
        create_model("cnn_small", TEXT_SPEC)


def test_text_model_checkpoint_round_trip(tmp_path):
    model = create_model("charcnn_small", TEXT_SPEC, seed=1, fc=32).eval()
    save_checkpoint(model, tmp_path / "m.pt")
    back = load_checkpoint(tmp_path / "m.pt").eval()
    x = text_batch()
    with torch.no_grad():
        torch.testing.assert_close(back(*x), model(*x))


def test_fasttext_trains_with_sparse_adagrad_updates(review_splits):
    train_set, test_set = review_splits.train, review_splits.test
    model = create_model("fasttext", train_set.spec, seed=0)
    (opt,) = make_optimizers(model, TrainConfig("1@0.1"))
    assert isinstance(opt, torch.optim.Adagrad) and opt.param_groups[0]["weight_decay"] == 0
    # one step changes only the embedding rows the minibatch used (the head
    # starts at zero, as fastText's; with it, the first step would move no row)
    with torch.no_grad():
        model.head.weight.normal_()
    before = model.embedding.weight.detach().clone()
    ids, offsets, chars = train_set.batch(np.arange(8))
    loss = nn.functional.cross_entropy(model(ids, offsets, chars),
                                       torch.tensor(train_set.labels[:8]))
    loss.backward()
    assert model.embedding.weight.grad.is_sparse
    with torch.sparse.check_sparse_tensor_invariants(enable=False):
        opt.step()
    changed = torch.nonzero((model.embedding.weight != before).any(1)).flatten()
    assert set(changed.tolist()) <= set(ids.tolist()) and changed.numel() > 0
    # it learns the sentiment words in a fraction of a second
    model = create_model("fasttext", train_set.spec, seed=0)
    result = train(model, train_set, TrainConfig("5@0.2", batch_size=32, progress=False),
                   eval_dataset=test_set)
    assert result.final_accuracy >= 0.95
    out = infer(model, test_set)
    assert out.features.shape == (100, 10) and out.logits.shape == (100, 2)


def test_parameter_groups_are_checked():
    class Bad(Classifier):
        def __init__(self, groups):
            super().__init__(2, 2)
            self.groups = groups

        def features(self, x):
            return x

        def parameter_groups(self):
            return self.groups(self)

    cfg = TrainConfig("1@0.1")
    for groups, fragment in [
        (lambda m: [{"params": [m.head.weight]}], r"leaves out the parameters \['head.bias'\]"),
        (lambda m: [{"params": list(m.parameters())}, {"params": [m.head.bias]}], "twice"),
        (lambda m: [{"params": list(m.parameters()), "optimizer": "adam"}], "optimizer must be"),
        (lambda m: [{"params": list(m.parameters()), "optimizer": "adagrad", "momentum": 0.9}],
         "SGD settings"),
        (lambda m: [{"params": list(m.parameters()), "lr": 3}], "must return dicts"),
        (lambda m: [{"params": list(m.parameters()), "lr_scale": 0}], "lr_scale must be"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            make_optimizers(Bad(groups), cfg)
    # a scaled group: its rate is the schedule's times the scale in every epoch
    model = Bad(lambda m: [{"params": [m.head.weight], "lr_scale": 10.0, "weight_decay": 0.0},
                           {"params": [m.head.bias]}])
    sgd, = make_optimizers(model, cfg)
    assert [g["weight_decay"] for g in sgd.param_groups] == [0.0, cfg.weight_decay]


def test_your_own_model_wrapped_registered_or_imported(tmp_path, monkeypatch, review_splits):
    train_set = review_splits.train

    class MeanChars(nn.Module):  # any module returning (batch, features)
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(text_mod.ALPHABET_SIZE, 6)

        def forward(self, ids, offsets, chars):
            return self.embed(chars.long()).mean(1)

    register_model("test_mean_chars",
                   lambda spec: ModuleClassifier(MeanChars(), 6, spec.num_classes))
    try:
        model = create_model("test_mean_chars", train_set.spec, seed=0)
        assert model(*train_set.batch([0, 1])).shape == (2, 2)
        bad = ModuleClassifier(MeanChars(), 5, 2)
        with pytest.raises(ValueError, match=r"must return \(batch, 5\) features, got \(2, 6\)"):
            bad(*train_set.batch([0, 1]))
    finally:
        MODELS.pop("test_mean_chars")
    # "package.module:builder": imported on first use (also from the command line)
    (tmp_path / "my_text_models.py").write_text(
        "from svp_fast.proxy import VDCNN\n"
        "def tiny(spec, **options):\n"
        "    return VDCNN(spec.extra['alphabet_size'], spec.extra['max_chars'], spec.num_classes,\n"
        "                 width=4, fc=8, chars_at=spec.extra['inputs'].index('chars'))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        model = create_model("my_text_models:tiny", train_set.spec)
        assert model.feature_dim == 8
        assert ModelSetup("my_text_models:tiny").name == "my_text_models:tiny"
    finally:
        MODELS.pop("my_text_models:tiny", None)
        sys.modules.pop("my_text_models", None)
    with pytest.raises(ImportError, match="cannot import module 'no_such_module'"):
        create_model("no_such_module:f", train_set.spec)
    with pytest.raises(ValueError, match="has no callable 'nope'"):
        create_model("json:nope", train_set.spec)


# ----------------------------------------------------------------------------- pipelines

PROXY = quick("fasttext", "5@0.2")
TARGET = quick("charcnn_small", "10@0.1", width=8, fc=32)


def test_coreset_pipeline_on_text(review_splits, tmp_path):
    train_set, test_set = review_splits.train, review_splits.test
    result = run_coreset(train_set, test_set, methods=["kcenter", "least_confidence", "random"],
                         size=0.5, proxy=PROXY, target=TARGET, include_full=True, seed=0,
                         out_dir=tmp_path / "run")
    rows = {r["method"]: r for r in result.summary}
    assert set(rows) == {"all data", "kcenter", "least_confidence", "random"}
    for method in ("kcenter", "least_confidence", "random"):
        idx = result.selected[method]
        assert idx.size == 200 and np.unique(idx).size == 200
        assert rows[method]["labelled"] == 200
    assert rows["kcenter"]["selector_accuracy"] >= 0.95  # the fastText proxy
    # the char-CNN learns the sentiment words from characters on all data
    assert rows["all data"]["accuracy"] >= 0.8
    for name in ("config.json", "summary.csv", "selected_kcenter.npy", "selector.pt",
                 "target_kcenter.pt"):
        assert (tmp_path / "run" / name).exists(), name
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train_set"]["kind"] == "text" and config["proxy"]["name"] == "fasttext"
    # the saved proxy rebuilds from its checkpoint
    proxy = load_checkpoint(tmp_path / "run" / "selector.pt")
    assert isinstance(proxy, FastText)


def test_kcenter_on_the_char_cnn_target_features(review_splits):
    """The baseline SVP speeds up: the target selects, k-center on its 32-d features."""
    train_set, test_set = review_splits.train, review_splits.test
    result = run_coreset(train_set, test_set, methods=["kcenter"], size=40, selector="target",
                         proxy=PROXY, target=quick("charcnn_small", "1@0.05", width=8, fc=32))
    assert result.selected["kcenter"].size == 40


def test_active_pipeline_on_text(review_splits):
    train_set, test_set = review_splits.train, review_splits.test
    result = run_active(train_set, test_set, methods=["least_confidence", "kcenter"],
                        sizes=[40, 80, 120], proxy=PROXY,
                        target=quick("charcnn_small", "2@0.05", width=8, fc=32), seed=0)
    for method in ("least_confidence", "kcenter"):
        labelled = result.selected[method]
        assert labelled.size == 120 and np.unique(labelled).size == 120
    selector_acc = [r["selector_accuracy"] for r in result.rounds
                    if r["method"] == "least_confidence" and r["selector_accuracy"] is not None]
    assert len(selector_acc) == 2 and max(selector_acc) >= 0.8


# ----------------------------------------------------------------------------- command line

def test_cli_coreset_and_active_on_text(review_folder, tmp_path, capsys):
    common = ["--dataset", "amazon-csv", "--data-dir", review_folder, "--max-chars", 64,
              "--buckets", 16384, "--cache-dir", tmp_path / "cache", "--proxy", "fasttext",
              "--target", "charcnn_small", "--proxy-schedule", "3@0.2", "--target-schedule",
              "1@0.05", "--batch-size", 32, "--quiet", "--threads", 1]
    code = cli.main([str(a) for a in ["coreset", *common, "--method", "kcenter,least_confidence",
                                      "--out", tmp_path / "run"]])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "kcenter" in out.out and "least_confidence" in out.out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train_set"]["size"] == 400 and config["test_set"]["size"] == 100
    assert np.load(tmp_path / "run" / "selected_kcenter.npy").size == 200
    code = cli.main([str(a) for a in ["active", *common, "--sizes", "40,80"]])
    assert code == 0, capsys.readouterr().err


def test_cli_text_defaults_and_errors(tmp_path, capsys):
    assert cli.DEFAULTS["text"][:2] == ("fasttext", "charcnn_small")
    bad = tmp_path / "bad.csv"
    bad.write_text('"1","a","b"\n"x","a","b"\n', encoding="utf-8")
    code = cli.main(["coreset", "--dataset", "amazon-csv", "--data-dir", str(bad), "--quiet",
                     "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and "bad.csv, line 2: label 'x' is not a class number" in err
    code = cli.main(["coreset", "--dataset", "digits", "--max-chars", "64", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--max-chars applies to text datasets" in err
    jl = tmp_path / "d.jsonl"
    jl.write_text("\n".join(json.dumps({"review": t, "stars": str(y)}) for y, _, t in reviews(60))
                  + "\n", encoding="utf-8")
    code = cli.main(["coreset", "--dataset", "jsonl", "--data-dir", str(jl), "--text-field",
                     "review", "--label-field", "stars", "--test-fraction", "0.2", "--max-chars",
                     "64", "--cache-dir", str(tmp_path / "c"), "--method", "random",
                     "--target", "fasttext", "--target-schedule", "1@0.1", "--quiet"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "random" in out.out
    # a TSV, the tab typed as backslash-t
    tsv = tmp_path / "d.tsv"
    tsv.write_text("label\ttext\n" + "".join(f"{y}\t{t}\n" for y, _, t in reviews(60)),
                   encoding="utf-8")
    code = cli.main(["coreset", "--dataset", "text-csv", "--data-dir", str(tsv), "--delimiter",
                     "\\t", "--max-chars", "64", "--cache-dir", str(tmp_path / "c"), "--method",
                     "least_confidence", "--target", "fasttext", "--target-schedule", "1@0.1",
                     "--size", "10", "--quiet", "--out", str(tmp_path / "tsv_run")])
    assert code == 0, capsys.readouterr().err
    config = json.loads((tmp_path / "tsv_run" / "config.json").read_text())
    assert config["train_set"]["classes"] == ["1", "2"] and config["train_set"]["size"] == 54
