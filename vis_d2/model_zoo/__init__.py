"""The configs shipped with vis_d2 and its method packages, by name (``detectron2.model_zoo``
for vis_d2): ``get_config_file("SGNet_R50.yaml")``,
``get_config("synthetic/SGNet_R18_synthetic.yaml")``,
``get_config_file("SipMaskVIS/SipMaskVIS_R50.yaml")``.

Names are paths relative to the repository's ``configs/`` folder, or, for a method package of
``projects/<Method>/``, ``<Method>/`` followed by the path in its ``configs/`` folder (method
packages declare themselves through the ``vis_d2.model_zoo`` entry points). An installed
package carries a copy of its folder (``setup.py`` puts it into the package); a source
checkout reads the folder itself.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path

from detectron2.config import CfgNode

from ..config import get_cfg

__all__ = ["get_config", "get_config_file", "list_configs"]

ENTRY_POINT_GROUP = "vis_d2.model_zoo"


def _package_configs(package_file: str, source_root: Path) -> Path:
    packaged = Path(package_file).resolve().parent / "configs"
    return packaged if packaged.is_dir() else source_root


def _config_roots() -> dict[str, Path]:
    """Name prefix ("" for vis_d2's own, else ``<Method>/``) → config folder."""
    own = Path(__file__).resolve()
    roots = {"": _package_configs(str(own), own.parents[2] / "configs")}
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        package = Path(importlib.import_module(entry.value).__file__)
        roots[f"{entry.name}/"] = _package_configs(str(package), package.parents[1] / "configs")
    return roots


def list_configs() -> list[str]:
    """The names of every shipped config, sorted."""
    return sorted(
        prefix + str(p.relative_to(root))
        for prefix, root in _config_roots().items()
        for p in root.rglob("*.yaml")
    )


def get_config_file(config_path: str) -> str:
    """The absolute path of the shipped config ``config_path`` (e.g. ``"SGNet_R50.yaml"``).

    Raises:
        FileNotFoundError: no shipped config has that name; the message lists them.
    """
    roots = _config_roots()
    prefix = next((p for p in roots if p and config_path.startswith(p)), "")
    path = roots[prefix] / config_path[len(prefix) :]
    if not path.is_file():
        raise FileNotFoundError(
            f"{config_path} is not a config of the vis_d2 model zoo; available: "
            f"{', '.join(list_configs())}"
        )
    return str(path)


def get_config(config_path: str) -> CfgNode:
    """The shipped config ``config_path`` merged into :func:`vis_d2.config.get_cfg`."""
    cfg = get_cfg()
    cfg.merge_from_file(get_config_file(config_path))
    return cfg
