"""The configs shipped with vis_d2, by name (``detectron2.model_zoo`` for vis_d2):
``get_config_file("SGNet_R50.yaml")``, ``get_config("synthetic/SGNet_R18_synthetic.yaml")``.

Names are paths relative to the repository's ``configs/`` folder. An installed package carries
a copy of that folder (``setup.py`` puts it into the package); a source checkout reads the
folder itself.
"""

from __future__ import annotations

from pathlib import Path

from detectron2.config import CfgNode

from ..config import get_cfg

__all__ = ["get_config", "get_config_file", "list_configs"]


def _config_root() -> Path:
    packaged = Path(__file__).resolve().parent / "configs"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "configs"


def list_configs() -> list[str]:
    """The names of every shipped config, sorted."""
    root = _config_root()
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.yaml"))


def get_config_file(config_path: str) -> str:
    """The absolute path of the shipped config ``config_path`` (e.g. ``"SGNet_R50.yaml"``).

    Raises:
        FileNotFoundError: no shipped config has that name; the message lists them.
    """
    path = _config_root() / config_path
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
