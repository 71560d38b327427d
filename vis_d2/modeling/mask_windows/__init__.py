"""Box-window mask assembly shared by the methods whose masks are linear combinations of
basis maps with per-sub-region coefficients (SG-Net's granularity blender, Sec. 3.2;
SipMask's spatial coefficients with CropSplit, a fixed 2 × 2 grid; STMask's prototypes, one
cell).

An instance's mask is computed only on its box window of the basis map: each pixel inside
the box takes the sigmoid of its logit (:mod:`.grids`: the cell it takes and the logit of
``subregion`` or ``sum_sigmoid``), pixels outside are 0. :mod:`.windows`: the windows for
training and inference, the GT windows, the loss and the paste back onto the map;
:mod:`.assembly`: inference masks at the output resolution.
"""

from .assembly import MASK_RESIZES, assemble_masks
from .grids import BLEND_MODES, CELL_RULES
from .windows import MaskWindows, blend, gt_masks_on_basis, gt_windows, mask_loss, paste_windows

__all__ = [
    "BLEND_MODES",
    "CELL_RULES",
    "MASK_RESIZES",
    "MaskWindows",
    "assemble_masks",
    "blend",
    "gt_masks_on_basis",
    "gt_windows",
    "mask_loss",
    "paste_windows",
]
