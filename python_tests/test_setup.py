"""The README's set-up commands: CI runs them as written, and the second one
installs the test tools without building svp-fast again."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Two commands for a fresh machine"):]
    block = section[section.index("```bash") + len("```bash"):]
    block = block[:block.index("```")]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_ci_runs_the_readme_commands_as_written():
    commands = _readme_commands()
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci, command
    # and the latency suite once, after the tests
    assert ci.index("pytest -q benchmarks/ --benchmark-disable") > ci.index(commands[1])


def test_the_second_command_installs_no_package():
    install = _readme_commands()[1].split("&&")[0].split()
    assert install[:4] == ["python3", "-m", "pip", "install"]
    # not ".", ".[test]" or a path: pip rebuilds a local folder every time it is named
    assert install[4:] == ["-r", "requirements-test.txt"]


def test_requirements_file_is_the_test_extra():
    tomllib = pytest.importorskip("tomllib")
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["test"]
    lines = [line.strip() for line in (ROOT / "requirements-test.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert sorted(lines) == sorted(extra)
    assert not any(re.match(r"svp[-_]fast", line) for line in lines)


def test_the_gpu_extra_installs_faiss_gpu_and_is_documented():
    """pip install "svp-fast[gpu]": the FAISS GPU build, which the pruned
    engine's cells on CUDA tensors use when present (cells.faiss_gpu)."""
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert [re.split(r"[<>=]", r)[0] for r in extras["gpu"]] == ["faiss-gpu-cu12"]
    assert [re.split(r"[<>=]", r)[0] for r in extras["gpu-cu11"]] == ["faiss-gpu-cu11"]
    readme = (ROOT / "README.md").read_text()
    assert '".[gpu]"' in readme and '".[gpu-cu11]"' in readme
