"""Proxy and target models, their training loop and inference.

Model interface (:class:`Classifier`, see :mod:`svp_fast.proxy.classifier`):
``model(*inputs) -> logits`` and ``model.features(*inputs) -> embeddings``
(the input of the last linear layer ``model.head``), where ``inputs`` is the
tuple a dataset's ``batch()`` returns. Build models by name with
:func:`create_model` (names in :data:`MODELS`; add more with :func:`register_model`;
:mod:`svp_fast.proxy.registry`, below the model files ``models.py`` and ``text_models.py``).

Training and inference (:mod:`svp_fast.proxy.training`): :func:`train` with a
:class:`TrainConfig` (SGD, momentum, weight decay, ``"epochs@rate"`` schedule,
augmentation, per-epoch evaluation, progress bars, checkpoint, forgetting
tracker hook); :func:`infer` (features and logits without augmentation);
:func:`evaluate`; :func:`save_checkpoint` / :func:`load_checkpoint`.
"""

from .classifier import Classifier, ModuleClassifier
# the model files register their built-in models in the registry on import:
# images and vectors first, then text (the order of MODELS)
from .models import MLP, PreActResNet, SmallCNN
from .outputs import ModelOutputs, Selection, model_outputs, select
from .registry import MODELS, create_model, model_builder, register_model
from .text_models import VDCNN, FastText
from .training import (EpochRecord, Inference, TrainConfig, TrainResult, evaluate, infer,
                       iterate_batches, load_checkpoint, parse_schedule, save_checkpoint, train)

__all__ = ["Classifier", "EpochRecord", "FastText", "Inference", "MLP", "MODELS", "ModelOutputs",
           "ModuleClassifier", "Selection", "model_outputs", "select",
           "PreActResNet", "SmallCNN", "TrainConfig", "TrainResult", "VDCNN", "create_model",
           "evaluate", "infer", "iterate_batches", "load_checkpoint", "model_builder",
           "parse_schedule", "register_model", "save_checkpoint", "train"]
