"""Online greedy association of per-frame detections by predicted centre movement (SG-Net,
Sec. 3.3)."""

from __future__ import annotations

import torch
from detectron2.config import CfgNode
from detectron2.structures import Instances

from .build import TRACKER_REGISTRY, Tracker

__all__ = ["MovementTracker"]


def _centres(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, :2] + boxes[:, 2:]) / 2


@TRACKER_REGISTRY.register()
class MovementTracker(Tracker):
    """Assigns track ids to the detections of one video, one frame at a time.

    A detection with box centre c and predicted movement D (px, c_t - c_{t-1}) looks for its
    track near c - D. Detections are visited in descending score; each takes the nearest
    track not yet taken whose centre lies within r = (w + h) / 2 of that track's last box
    (and, with ``same_class``, of the same class). Unmatched detections start new ids 0, 1, ...
    in their input order. A track can be matched up to ``max_age`` frames after it was last
    seen; each frame it is missed its box moves by its last movement.
    """

    def __init__(self, max_age: int = 1, same_class: bool = False):
        if max_age < 1:
            raise ValueError(f"max_age must be >= 1, got {max_age}")
        self.max_age = max_age
        self.same_class = same_class
        self.reset()

    @classmethod
    def from_config(cls, cfg: CfgNode) -> MovementTracker:
        tracker = cfg.MODEL.TRACKER
        return cls(max_age=tracker.MAX_AGE, same_class=tracker.SAME_CLASS)

    def reset(self) -> None:
        """Start a new video: no tracks, and the next new id is 0."""
        self.next_id = 0
        self.ids = torch.zeros(0, dtype=torch.int64)
        self.boxes = torch.zeros(0, 4)
        self.classes = torch.zeros(0, dtype=torch.int64)
        self.movements = torch.zeros(0, 2)
        self.missed = torch.zeros(0, dtype=torch.int64)

    def __len__(self) -> int:
        """The tracks that can still be matched: those missed in fewer than ``max_age``
        frames."""
        return len(self.ids)

    def update(self, detections: Instances) -> torch.Tensor:
        """One frame: ``pred_boxes`` (N, 4) XYXY px, ``scores`` (N,), ``pred_classes`` (N,)
        and, optionally, ``displacements`` (N, 2) px = predicted c_t - c_{t-1} (absent: no
        movement, e.g. on the first frame of a video). Returns the track ids (N,) int64."""
        boxes = detections.pred_boxes.tensor
        device = boxes.device
        boxes = boxes.detach().float().cpu()
        scores = detections.scores
        classes = detections.pred_classes.detach().long().cpu()
        n = len(boxes)
        if detections.has("displacements"):
            movements = detections.displacements.detach().float().cpu()
        else:
            movements = torch.zeros(n, 2)

        track_of = torch.full((n,), -1, dtype=torch.int64)
        if n and len(self.ids):
            candidates = _centres(boxes) - movements
            dist = (candidates[:, None] - _centres(self.boxes)[None]).norm(dim=2)
            radius = (self.boxes[:, 2:] - self.boxes[:, :2]).sum(dim=1) / 2
            allowed = dist <= radius[None]
            if self.same_class:
                allowed &= classes[:, None] == self.classes[None]
            dist = torch.where(allowed, dist, torch.full_like(dist, float("inf")))
            order = torch.sort(scores.detach().cpu(), descending=True, stable=True).indices
            for i in order.tolist():
                j = int(torch.argmin(dist[i]))
                if torch.isfinite(dist[i, j]):
                    track_of[i] = j
                    dist[:, j] = float("inf")

        matched = track_of >= 0
        ids = torch.empty(n, dtype=torch.int64)
        ids[matched] = self.ids[track_of[matched]]
        num_new = int((~matched).sum())
        ids[~matched] = torch.arange(self.next_id, self.next_id + num_new)
        self.next_id += num_new

        lost = torch.ones(len(self.ids), dtype=torch.bool)
        lost[track_of[matched]] = False
        lost &= self.missed + 1 < self.max_age
        lost_boxes = self.boxes[lost] + self.movements[lost].repeat(1, 2)
        self.ids = torch.cat((ids, self.ids[lost]))
        self.boxes = torch.cat((boxes, lost_boxes))
        self.classes = torch.cat((classes, self.classes[lost]))
        self.movements = torch.cat((movements, self.movements[lost]))
        self.missed = torch.cat((torch.zeros(n, dtype=torch.int64), self.missed[lost] + 1))
        return ids.to(device)
