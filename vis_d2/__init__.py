"""vis_d2: one-stage video instance segmentation on Detectron2.

Importing the package registers its parts (backbones, meta-architectures, data sets) in
detectron2's registries and catalogs.
"""

import warnings

# Deprecation notices of third-party code that vis_d2 calls and its users cannot act on, filtered
# by message and by the module that issues them, so that any other warning stays visible:
# fvcore decorates its losses with torch.jit.script at import; detectron2 gathers results
# across processes through torch.ByteStorage, and its anchor generator (Mask R-CNN, the
# benchmark's baseline) calls torch.meshgrid without ``indexing``. detectron2's image mapper
# stacks the resized bitmasks (read-only PIL views) into a new tensor, which copies them, but
# torch warns about the read-only source.
warnings.filterwarnings(
    "ignore", r"`torch\.jit\.script` is deprecated", FutureWarning, r"torch\.jit\._script"
)
warnings.filterwarnings("ignore", r"TypedStorage is deprecated", UserWarning, r"detectron2\.")
warnings.filterwarnings(
    "ignore", r"torch\.meshgrid: in an upcoming release", UserWarning, r"torch\.functional"
)
warnings.filterwarnings(
    "ignore",
    r"The given NumPy array is not writable",
    UserWarning,
    r"detectron2\.data\.detection_utils",
)

from . import data, modeling  # noqa: E402, F401  register data sets, backbones and models
from .config import add_fcos_config, add_vis_config  # noqa: E402

__version__ = "0.1.0"
__all__ = ["add_fcos_config", "add_vis_config"]
