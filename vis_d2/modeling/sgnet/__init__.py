"""SG-Net: spatial-granularity masks and centerness-movement tracking on FCOS;
``add_sgnet_config`` and the ``SGNet`` META_ARCH (registered on import)."""

from .base_mask import BaseMaskModule
from .config import add_sgnet_config
from .movement_head import MovementHead
from .sgnet import SGNet
from .spatial_attention import SpatialAttention

__all__ = ["BaseMaskModule", "MovementHead", "SGNet", "SpatialAttention", "add_sgnet_config"]
