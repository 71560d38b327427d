"""Models: backbones and heads, registered in detectron2's registries on import."""

from .backbone import build_fcos_resnet_fpn_backbone
from .fcos import FCOS

__all__ = ["FCOS", "build_fcos_resnet_fpn_backbone"]
