from .fpn import LastLevelP6, build_fcos_resnet_fpn_backbone

__all__ = ["LastLevelP6", "build_fcos_resnet_fpn_backbone"]
