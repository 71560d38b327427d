"""TRACKER_REGISTRY and the interface of the online trackers every vis_d2 method can use,
chosen by ``MODEL.TRACKER.NAME``."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from detectron2.config import CfgNode
from detectron2.structures import Instances
from detectron2.utils.registry import Registry

__all__ = ["TRACKER_REGISTRY", "Tracker", "build_tracker"]

TRACKER_REGISTRY = Registry("VIS_TRACKER")
TRACKER_REGISTRY.__doc__ = """Online trackers: subclasses of :class:`Tracker`, built with
``from_config(cfg)``."""


class Tracker(ABC):
    """Gives the detections of one video, frame after frame, their track ids.

    :meth:`update` reads the fields of a frame's detections ``Instances`` it needs:
    ``pred_boxes`` (XYXY px of the frame it is given), ``scores`` (N,) and ``pred_classes``
    (N,) always, and method outputs such as ``displacements`` (N, 2) px or ``embeddings``
    (N, D) where the tracker says so. A model that uses a tracker must produce its fields.

    Every tracker bounds its state (``len(tracker)``: the objects it can still match) by a
    setting, not by the length of the video, and gives every detection of a frame its own id.
    """

    @classmethod
    @abstractmethod
    def from_config(cls, cfg: CfgNode) -> Tracker:
        """The tracker with the settings of ``MODEL.TRACKER``."""

    @abstractmethod
    def reset(self) -> None:
        """Start a new video: no tracks, and the next new id is 0."""

    @abstractmethod
    def update(self, detections: Instances) -> torch.Tensor:
        """One frame's detections → their track ids (N,) int64 ≥ 0 on the detections' device;
        no two detections of a frame share an id, and every detection gets one, except where a
        setting asks the tracker to drop detections (``MemoryTracker`` with
        ``MODEL.TRACKER.MEMORY.CONFLICT "drop"``, an authors' rule): those get −1 and are not
        shown."""

    @abstractmethod
    def __len__(self) -> int:
        """The objects the tracker holds now (those a later detection can still match)."""


def build_tracker(cfg: CfgNode) -> Tracker:
    """The tracker ``MODEL.TRACKER.NAME`` of ``TRACKER_REGISTRY``, built from ``cfg``."""
    return TRACKER_REGISTRY.get(cfg.MODEL.TRACKER.NAME).from_config(cfg)
