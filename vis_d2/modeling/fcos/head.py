"""The FCOS head: shared cls/box towers over all levels, centerness on the box tower."""

from __future__ import annotations

import math

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from torch import nn

from ...layers import Scale, build_tower, normal_init, shared_channels

__all__ = ["BOX_ACTIVATIONS", "FCOSHead"]

BOX_ACTIVATIONS = ("relu", "linear")


class FCOSHead(nn.Module):
    """Per level l, from an (N, C, H_l, W_l) feature: class logits (N, K, H_l, W_l), ltrb
    regression (N, 4, H_l, W_l) in units of the level's stride, centerness logits
    (N, 1, H_l, W_l), and the box tower output (N, C, H_l, W_l) that other heads reuse."""

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        num_levels: int,
        num_classes: int,
        num_cls_convs: int = 4,
        num_box_convs: int = 4,
        num_share_convs: int = 0,
        norm: str = "GN",
        prior_prob: float = 0.01,
        use_scale: bool = True,
        box_activation: str = "relu",
    ):
        super().__init__()
        if box_activation not in BOX_ACTIVATIONS:
            raise ValueError(
                f"MODEL.FCOS.BOX_ACTIVATION '{box_activation}' is not one of {BOX_ACTIVATIONS}"
            )
        self.box_activation = box_activation
        self.share_tower = build_tower(in_channels, in_channels, num_share_convs, norm)
        self.cls_tower = build_tower(in_channels, in_channels, num_cls_convs, norm)
        self.bbox_tower = build_tower(in_channels, in_channels, num_box_convs, norm)
        self.cls_logits = nn.Conv2d(in_channels, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.ctrness = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale() for _ in range(num_levels)) if use_scale else None
        normal_init(self)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: list[ShapeSpec]) -> dict:
        fcos = cfg.MODEL.FCOS
        return {
            "in_channels": shared_channels(input_shape, "FCOS"),
            "num_levels": len(input_shape),
            "num_classes": fcos.NUM_CLASSES,
            "num_cls_convs": fcos.NUM_CLS_CONVS,
            "num_box_convs": fcos.NUM_BOX_CONVS,
            "num_share_convs": fcos.NUM_SHARE_CONVS,
            "norm": fcos.NORM,
            "prior_prob": fcos.PRIOR_PROB,
            "use_scale": fcos.USE_SCALE,
            "box_activation": fcos.BOX_ACTIVATION,
        }

    def forward_towers(
        self, features: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per level, the (N, C, H_l, W_l) outputs of the class tower and of the box tower; a
        method may transform them (e.g. align the class tower to the boxes) before predicting."""
        cls_towers, bbox_towers = [], []
        for feature in features:
            feature = self.share_tower(feature)
            cls_towers.append(self.cls_tower(feature))
            bbox_towers.append(self.bbox_tower(feature))
        return cls_towers, bbox_towers

    def box_outputs(
        self, bbox_towers: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per level, ltrb regression (N, 4, H_l, W_l) in strides (scaled per level, >= 0 with
        the "relu" box activation) and centerness logits (N, 1, H_l, W_l) from the box towers."""
        regs, ctrs = [], []
        for level, bbox_tower in enumerate(bbox_towers):
            reg = self.bbox_pred(bbox_tower)
            if self.scales is not None:
                reg = self.scales[level](reg)
            regs.append(torch.relu(reg) if self.box_activation == "relu" else reg)
            ctrs.append(self.ctrness(bbox_tower))
        return regs, ctrs

    def class_logits(self, cls_towers: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per level, class logits (N, K, H_l, W_l) from the class towers."""
        return [self.cls_logits(tower) for tower in cls_towers]

    def forward(self, features: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        cls_towers, bbox_towers = self.forward_towers(features)
        reg, ctr = self.box_outputs(bbox_towers)
        return {
            "logits": self.class_logits(cls_towers),
            "reg": reg,
            "ctr": ctr,
            "bbox_towers": bbox_towers,
        }
