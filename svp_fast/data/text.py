"""Text datasets: tokenised and hashed once, cached on disk, memory-mapped.

Formats (``format=``, and the names in :data:`svp_fast.data.DATASETS`):

``amazon-csv``
    The layout of Amazon Review Polarity/Full, Yelp and the other datasets of
    Zhang et al. (2015): no header, one review per record, the class number
    first (1-based), then one or more text fields (``"label","title","body"``
    or ``"label","body"``). The text fields are joined with a space, and the
    escaped newlines of those files (a literal ``\\n``) become spaces.
``text-csv``
    A CSV (or, with ``delimiter="\\t"``, TSV) with a header row naming the
    columns; ``text_field`` names the text column(s) (default ``text``),
    ``label_field`` the class column (default ``label``).
``jsonl``
    One JSON object per line with the fields ``text_field`` and
    ``label_field`` (a string or an integer); blank lines are skipped.

``text-csv`` and ``jsonl`` labels are class *names*: the sorted distinct
names (numerically when they are all integers) become classes 0..K-1 and are
kept in ``dataset.classes``. ``amazon-csv`` labels are class numbers: class
``c`` is label ``c + 1``.

A path is a file (``.gz``, ``.bz2`` and ``.xz`` are read compressed) or a
folder holding ``train.<ext>`` and optionally ``test.<ext>`` (``.csv``,
``.tsv`` with a tab delimiter, ``.jsonl``), as Amazon's archives unpack. A file
without a test part has ``test_fraction`` of each class held out (seeded).

Encoding, done once per file while streaming through it ``chunk`` records at a
time (never the whole file as Python strings), written to growing files and
memory-mapped afterwards:

* *n-grams* for bag-of-n-gram models (fastText): the lower-cased text is split
  into words and punctuation marks; every word and every run of up to
  ``ngrams`` consecutive words is hashed (stable across runs and machines) into
  one of ``buckets`` ids. A document is its unigram ids followed by its bigram
  ids, and so on.
* *characters* for character-level CNNs (VDCNN): the first ``max_chars``
  characters of the lower-cased text as codes: 0 is padding, 1 an unknown
  character, 2.. the :data:`ALPHABET` (whitespace is a space).

The cache is a folder ``<name>-<key>`` under ``cache_dir`` (default: a
``.svp_fast_cache`` folder beside the data, or ``~/.cache/svp_fast/text`` when
that is not writable; the environment variable ``SVP_FAST_CACHE`` overrides
the default). The key hashes the file's path, size, modification time and
first and last 64 KiB, the format and every option that changes the arrays,
so an edited file or other options build a new entry (and the entries of
older versions of that file are removed; entries for other options stay).
Entries appear complete or not at all (built in a temporary folder, then
renamed).

A batch is ``(ngram_ids, ngram_offsets, chars)``: int64 ids of all the
documents concatenated, int64 start of each document in them (the
``input``/``offsets`` of :class:`torch.nn.EmbeddingBag`), and a (B,
``max_chars``) uint8 tensor of character codes, zero-padded. Text models find
their inputs by name in ``spec.extra["inputs"]``.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import itertools
import json
import lzma
import os
import re
import shutil
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Iterator, Optional, Sequence, Union

import numpy as np
import torch

from .._util import current_umask
from .base import Dataset, DataSpec, Splits, as_indices

PathLike = Union[str, os.PathLike]

FORMATS = ("amazon-csv", "text-csv", "jsonl")
EXTENSIONS = {"amazon-csv": ".csv", "text-csv": ".csv", "jsonl": ".jsonl"}
INPUTS = ("ngrams", "ngram_offsets", "chars")

#: Characters with their own code (after lower-casing), as in the
#: character-level CNNs of Zhang et al. and Conneau et al. (VDCNN).
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 -,;.!?:'\"/\\|_@#$%^&*~`+=<>()[]{}"
PAD, UNKNOWN = 0, 1
ALPHABET_SIZE = len(ALPHABET) + 2

DEFAULT_BUCKETS = 1 << 20
DEFAULT_MAX_CHARS = 1024
CACHE_VERSION = 1
#: Records encoded at a time: bounds the memory of encoding (about 100 bytes per
#: token and 11 per character of a chunk; ~30 MB for Amazon reviews).
CHUNK_ROWS = 2048
#: Distinct tokens whose hashes are remembered between chunks.
_TOKEN_CACHE_LIMIT = 500_000

_TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")
_CHAR_TABLE = np.full(128, UNKNOWN, dtype=np.uint8)
for _i, _c in enumerate(ALPHABET):
    _CHAR_TABLE[ord(_c)] = _i + 2
for _c in "\t\n\r\x0b\x0c":
    _CHAR_TABLE[ord(_c)] = ALPHABET.index(" ") + 2


class TextFormatError(ValueError):
    """A record that cannot be read: names the file and the line it starts on."""

    def __init__(self, path: Any, line: int, message: str):
        self.path, self.line = str(path), int(line)
        super().__init__(f"{self.path}, line {self.line}: {message}")


@dataclass(frozen=True)
class TextEncoding:
    """What the cached arrays depend on besides the file (part of the cache key)."""

    buckets: int = DEFAULT_BUCKETS
    ngrams: int = 2
    max_chars: int = DEFAULT_MAX_CHARS

    def __post_init__(self):
        for name, lo, hi in (("buckets", 1, 2**31 - 1), ("ngrams", 1, 5),
                             ("max_chars", 1, 2**20)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")


@dataclass(frozen=True)
class TextLayout:
    """How records are read from a file (part of the cache key)."""

    format: str = "amazon-csv"
    text_field: tuple = ("text",)
    label_field: str = "label"
    delimiter: str = ","
    encoding_errors: str = "strict"

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(map(repr, FORMATS))}, "
                             f"got {self.format!r}")
        if not self.text_field or not all(isinstance(f, str) and f for f in self.text_field):
            raise ValueError(f"text_field must name at least one field, got {self.text_field!r}")
        if not isinstance(self.label_field, str) or not self.label_field:
            raise ValueError(f"label_field must be a non-empty string, got {self.label_field!r}")
        if self.label_field in self.text_field:
            raise ValueError(f"label_field {self.label_field!r} is also a text field")
        if not isinstance(self.delimiter, str) or len(self.delimiter) != 1 or self.delimiter in "\"\r\n":
            raise ValueError(f"delimiter must be one character other than a quote or a newline, "
                             f"got {self.delimiter!r}")
        if self.encoding_errors not in ("strict", "replace", "ignore"):
            raise ValueError("encoding_errors must be 'strict', 'replace' or 'ignore', "
                             f"got {self.encoding_errors!r}")


# ----------------------------------------------------------------------------- reading records

class _Lines:
    """The decoded lines of a (possibly compressed) file, counted exactly.

    Decoding line by line (not in the 8 KiB blocks of a text file) lets an
    undecodable byte be reported on its own line.
    """

    def __init__(self, f: IO[bytes], path: Path, errors: str):
        self.f, self.path, self.errors = f, path, errors
        self.number = 0       # physical lines read
        self.bytes = 0        # bytes read

    def __iter__(self) -> Iterator[str]:
        for raw in self.f:
            self.number += 1
            self.bytes += len(raw)
            try:
                line = raw.decode("utf-8", self.errors)
            except UnicodeDecodeError as e:
                raise TextFormatError(
                    self.path, self.number,
                    f"is not valid UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the "
                    "line); fix the file or pass encoding_errors='replace'") from None
            if self.number == 1 and line.startswith("\ufeff"):
                line = line[1:]  # byte-order mark
            yield line


def _open_binary(path: Path) -> IO[bytes]:
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".bz2":
        return bz2.open(path, "rb")
    if suffix == ".xz":
        return lzma.open(path, "rb")
    return open(path, "rb")


def _csv_rows(lines: _Lines, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(first line of the record, fields) for every non-blank record."""
    reader = csv.reader(iter(lines), delimiter=delimiter, strict=True)
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, 1 << 30))  # a long review is no error
    try:
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise TextFormatError(lines.path, start, f"is not valid CSV: {e}") from None
            if row:
                yield start, row
    finally:
        csv.field_size_limit(limit)


