"""Training loop, schedule, tracker hook, inference without augmentation."""

import numpy as np
import pytest
import torch

from ml_helpers import blobs, one_torch_thread  # noqa: F401  (one_torch_thread: an autouse fixture)
from svp_fast.data import ArrayDataset
from svp_fast.proxy import (TrainConfig, create_model, evaluate, infer, load_checkpoint,
                            parse_schedule, train)


class Recorder:
    """A tracker that remembers every update."""

    def __init__(self):
        self.calls = []

    def update(self, indices, correct):
        self.calls.append((np.array(indices), np.array(correct)))


def params(model):
    return [p.detach().clone() for p in model.parameters()]


# ----------------------------------------------------------------------------- schedule and config

def test_parse_schedule():
    assert parse_schedule("1@0.1,2@0.01") == [(1, 0.1), (2, 0.01)]
    assert parse_schedule(" 3@1e-3 ") == [(3, 0.001)]
    assert parse_schedule([(2, 0.5), (0, 0.1), (1, 0.2)]) == [(2, 0.5), (1, 0.2)]
    assert TrainConfig("1@0.01,90@0.1,45@0.01,45@0.001").epochs == 181


@pytest.mark.parametrize("bad", ["", "1", "1@", "a@0.1", "1@0.1;2@0.2", "0@0.1", "-1@0.1",
                                 "1@-0.1", "1@nan", "1.5@0.1"])
def test_parse_schedule_errors(bad):
    with pytest.raises(ValueError, match="schedule"):
        parse_schedule(bad)


@pytest.mark.parametrize("kwargs,match", [
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"eval_every": -1}, "eval_every must be an integer >= 0"),
    ({"momentum": -0.5}, "momentum must be a finite number"),
    ({"device": "tpu"}, "device must be"),
])
def test_train_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


# ----------------------------------------------------------------------------- training

def test_training_learns_digits_and_follows_the_schedule(digits):
    model = create_model("mlp_large", digits.train.spec, seed=0)
    config = TrainConfig("2@0.1,1@0.01", batch_size=64, eval_every=2, progress=False)
    result = train(model, digits.train, config, eval_dataset=digits.test, seed=0)
    assert [h.lr for h in result.history] == [0.1, 0.1, 0.01]
    # evaluated at epoch 2 (eval_every) and always after the last one
    assert [h.eval_accuracy is not None for h in result.history] == [False, True, True]
    assert result.final_accuracy > 0.85  # chance is 0.1
    assert result.final_accuracy == pytest.approx(evaluate(model, digits.test))
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.examples == 3 * len(digits.train)
    assert result.train_seconds > 0 and result.eval_seconds > 0


def test_same_seed_same_model_other_seed_other_model():
    data = blobs()
    cfg = TrainConfig("2@0.1", batch_size=8, progress=False)
    runs = []
    for seed in (0, 0, 1):
        model = create_model("mlp_small", data.spec, seed=0)
        train(model, data, cfg, seed=seed)
        runs.append(params(model))
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1]))
    assert any(not torch.equal(a, c) for a, c in zip(runs[0], runs[2]))


def test_tracker_sees_each_training_index_once_per_epoch():
    data = blobs(n=50)
    subset = np.array([3, 7, 11, 20, 21, 22, 40, 49, 0])
    rec = Recorder()
    model = create_model("mlp_small", data.spec, seed=0)
    train(model, data, TrainConfig("3@0.1", batch_size=4, progress=False), indices=subset,
          tracker=rec)
    per_epoch = int(np.ceil(subset.size / 4))
    assert len(rec.calls) == 3 * per_epoch
    for e in range(3):
        seen = np.concatenate([c[0] for c in rec.calls[e * per_epoch:(e + 1) * per_epoch]])
        assert sorted(seen) == sorted(subset)  # a shuffled pass over exactly the subset
    assert all(c[1].dtype == bool and c[1].shape == c[0].shape for c in rec.calls)


