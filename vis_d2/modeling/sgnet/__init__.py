"""SG-Net: spatial-granularity masks and centerness-movement tracking on FCOS."""

from .base_mask import BaseMaskModule
from .movement_head import MovementHead
from .sgnet import SGNet
from .spatial_attention import SpatialAttention

__all__ = ["BaseMaskModule", "MovementHead", "SGNet", "SpatialAttention"]