def _records_amazon(lines: _Lines, layout: TextLayout) -> Iterator[tuple[int, str, str]]:
    width = None
    for line, row in _csv_rows(lines, ","):
        if width is None:
            width = len(row)
            if width < 2:
                raise TextFormatError(lines.path, line, "has 1 field; the Amazon/Yelp layout needs "
                                      "a class number and at least one text field")
        elif len(row) != width:
            raise TextFormatError(lines.path, line, f"has {len(row)} fields, but the first record "
                                  f"has {width} (label and {width - 1} text fields)")
        label = row[0].strip()
        if not (label.isascii() and label.isdigit()) or int(label) < 1:
            hint = " (a header row? this layout has none)" if line == 1 else ""
            raise TextFormatError(lines.path, line, f"label {row[0]!r} is not a class number >= 1 "
                                  f"(the Amazon/Yelp layout numbers classes from 1){hint}")
        text = " ".join(row[1:]) if width > 2 else row[1]
        yield line, str(int(label)), text.replace("\\n", " ")


def _records_csv(lines: _Lines, layout: TextLayout) -> Iterator[tuple[int, str, str]]:
    rows = _csv_rows(lines, layout.delimiter)
    first = next(rows, None)
    if first is None:
        return
    header_line, header = first
    names = [h.strip() for h in header]
    wanted = list(layout.text_field) + [layout.label_field]
    missing = [f for f in wanted if f not in names]
    if missing:
        raise TextFormatError(lines.path, header_line, f"the header {names} lacks the field(s) "
                              f"{missing} (set text_field / label_field)")
    text_at = [names.index(f) for f in layout.text_field]
    label_at = names.index(layout.label_field)
    for line, row in rows:
        if len(row) != len(names):
            raise TextFormatError(lines.path, line, f"has {len(row)} fields, but the header has "
                                  f"{len(names)}")
        label = row[label_at].strip()
        if not label:
            raise TextFormatError(lines.path, line, f"the label ({layout.label_field!r}) is empty")
        text = " ".join(row[i] for i in text_at) if len(text_at) > 1 else row[text_at[0]]
        yield line, label, text


