"""Forcing N detections from the shared FCOS detector (the methods built on it share this)."""

from __future__ import annotations

import torch
from detectron2.config import CfgNode

from ..modeling.meta_arch import VISModel
from .random_init import BoxSizes, force_frame_outputs

__all__ = ["force_fcos_box_sizes", "force_fcos_detections"]


def force_fcos_detections(cfg: CfgNode, num: int) -> CfgNode:
    """A copy of ``cfg`` whose FCOS inference keeps exactly ``num`` detections a frame: every
    (location, class) is a candidate and NMS suppresses nothing."""
    cfg = cfg.clone()
    fcos = cfg.MODEL.FCOS
    fcos.INFERENCE_TH_TEST = -1.0
    fcos.PRE_NMS_TOPK_TEST = max(fcos.PRE_NMS_TOPK_TEST, num)
    fcos.POST_NMS_TOPK_TEST = num
    fcos.NMS_TH = 1.0  # IoU > 1 never happens
    return cfg


def force_fcos_box_sizes(
    model: VISModel, sizes: BoxSizes, strides: list[int], first_reg_output: int
) -> str:
    """Replace the box regression of ``model``'s frame graph, its per-level ltrb maps (B, 4,
    H_l, W_l) in strides at outputs ``first_reg_output`` onwards (one per stride), by boxes of
    ``sizes`` centred on each location; returns what it did."""
    cache: dict[tuple[int, ...], torch.Tensor] = {}

    def forced(reg: torch.Tensor, level: int) -> torch.Tensor:
        key = (level, *reg.shape)
        if key not in cache:
            batch, _, height, width = reg.shape
            half = sizes.sample(height * width, level).to(reg) / (2 * strides[level])
            ltrb = half.t().reshape(2, height, width).repeat(2, 1, 1)  # (w, h, w, h) / 2
            cache[key] = ltrb.expand(batch, 4, height, width)
        return cache[key]

    def replace(outputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        out = list(outputs)
        for level in range(len(strides)):
            out[first_reg_output + level] = forced(out[first_reg_output + level], level)
        return tuple(out)

    force_frame_outputs(model, replace)
    return sizes.describe()
