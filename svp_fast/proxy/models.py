"""Models: one interface for proxies and targets of every modality.

The model interface (:class:`Classifier`, an ``nn.Module``):

* ``model(*inputs) -> logits`` of shape (B, num_classes), where ``inputs`` is
  the tuple a dataset's ``batch()`` returns (``(images,)`` for images; a text
  model may take ``(token_ids, offsets)``).
* ``model.features(*inputs) -> embeddings`` (B, ``feature_dim``): the
  penultimate features, i.e. the input of the last linear layer ``model.head``.
  ``model(*inputs) == model.head(model.features(*inputs))``, so inference gets
  both from one pass.
* ``model.feature_dim``, ``model.num_classes``.

Subclasses implement ``features`` and call ``super().__init__(feature_dim,
num_classes)``. Models are built by name with :func:`create_model` from a
dataset's :class:`~svp_fast.data.DataSpec`; :func:`register_model` adds a name
(e.g. a later text model reads ``spec.extra["vocab_size"]``).

Built in:

* ``preact20``, ``preact56``, ``preact110``: pre-activation ResNets with basic
  blocks (depth 6n+2, widths 16/32/64, 64 features), and ``preact164`` with
  bottleneck blocks (depth 9n+2, 256 features): the paper's CIFAR proxies and
  target (ResNet-20 proxy, ResNet-164 target), for 32x32 images (any size works:
  the last stage is pooled globally).
* ``cnn_small`` (proxy) and ``cnn_large`` (target): plain CNNs for 28x28
  images such as Fashion-MNIST (any image size with sides >= 4 works).
* ``mlp_small`` (proxy) and ``mlp_large`` (target): MLPs on flattened inputs,
  for small inputs such as the 8x8 digits or feature vectors.
* ``fasttext`` (proxy), ``charcnn_small``, ``vdcnn9``, ``vdcnn17``,
  ``vdcnn29`` (targets): text models, see :mod:`svp_fast.proxy.text_models`.

Models of your own: subclass :class:`Classifier`, or wrap a module that
returns features in :class:`ModuleClassifier`; register a builder with
:func:`register_model`, or name it ``"package.module:builder"`` wherever a
model name is asked for (``--proxy``/``--target`` too).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from ..data.base import DataSpec


class Classifier(nn.Module):
    """Base class: ``forward(*inputs) = head(features(*inputs))``."""

    def __init__(self, feature_dim: int, num_classes: int):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.feature_dim = int(feature_dim)
        self.num_classes = int(num_classes)
        self.head = nn.Linear(self.feature_dim, self.num_classes)

    def features(self, *inputs: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(*inputs))

    def parameter_groups(self) -> list[dict]:
        """How the training loop optimises this model (default: SGD on every parameter).

        A list of dicts with ``params`` and optionally ``optimizer`` ("sgd" or
        "adagrad"), ``weight_decay``, ``momentum`` and ``nesterov`` (SGD only),
        overriding the training config's, and ``lr_scale``, a factor on the
        schedule's learning rate. Every trainable parameter must be in exactly
        one group. fastText uses Adagrad on its sparse embedding table (see
        :mod:`svp_fast.proxy.text_models` and
        :func:`svp_fast.proxy.training.make_optimizers`).
        """
        return [{"params": list(self.parameters())}]


class ModuleClassifier(Classifier):
    """A :class:`Classifier` from any module that maps the inputs to features.

    ``body(*inputs)`` must return (B, ``feature_dim``) features; a linear head
    to ``num_classes`` is added. The quickest way to bring your own torch
    model (register a builder for it with :func:`register_model`)::

        def build(spec, **options):
            body = MyTextEncoder(spec.extra["alphabet_size"], out_dim=128)
            return ModuleClassifier(body, 128, spec.num_classes)

        register_model("my_encoder", build)
    """

    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int):
        if not isinstance(body, nn.Module):
            raise TypeError(f"body must be a torch.nn.Module, got {type(body).__name__}")
        super().__init__(feature_dim, num_classes)
        self.body = body

    def features(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = self.body(*inputs)
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != self.feature_dim:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the wrapped module must return (batch, {self.feature_dim}) "
                             f"features, got {got}")
        return out


def _image_shape(spec: DataSpec, model: str, min_side: int = 1) -> tuple[int, int, int]:
    shape = spec.input_shape
    if spec.kind != "image" or shape is None or len(shape) != 3:
        raise ValueError(f"model {model!r} needs images (C, H, W); the dataset gives "
                         f"{spec.kind} inputs of shape {shape}")
    if min(shape[1:]) < min_side:
        raise ValueError(f"model {model!r} needs images of at least {min_side}x{min_side}, "
                         f"got {shape[1]}x{shape[2]}")
    return tuple(int(s) for s in shape)


# ----------------------------------------------------------------------------- pre-activation ResNets

class PreActBlock(nn.Module):
    """Two 3x3 convolutions, BN-ReLU before each (He et al., identity mappings)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x):
        out = torch.relu(self.bn1(x))
        # the projection shortcut sees the pre-activated input, as in the paper's code
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + shortcut


class PreActBottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), BN-ReLU before each."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        out_planes = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)

    def forward(self, x):
        out = torch.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        out = self.conv3(torch.relu(self.bn3(out)))
        return out + shortcut


class PreActResNet(Classifier):
    """Pre-activation ResNet for small images: a 3x3 stem, three stages
    (widths ``16, 32, 64`` times ``width``, strides 1, 2, 2) of
    ``blocks_per_stage`` blocks, BN-ReLU, global average pooling, linear head.
    """

    def __init__(self, in_channels: int, num_classes: int, blocks_per_stage: int,
                 bottleneck: bool = False, width: int = 1):
        block = PreActBottleneck if bottleneck else PreActBlock
        widths = [16 * width, 32 * width, 64 * width]
        super().__init__(widths[-1] * block.expansion, num_classes)
        self.depth = blocks_per_stage * (9 if bottleneck else 6) + 2
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        layers, in_planes = [], widths[0]
        for stage, planes in enumerate(widths):
            for i in range(blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(block(in_planes, planes, stride))
                in_planes = planes * block.expansion
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x):
        out = torch.relu(self.bn(self.blocks(self.stem(x))))
        return out.mean(dim=(2, 3))


def _preact(depth: int, bottleneck: bool) -> Callable[..., Classifier]:
    per_layer = 9 if bottleneck else 6
    n = (depth - 2) // per_layer

    def build(spec: DataSpec, **options) -> Classifier:
        c, _, _ = _image_shape(spec, f"preact{depth}")
        return PreActResNet(c, spec.num_classes, n, bottleneck=bottleneck, **options)

    build.__doc__ = (f"Pre-activation ResNet-{depth} ({'bottleneck' if bottleneck else 'basic'} "
                     f"blocks, {n} per stage).")
    return build


# ----------------------------------------------------------------------------- small CNNs

class SmallCNN(Classifier):
    """Conv stages (each: ``convs_per_stage`` 3x3 conv-BN-ReLU, then 2x2 max
    pool), flattened, one hidden linear layer with ReLU (the features), head.

    Args:
        in_channels, image_size: the input's channels and (H, W).
        channels: output channels of each stage.
        hidden: feature dimension.
    """

    def __init__(self, in_channels: int, image_size: tuple[int, int], num_classes: int,
                 channels: Sequence[int] = (16, 32), convs_per_stage: int = 1, hidden: int = 64):
        super().__init__(hidden, num_classes)
        layers, c = [], in_channels
        h, w = image_size
        for out in channels:
            for _ in range(convs_per_stage):
                layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                           nn.ReLU(inplace=True)]
                c = out
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(f"images of {image_size[0]}x{image_size[1]} are too small for "
                             f"{len(channels)} pooling stages")
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(c * h * w, hidden)

    def features(self, x):
        return torch.relu(self.fc(self.convs(x).flatten(1)))


def _cnn(name: str, **defaults) -> Callable[..., Classifier]:
    stages = len(defaults.get("channels", (16, 32)))

    def build(spec: DataSpec, **options) -> Classifier:
        c, h, w = _image_shape(spec, name, min_side=2 ** stages)
        return SmallCNN(c, (h, w), spec.num_classes, **{**defaults, **options})

    return build


