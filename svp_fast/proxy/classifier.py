"""The one model interface every proxy and target follows (:class:`Classifier`),
and :class:`ModuleClassifier` to bring a module of your own under it.

* ``model(*inputs) -> logits`` of shape (B, num_classes), where ``inputs`` is
  the tuple a dataset's ``batch()`` returns.
* ``model.features(*inputs) -> embeddings`` (B, ``feature_dim``): the input
  of the last linear layer ``model.head``, so that inference gets both from
  one pass.

Below the model files (``models.py``, ``text_models.py``) and the registry
(``registry.py``), which all import it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Classifier", "ModuleClassifier"]


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
