"""From a user's model and data to a selection (svp_fast.proxy.outputs): the
README's section runs as written, model_outputs equals a plain forward pass on
every kind of data (torch Dataset, DataLoader, Hugging Face dataset), and the
model is left as it was."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

import svp_fast
from svp_fast.proxy import ModelOutputs, model_outputs, select

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## From your model and data to a selection"


def readme_section_code() -> str:
    """The code block that opens the README's section (nothing but blank lines
    between the title and the block)."""
    text = (ROOT / "README.md").read_text()
    assert text.count(f"\n{SECTION}\n") == 1, "the section title, exactly once"
    after = text[text.index(f"\n{SECTION}\n") + len(SECTION) + 2:]
    assert after.lstrip("\n").startswith("```python\n"), "the section opens with a code block"
    body = after.lstrip("\n")[len("```python\n"):]
    return body[:body.index("\n```")]


def test_the_readme_section_runs_as_written(tmp_path):
    """CI runs the README's code as written (on the bundled digits), so it cannot rot."""
    code = readme_section_code()
    assert "load_digits" in code and "svp_fast.model_outputs" in code
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)  # run() kills the child on a timeout
    assert res.returncode == 0, res.stderr
    assert re.search(r"^180 of 1797 rows selected$", res.stdout, re.M), res.stdout + res.stderr


