"""Pieces every vis_d2 method's meta-architecture uses: sampling positives per image, reading
dense maps at boxes, and a frame's tracked output."""

from __future__ import annotations

import torch
from detectron2.structures import Boxes, Instances

from .tracking import Tracker

__all__ = ["cap_per_image", "read_at_centres", "tracked_frame"]


def cap_per_image(im_inds: torch.Tensor, cap: int) -> torch.Tensor:
    """A random subset of the indices 0..N-1 with at most ``cap`` from each image of
    ``im_inds`` (N,), sorted; ``cap`` 0 is no cap (every index).

    Raises:
        ValueError: ``cap`` is negative.
    """
    if cap < 0:
        raise ValueError(f"the cap per image must be >= 0 (0: no cap), not {cap}")
    if cap == 0:
        return torch.arange(len(im_inds), device=im_inds.device)
    order = torch.randperm(len(im_inds), device=im_inds.device)
    order = order[torch.argsort(im_inds[order], stable=True)]
    grouped = im_inds[order]
    starts = torch.searchsorted(grouped, grouped, side="left")
    rank = torch.arange(len(grouped), device=grouped.device) - starts
    return order[rank < cap].sort().values


def read_at_centres(maps: torch.Tensor, im_inds: torch.Tensor, boxes: torch.Tensor, stride: int):
    """The (N, C) vectors of ``maps`` (B, C, H, W) (stride ``stride`` px) at the cell holding
    each box centre: ``boxes`` (N, 4) XYXY input px of images ``im_inds`` (N,); the cell is
    floor(centre / stride), clamped to the map."""
    _, _, height, width = maps.shape
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    x = torch.div(centres[:, 0], stride, rounding_mode="floor").long().clamp(0, width - 1)
    y = torch.div(centres[:, 1], stride, rounding_mode="floor").long().clamp(0, height - 1)
    return maps[im_inds, :, y, x]


def tracked_frame(
    det: Instances,
    masks: torch.Tensor,
    input_size: tuple[int, int],
    output_size: tuple[int, int],
    tracker: Tracker,
    displacements: torch.Tensor | None = None,
    embeddings: torch.Tensor | None = None,
) -> Instances:
    """A frame's output: detections ``det`` on the (h, w) network input, their bool ``masks``
    (N, H, W) at the (H, W) output size, and what a tracker may read: their centre
    ``displacements`` (N, 2) since the previous frame in input pixels (None: no previous
    frame) and their ``embeddings`` (N, D) → ``Instances`` with boxes scaled and clipped to the
    output, ``scores``, ``pred_classes``, ``pred_masks``, the given fields and the
    ``track_ids`` that ``tracker`` gives them."""
    (in_h, in_w), (out_h, out_w) = input_size, output_size
    scale = torch.tensor([out_w / in_w, out_h / in_h] * 2, device=masks.device)
    result = Instances((out_h, out_w))
    result.pred_boxes = Boxes(det.pred_boxes.tensor * scale)
    result.pred_boxes.clip((out_h, out_w))
    result.scores = det.scores
    result.pred_classes = det.pred_classes
    if det.has("class_scores"):
        result.class_scores = det.class_scores
    result.pred_masks = masks
    if displacements is not None:
        result.displacements = displacements * scale[:2]
    if embeddings is not None:
        result.embeddings = embeddings
    result.track_ids = tracker.update(result)
    return result
