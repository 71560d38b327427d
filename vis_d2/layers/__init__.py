"""Layers shared by the heads of every vis_d2 method."""

from .deform_conv import DeformConv
from .fast_nms import fast_nms
from .towers import Scale, build_tower, normal_init, shared_channels

__all__ = ["DeformConv", "Scale", "build_tower", "fast_nms", "normal_init", "shared_channels"]
