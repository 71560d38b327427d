"""``MODEL.SGNET.*``: SG-Net's own keys (Liu et al., CVPR 2021, Sec. 3-4). Its choices among
the shared keys (log-GIoU box loss, class-wise NMS at 0.5, at most 10 detections a frame) are
in ``configs/Base-SGNet.yaml``, so that no method's defaults change another's."""

from __future__ import annotations

from detectron2.config import CfgNode as CN

__all__ = ["add_sgnet_config"]


def add_sgnet_config(cfg: CN) -> CN:
    """Add ``MODEL.SGNET`` to ``cfg`` in place (and return it)."""
    cfg.MODEL.SGNET = CN()
    _C = cfg.MODEL.SGNET
    # base mask module: P3-P5 resized to P3, concatenated, 2 convs, 1x1 to OUT_CHANNELS, x4 up
    _C.BASE = CN()
    _C.BASE.IN_FEATURES = ["p3", "p4", "p5"]
    _C.BASE.CONVS_DIM = 128
    _C.BASE.NUM_CONVS = 2
    _C.BASE.OUT_CHANNELS = 36
    _C.BASE.UPSAMPLE = 4  # P3 (stride 8) -> stride 2
    _C.BASE.NORM = ""
    # spatial attention module: per-location coefficients for a MASTER_GRID x MASTER_GRID grid
    _C.SAM = CN()
    _C.SAM.CONVS_DIM = 256
    _C.SAM.MASTER_GRID = 6
    _C.SAM.MAX_DIV = 6  # r = min(MAX_DIV, ceil(side / UNIT))
    _C.SAM.UNIT = 50.0  # pixels of the network input
    _C.BLENDER = "subregion"  # subregion | sum_sigmoid
    _C.MASK_BOX = "pred"  # pred | gt: the box that sets the grid and crop in training
    # positives whose masks are learned per image, drawn at random (0: all)
    _C.MAX_MASK_POS_PER_IMAGE = 100
    _C.TRACK = CN()
    _C.TRACK.ON = True
    _C.TRACK.NUM_CONVS = 1
    for key in ("MAX_AGE", "SAME_CLASS"):
        cfg.register_renamed_key(f"MODEL.SGNET.TRACK.{key}", f"MODEL.TRACKER.{key}")
    # LOSS_WEIGHTS.<NAME> weighs the loss loss_<name> (FCOS's class loss: LOSS_WEIGHT_CLS)
    _C.LOSS_WEIGHTS = CN({"MASK": 1.0, "TRACK": 1.0})
    cfg.register_renamed_key("MODEL.SGNET.MASK_LOSS_WEIGHT", "MODEL.SGNET.LOSS_WEIGHTS.MASK")
    cfg.register_renamed_key("MODEL.SGNET.TRACK.LOSS_WEIGHT", "MODEL.SGNET.LOSS_WEIGHTS.TRACK")
    _C.MASK_THRESH = 0.5  # on the mask probability at test time
    return cfg