def _records_jsonl(lines: _Lines, layout: TextLayout) -> Iterator[tuple[int, str, str]]:
    for text_line in lines:
        line = lines.number
        if not text_line.strip():
            continue
        try:
            obj = json.loads(text_line)
        except json.JSONDecodeError as e:
            raise TextFormatError(lines.path, line, f"is not valid JSON: {e.msg} (column "
                                  f"{e.colno})") from None
        if not isinstance(obj, dict):
            raise TextFormatError(lines.path, line, f"is a JSON {type(obj).__name__}, not an "
                                  "object with text and label fields")
        missing = [f for f in (*layout.text_field, layout.label_field) if f not in obj]
        if missing:
            raise TextFormatError(lines.path, line, f"lacks the field(s) {missing} (set "
                                  "text_field / label_field)")
        label = obj[layout.label_field]
        if isinstance(label, bool) or not isinstance(label, (int, str)):
            raise TextFormatError(lines.path, line, f"the label {label!r} is not a string or an "
                                  "integer")
        label = str(label).strip()
        if not label:
            raise TextFormatError(lines.path, line, f"the label ({layout.label_field!r}) is empty")
        parts = []
        for f in layout.text_field:
            value = obj[f]
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise TextFormatError(lines.path, line, f"the field {f!r} is a "
                                      f"{type(value).__name__}, not a string")
            parts.append(value)
        yield line, label, " ".join(parts) if len(parts) > 1 else parts[0]


_READERS = {"amazon-csv": _records_amazon, "text-csv": _records_csv, "jsonl": _records_jsonl}


# ----------------------------------------------------------------------------- encoding

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_NGRAM_SEEDS = [np.uint64(s) for s in (0x243F6A8885A308D3, 0x13198A2E03707344, 0xA4093822299F31D0,
                                       0x082EFA98EC4E6C89, 0x452821E638D01377)]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wraps modulo 2**64)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


class _TokenHashes(dict):
    """token -> its 32-bit key (crc32 of UTF-8), computed on first sight."""

    def __missing__(self, token: str) -> int:
        value = self[token] = zlib.crc32(token.encode("utf-8", "surrogatepass"))
        return value


def tokenize(text: str) -> list[str]:
    """The words and punctuation marks of ``text``, lower-cased (what gets hashed)."""
    return _TOKEN.findall(text.lower())


def hash_ngrams(token_lists: Sequence[Sequence[str]], buckets: int, ngrams: int = 2,
                _cache: Optional[dict] = None) -> tuple[np.ndarray, np.ndarray]:
    """Bucket ids of every 1..``ngrams``-gram of each token list.

    Returns (ids int32, counts int64): the documents' ids concatenated (each:
    its unigrams in order, then its bigrams, ...) and how many each has.
    """
    cache = _TokenHashes() if _cache is None else _cache
    lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
    keys = np.fromiter(map(cache.__getitem__, itertools.chain.from_iterable(token_lists)),
                       dtype=np.uint64, count=int(lengths.sum()))
    return _ngram_ids(keys, lengths, buckets, ngrams)


