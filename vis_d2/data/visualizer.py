"""Overlays of tracked instances in which each track keeps its colour for the whole video."""

from __future__ import annotations

import numpy as np
from detectron2.data import Metadata
from detectron2.structures import Instances
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import ColorMode, Visualizer

from .dataset_mapper import frame_instances

__all__ = ["TrackVisualizer", "as_tracks", "ground_truth_tracks", "track_color"]

_PALETTE = colormap(rgb=True, maximum=1)


def track_color(track_id: int) -> np.ndarray:
    """The RGB colour (3,) in [0, 1] of a track: detectron2's fixed palette indexed by id."""
    return _PALETTE[int(track_id) % len(_PALETTE)]


class TrackVisualizer:
    """Draws masks, boxes and ``#id class score`` labels of tracked instances with
    detectron2's :class:`Visualizer`, coloured by track id (:func:`track_color`)."""

    def __init__(self, metadata: Metadata, alpha: float = 0.5):
        self.metadata = metadata
        self.alpha = alpha
        self.class_names = metadata.get("thing_classes", None)

    def label(self, track_id: int, class_id: int, score: float | None) -> str:
        name = (
            self.class_names[class_id]
            if self.class_names and 0 <= class_id < len(self.class_names)
            else f"class {class_id}"
        )
        return f"#{track_id} {name}" + ("" if score is None else f" {score:.0%}")

    def draw(self, frame: np.ndarray, instances: Instances) -> np.ndarray:
        """``frame`` BGR uint8 (H, W, 3) and its instances at that resolution (``pred_boxes``,
        ``pred_classes``, ``pred_masks`` (N, H, W) bool, ``track_ids``, and ``scores`` unless
        they are ground truth) → the overlay, BGR uint8 (H, W, 3)."""
        if len(instances) == 0:
            return frame.copy()
        visualizer = Visualizer(frame[:, :, ::-1], self.metadata, instance_mode=ColorMode.IMAGE)
        instances = instances.to("cpu")
        track_ids = instances.track_ids.tolist()
        scores = instances.scores.tolist() if instances.has("scores") else [None] * len(instances)
        labels = [
            self.label(tid, cls, score)
            for tid, cls, score in zip(
                track_ids, instances.pred_classes.tolist(), scores, strict=True
            )
        ]
        out = visualizer.overlay_instances(
            boxes=instances.pred_boxes.tensor.numpy(),
            labels=labels,
            masks=instances.pred_masks.numpy(),
            assigned_colors=[track_color(tid) for tid in track_ids],
            alpha=self.alpha,
        )
        return np.ascontiguousarray(out.get_image()[:, :, ::-1])


def ground_truth_tracks(annotations: list[dict], image_size: tuple[int, int]) -> Instances:
    """One frame's annotations of a loaded video dict (crowd ones too), at the (H, W)
    ``image_size`` → :func:`as_tracks` of them."""
    return as_tracks(frame_instances(annotations, image_size))


def as_tracks(gt: Instances) -> Instances:
    """Training targets (``gt_boxes``, ``gt_classes``, ``gt_masks``, ``gt_ids``) → Instances
    that :meth:`TrackVisualizer.draw` takes: ``pred_boxes``, ``pred_classes``, ``pred_masks``
    and ``track_ids`` (the json's instance ids)."""
    out = Instances(gt.image_size)
    out.pred_boxes = gt.gt_boxes
    out.pred_classes = gt.gt_classes
    out.pred_masks = gt.gt_masks.tensor
    out.track_ids = gt.gt_ids
    return out
