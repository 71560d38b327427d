"""SipMask-VIS on vis_d2: ``add_sipmask_vis_config`` and the ``SipMaskVIS`` META_ARCH (registered
on import)."""

from . import (
    benchmark,  # noqa: F401  (registers the benchmark adapter)
    convert,  # noqa: F401  (registers the authors' checkpoint converter)
)
from .config import add_sipmask_vis_config
from .sipmask import SipMaskVIS

__all__ = ["SipMaskVIS", "add_sipmask_vis_config"]