# ----------------------------------------------------------------------------- MLP

class MLP(Classifier):
    """Flatten, then ``Linear-ReLU`` per entry of ``hidden``; the last hidden
    activation is the embedding."""

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (64,)):
        hidden = list(hidden)
        if not hidden:
            raise ValueError("hidden must name at least one layer size")
        super().__init__(hidden[-1], num_classes)
        layers, d = [], in_features
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU(inplace=True)]
            d = h
        self.body = nn.Sequential(*layers)

    def features(self, x):
        return self.body(x.flatten(1))


def _mlp(name: str, **defaults) -> Callable[..., Classifier]:
    def build(spec: DataSpec, **options) -> Classifier:
        if spec.input_shape is None:
            raise ValueError(f"model {name!r} needs fixed-size inputs; the dataset gives "
                             f"{spec.kind} inputs of varying shape")
        return MLP(math.prod(spec.input_shape), spec.num_classes, **{**defaults, **options})

    return build


# ----------------------------------------------------------------------------- registry

MODELS: dict[str, Callable[..., Classifier]] = {
    "preact20": _preact(20, False),
    "preact56": _preact(56, False),
    "preact110": _preact(110, False),
    "preact164": _preact(164, True),
    "cnn_small": _cnn("cnn_small", channels=(16, 32), convs_per_stage=1, hidden=64),
    "cnn_large": _cnn("cnn_large", channels=(32, 64), convs_per_stage=2, hidden=256),
    "mlp_small": _mlp("mlp_small", hidden=(32,)),
    "mlp_large": _mlp("mlp_large", hidden=(256, 128)),
}


# the text models subclass Classifier above
from .text_models import TEXT_MODELS  # noqa: E402

MODELS.update(TEXT_MODELS)


def model_builder(name: str) -> Callable[..., Classifier]:
    """The builder of model ``name``: a registered name, or ``"package.module:builder"``
    (imported and registered under that name on first use, so that run folders
    and checkpoints of your own models rebuild the same way)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"model must be a non-empty string, got {name!r}")
    if name in MODELS:
        return MODELS[name]
    if ":" not in name:
        raise ValueError(f"model must be one of {', '.join(repr(m) for m in MODELS)}, or "
                         f"'package.module:builder' for a model of your own; got {name!r}")
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ImportError(f"model {name!r}: cannot import module {module_name!r} ({e}); is it "
                          "on PYTHONPATH?") from None
    builder = getattr(module, attr, None)
    if not callable(builder):
        raise ValueError(f"model {name!r}: module {module_name!r} has no callable {attr!r}")
    MODELS[name] = builder
    return builder


def register_model(name: str, builder: Callable[..., Classifier], *, replace: bool = False) -> None:
    """Make ``create_model(name, spec)`` call ``builder(spec, **options)``.

    The builder returns a :class:`Classifier` sized from the spec; it should
    raise ValueError when the spec's inputs do not suit it.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if name in MODELS and not replace:
        raise ValueError(f"model {name!r} is already registered (pass replace=True)")
    MODELS[name] = builder


def create_model(name: str, spec: DataSpec, *, seed: Optional[int] = None, **options) -> Classifier:
    """Build model ``name`` (see :data:`MODELS`) for data described by ``spec``.

    Args:
        spec: the dataset's :class:`~svp_fast.data.DataSpec` (``dataset.spec``).
        seed: seeds the initial weights without touching the global RNG.
        options: passed to the builder (e.g. ``hidden=(128,)`` for MLPs,
            ``channels=(8, 16)`` for CNNs, ``width=2`` for ResNets).
    """
    builder = model_builder(name)
    if not isinstance(spec, DataSpec):
        raise TypeError(f"spec must be a DataSpec (dataset.spec), got {type(spec).__name__}")
    if seed is None:
        model = builder(spec, **options)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = builder(spec, **options)
    if not isinstance(model, Classifier):
        raise TypeError(f"the builder of model {name!r} returned {type(model).__name__}, "
                        "not a Classifier")
    # what save_checkpoint records so that load_checkpoint can rebuild the model
    model._svp_build = {"name": name, "spec": dataclasses.asdict(spec), "options": dict(options)}
    return model
