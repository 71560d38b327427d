"""vis_d2.utils is the bottom package: its modules import no other vis_d2 package."""

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
