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

import math
from typing import Callable, Sequence

import torch
from torch import nn

from ..data.base import DataSpec
# the interface and the registry live below this file (and text_models.py);
# named here too, where they were first defined
from .classifier import Classifier, ModuleClassifier
from .registry import MODELS, create_model, model_builder, register_model


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

BUILTIN_MODELS: dict[str, Callable[..., Classifier]] = {
    "preact20": _preact(20, False),
    "preact56": _preact(56, False),
    "preact110": _preact(110, False),
    "preact164": _preact(164, True),
    "cnn_small": _cnn("cnn_small", channels=(16, 32), convs_per_stage=1, hidden=64),
    "cnn_large": _cnn("cnn_large", channels=(32, 64), convs_per_stage=2, hidden=256),
    "mlp_small": _mlp("mlp_small", hidden=(32,)),
    "mlp_large": _mlp("mlp_large", hidden=(256, 128)),
}

MODELS.update(BUILTIN_MODELS)

__all__: Sequence[str] = ["BUILTIN_MODELS", "MLP", "MODELS", "Classifier", "ModuleClassifier",
                          "PreActBlock", "PreActBottleneck", "PreActResNet", "SmallCNN",
                          "create_model", "model_builder", "register_model"]