def test_the_readme_gpu_example_reads_a_read_only_memmap_without_a_warning(tmp_path):
    """The issue: torch.from_numpy(emb) on the README's np.load(..., mmap_mode="r")
    warned (non-writable array). The README's line, on the CPU (warnings are errors)."""
    text = (ROOT / "README.md").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("picks_gpu = svp_fast.kcenter("))
    tensor_expr = line[len("picks_gpu = svp_fast.kcenter("):].rsplit(", 10_000)", 1)[0]
    assert "from_numpy" not in tensor_expr
    np.save(tmp_path / "f.npy", np.random.default_rng(0).standard_normal((50, 4)).astype("f4"))
    # a fresh process: torch warns about a non-writable array once per process
    on_cpu = tensor_expr.replace('"cuda"', '"cpu"')
    template = ("import numpy as np, torch, svp_fast\n"
                "emb = np.load('f.npy', mmap_mode='r')\n"
                "x = {}\n"
                "assert (svp_fast.kcenter(x, 5).numpy() == svp_fast.kcenter(emb, 5)).all()\n")
    res = subprocess.run([sys.executable, "-W", "error", "-c", template.format(on_cpu)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and not res.stderr, res.stderr
    # and the check can fail: torch.from_numpy on the memmap warns
    res = subprocess.run([sys.executable, "-W", "error", "-c",
                          template.format("torch.from_numpy(emb)")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "not writable" in res.stderr


# ----------------------------------------------------------------------------- model_outputs


def mlp(seed=0, d=8, c=5, dropout=False):
    torch.manual_seed(seed)
    layers = [nn.Linear(d, 16), nn.ReLU()] + ([nn.Dropout(0.5)] if dropout else []) + \
        [nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, c)]
    return nn.Sequential(*layers)


def reference(model, x):
    """Features (input of the last Linear) and logits from a plain forward pass."""
    with torch.no_grad():
        feats = model[:-1](x)
        return feats.numpy(), model[-1](feats).numpy()


@pytest.fixture
def data(rng):
    x = torch.from_numpy(rng.standard_normal((203, 8)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 5, 203))
    return x, y


@pytest.mark.parametrize("batch_size", [1, 7, 256])
def test_outputs_equal_a_plain_forward_pass(data, batch_size):
    x, y = data
    model = mlp()
    feats, logits = reference(model, x)
    out = model_outputs(model, TensorDataset(x, y), batch_size=batch_size)
    assert isinstance(out, ModelOutputs) and out.device == "cpu"
    assert out.features.dtype == out.logits.dtype == np.float32
    np.testing.assert_allclose(out.features, feats, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.logits, logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.probs, torch.softmax(torch.from_numpy(logits), 1).numpy(),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(out.predictions, logits.argmax(1))


def test_the_model_is_left_as_it_was(data):
    """Eval mode for the pass, every module's training flag put back, no
    gradient, no parameter changed."""
    x, y = data
    model = mlp(dropout=True)
    model.train()
    model[0].eval()  # a frozen part, as users do
    flags = [m.training for m in model.modules()]
    params = [p.detach().clone() for p in model.parameters()]
    a = model_outputs(model, TensorDataset(x, y))
    b = model_outputs(model, TensorDataset(x, y))
    np.testing.assert_array_equal(a.logits, b.logits)  # dropout off: eval mode
    assert [m.training for m in model.modules()] == flags
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params))
    assert all(p.grad is None for p in model.parameters())


def test_a_loader_in_order_and_a_loader_that_shuffles(data):
    x, y = data
    model = mlp()
    ref = model_outputs(model, TensorDataset(x, y))
    out = model_outputs(model, DataLoader(TensorDataset(x, y), batch_size=10))
    # (other batch sizes: the matrix products may round differently)
    np.testing.assert_allclose(out.logits, ref.logits, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="reads its dataset in order .* RandomSampler"):
        model_outputs(model, DataLoader(TensorDataset(x, y), batch_size=10, shuffle=True))
    with pytest.raises(ValueError, match="gave 200 rows for data of 203 .*drop_last"):
        model_outputs(model, DataLoader(TensorDataset(x, y), batch_size=10, drop_last=True))


class DictRows(Dataset):
    """Rows as dicts, with a label and a string beside the input."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"pixels": self.x[i], "label": self.y[i], "name": f"row{i}"}


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(8, 6)
        self.fc = nn.Linear(6, 3)

    def forward(self, a, b):
        return self.fc(torch.relu(self.body(a + b)))


def test_batches_of_dicts_keyword_inputs_and_an_inputs_function(data):
    x, y = data
    model = mlp()
    ref = model_outputs(model, TensorDataset(x, y))
    out = model_outputs(model, DictRows(x, y), batch_size=16)  # one tensor besides the label
    np.testing.assert_allclose(out.logits, ref.logits, rtol=1e-5, atol=1e-6)
    two = TwoInputs()

    class Pairs(DictRows):
        def __getitem__(self, i):
            return {"a": self.x[i], "b": 2 * self.x[i], "labels": self.y[i]}

    out = model_outputs(two, Pairs(x, y))  # several tensors: keyword arguments
    with torch.no_grad():
        np.testing.assert_allclose(out.logits, two(x, 2 * x).numpy(), rtol=1e-6, atol=1e-6)
    assert out.features.shape == (203, 6)  # the input of the last Linear (fc)
    out = model_outputs(two, TensorDataset(x, y), inputs=lambda batch: (batch[0], batch[0]))
    with torch.no_grad():
        np.testing.assert_allclose(out.logits, two(x, x).numpy(), rtol=1e-6, atol=1e-6)


class HFStyle(nn.Module):
    """Returns an object with .logits, as Hugging Face models do."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(8, 4)
        self.classifier = nn.Linear(4, 3)

    def forward(self, pixels):
        class Out:
            pass

        o = Out()
        o.logits = self.classifier(torch.tanh(self.encoder(pixels)))
        return o


def test_hugging_face_dataset_and_model_output(data):
    """A datasets.Dataset held in memory, its rows dicts with a label column."""
    import datasets

    x, y = data
    hf = datasets.Dataset.from_dict({"pixels": x.numpy(), "label": y.numpy(),
                                     "id": [f"r{i}" for i in range(len(x))]})
    model = HFStyle()
    out = model_outputs(model, hf, batch_size=50, feature_layer="encoder")
    with torch.no_grad():
        np.testing.assert_allclose(out.logits, model(x).logits.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(out.features, x.numpy(), rtol=1e-6)  # encoder's input
    default = model_outputs(model, hf)  # the last Linear: the classifier's input
    with torch.no_grad():
        np.testing.assert_allclose(default.features, torch.tanh(model.encoder(x)).numpy(),
                                   rtol=1e-6, atol=1e-6)
    sel = select(model, hf, 20, method="entropy")
    np.testing.assert_array_equal(sel.indices, svp_fast.uncertainty(out.logits, 20,
                                                                     method="entropy"))
    assert [r["id"] for r in sel.subset] == [f"r{i}" for i in sel.indices]
    assert hf.select(sel.indices)["id"] == [f"r{i}" for i in sel.indices]


def test_select_gives_the_indices_and_a_subset(data):
    x, y = data
    model = mlp()
    ds = TensorDataset(x, y)
    out = model_outputs(model, ds)
    sel = select(model, ds, 0.1)
    np.testing.assert_array_equal(sel.indices, svp_fast.kcenter(out.features, 0.1))
    assert isinstance(sel.subset, Subset) and sel.subset.dataset is ds
    assert torch.equal(sel.subset[3][0], x[sel.indices[3]])
    assert sel.stats.method and sel.method == "kcenter"
    more = select(model, ds, 10, already_selected=sel.indices, outputs=out)
    np.testing.assert_array_equal(more.indices, svp_fast.kcenter(
        out.features, 10, already_selected=sel.indices))
    for method in ("least_confidence", "entropy", "margin"):
        u = select(model, DataLoader(ds, batch_size=32), 15, method=method)
        np.testing.assert_array_equal(u.indices, svp_fast.uncertainty(out.logits, 15,
                                                                      method=method))
        assert u.outputs.features is None and u.subset.dataset is ds


def test_progress_bar_follows_the_rows(data):
    x, y = data

    class Counter:
        n = 0

        def update(self, k):
            self.n += k

    bar = Counter()
    model_outputs(mlp(), TensorDataset(x, y), batch_size=50, progress=bar)
    assert bar.n == 203


def test_mixed_precision_where_the_model_allows(data):
    x, y = data
    model = mlp()
    ref = model_outputs(model, TensorDataset(x, y), amp=False)
    assert ref.amp == "off"
    cpu_auto = model_outputs(model, TensorDataset(x, y))
    assert cpu_auto.amp.startswith("off (auto") and np.array_equal(cpu_auto.logits, ref.logits)
    bf16 = model_outputs(model, TensorDataset(x, y), amp=True)
    assert bf16.amp == "bfloat16"
    np.testing.assert_allclose(bf16.logits, ref.logits, atol=0.1, rtol=0.05)
    assert not np.array_equal(bf16.logits, ref.logits)  # it did run in reduced precision

    class NoHalf(nn.Module):  # an operation without a reduced-precision kernel
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 3)

        def forward(self, v):
            if torch.is_autocast_enabled("cpu"):
                raise RuntimeError("no bfloat16 kernel for this op")
            return self.fc(v)

    out = model_outputs(NoHalf(), TensorDataset(x, y), amp=True)
    assert out.amp.startswith("off (autocast failed: no bfloat16 kernel")
    assert out.logits.shape == (203, 3)
    # a model that is not float32 runs as it is
    half = mlp().to(torch.float64)
    assert model_outputs(half, TensorDataset(x.double(), y), amp=True).amp.startswith(
        "off (the model is torch.float64")


@pytest.mark.parametrize("call,error,match", [
    (lambda m, d: model_outputs("model", d), TypeError, "model must be a torch.nn.Module"),
    (lambda m, d: model_outputs(nn.Sequential(nn.Linear(8, 4), nn.Unflatten(1, (2, 2))), d),
     ValueError, r"the model must return \(batch, classes\) logits .*got \(203, 2, 2\)"),
    (lambda m, d: model_outputs(m, 42), TypeError, "data must be a torch Dataset"),
    (lambda m, d: model_outputs(m, d, batch_size=0), ValueError,
     "batch_size must be a positive integer, got 0"),
    (lambda m, d: model_outputs(m, d, amp="yes"), ValueError, "amp must be 'auto', True or False"),
    (lambda m, d: model_outputs(m, d, feature_layer="nope"), ValueError,
     "feature_layer 'nope' is not a module of the model"),
    (lambda m, d: model_outputs(m, d, feature_layer=nn.Linear(2, 2)), ValueError,
     "feature_layer is not a module of the model"),
    (lambda m, d: model_outputs(nn.Sequential(nn.Flatten()), d), ValueError,
     "no nn.Linear layer"),
    (lambda m, d: model_outputs(m, d, progress="yes"), TypeError, "progress must be True"),
    (lambda m, d: model_outputs(m, TensorDataset(torch.zeros(0, 8))), ValueError,
     "data has no rows"),
    (lambda m, d: select(m, d, 5, method="forgetting"), ValueError,
     "method must be one of 'kcenter', 'least_confidence'"),
    (lambda m, d: select(m, d, 5, method="margin", already_selected=[1]), ValueError,
     "already_selected applies to method='kcenter'"),
])
def test_bad_input_names_the_argument(data, call, error, match):
    x, y = data
    with pytest.raises(error, match=match):
        call(mlp(), TensorDataset(x, y))


def test_a_svp_fast_dataset_points_to_infer():
    from svp_fast.data import load_digits
    from svp_fast.proxy import create_model

    splits = load_digits()
    model = create_model("mlp_small", splits.train.spec, seed=0)
    with pytest.raises(TypeError, match="svp_fast.proxy.infer"):
        model_outputs(model, splits.train)


def test_import_svp_fast_stays_torch_free():
    code = ("import sys, svp_fast; assert 'torch' not in sys.modules; "
            "f = svp_fast.model_outputs; assert 'torch' in sys.modules; print('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
