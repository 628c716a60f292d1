"""Every model: shapes, penultimate features, depth, seeding, checkpoints, errors."""

import pytest
import torch
from torch import nn

from ml_helpers import one_torch_thread  # noqa: F401  (autouse fixture)
from svp_fast.data import DataSpec
from svp_fast.proxy import (MODELS, Classifier, PreActResNet, create_model, load_checkpoint,
                            register_model, save_checkpoint)

IMG32 = DataSpec("image", (3, 32, 32), 10)
IMG28 = DataSpec("image", (1, 28, 28), 10)
DIGITS = DataSpec("image", (1, 8, 8), 10)
VEC = DataSpec("vector", (20,), 5)

# (model, spec, feature dim)
CASES = [
    ("preact20", IMG32, 64), ("preact56", IMG32, 64), ("preact110", IMG32, 64),
    ("preact164", IMG32, 256), ("cnn_small", IMG28, 64), ("cnn_large", IMG28, 256),
    ("mlp_small", DIGITS, 32), ("mlp_large", VEC, 128),
]


def test_every_registered_model_is_covered():
    from svp_fast.proxy.text_models import TEXT_MODELS  # covered by test_text.py

    assert {c[0] for c in CASES} | set(TEXT_MODELS) == set(MODELS)


@pytest.mark.parametrize("name,spec,dim", CASES, ids=[c[0] for c in CASES])
def test_shapes_and_features_are_the_head_input(name, spec, dim):
    model = create_model(name, spec, seed=0).eval()
    assert isinstance(model, Classifier)
    assert model.feature_dim == dim and model.num_classes == spec.num_classes
    assert model.head.in_features == dim
    x = torch.randn(3, *spec.input_shape)
    with torch.no_grad():
        logits = model(x)
        feats = model.features(x)
    assert logits.shape == (3, spec.num_classes) and feats.shape == (3, dim)
    torch.testing.assert_close(model.head(feats), logits)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name,depth", [("preact20", 20), ("preact56", 56), ("preact110", 110),
                                        ("preact164", 164)])
def test_preact_depth_counts_weighted_layers(name, depth):
    model = create_model(name, IMG32)
    # depth = convolutions on the main path (projection shortcuts excluded) + the head
    convs = [m for n, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and not n.endswith("shortcut")]
    assert len(convs) + 1 == depth == model.depth
    bottleneck = name == "preact164"
    assert model.feature_dim == (256 if bottleneck else 64)


def test_preact_works_on_other_image_sizes():
    model = create_model("preact20", DataSpec("image", (1, 28, 28), 3)).eval()
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 3)


def test_cnns_and_mlps_fit_digits():
    for name in ("cnn_small", "cnn_large", "mlp_small", "mlp_large"):
        model = create_model(name, DIGITS).eval()
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_seed_fixes_weights_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = create_model("cnn_small", IMG28, seed=5)
    assert torch.equal(torch.rand(1), expected_next)  # global stream untouched
    b = create_model("cnn_small", IMG28, seed=5)
    c = create_model("cnn_small", IMG28, seed=6)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_options_reach_the_builder():
    model = create_model("mlp_small", VEC, hidden=(7, 3))
    assert model.feature_dim == 3
    model = create_model("preact20", IMG32, width=2)
    assert model.feature_dim == 128


def test_checkpoint_round_trip(tmp_path):
    model = create_model("cnn_small", IMG28, seed=1, channels=(4, 8), hidden=16).eval()
    with torch.no_grad():
        model.head.bias += 1  # not the initial weights
    path = save_checkpoint(model, tmp_path / "sub" / "m.pt", extra={"note": "x"})
    assert path.is_file() and not list(path.parent.glob(".*tmp"))
    loaded = load_checkpoint(path).eval()
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x))
    assert loaded.feature_dim == 16


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    torch.save({"a": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a svp_fast checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_model_errors():
    with pytest.raises(ValueError, match="model must be one of .*got 'resnet9'"):
        create_model("resnet9", IMG32)
    with pytest.raises(ValueError, match="'cnn_small' needs images .* vector inputs"):
        create_model("cnn_small", VEC)
    with pytest.raises(ValueError, match="at least 4x4"):
        create_model("cnn_large", DataSpec("image", (1, 2, 2), 3))
    with pytest.raises(ValueError, match="'mlp_small' needs fixed-size inputs"):
        create_model("mlp_small", DataSpec("text", None, 3))
    with pytest.raises(TypeError, match="spec must be a DataSpec"):
        create_model("mlp_small", (1, 8, 8))


def test_register_model_for_another_modality():
    class BagOfWords(Classifier):
        def __init__(self, vocab, classes):
            super().__init__(8, classes)
            self.bag = nn.EmbeddingBag(vocab, 8)

        def features(self, tokens, offsets):
            return self.bag(tokens, offsets)

    register_model("test_bag", lambda spec: BagOfWords(spec.extra["vocab_size"], spec.num_classes))
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_model("test_bag", lambda spec: None)
        model = create_model("test_bag", DataSpec("text", None, 4, {"vocab_size": 50}))
        # a tuple of tensors, as a text dataset's batch() would return
        logits = model(torch.tensor([1, 2, 3, 4, 5]), torch.tensor([0, 2]))
        assert logits.shape == (2, 4)
        register_model("test_bad", lambda spec: nn.Linear(2, 2))
        with pytest.raises(TypeError, match="not a Classifier"):
            create_model("test_bad", VEC)
    finally:
        MODELS.pop("test_bag", None)
        MODELS.pop("test_bad", None)


def test_preact_class_direct():
    model = PreActResNet(3, 7, blocks_per_stage=1)
    assert model.depth == 8 and model(torch.randn(2, 3, 16, 16)).shape == (2, 7)
