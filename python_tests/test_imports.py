"""No import circles in svp_fast/: every module imports, and the graph of the
imports written in its files (at the top and inside functions alike) has no
cycle. A circle that a function-level import hides still ties two modules
into one (issue 22: selection/kcenter.py <-> selection/grouped.py,
proxy/models.py <-> proxy/text_models.py)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import svp_fast

PACKAGE = Path(svp_fast.__file__).resolve().parent


def modules_of(package_dir: Path) -> dict:
    """{dotted name: (path, is_package)} of every .py file under ``package_dir``."""
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_package)
    return out


def import_graph(package_dir: Path) -> dict:
    """{module: set of the package's modules it imports}. ``from X import y``
    is an edge to X.y when that is a module, else to X; an edge to a module's
    own parent package is left out (Python imports the parents first anyway,
    and ``from .. import _core`` names an attribute of it)."""
    modules = modules_of(package_dir)
    graph = {}
    for name, (path, is_package) in modules.items():
        here = name.split(".") if is_package else name.split(".")[:-1]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[:len(here) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:
                        edges.add(sub)
                    elif target in modules and not f"{name}.".startswith(f"{target}."):
                        edges.add(target)
        graph[name] = edges - {name}
    return graph


def cycles(graph: dict) -> list:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_in_svp_fast():
    graph = import_graph(PACKAGE)
    assert "svp_fast.selection.kcenter" in graph and "svp_fast.proxy.models" in graph
    assert cycles(graph) == []


def test_the_drivers_share_the_planner_and_the_registry_is_below_the_model_files():
    graph = import_graph(PACKAGE)
    front = graph["svp_fast.selection.kcenter"]
    assert {"svp_fast.selection.single", "svp_fast.selection.grouped",
            "svp_fast.selection.sets"} <= front
    for driver in ("single", "grouped", "sets"):
        assert "svp_fast.selection._planner" in graph[f"svp_fast.selection.{driver}"]
        assert "svp_fast.selection.kcenter" not in graph[f"svp_fast.selection.{driver}"]
    for model_file in ("models", "text_models"):
        assert "svp_fast.proxy.registry" in graph[f"svp_fast.proxy.{model_file}"]
    assert not {"svp_fast.proxy.models", "svp_fast.proxy.text_models"} & \
        graph["svp_fast.proxy.registry"]


def test_the_cycle_check_finds_a_hidden_circle(tmp_path):
    """The check itself: a circle through a function-level import is found."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import a\n")
    (pkg / "a.py").write_text("from .sub.b import f\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import g\n    return g\n")
    (pkg / "c.py").write_text("from . import a\nfrom .. import nothing\n")
    graph = import_graph(pkg)
    assert graph["pkg.sub.b"] == {"pkg.a"} and graph["pkg.c"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]


def test_every_module_imports():
    # __main__ runs the command line when imported
    for name in sorted(modules_of(PACKAGE)):
        if name != "svp_fast.__main__":
            importlib.import_module(name)


# names that exist only in some builds (the emulated CUDA build's self-test module)
BUILD_ONLY = {("svp_fast", "_emu_selftest")}


def test_every_name_the_tests_import_from_svp_fast_exists():
    """Tests that run only on a GPU (or its emulation) are collected and
    skipped here: a name they import that has moved would fail only there
    (found under the emulation: a CUDA command-line test still imported
    _checkpoint_facts from selection.kcenter after it moved to single.py)."""
    root = Path(__file__).resolve().parent.parent
    missing = []
    for path in sorted([*root.joinpath("python_tests").glob("*.py"),
                        *root.joinpath("benchmarks").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                    and node.module.split(".")[0] == "svp_fast"):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if alias.name == "*" or (node.module, alias.name) in BUILD_ONLY:
                    continue
                if not hasattr(module, alias.name):
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        missing.append(f"{path.name}:{node.lineno}: {node.module}.{alias.name}")
    assert not missing, missing
