"""SipMask's dense per-image work as one graph with flat tensor inputs and outputs, which the
eager model runs and the exporter traces."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from vis_d2.modeling.meta_arch import normalize_and_pad

if TYPE_CHECKING:
    from .sipmask import SipMaskParts

__all__ = ["HEAD_OUTPUTS", "FrameGraph", "split_frame_outputs"]

# per-level head outputs, in the order FrameGraph returns them
HEAD_OUTPUTS = ("logits", "reg", "ctr", "coefficients")


def split_frame_outputs(
    outputs: tuple[torch.Tensor, ...], num_levels: int
) -> tuple[dict[str, list[torch.Tensor]], torch.Tensor, tuple[torch.Tensor, ...]]:
    """:class:`FrameGraph` outputs → (head dict of per-level lists, bases, the outputs after
    them)."""
    head = {
        key: list(outputs[i * num_levels : (i + 1) * num_levels])
        for i, key in enumerate(HEAD_OUTPUTS)
    }
    rest = outputs[len(HEAD_OUTPUTS) * num_levels :]
    return head, rest[0], rest[1:]


class FrameGraph(nn.Module):
    """``image`` (3, H, W) float32, the resized image in ``INPUT.FORMAT`` with values 0-255 →
    for each of ``HEAD_OUTPUTS`` its L per-level maps (1, C_out, H_l, W_l), then the basis
    masks (1, K, H/2, W/2) (H, W padded). A subclass adds outputs after them
    (:meth:`extra_outputs`)."""

    def __init__(self, model: SipMaskParts):
        super().__init__()
        self.backbone = model.backbone
        # the model's dense heads as submodules, so that a trace records their parameters
        self.fcos_head = model.fcos.head
        self.feature_align = model.feature_align
        self.coefficients = model.coefficients
        self.basis = model.basis
        self._model = [model]  # its methods, not its state
        self.in_features = list(model.fcos.in_features)
        self.register_buffer("pixel_mean", model.pixel_mean, False)
        self.register_buffer("pixel_std", model.pixel_std, False)

    def input_names(self) -> list[str]:
        return ["image"]

    def output_names(self) -> list[str]:
        levels = range(len(self.in_features))
        return [f"{key}_{level}" for key in HEAD_OUTPUTS for level in levels] + ["bases"]

    def extra_outputs(self, levels: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Outputs a subclass computes from the FPN levels, after the basis masks."""
        return ()

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = normalize_and_pad(
            image, self.pixel_mean, self.pixel_std, self.backbone.size_divisibility
        )
        features = self.backbone(x)
        levels = [features[f] for f in self.in_features]
        model = self._model[0]
        head = model.head_outputs(levels)
        bases = model.basis(head["bbox_towers"][: model.basis_levels])
        maps = [m for key in HEAD_OUTPUTS for m in head[key]]
        return (*maps, bases, *self.extra_outputs(levels))
