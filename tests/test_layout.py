"""The import structure: vis_d2.utils is the bottom package, modeling imports none of the
machinery that runs it, the packages form no cycle, and tools and shared modules import no
method."""

import ast
from pathlib import Path

import pytest

UTILS = Path(__file__).resolve().parent.parent / "vis_d2" / "utils"


def vis_d2_imports_outside_utils(source: str) -> list[str]:
    """The modules of vis_d2 outside vis_d2.utils that ``source`` (a module of vis_d2.utils)
    imports, at the top or inside functions, as ``from`` or plain imports, relative or absolute."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level >= 2:  # above vis_d2/utils/
                found.append("." * node.level + (node.module or ""))
            elif node.level == 0 and node.module:
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return [
        name for name in found
        if name.startswith(".")
        or (name.split(".")[0] == "vis_d2" and name.split(".")[:2] != ["vis_d2", "utils"])
    ]


@pytest.mark.parametrize("path", sorted(UTILS.glob("*.py")), ids=lambda p: p.name)
def test_utils_module_imports_no_other_vis_d2_package(path):
    assert vis_d2_imports_outside_utils(path.read_text(encoding="utf-8")) == []


def test_the_check_finds_every_kind_of_upward_import():
    source = (
        "from __future__ import annotations\n"
        "import os\n"
        "from . import file_io\n"
        "from .precision import cpu_info\n"
        "from ..data import frame_instances\n"
        "import vis_d2.engine.checkpoint\n"
        "from vis_d2.utils.memory import trim_heap\n"
        "def f():\n"
        "    from vis_d2.config import get_cfg\n"
    )
    assert vis_d2_imports_outside_utils(source) == [
        "..data", "vis_d2.engine.checkpoint", "vis_d2.config",
    ]


# ------------------------------------------------------------------- between vis_d2 packages
VIS_D2 = UTILS.parent
# the packages whose modules the methods are assembled from may not import the machinery that
# runs them (training, evaluation, export, benchmarking)
NOT_FROM_MODELING = {"benchmark", "engine", "evaluation", "export", "model_zoo"}
METHOD_MODULES = {"sgnet", "sipmask", "sipmask_vis", "stmask"}


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules that ``path`` (a module of vis_d2) imports."""
    package = path.relative_to(VIS_D2.parent).parts[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "vis_d2" and len(parts) > 1 else None


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in VIS_D2.rglob("*.py"):
        own = path.relative_to(VIS_D2).parts[0].removesuffix(".py")
        targets = {_package_of(m) for m in _imported_modules(path)} - {None, own}
        graph.setdefault(own, set()).update(targets)
    return graph


def test_modeling_imports_none_of_the_machinery_that_runs_it():
    graph = _package_graph()
    assert graph["modeling"] & NOT_FROM_MODELING == set()
    assert graph["utils"] == set()


def test_the_packages_of_vis_d2_import_each_other_without_a_cycle():
    graph = _package_graph()
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"import cycle between vis_d2 packages: {' -> '.join(path)}"
        if node in done:
            return
        for target in sorted(graph.get(node, ())):
            visit(target, (*path, node))
        done.add(node)

    for package in sorted(graph):
        visit(package, ())


def test_tools_and_shared_modules_import_no_method():
    repo = VIS_D2.parent
    shared = [p for p in VIS_D2.rglob("*.py") if "sgnet" not in p.relative_to(VIS_D2).parts]
    shared = [p for p in shared if p.relative_to(VIS_D2).as_posix() != "benchmark/sgnet.py"]
    # the package faces that register the in-tree reference model are its registration points
    faces = {"modeling/__init__.py", "benchmark/__init__.py"}
    shared = [p for p in shared if p.relative_to(VIS_D2).as_posix() not in faces]
    shared += sorted((repo / "tools").glob("*.py"))
    offenders = {
        str(p.relative_to(repo)): sorted(
            m for m in _imported_modules(p) if METHOD_MODULES & set(m.split("."))
        )
        for p in shared
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_package_graph_sees_relative_and_absolute_imports():
    assert {"vis_d2.modeling", "vis_d2.modeling.FrameModel"} <= _imported_modules(
        VIS_D2 / "benchmark" / "subjects.py"
    )
    assert "vis_d2.utils.precision" in _imported_modules(VIS_D2 / "benchmark" / "timing.py")
    assert "vis_d2.modeling.sgnet" in _imported_modules(VIS_D2 / "benchmark" / "sgnet.py")
