"""``MODEL.SIPMASK.*``: SipMask-VIS's own keys (Cao et al., ECCV 2020, Sec. 3 and its VIS
extension). Its choices among the shared FCOS keys are in ``configs/Base-SipMaskVIS.yaml``."""

from __future__ import annotations

from detectron2.config import CfgNode as CN

__all__ = ["add_sipmask_config"]


def add_sipmask_config(cfg: CN) -> CN:
    """Add ``MODEL.SIPMASK`` to ``cfg`` in place (and return it)."""
    cfg.MODEL.SIPMASK = CN()
    _C = cfg.MODEL.SIPMASK
    # basis masks: the box towers of BASIS_LEVELS levels resized to the first, concatenated,
    # 1x1 conv -> BASIS_DIM, ReLU, 3x3 conv -> NUM_BASES, ReLU, bilinear x4 (stride 2)
    _C.BASIS_LEVELS = 3
    _C.BASIS_DIM = 512
    _C.NUM_BASES = 32
    # spatial coefficients: SUB_REGIONS x SUB_REGIONS cells, NUM_BASES coefficients each
    _C.SUB_REGIONS = 2
    # feature alignment of the class tower to the predicted boxes (deformable 3x3 conv)
    _C.FEATURE_ALIGN = True
    _C.DEFORM_GROUPS = 4
    # track branch: TRACK_CONVS-conv tower on the first TRACK_LEVELS FPN levels, resized to
    # the first, concatenated, 1x1 conv -> EMBED_DIM (stride of the first level)
    _C.TRACK_LEVELS = 3
    _C.TRACK_CONVS = 2
    _C.EMBED_DIM = 512
    # reference boxes of the track loss: GT boxes with centre and size jittered by up to this
    # fraction of their width and height
    _C.REF_BOX_JITTER = 0.05
    # weight each instance's mask loss by its class score times its box IoU (normalised to
    # mean 1)
    _C.MASK_ALIGN_WEIGHT = True
    # added to the widths and heights of the boxes (and their intersection) in that IoU, input
    # pixels: 2 is the authors' (mmdetection v1's +1 on the boxes at the stride-2 basis scale)
    _C.ALIGN_IOU_OFFSET = 0.0
    # positives whose masks are learned per image, drawn at random (0: all)
    _C.MAX_MASK_POS_PER_IMAGE = 0
    # detection and mask losses also on the reference frame of each pair (the authors train
    # them on the current frame only)
    _C.REF_FRAME_LOSSES = False
    # the track loss also drops the positives whose box has at most one basis pixel of area
    # (as the mask loss does; the authors')
    _C.TRACK_MIN_BOX_AREA = False
    # the track loss of a batch: "mean" over the images that have one, or "per_image" (their
    # sum divided by all images of the batch: the authors')
    _C.TRACK_LOSS_AVERAGE = "mean"
    # which basis pixels a detection's box holds and which of the S x S cells each takes:
    # "centre" (pixel centres against the box, cells tiling it) or "index" (the integer pixel
    # index against the box, cells (w + 0.1) / S wide: the authors' CropSplit op); see
    # vis_d2.modeling.mask_windows.grids
    _C.CELL_RULE = "centre"
    # test masks: "crop_then_resize" (x2 to the input, crop its padding, resize to the output)
    # or "resize_then_crop" (one resize by 2 x output / input, then cropped: the authors')
    _C.MASK_RESIZE = "crop_then_resize"
    # LOSS_WEIGHTS.<NAME> weighs the loss loss_<name> (FCOS's class loss: LOSS_WEIGHT_CLS)
    _C.LOSS_WEIGHTS = CN({"MASK": 1.0, "TRACK": 1.0})
    cfg.register_renamed_key("MODEL.SIPMASK.MASK_LOSS_WEIGHT", "MODEL.SIPMASK.LOSS_WEIGHTS.MASK")
    cfg.register_renamed_key("MODEL.SIPMASK.TRACK_LOSS_WEIGHT", "MODEL.SIPMASK.LOSS_WEIGHTS.TRACK")
    _C.MASK_THRESH = 0.5  # on the mask probability at test time
    return cfg
