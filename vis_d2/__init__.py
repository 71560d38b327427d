"""vis_d2: one-stage video instance segmentation on Detectron2.

Importing the package registers its parts (backbones, meta-architectures, data sets) in
detectron2's registries and catalogs.
"""

from . import data  # noqa: F401  registers the builtin data sets
from .config import add_vis_config

__version__ = "0.1.0"
__all__ = ["add_vis_config"]
