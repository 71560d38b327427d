from .fpn import LastLevelP6, build_fcos_resnet_fpn_backbone
from .resnet import DeformBottleneckBlock, build_resnet

__all__ = ["DeformBottleneckBlock", "LastLevelP6", "build_fcos_resnet_fpn_backbone", "build_resnet"]
