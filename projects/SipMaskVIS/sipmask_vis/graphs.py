"""SipMask-VIS's dense per-frame work as one graph: SipMask's (:class:`sipmask.graphs.FrameGraph`)
plus the track embedding map."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from sipmask import graphs

if TYPE_CHECKING:
    from .sipmask import SipMaskVIS

__all__ = ["FrameGraph", "split_frame_outputs"]


def split_frame_outputs(
    outputs: tuple[torch.Tensor, ...], num_levels: int
) -> tuple[dict[str, list[torch.Tensor]], torch.Tensor, torch.Tensor]:
    """:class:`FrameGraph` outputs → (head dict of per-level lists, bases, embedding map)."""
    head, bases, (embeddings,) = graphs.split_frame_outputs(outputs, num_levels)
    return head, bases, embeddings


class FrameGraph(graphs.FrameGraph):
    """SipMask's frame graph, then the embedding map (1, D, H/8, W/8) (H, W padded)."""

    def __init__(self, model: SipMaskVIS):
        super().__init__(model)
        self.track_head = model.track_head

    def output_names(self) -> list[str]:
        return [*super().output_names(), "embeddings"]

    def extra_outputs(self, levels: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return (self._model[0].embeddings(levels),)