def test_tracker_correctness_is_the_prediction_before_the_step():
    # with learning rate 0 the model never changes: "correct" must equal its predictions
    data = blobs(n=30)
    model = create_model("mlp_small", data.spec, seed=3)
    rec = Recorder()
    train(model, data, TrainConfig("1@0", batch_size=7, momentum=0, weight_decay=0,
                                   progress=False), tracker=rec)
    out = infer(model, data)
    for idx, correct in rec.calls:
        assert np.array_equal(correct, out.predictions[idx] == data.labels[idx])


def test_checkpoint_written_by_train(tmp_path, digits):
    model = create_model("mlp_small", digits.train.spec, seed=0)
    train(model, digits.train, TrainConfig("1@0.1", progress=False), checkpoint=tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt")
    x, = digits.test.batch(np.arange(5))
    model.eval()
    torch.testing.assert_close(loaded.eval()(x), model(x))
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    assert state["extra"]["config"]["schedule"] == "1@0.1"


def test_training_with_workers_matches_in_process():
    x = np.random.default_rng(0).integers(0, 256, (24, 3, 8, 8), dtype=np.uint8)
    data = ArrayDataset(x, np.arange(24) % 2, augmentation="crop_flip")
    results = []
    for workers in (0, 1):
        model = create_model("mlp_small", data.spec, seed=0)
        train(model, data, TrainConfig("1@0.1", batch_size=8, num_workers=workers,
                                       progress=False), seed=4)
        results.append(params(model))
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_training_errors(digits):
    model = create_model("mlp_small", digits.train.spec)
    with pytest.raises(ValueError, match="at least one example"):
        train(model, digits.train, TrainConfig(progress=False), indices=np.array([], np.int64))
    with pytest.raises(ValueError, match=r"indices must be in \[0, 1347\)"):
        train(model, digits.train, TrainConfig(progress=False), indices=[5000])
    small = create_model("mlp_small", blobs(classes=3).spec)
    with pytest.raises(ValueError, match="3 outputs but the dataset has 10 classes"):
        train(small, digits.train, TrainConfig(progress=False))
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        train(model, digits.train, {"schedule": "1@0.1"})
    with pytest.raises(TypeError, match="model must be a svp_fast Classifier"):
        train(torch.nn.Linear(2, 2), digits.train)


def test_progress_bars_and_epoch_log(capsys, digits):
    model = create_model("mlp_small", digits.train.spec)
    train(model, digits.train, TrainConfig("1@0.1", progress=True), eval_dataset=digits.test,
          desc="proxy")
    err = capsys.readouterr()
    assert "proxy 1/1" in err.err  # the tqdm bar
    assert "proxy epoch 1/1: lr 0.1" in err.out + err.err and "eval acc" in err.out + err.err


# ----------------------------------------------------------------------------- inference

def test_infer_is_deterministic_without_augmentation_and_ordered():
    x = np.random.default_rng(1).integers(0, 256, (10, 3, 32, 32), dtype=np.uint8)
    data = ArrayDataset(x, np.arange(10) % 4, augmentation="crop_flip")
    model = create_model("preact20", data.spec, seed=0)
    model.train()
    idx = np.array([9, 2, 5])
    a = infer(model, data, indices=idx, batch_size=2)
    b = infer(model, data, indices=idx, batch_size=3)
    assert model.training  # mode restored
    np.testing.assert_array_equal(a.indices, idx)
    np.testing.assert_allclose(a.features, b.features, rtol=1e-5, atol=1e-6)
    model.eval()
    inputs, = data.batch(idx)  # un-augmented
    with torch.no_grad():
        np.testing.assert_allclose(a.logits, model(inputs).numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(a.features, model.features(inputs).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a.probabilities.sum(1), 1, rtol=1e-6)
    assert a.features.shape == (3, 64) and a.logits.dtype == np.float32
    # augmented views differ: inference must not use them
    aug, = data.batch(idx, augment=True, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(aug, inputs)


def test_infer_without_features():
    data = blobs()
    out = infer(create_model("mlp_small", data.spec), data, features=False)
    assert out.features is None and out.logits.shape == (len(data), 3)
