"""SipMask on vis_d2: ``add_sipmask_config``, the image META_ARCH ``SipMask`` (registered on
import), its converter of the authors' checkpoints and benchmark adapter (registered on import)
and SipMask's modules, which SipMask-VIS builds on."""

from . import (
    benchmark,  # noqa: F401  (registers the benchmark adapter)
    convert,  # noqa: F401  (registers the authors' checkpoint converter)
)
from .config import add_sipmask_config
from .sipmask import SipMask, SipMaskParts

__all__ = ["SipMask", "SipMaskParts", "add_sipmask_config"]
