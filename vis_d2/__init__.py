"""vis_d2: one-stage video instance segmentation on Detectron2.

Importing the package registers its parts (backbones, meta-architectures, data sets) in
detectron2's registries and catalogs.
"""

from . import data, modeling  # noqa: F401  register data sets, backbones and models
from .config import add_fcos_config, add_sgnet_config, add_vis_config

__version__ = "0.1.0"
__all__ = ["add_fcos_config", "add_sgnet_config", "add_vis_config"]
