from .fcos import (
    FCOS,
    FCOSOutputs,
    fcos_inference,
    flatten_levels,
)
from .head import FCOSHead
from .losses import box_loss, fcos_losses, ltrb_iou_giou, reduce_mean
from .targets import (
    FCOSTargets,
    assign_targets,
    centerness_targets,
    compute_locations,
    level_size_ranges,
)

__all__ = [
    "FCOS",
    "FCOSHead",
    "FCOSOutputs",
    "FCOSTargets",
    "assign_targets",
    "box_loss",
    "centerness_targets",
    "compute_locations",
    "fcos_inference",
    "fcos_losses",
    "flatten_levels",
    "level_size_ranges",
    "ltrb_iou_giou",
    "reduce_mean",
]
