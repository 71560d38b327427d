"""Models: backbones, heads and meta-architectures, registered in detectron2's registries."""

from .backbone import build_fcos_resnet_fpn_backbone
from .fcos import FCOS
from .meta_arch import VISModel
from .sgnet import SGNet
from .tracking import MovementTracker

__all__ = ["FCOS", "MovementTracker", "SGNet", "VISModel", "build_fcos_resnet_fpn_backbone"]