def _token_keys(texts: Sequence[str], cache: dict) -> tuple[np.ndarray, np.ndarray]:
    """The token keys of each text, concatenated, and the token counts; one text's
    tokens are alive at a time."""
    lengths = np.empty(len(texts), dtype=np.int64)
    parts = []
    get = cache.__getitem__
    for k, text in enumerate(texts):
        tokens = _TOKEN.findall(text.lower())
        lengths[k] = len(tokens)
        parts.append(np.fromiter(map(get, tokens), dtype=np.uint64, count=len(tokens)))
    keys = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    return keys, lengths


def _ngram_ids(keys: np.ndarray, lengths: np.ndarray, buckets: int,
               ngrams: int) -> tuple[np.ndarray, np.ndarray]:
    """n-gram bucket ids from token keys (see :func:`hash_ngrams`), vectorised."""
    total = int(keys.size)
    per_order = [np.maximum(lengths - m, 0) for m in range(ngrams)]  # n-grams of order m+1
    counts = np.sum(per_order, axis=0) if ngrams > 1 else per_order[0].copy()
    out = np.empty(int(counts.sum()), dtype=np.int32)
    if total == 0:
        return out, counts
    doc_start = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(counts, out=doc_start[1:])
    tok_start = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=tok_start[1:])
    doc_of = np.repeat(np.arange(len(lengths)), lengths)
    within = np.arange(total) - tok_start[doc_of]
    h = np.zeros(total, dtype=np.uint64)
    nb = np.uint64(buckets)
    before = np.zeros(len(lengths), dtype=np.int64)  # ids of lower orders in each document
    for m in range(ngrams):
        n_m = total - m
        if n_m <= 0:
            break
        # the hash state of n-gram [t, t + m]: fold in token t + m
        h = _mix(h[:n_m] ^ keys[m:] ^ _NGRAM_SEEDS[m])
        first = np.flatnonzero(doc_of[:n_m] == doc_of[m:])
        d = doc_of[first]
        out[doc_start[d] + before[d] + within[first]] = (h[first] % nb).astype(np.int32)
        before += per_order[m]
    return out, counts


def encode_chunk(texts: Sequence[str], encoding: TextEncoding,
                 cache: Optional[dict] = None) -> tuple[np.ndarray, ...]:
    """Encode a chunk of texts: (n-gram ids, n-gram counts, char codes, char counts)."""
    keys, lengths = _token_keys(texts, _TokenHashes() if cache is None else cache)
    ids, counts = _ngram_ids(keys, lengths, encoding.buckets, encoding.ngrams)
    codes, char_counts = encode_chars(texts, encoding.max_chars)
    return ids, counts, codes, char_counts


def encode_chars(texts: Sequence[str], max_chars: int) -> tuple[np.ndarray, np.ndarray]:
    """Character codes of the first ``max_chars`` characters of each (lower-cased) text.

    Returns (codes uint8, lengths int64), the codes concatenated.
    """
    cut = [t[:max_chars].lower()[:max_chars] for t in texts]
    lengths = np.fromiter(map(len, cut), dtype=np.int64, count=len(cut))
    points = np.frombuffer("".join(cut).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    codes = np.where(points < 128, _CHAR_TABLE[np.minimum(points, 127)], UNKNOWN).astype(np.uint8)
    return codes, lengths


# ----------------------------------------------------------------------------- the cache

_ARRAYS = {  # name: dtype
    "label_codes": np.int32, "lines": np.int64, "ngram_offsets": np.int64, "ngrams": np.int32,
    "char_offsets": np.int64, "chars": np.uint8,
}


def default_cache_dir(source: Path) -> Path:
    env = os.environ.get("SVP_FAST_CACHE")
    if env:
        return Path(env).expanduser()
    beside = source.parent / ".svp_fast_cache"
    if (beside.is_dir() and os.access(beside, os.W_OK)) or (
            not beside.exists() and os.access(source.parent, os.W_OK)):
        return beside
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "svp_fast" / "text"


def _fingerprint(path: Path, layout: TextLayout, encoding: TextEncoding) -> tuple[str, dict]:
    st = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(1 << 16))
        if st.st_size > 1 << 17:
            f.seek(-(1 << 16), os.SEEK_END)
        digest.update(f.read(1 << 16))
    source = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
              "ends_sha256": digest.hexdigest()}
    material = json.dumps({"version": CACHE_VERSION, "source": source, "layout": asdict(layout),
                           "encoding": asdict(encoding)}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:20], source


