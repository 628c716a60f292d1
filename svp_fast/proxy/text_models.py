"""Text models: a fastText-style proxy and VDCNN-style character-level CNN targets.

Both follow the one model interface (:class:`~svp_fast.proxy.classifier.Classifier`):
``model(*inputs) -> logits`` and ``model.features(*inputs)`` = the input of
``model.head``. They take the whole tuple a text dataset's ``batch()`` returns
and pick their inputs by name from ``spec.extra["inputs"]`` (see
:mod:`svp_fast.data.text`): fastText reads ``ngrams``/``ngram_offsets``, the
CNNs read ``chars``. Any dataset that names these inputs works with them.

Registered names:

* ``fasttext``: bag of hashed word uni- and bigrams (Joulin et al., 2017):
  an :class:`~torch.nn.EmbeddingBag` (``dim`` = 10) averaged over the
  document, then the linear head. The averaged vector is the embedding
  k-center uses; the head's softmax feeds uncertainty. It trains with
  Adagrad and sparse gradients (no weight decay): an update touches only the
  rows a minibatch uses, so an epoch costs time in proportion to the text,
  not to the table's million rows; and unlike SGD on minibatches, Adagrad's
  per-row step sizes keep the most frequent n-grams (in every document of
  a batch) from overshooting while rare ones still learn. Schedules are
  Adagrad learning rates (e.g. ``5@0.1``).
* ``vdcnn9``, ``vdcnn17``, ``vdcnn29``: very deep CNNs over characters
  (Conneau et al., 2017): a 16-d character embedding, a 3-wide temporal
  convolution with 64 channels, four stages of convolutional blocks (two
  3-wide convolutions with batch norm and ReLU each; 64, 128, 256, 512
  channels) with max-pool halving between stages, k-max pooling (k = 8),
  then two 2048-unit fully connected layers with ReLU: their output is the
  feature vector (2048-d), the head's input. Depth 9, 17, 29 counts the
  convolutions: 1 + 2 x (1+1+1+1), (2+2+2+2), (5+5+2+2) blocks.
* ``charcnn_small``: the depth-9 network at a quarter of the width (16 ... 128
  channels) with 256-unit layers, for CPUs.

A model of your own: subclass :class:`~svp_fast.proxy.classifier.Classifier`
(implement ``features``) or wrap any module that maps the inputs to features
with :class:`~svp_fast.proxy.classifier.ModuleClassifier`, and register a builder
``builder(spec, **options)`` with :func:`~svp_fast.proxy.registry.register_model`
(or name it as ``"package.module:builder"``, e.g. on the command line).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ..data.base import DataSpec
from .classifier import Classifier
from .registry import MODELS

#: VDCNN's convolutional blocks per stage, by depth.
VDCNN_BLOCKS = {9: (1, 1, 1, 1), 17: (2, 2, 2, 2), 29: (5, 5, 2, 2), 49: (8, 8, 5, 3)}


def input_position(spec: DataSpec, needed: str, model: str) -> int:
    """Where input ``needed`` is in the tuple of a dataset described by ``spec``."""
    names = tuple(spec.extra.get("inputs", ())) if spec.kind == "text" else ()
    if needed not in names:
        raise ValueError(f"model {model!r} needs text data with {needed!r} inputs; the dataset "
                         f"gives {spec.kind} inputs {list(names) or spec.input_shape}")
    return names.index(needed)


def _positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


# ----------------------------------------------------------------------------- fastText

class FastText(Classifier):
    """Mean of hashed n-gram embeddings, then a linear classifier.

    Args:
        buckets: rows of the embedding table (the dataset's hash buckets).
        num_classes: outputs.
        dim: embedding size (fastText used 10 for sentiment).
        ids_at, offsets_at: positions of the ids and offsets in the inputs.
    """

    def __init__(self, buckets: int, num_classes: int, *, dim: int = 10, ids_at: int = 0,
                 offsets_at: int = 1):
        super().__init__(_positive(dim, "dim"), num_classes)
        self.embedding = nn.EmbeddingBag(_positive(buckets, "buckets"), dim, mode="mean",
                                         sparse=True)
        self.ids_at, self.offsets_at = ids_at, offsets_at
        # fastText's initialisation: small uniform inputs, zero output layer
        nn.init.uniform_(self.embedding.weight, -1.0 / dim, 1.0 / dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def features(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.embedding(inputs[self.ids_at], inputs[self.offsets_at])

    def parameter_groups(self) -> list[dict]:
        # weight decay would make the table's sparse gradients dense
        return [{"params": list(self.parameters()), "optimizer": "adagrad", "weight_decay": 0.0}]


def _fasttext(spec: DataSpec, **options) -> Classifier:
    ids_at = input_position(spec, "ngrams", "fasttext")
    offsets_at = input_position(spec, "ngram_offsets", "fasttext")
    return FastText(int(spec.extra["buckets"]), spec.num_classes, ids_at=ids_at,
                    offsets_at=offsets_at, **options)


# ----------------------------------------------------------------------------- VDCNN

class ConvBlock(nn.Module):
    """Two 3-wide temporal convolutions, each followed by batch norm and ReLU."""

    def __init__(self, in_channels: int, channels: int, shortcut: bool = False):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm1d(channels),
            nn.ReLU(inplace=True),
            nn.Conv1d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm1d(channels),
            nn.ReLU(inplace=True))
        self.shortcut = None
        if shortcut:
            self.shortcut = (nn.Identity() if in_channels == channels
                             else nn.Conv1d(in_channels, channels, 1, bias=False))

    def forward(self, x):
        out = self.body(x)
        return out + self.shortcut(x) if self.shortcut is not None else out


def kmax_pool(x: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` largest values of each channel of (B, C, L), in their original order."""
    idx = x.topk(k, dim=2).indices.sort(dim=2).values
    return x.gather(2, idx)


class VDCNN(Classifier):
    """Very deep character-level CNN (Conneau et al., 2017); see the module docstring.

    Args:
        alphabet_size: character codes (0 is padding).
        max_chars: input length; at least ``8 * k - 7`` (three halvings must
            leave ``k`` positions).
        num_classes: outputs.
        depth: 9, 17, 29 or 49.
        width: channels of the first stage (64 in the paper; x2 per stage).
        fc: units of the two fully connected layers (2048 in the paper); the
            feature dimension.
        embed_dim: character embedding size (16).
        k: k of the k-max pooling (8).
        shortcut: residual connections around the blocks (off in the paper's
            best shallow models).
        chars_at: position of the character codes in the inputs.
    """

    def __init__(self, alphabet_size: int, max_chars: int, num_classes: int, *, depth: int = 9,
                 width: int = 64, fc: int = 2048, embed_dim: int = 16, k: int = 8,
                 shortcut: bool = False, chars_at: int = 0):
        if depth not in VDCNN_BLOCKS:
            raise ValueError(f"depth must be one of {sorted(VDCNN_BLOCKS)}, got {depth!r}")
        for name, v in (("width", width), ("fc", fc), ("embed_dim", embed_dim), ("k", k),
                        ("alphabet_size", alphabet_size), ("max_chars", max_chars)):
            _positive(v, name)
        if max_chars < 8 * k - 7:
            raise ValueError(f"VDCNN needs texts of at least {8 * k - 7} characters (max_chars) "
                             f"for k-max pooling with k={k} after three halvings, got {max_chars}")
        super().__init__(fc, num_classes)
        self.depth, self.k, self.chars_at = depth, k, chars_at
        self.embed = nn.Embedding(alphabet_size, embed_dim, padding_idx=0)
        self.stem = nn.Conv1d(embed_dim, width, 3, padding=1)
        layers: list[nn.Module] = []
        c = width
        for stage, blocks in enumerate(VDCNN_BLOCKS[depth]):
            out = width * 2 ** stage
            if stage > 0:
                layers.append(nn.MaxPool1d(3, stride=2, padding=1))
            for _ in range(blocks):
                layers.append(ConvBlock(c, out, shortcut))
                c = out
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(c * k, fc), nn.ReLU(inplace=True),
                                nn.Linear(fc, fc), nn.ReLU(inplace=True))
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, *inputs: torch.Tensor) -> torch.Tensor:
        chars = inputs[self.chars_at].long()
        x = self.embed(chars).transpose(1, 2)           # (B, embed_dim, L)
        x = self.convs(self.stem(x))                     # (B, 8 * width, L / 8)
        return self.fc(kmax_pool(x, self.k).flatten(1))  # (B, fc)


def _vdcnn(name: str, **defaults) -> Callable[..., Classifier]:
    def build(spec: DataSpec, **options) -> Classifier:
        chars_at = input_position(spec, "chars", name)
        return VDCNN(int(spec.extra["alphabet_size"]), int(spec.extra["max_chars"]),
                     spec.num_classes, chars_at=chars_at, **{**defaults, **options})

    build.__doc__ = f"VDCNN {defaults}"
    return build


TEXT_MODELS: dict[str, Callable[..., Classifier]] = {
    "fasttext": _fasttext,
    "vdcnn9": _vdcnn("vdcnn9", depth=9),
    "vdcnn17": _vdcnn("vdcnn17", depth=17),
    "vdcnn29": _vdcnn("vdcnn29", depth=29),
    "charcnn_small": _vdcnn("charcnn_small", depth=9, width=16, fc=256),
}

MODELS.update(TEXT_MODELS)

__all__: Sequence[str] = ["ConvBlock", "FastText", "TEXT_MODELS", "VDCNN", "VDCNN_BLOCKS",
                          "input_position", "kmax_pool"]
