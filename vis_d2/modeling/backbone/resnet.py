"""ResNets from ``MODEL.RESNETS``: detectron2's, plus what its builder lacks — R-18/R-34 narrower
than 64 res2 channels, and deformable 3×3 convs in every k-th bottleneck of a stage
(``DEFORM_INTERVAL``) that run on the CPU through :class:`vis_d2.layers.DeformConv`."""

from __future__ import annotations

import fvcore.nn.weight_init as weight_init
import torch
from detectron2.config import CfgNode
from detectron2.layers import CNNBlockBase, ShapeSpec
from detectron2.modeling.backbone import ResNet, build_resnet_backbone
from detectron2.modeling.backbone import resnet as d2_resnet
from torch.nn import functional as F

from vis_d2.layers import DeformConv

__all__ = ["BasicStem", "DeformBottleneckBlock", "build_resnet"]

_BOTTLENECK_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class BasicStem(d2_resnet.BasicStem):
    """detectron2's stem (7×7 conv, ReLU, 3×3 max pooling of stride 2; same parameters) with
    the pooling of a channels-first CPU tensor run in channels-last layout: the same values,
    through PyTorch's vectorised channels-last kernel instead of its channels-first one.
    (N, C_in, H, W) → (N, C_out, H/4, W/4), in the input's memory layout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        if x.device.type != "cpu" or x.is_contiguous(memory_format=torch.channels_last):
            return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        x = x.contiguous(memory_format=torch.channels_last)
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1).contiguous()


def _stem(cfg: CfgNode, input_shape: ShapeSpec) -> BasicStem:
    res = cfg.MODEL.RESNETS
    return BasicStem(input_shape.channels, res.STEM_OUT_CHANNELS, norm=res.NORM)


class DeformBottleneckBlock(d2_resnet.DeformBottleneckBlock):
    """detectron2's ``DeformBottleneckBlock`` (same arguments, parameter names and
    initialisation, so its checkpoints load) with the deformable 3×3 conv computed by
    :class:`vis_d2.layers.DeformConv` (its CPU path instead of detectron2's kernel), in training
    and inference, with equal outputs and gradients."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs):
        super().__init__(in_channels, out_channels, **kwargs)
        if kwargs.get("num_groups", 1) != 1:
            raise ValueError("deformable bottlenecks need MODEL.RESNETS.NUM_GROUPS = 1")
        old = self.conv2
        self.conv2 = DeformConv(
            old.in_channels,
            old.out_channels,
            old.kernel_size,
            stride=old.stride,
            padding=old.padding,
            dilation=old.dilation,
            offset_groups=old.deformable_groups,
            bias=False,
            norm=old.norm,
        )
        weight_init.c2_msra_fill(self.conv2)


def _deformable_bottleneck_resnet(cfg: CfgNode, input_shape: ShapeSpec) -> ResNet:
    """detectron2's bottleneck ResNet where block i of a stage with ``DEFORM_ON_PER_STAGE`` is
    deformable when i % ``DEFORM_INTERVAL`` == 0 (YOLACT++'s "DCN interval"; 1 = detectron2's
    every block)."""
    res = cfg.MODEL.RESNETS
    if res.DEPTH not in _BOTTLENECK_BLOCKS:
        raise ValueError(
            f"MODEL.RESNETS.DEFORM_ON_PER_STAGE needs a bottleneck ResNet (depth 50, 101 or "
            f"152), not depth {res.DEPTH}"
        )
    if res.DEFORM_INTERVAL < 1:
        raise ValueError(f"MODEL.RESNETS.DEFORM_INTERVAL must be >= 1, not {res.DEFORM_INTERVAL}")
    stem = _stem(cfg, input_shape)
    in_channels, out_channels = res.STEM_OUT_CHANNELS, res.RES2_OUT_CHANNELS
    bottleneck_channels = res.NUM_GROUPS * res.WIDTH_PER_GROUP
    stages = []
    for idx, num_blocks in enumerate(_BOTTLENECK_BLOCKS[res.DEPTH]):
        dilation = res.RES5_DILATION if idx == 3 else 1
        first_stride = 1 if idx == 0 or dilation == 2 else 2
        blocks = []
        for i in range(num_blocks):
            kwargs = dict(
                bottleneck_channels=bottleneck_channels,
                stride=first_stride if i == 0 else 1,
                num_groups=res.NUM_GROUPS,
                norm=res.NORM,
                stride_in_1x1=res.STRIDE_IN_1X1,
                dilation=dilation,
            )
            if res.DEFORM_ON_PER_STAGE[idx] and i % res.DEFORM_INTERVAL == 0:
                block: CNNBlockBase = DeformBottleneckBlock(
                    in_channels,
                    out_channels,
                    deform_modulated=res.DEFORM_MODULATED,
                    deform_num_groups=res.DEFORM_NUM_GROUPS,
                    **kwargs,
                )
            else:
                block = d2_resnet.BottleneckBlock(in_channels, out_channels, **kwargs)
            blocks.append(block)
            in_channels = out_channels
        out_channels *= 2
        bottleneck_channels *= 2
        stages.append(blocks)
    return ResNet(
        stem, stages, out_features=res.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT
    )


def _narrow_basic_resnet(cfg: CfgNode, input_shape: ShapeSpec) -> ResNet:
    res = cfg.MODEL.RESNETS
    stem = _stem(cfg, input_shape)
    stages, in_channels, out_channels = [], res.STEM_OUT_CHANNELS, res.RES2_OUT_CHANNELS
    for i, num_blocks in enumerate({18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}[res.DEPTH]):
        first_stride = 1 if i == 0 else 2
        stages.append(
            ResNet.make_stage(
                d2_resnet.BasicBlock,
                num_blocks,
                stride_per_block=[first_stride] + [1] * (num_blocks - 1),
                in_channels=in_channels,
                out_channels=out_channels,
                norm=res.NORM,
            )
        )
        in_channels, out_channels = out_channels, out_channels * 2
    return ResNet(
        stem, stages, out_features=res.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT
    )


def build_resnet(cfg: CfgNode, input_shape: ShapeSpec) -> ResNet:
    """detectron2's ResNet from ``MODEL.RESNETS``, with two extensions:

    - R-18/R-34 may be narrower than 64 res2 channels (``RES2_OUT_CHANNELS``, doubling per
      stage): detectron2's builder refuses that, and the CPU configs use it to cut the
      backbone's cost about fourfold at half width;
    - with ``DEFORM_ON_PER_STAGE``, the deformable blocks are :class:`DeformBottleneckBlock`
      (fast on the CPU), one every ``DEFORM_INTERVAL`` blocks of each such stage;

    and its stem is :class:`BasicStem` (detectron2's, with a faster pooling on the CPU).
    """
    res = cfg.MODEL.RESNETS
    if any(res.DEFORM_ON_PER_STAGE):
        return _deformable_bottleneck_resnet(cfg, input_shape)
    if res.DEPTH in (18, 34) and res.RES2_OUT_CHANNELS != 64:
        return _narrow_basic_resnet(cfg, input_shape)
    model = build_resnet_backbone(cfg, input_shape)
    stem = _stem(cfg, input_shape)
    stem.conv1 = model.stem.conv1  # the built one: frozen as FREEZE_AT says
    model.stem = stem
    return model
