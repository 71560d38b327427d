"""The dense parts of :meth:`SGNet.inference_frame` as modules with flat tensor inputs and
outputs, which the eager model runs and ``torch.jit.trace``/``torch.onnx.export`` trace.

A frame runs through three graphs, in the order of the eager model:

1. :class:`FrameGraph`: image → backbone → FCOS head (class logits, box regression,
   centerness, box towers) and the backbone features the mask graph reads.
2. :class:`MaskGraph` (frames with detections): features → SAM towers and base masks.
3. :class:`MovementGraph` (frames with detections after the first): box towers of the frame
   and of the previous frame → movement towers.

Everything whose size depends on the data (thresholding, top-k, NMS, the per-instance SAM
and movement reads, the mask blender, the tracker) stays in Python (:class:`.SGNet`), so
the graphs are valid for any input size and any number of detections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..meta_arch import normalize_and_pad

if TYPE_CHECKING:
    from .sgnet import SGNet

__all__ = [
    "HEAD_OUTPUTS",
    "FrameGraph",
    "MaskGraph",
    "MovementGraph",
    "mask_feature_names",
    "split_frame_outputs",
]

# FCOS head outputs, in the order FrameGraph returns them (each for every level)
HEAD_OUTPUTS = ("logits", "reg", "ctr", "bbox_towers")


def mask_feature_names(model: SGNet) -> list[str]:
    """The backbone features the SAM towers (FCOS levels) and the base mask module read."""
    names = list(model.fcos.in_features)
    return names + [f for f in model.base_mask.in_features if f not in names]


def split_frame_outputs(
    outputs: tuple[torch.Tensor, ...], num_levels: int
) -> tuple[dict[str, list[torch.Tensor]], list[torch.Tensor]]:
    """:class:`FrameGraph` outputs → (FCOS head dict of per-level lists, backbone features)."""
    head = {
        key: list(outputs[i * num_levels : (i + 1) * num_levels])
        for i, key in enumerate(HEAD_OUTPUTS)
    }
    return head, list(outputs[len(HEAD_OUTPUTS) * num_levels :])


class FrameGraph(nn.Module):
    """``image`` (3, H, W) float32, the resized frame in ``INPUT.FORMAT`` with values 0-255 →
    for each of ``HEAD_OUTPUTS`` its L per-level maps (1, C_out, H_l, W_l) (logits: C_out = K
    classes, reg: 4 in stride units, ctr: 1, bbox_towers: C), then the backbone features of
    :func:`mask_feature_names` (1, C, H_f, W_f). The image is normalised with the model's pixel
    mean/std and zero-padded to the backbone's size divisibility, as in SGNet."""

    def __init__(self, model: SGNet):
        super().__init__()
        self.backbone = model.backbone
        self.head = model.fcos.head
        self.in_features = list(model.fcos.in_features)
        self.feature_names = mask_feature_names(model)
        self.register_buffer("pixel_mean", model.pixel_mean, False)
        self.register_buffer("pixel_std", model.pixel_std, False)

    def output_names(self) -> list[str]:
        levels = range(len(self.in_features))
        return [f"{key}_{level}" for key in HEAD_OUTPUTS for level in levels] + self.feature_names

    def input_names(self) -> list[str]:
        return ["image"]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = normalize_and_pad(
            image, self.pixel_mean, self.pixel_std, self.backbone.size_divisibility
        )
        features = self.backbone(x)
        head = self.head([features[f] for f in self.in_features])
        maps = [m for key in HEAD_OUTPUTS for m in head[key]]
        return (*maps, *(features[f] for f in self.feature_names))


class MaskGraph(nn.Module):
    """The features of :func:`mask_feature_names`, each (1, C, H_f, W_f) → the SAM towers of
    the L FCOS levels (1, D, H_l, W_l), then the base masks (1, K, H_b, W_b) at stride 2."""

    def __init__(self, model: SGNet):
        super().__init__()
        self.sam = model.sam
        self.base_mask = model.base_mask
        self.in_features = list(model.fcos.in_features)
        self.feature_names = mask_feature_names(model)

    def input_names(self) -> list[str]:
        return list(self.feature_names)

    def output_names(self) -> list[str]:
        return [f"sam_tower_{level}" for level in range(len(self.in_features))] + ["bases"]

    def forward(self, *features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        named = dict(zip(self.feature_names, features, strict=True))
        towers = self.sam.forward_towers([named[f] for f in self.in_features])
        return (*towers, self.base_mask(named))


class MovementGraph(nn.Module):
    """The L box towers of frame t, then the L box towers of frame t-1, each (1, C, H_l, W_l)
    → the L movement towers (1, C', H_l, W_l), the input of the movement head's 1×1 conv."""

    def __init__(self, model: SGNet):
        super().__init__()
        if model.movement_head is None:
            raise ValueError("the model has no movement head (MODEL.SGNET.TRACK.ON is False)")
        self.movement_head = model.movement_head
        self.num_levels = len(model.fcos.in_features)

    def input_names(self) -> list[str]:
        levels = range(self.num_levels)
        return [f"bbox_towers_{level}" for level in levels] + [
            f"prev_bbox_towers_{level}" for level in levels
        ]

    def output_names(self) -> list[str]:
        return [f"movement_tower_{level}" for level in range(self.num_levels)]

    def forward(self, *towers: torch.Tensor) -> tuple[torch.Tensor, ...]:
        current, previous = towers[: self.num_levels], towers[self.num_levels :]
        return tuple(self.movement_head.forward_towers(list(current), list(previous)))
