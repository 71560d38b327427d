"""STMask's dense per-frame work as one graph with flat tensor inputs and outputs, which the
eager model runs and the exporter traces."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from vis_d2.modeling.meta_arch import normalize_and_pad

if TYPE_CHECKING:
    from .stmask import STMask

__all__ = ["ROWS", "FrameGraph", "split_frame_outputs"]

# the head's rows over all levels, in the order FrameGraph returns them
ROWS = ("cls", "box", "ctr", "track", "mask")


def split_frame_outputs(
    outputs: tuple[torch.Tensor, ...], num_levels: int
) -> tuple[dict[str, torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """:class:`FrameGraph` outputs → (rows by name, per-level t2s maps, prototypes, the FPN
    level that temporal fusion correlates)."""
    rows = dict(zip(ROWS, outputs[: len(ROWS)], strict=True))
    t2s = list(outputs[len(ROWS) : len(ROWS) + num_levels])
    protos, corr_feature = outputs[len(ROWS) + num_levels :]
    return rows, t2s, protos, corr_feature


class FrameGraph(nn.Module):
    """``image`` (3, H, W) float32, the resized frame in ``INPUT.FORMAT`` with values 0-255 →
    the head's rows of all anchors (``ROWS``, each (1, A, C)), the per-level t2s maps
    (1, C, H_l, W_l), the prototypes (1, M, H/4, W/4) (H, W padded) and the FPN level that
    temporal fusion correlates (1, C, H_l, W_l)."""

    def __init__(self, model: STMask):
        super().__init__()
        self.backbone = model.backbone
        self.head = model.head
        self.protonet = model.protonet
        self.register_buffer("pixel_mean", model.pixel_mean, False)
        self.register_buffer("pixel_std", model.pixel_std, False)
        self._model = [model]  # its methods, not its state
        self.num_levels = len(model.in_features)

    def input_names(self) -> list[str]:
        return ["image"]

    def output_names(self) -> list[str]:
        levels = range(self.num_levels)
        return [*ROWS, *(f"t2s_{level}" for level in levels), "prototypes", "corr_feature"]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = normalize_and_pad(
            image, self.pixel_mean, self.pixel_std, self.backbone.size_divisibility
        )
        model = self._model[0]
        features = self.backbone(x)
        rows, t2s, protos = model.dense_outputs(features)
        return (*(rows[key] for key in ROWS), *t2s, protos, features[model.corr_feature])
