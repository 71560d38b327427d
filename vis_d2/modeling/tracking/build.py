"""TRACKER_REGISTRY: the online trackers every vis_d2 method can use, chosen by
``MODEL.TRACKER.NAME``."""

from __future__ import annotations

from typing import Any

from detectron2.config import CfgNode
from detectron2.utils.registry import Registry

__all__ = ["TRACKER_REGISTRY", "build_tracker"]

TRACKER_REGISTRY = Registry("VIS_TRACKER")
TRACKER_REGISTRY.__doc__ = """Online trackers: a class with ``from_config(cfg)``, ``reset()`` at
a new video and ``update(...)`` per frame, which returns the frame's track ids."""


def build_tracker(cfg: CfgNode) -> Any:
    """The tracker ``MODEL.TRACKER.NAME`` of ``TRACKER_REGISTRY``, built from ``cfg``."""
    return TRACKER_REGISTRY.get(cfg.MODEL.TRACKER.NAME).from_config(cfg)
