"""benchmarks/experiment_fashion_mnist.py end to end, at a toy size (seconds)."""

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ml_helpers import one_torch_thread  # noqa: F401  (autouse fixture)
from svp_fast.data.readers import FASHION_MNIST_DIR

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "experiment_fashion_mnist.py"

pytestmark = pytest.mark.skipif(not Path(FASHION_MNIST_DIR).is_dir(),
                                reason=f"Fashion-MNIST is not installed at {FASHION_MNIST_DIR} "
                                       "(apt-get install dataset-fashion-mnist)")


@pytest.fixture
def experiment(monkeypatch):
    spec = importlib.util.spec_from_file_location("experiment_fashion_mnist", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    toy = replace(module.QUICK, train_size=500, test_size=200, coreset_proxy_schedule="1@0.05",
                  coreset_target_schedule="1@0.05", coreset_methods=("kcenter", "random"),
                  al_sizes=(40, 80), al_proxy_schedule="1@0.05", al_target_schedule="1@0.05",
                  proxy="mlp_small", target="mlp_large")
    monkeypatch.setattr(module, "QUICK", toy)
    return module


def test_experiment_runs_summarises_and_resumes(tmp_path, experiment, capsys):
    out = tmp_path / "exp"
    assert experiment.main(["--quick", "--out", str(out), "--threads", "1"]) == 0
    for folder in ("coreset/seed0", "active-proxy/seed0", "active-target/seed0",
                   "active-random/seed0"):
        assert (out / folder / "results.json").is_file(), folder
    summary = json.loads((out / "summary.json").read_text())
    methods = [row["method"] for row in summary["coreset"]]
    assert methods == ["all data", "kcenter", "random"]
    assert 0 < summary["coreset"][1]["accuracy"][0] <= 1
    assert summary["active_selection_speedup"][0] > 0
    rho = summary["spearman"]["least_confidence"]
    assert -1 <= rho["initial_pool"][0] <= 1 and -1 <= rho["full_data_test"][0] <= 1
    markdown = (out / "summary.md").read_text()
    assert "QUICK RUN" in markdown and "| kcenter | 250 |" in markdown
    assert (out / "active_learning.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()

    # a second run refuses the folder, --resume reuses every finished run
    with pytest.raises(SystemExit):
        experiment.main(["--quick", "--out", str(out)])
    before = (out / "coreset" / "seed0" / "results.json").stat().st_mtime_ns
    assert experiment.main(["--quick", "--out", str(out), "--resume"]) == 0
    assert "already done, reused" in capsys.readouterr().out
    assert (out / "coreset" / "seed0" / "results.json").stat().st_mtime_ns == before
