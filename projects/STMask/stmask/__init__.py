"""STMask on vis_d2: ``add_stmask_config``, the ``STMask`` META_ARCH and its modules (the
meta-architecture, the backbone and the anchor generator register in detectron2's registries
on import)."""

from . import (
    benchmark,  # noqa: F401  (registers the benchmark adapter)
    convert,  # noqa: F401  (registers the authors' checkpoint converter)
)
from .anchors import KernelAnchorGenerator
from .backbone import STMaskFPN, build_stmask_resnet_fpn_backbone
from .config import add_stmask_config
from .fcb import FeatureCalibration, aligned_offsets
from .prediction_head import PredictionHead
from .protonet import ProtoNet
from .stmask import STMask

__all__ = [
    "FeatureCalibration",
    "KernelAnchorGenerator",
    "PredictionHead",
    "ProtoNet",
    "STMask",
    "STMaskFPN",
    "add_stmask_config",
    "aligned_offsets",
    "build_stmask_resnet_fpn_backbone",
]