class _Appender:
    """A growing raw array file."""

    def __init__(self, path: Path, dtype):
        self.f = open(path, "wb")
        self.dtype = np.dtype(dtype)
        self.count = 0

    def write(self, values: np.ndarray) -> None:
        arr = np.ascontiguousarray(values, dtype=self.dtype)
        self.f.write(arr.tobytes())
        self.count += arr.size


class TextStore:
    """The cached arrays of one text file, memory-mapped (read-only).

    ``label_codes`` index ``label_names`` (the labels as written, in order of
    first appearance); ``lines`` is the line each record starts on.
    """

    def __init__(self, folder: PathLike):
        self.folder = Path(folder)
        with open(self.folder / "meta.json") as f:
            self.meta = json.load(f)
        self.label_names: list[str] = list(self.meta["label_names"])
        self.encoding = TextEncoding(**self.meta["encoding"])
        self.layout = TextLayout(**{**self.meta["layout"],
                                    "text_field": tuple(self.meta["layout"]["text_field"])})
        sizes = self.meta["sizes"]
        arrays = {}
        for name, dtype in _ARRAYS.items():
            file = self.folder / f"{name}.bin"
            n = int(sizes[name])
            if file.stat().st_size != n * np.dtype(dtype).itemsize:
                raise ValueError(f"text cache {str(file)!r} is truncated")
            arrays[name] = (np.memmap(file, dtype=dtype, mode="r", shape=(n,)) if n
                            else np.zeros(0, dtype=dtype))
        self.label_codes = np.array(arrays["label_codes"])  # small; kept in memory
        self.lines = arrays["lines"]
        self.ngram_offsets = arrays["ngram_offsets"]
        self.ngrams = arrays["ngrams"]
        self.char_offsets = arrays["char_offsets"]
        self.chars = arrays["chars"]
        self.rows = int(self.meta["rows"])
        if not (self.label_codes.size == self.lines.size == self.rows
                and self.ngram_offsets.size == self.char_offsets.size == self.rows + 1):
            raise ValueError(f"text cache {str(self.folder)!r} is inconsistent")

    def __reduce__(self):
        # reopen the memory maps in another process instead of pickling their data
        return (TextStore, (str(self.folder),))

    @property
    def source(self) -> str:
        return self.meta["source"]["path"]

    def ngram_batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64, offsets int64) of ``rows`` for an EmbeddingBag."""
        starts = np.asarray(self.ngram_offsets[rows])
        ends = np.asarray(self.ngram_offsets[rows + 1])
        lengths = ends - starts
        offsets = np.zeros(rows.size, dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        ids = np.empty(int(lengths.sum()), dtype=np.int64)
        src = self.ngrams
        for k in range(rows.size):
            ids[offsets[k]:offsets[k] + lengths[k]] = src[starts[k]:ends[k]]
        return ids, offsets

    def char_batch(self, rows: np.ndarray, length: int) -> np.ndarray:
        """(B, length) uint8 character codes of ``rows``, zero-padded."""
        starts = np.asarray(self.char_offsets[rows])
        ends = np.minimum(np.asarray(self.char_offsets[rows + 1]), starts + length)
        out = np.zeros((rows.size, length), dtype=np.uint8)
        src = self.chars
        for k in range(rows.size):
            out[k, :ends[k] - starts[k]] = src[starts[k]:ends[k]]
        return out


def _build(path: Path, folder: Path, layout: TextLayout, encoding: TextEncoding, source: dict,
           progress: Optional[bool]) -> None:
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out = {name: _Appender(folder / f"{name}.bin", dtype) for name, dtype in _ARRAYS.items()}
    names: dict[str, int] = {}
    cache = _TokenHashes()
    ends = {"ngram_offsets": 0, "char_offsets": 0}
    out["ngram_offsets"].write(np.zeros(1))
    out["char_offsets"].write(np.zeros(1))
    compressed = path.suffix.lower() in (".gz", ".bz2", ".xz")
    bar = tqdm(total=None if compressed else source["size"], unit="B", unit_scale=True,
               desc=f"encoding {path.name}", disable=(None if progress is None else not progress),
               leave=False, dynamic_ncols=True)

    def flush(lines_: list, labels_: list, texts_: list) -> None:
        out["lines"].write(np.array(lines_, dtype=np.int64))
        out["label_codes"].write(np.array(labels_, dtype=np.int32))
        ids, counts, codes, lengths = encode_chunk(texts_, encoding, cache)
        out["ngrams"].write(ids)
        out["ngram_offsets"].write(ends["ngram_offsets"] + np.cumsum(counts))
        ends["ngram_offsets"] += int(counts.sum())
        out["chars"].write(codes)
        out["char_offsets"].write(ends["char_offsets"] + np.cumsum(lengths))
        ends["char_offsets"] += int(lengths.sum())
        if len(cache) > _TOKEN_CACHE_LIMIT:
            cache.clear()

    try:
        with _open_binary(path) as f:
            lines = _Lines(f, path, layout.encoding_errors)
            chunk_lines, chunk_labels, chunk_texts = [], [], []
            seen = 0
            try:
                for line, label, text in _READERS[layout.format](lines, layout):
                    code = names.get(label)
                    if code is None:
                        code = names[label] = len(names)
                    chunk_lines.append(line)
                    chunk_labels.append(code)
                    chunk_texts.append(text)
                    if len(chunk_texts) >= CHUNK_ROWS:
                        flush(chunk_lines, chunk_labels, chunk_texts)
                        chunk_lines, chunk_labels, chunk_texts = [], [], []
                        bar.update(lines.bytes - seen)
                        seen = lines.bytes
            except (OSError, EOFError, lzma.LZMAError) as e:
                if isinstance(e, FileNotFoundError):
                    raise
                raise ValueError(f"cannot read {str(path)!r} (line {lines.number + 1}): {e}") from None
            if chunk_texts:
                flush(chunk_lines, chunk_labels, chunk_texts)
            bar.update(lines.bytes - seen)
    finally:
        bar.close()
        for a in out.values():
            a.f.close()
    meta = {"version": CACHE_VERSION, "source": source, "layout": asdict(layout),
            "encoding": asdict(encoding), "rows": out["lines"].count,
            "label_names": list(names), "sizes": {k: a.count for k, a in out.items()},
            "seconds": time.perf_counter() - t0}
    with open(folder / "meta.json", "w") as f:
        json.dump(meta, f, indent=1)


def open_store(path: PathLike, layout: TextLayout, encoding: TextEncoding, *,
               cache_dir: Optional[PathLike] = None, progress: Optional[bool] = None) -> TextStore:
    """The cached arrays of ``path``, encoding the file first if no valid cache exists."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"text file {str(path)!r} does not exist")
    if not path.is_file():
        raise IsADirectoryError(f"text path {str(path)!r} is not a file")
    key, source = _fingerprint(path, layout, encoding)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(path)
    folder = root / f"{path.name}-{key}"
    if (folder / "meta.json").is_file():
        try:
            return TextStore(folder)
        except (ValueError, OSError, KeyError, TypeError, json.JSONDecodeError):
            shutil.rmtree(folder, ignore_errors=True)  # damaged: build it again
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder.name}.", suffix=".tmp"))
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp folders are private (0700)
    except OSError as e:
        raise PermissionError(f"cannot write the text cache in {str(root)!r}: {e}; pass "
                              "cache_dir (--cache-dir) or set SVP_FAST_CACHE") from None
    try:
        _build(path, tmp, layout, encoding, source, progress)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "meta.json").is_file():  # not another process's finished copy
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _remove_stale(root, source)
    return TextStore(folder)


