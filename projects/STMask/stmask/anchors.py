"""STMask's kernel-shaped anchors (FCA): per location of a level with stride s, one anchor per
kernel shape (k_h, k_w) of the prediction head, k_h·s × k_w·s pixels, centred on the cell."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import ANCHOR_GENERATOR_REGISTRY, BufferList
from detectron2.structures import Boxes
from torch import nn

__all__ = ["KernelAnchorGenerator"]


@ANCHOR_GENERATOR_REGISTRY.register()
class KernelAnchorGenerator(nn.Module):
    """``forward(features)``: one (N, C, H_l, W_l) map per level → one :class:`Boxes` per level,
    H_l·W_l·A anchors in XYXY pixels, ordered (y, x, shape) like detectron2's generators.

    The anchor of shape (k_h, k_w) at cell (row i, col j) of a level with stride s is
    k_h·s high and k_w·s wide, centred at ((j + 0.5)·s, (i + 0.5)·s). Unlike
    ``DefaultAnchorGenerator``'s, the shapes of a location need not have equal areas."""

    box_dim: int = 4

    @configurable
    def __init__(self, *, shapes: Sequence[Sequence[float]], strides: Sequence[int]):
        """shapes: A (height, width) pairs in strides, shared by all levels; strides: one per
        level, in pixels."""
        super().__init__()
        self.strides = list(strides)
        self.shapes = [tuple(float(v) for v in shape) for shape in shapes]
        sizes = torch.tensor(self.shapes)  # (A, 2): (h, w) in strides
        half = torch.cat((-sizes.flip(1), sizes.flip(1)), dim=1) / 2  # (A, 4): XYXY about 0
        self.cell_anchors = BufferList([half * stride for stride in self.strides])

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: list[ShapeSpec]) -> dict:
        return {
            "shapes": cfg.MODEL.STMASK.ANCHOR_SHAPES,
            "strides": [spec.stride for spec in input_shape],
        }

    @property
    def num_anchors(self) -> list[int]:
        """The anchors per location of each level (the number of kernel shapes)."""
        return [len(self.shapes)] * len(self.strides)

    @property
    def num_cell_anchors(self) -> list[int]:
        """Alias of :attr:`num_anchors`."""
        return self.num_anchors

    def forward(self, features: list[torch.Tensor]) -> list[Boxes]:
        anchors = []
        for feature, stride, cell in zip(features, self.strides, self.cell_anchors, strict=True):
            height, width = feature.shape[-2:]
            ys = (torch.arange(height, device=cell.device, dtype=cell.dtype) + 0.5) * stride
            xs = (torch.arange(width, device=cell.device, dtype=cell.dtype) + 0.5) * stride
            cy, cx = torch.meshgrid(ys, xs, indexing="ij")
            centres = torch.stack((cx, cy, cx, cy), dim=-1).reshape(-1, 1, 4)  # (H·W, 1, 4)
            anchors.append(Boxes((centres + cell).reshape(-1, 4)))
        return anchors
