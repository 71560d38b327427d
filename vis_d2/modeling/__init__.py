"""Models: backbones, heads and meta-architectures, registered in detectron2's registries."""

from .backbone import build_fcos_resnet_fpn_backbone
from .fcos import FCOS
from .meta_arch import FrameModel, VISModel, is_video_model
from .sgnet import SGNet
from .tracking import MovementTracker

__all__ = [
    "FCOS",
    "FrameModel",
    "MovementTracker",
    "SGNet",
    "VISModel",
    "build_fcos_resnet_fpn_backbone",
    "is_video_model",
]