def _remove_stale(root: Path, source: dict) -> None:
    """Remove the cache entries of older versions of the same file (entries of
    the current version with other options stay)."""
    prefix = Path(source["path"]).name + "-"
    for entry in root.iterdir():
        if not entry.name.startswith(prefix) or not entry.is_dir():
            continue
        try:
            with open(entry / "meta.json") as f:
                theirs = json.load(f)["source"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if theirs.get("path") == source["path"] and theirs != source:
            shutil.rmtree(entry, ignore_errors=True)


# ----------------------------------------------------------------------------- datasets

def _sorted_names(names: Sequence[str]) -> list[str]:
    """Class names in class order: numerically when all are integers, else as strings."""
    try:
        return sorted(names, key=lambda s: (int(s), s))
    except ValueError:
        return sorted(names)


class TextDataset(Dataset):
    """Rows of a :class:`TextStore` with their classes (see the module docstring).

    Args:
        store: the encoded file.
        rows: the store's rows in this dataset (default all), e.g. a split.
        classes: class names in class order (``text-csv``/``jsonl``); None for
            the Amazon/Yelp layout, whose labels are class numbers from 1.
        num_classes: default: from ``classes``, or the largest class number.
        max_chars: length of the character input (at most the store's).
    """

    def __init__(self, store: TextStore, rows: Optional[np.ndarray] = None, *,
                 classes: Optional[Sequence[str]] = None, num_classes: Optional[int] = None,
                 max_chars: Optional[int] = None, name: Optional[str] = None):
        self.store = store
        self._rows = None if rows is None else as_indices(rows, store.rows, "rows")
        codes = store.label_codes if self._rows is None else store.label_codes[self._rows]
        if classes is None:
            of_code = np.array([int(n) - 1 for n in store.label_names], dtype=np.int64)
            top = int(of_code.max()) + 1 if of_code.size else 0
            self.classes = None
            n = top if num_classes is None else int(num_classes)
            if top > n:
                raise ValueError(f"{store.source} holds class number {top} but num_classes is {n}")
        else:
            self.classes = list(classes)
            index = {c: i for i, c in enumerate(self.classes)}
            unknown = [c for c in store.label_names if c not in index]
            if unknown:
                code = store.label_names.index(unknown[0])
                line = int(store.lines[int(np.flatnonzero(store.label_codes == code)[0])])
                raise TextFormatError(store.source, line, f"label {unknown[0]!r} is not one of "
                                      f"the {len(self.classes)} classes of the training data "
                                      f"{self.classes[:10]}")
            of_code = np.array([index[c] for c in store.label_names], dtype=np.int64)
            n = len(self.classes)
        self._labels = of_code[codes] if codes.size else np.zeros(0, dtype=np.int64)
        self._labels.flags.writeable = False
        self._num_classes = n
        self.max_chars = store.encoding.max_chars if max_chars is None else int(max_chars)
        if not 1 <= self.max_chars <= store.encoding.max_chars:
            raise ValueError(f"max_chars must be in [1, {store.encoding.max_chars}] (what the "
                             f"cache holds), got {max_chars!r}")
        self.name = name or Path(store.source).name
        enc = store.encoding
        self._spec = DataSpec("text", None, n, {
            "inputs": INPUTS, "buckets": enc.buckets, "ngrams": enc.ngrams,
            "alphabet_size": ALPHABET_SIZE, "max_chars": self.max_chars})

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def spec(self) -> DataSpec:
        return self._spec

    @property
    def rows(self) -> np.ndarray:
        """The store's row of each example."""
        return np.arange(self.store.rows) if self._rows is None else self._rows

    @property
    def lines(self) -> np.ndarray:
        """The line of the source file each example starts on."""
        return np.asarray(self.store.lines[self.rows])

    def batch(self, indices: np.ndarray, *, augment: bool = False,
              generator: Optional[torch.Generator] = None) -> tuple:
        idx = as_indices(indices, len(self))
        rows = idx if self._rows is None else self._rows[idx]
        ids, offsets = self.store.ngram_batch(rows)
        chars = self.store.char_batch(rows, self.max_chars)
        return torch.from_numpy(ids), torch.from_numpy(offsets), torch.from_numpy(chars)

    def describe(self) -> dict:
        d = super().describe()
        d.update({"source": self.store.source, "format": self.store.layout.format,
                  "cache": str(self.store.folder), "encoding": asdict(self.store.encoding),
                  "classes": self.classes})
        return d


def _split_file(folder: Path, fmt: str, delimiter: str, part: str) -> Optional[Path]:
    ext = ".tsv" if fmt == "text-csv" and delimiter == "\t" else EXTENSIONS[fmt]
    for suffix in ("", ".gz", ".bz2", ".xz"):
        p = folder / f"{part}{ext}{suffix}"
        if p.is_file():
            return p
    return None


def load_text(root: PathLike, *, format: str = "amazon-csv",
              text_field: Union[str, Sequence[str], None] = None, label_field: str = "label",
              delimiter: str = ",", test_path: Optional[PathLike] = None,
              test_fraction: float = 0.1, seed: int = 0, buckets: int = DEFAULT_BUCKETS,
              ngrams: int = 2, max_chars: int = DEFAULT_MAX_CHARS,
              cache_dir: Optional[PathLike] = None, encoding_errors: str = "strict",
              progress: Optional[bool] = None, augmentation: Optional[str] = None) -> Splits:
    """Open a text dataset (see the module docstring) as training and test parts.

    Args:
        root: a file, or a folder with ``train.<ext>`` and optionally ``test.<ext>``.
        format: "amazon-csv", "text-csv" or "jsonl".
        text_field: ``text-csv``/``jsonl``: the text field(s), joined with a
            space (a name, a comma-separated string or a sequence; default "text").
        label_field: ``text-csv``/``jsonl``: the class field.
        delimiter: ``text-csv`` only.
        test_path: a test file (default: ``test.<ext>`` of a folder).
        test_fraction: without a test file, the share of each class held out
            (seeded by ``seed``); 0 keeps everything for training (no test part).
        buckets, ngrams: hashing of word n-grams (the fastText input).
        max_chars: characters kept per text (the char-CNN input).
        cache_dir: where the encoded arrays go (see the module docstring).
        encoding_errors: "strict" (undecodable bytes are an error naming the
            line), "replace" or "ignore".
        progress: a progress bar while encoding (None: when writing to a terminal).
        augmentation: text datasets have none ("none" or None).
    """
    if augmentation not in (None, "none"):
        raise ValueError(f"text datasets have no augmentation; augmentation must be 'none', "
                         f"got {augmentation!r}")
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(map(repr, FORMATS))}, got {format!r}")
    if text_field is None:
        fields: tuple = ("text",)
    elif isinstance(text_field, str):
        fields = tuple(f.strip() for f in text_field.split(","))
    else:
        fields = tuple(text_field)
    if format == "amazon-csv" and (text_field is not None or label_field != "label"
                                   or delimiter != ","):
        raise ValueError("format 'amazon-csv' has fixed columns (class number, then the text "
                         "fields) and takes no text_field, label_field or delimiter; use "
                         "format 'text-csv' for a CSV with a header")
    layout = TextLayout(format, fields, label_field, delimiter, encoding_errors)
    encoding = TextEncoding(buckets, ngrams, max_chars)
    frac = float(test_fraction)
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"text dataset {str(root)!r} does not exist; expected a "
                                f"{format} file or a folder with train{EXTENSIONS[format]}")
    test_file = Path(test_path).expanduser() if test_path is not None else None
    if root.is_dir():
        train_file = _split_file(root, format, delimiter, "train")
        if train_file is None:
            raise FileNotFoundError(f"text folder {str(root)!r} has no train"
                                    f"{EXTENSIONS[format]} (expected train and test files of "
                                    f"format {format!r})")
        if test_file is None:
            test_file = _split_file(root, format, delimiter, "test")
        name = root.name
    else:
        train_file, name = root, root.name.split(".")[0] or root.name
    opts = dict(cache_dir=cache_dir, progress=progress)
    store = open_store(train_file, layout, encoding, **opts)
    test_store = open_store(test_file, layout, encoding, **opts) if test_file is not None else None
    if store.rows == 0:
        raise ValueError(f"{str(train_file)!r} holds no records")
    if format == "amazon-csv":
        classes = None
        top = max(int(n) for s in (store, test_store) if s is not None for n in s.label_names)
        num_classes = top
    else:
        classes, num_classes = _sorted_names(store.label_names), None
    make = dict(classes=classes, num_classes=num_classes)
    if test_store is not None:
        return Splits(TextDataset(store, name=f"{name}/train", **make),
                      TextDataset(test_store, name=f"{name}/test", **make))
    if frac == 0.0:
        return Splits(TextDataset(store, name=name, **make), None)
    from sklearn.model_selection import train_test_split

    full = TextDataset(store, **make)
    counts = np.bincount(full.labels, minlength=full.num_classes)
    stratify = full.labels if counts[counts > 0].min() >= 2 else None
    n_test = max(1, int(round(frac * store.rows)))
    if n_test >= store.rows:
        raise ValueError(f"{str(train_file)!r} has {store.rows} records: too few to hold out "
                         f"test_fraction={frac}")
    if stratify is not None and n_test < np.count_nonzero(counts):
        stratify = None  # fewer test rows than classes
    tr, te = train_test_split(np.arange(store.rows), test_size=n_test, random_state=seed,
                              stratify=stratify)
    return Splits(TextDataset(store, np.sort(tr), name=f"{name}/train", **make),
                  TextDataset(store, np.sort(te), name=f"{name}/test", **make))


def text_loader(format: str):
    """The :data:`svp_fast.data.DATASETS` entry of ``format``."""
    def load(root=None, **options):
        if root is None:
            raise ValueError(f"dataset {format!r} needs a root: a {format} file or a folder "
                             f"with train{EXTENSIONS[format]} and test{EXTENSIONS[format]}")
        return load_text(root, format=format, **options)
    load.__doc__ = f"Text in the {format!r} format; see :func:`svp_fast.data.text.load_text`."
    return load
