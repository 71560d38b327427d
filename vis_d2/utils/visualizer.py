"""Overlays of tracked instances in which each track keeps its colour for the whole video."""

from __future__ import annotations

import numpy as np
from detectron2.data import Metadata
from detectron2.structures import Instances
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import ColorMode, Visualizer

__all__ = ["TrackVisualizer", "track_color"]

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

    def label(self, track_id: int, class_id: int, score: float) -> str:
        name = (
            self.class_names[class_id]
            if self.class_names and 0 <= class_id < len(self.class_names)
            else f"class {class_id}"
        )
        return f"#{track_id} {name} {score:.0%}"

    def draw(self, frame: np.ndarray, instances: Instances) -> np.ndarray:
        """``frame`` BGR uint8 (H, W, 3) and its instances at that resolution (``pred_boxes``,
        ``scores``, ``pred_classes``, ``pred_masks`` (N, H, W) bool, ``track_ids``) → the
        overlay, BGR uint8 (H, W, 3)."""
        if len(instances) == 0:
            return frame.copy()
        visualizer = Visualizer(frame[:, :, ::-1], self.metadata, instance_mode=ColorMode.IMAGE)
        instances = instances.to("cpu")
        track_ids = instances.track_ids.tolist()
        labels = [
            self.label(tid, cls, score)
            for tid, cls, score in zip(
                track_ids, instances.pred_classes.tolist(), instances.scores.tolist(), strict=True
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
