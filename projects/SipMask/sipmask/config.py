"""``MODEL.SIPMASK.*``: SipMask's keys (Cao et al., ECCV 2020, Sec. 3), read by the image model
``SipMask`` and by SipMask-VIS, which adds its track branch's. The choices among the shared FCOS
keys are in each method's ``Base-*.yaml``."""

from __future__ import annotations

from detectron2.config import CfgNode as CN

__all__ = ["add_sipmask_config"]


def add_sipmask_config(cfg: CN) -> CN:
    """Add ``MODEL.SIPMASK`` to ``cfg`` in place (once; a second call leaves it) and return it."""
    if "SIPMASK" in cfg.MODEL:
        return cfg
    cfg.MODEL.SIPMASK = CN()
    _C = cfg.MODEL.SIPMASK
    # basis masks: the box towers of BASIS_LEVELS levels resized to the first, concatenated,
    # 1x1 conv -> BASIS_DIM, ReLU, 3x3 conv -> NUM_BASES, ReLU, bilinear x4 (stride 2)
    _C.BASIS_LEVELS = 3
    _C.BASIS_DIM = 512
    _C.NUM_BASES = 32
    # spatial coefficients: SUB_REGIONS x SUB_REGIONS cells, NUM_BASES coefficients each, from
    # a 3x3 conv with normal(0, COEFFICIENTS_INIT_STD) initial weights
    _C.SUB_REGIONS = 2
    _C.COEFFICIENTS_INIT_STD = 0.01
    # feature alignment of the class tower to the predicted boxes (deformable 3x3 conv, with a
    # bias when FEATURE_ALIGN_BIAS: the maskrcnn-benchmark models')
    _C.FEATURE_ALIGN = True
    _C.DEFORM_GROUPS = 4
    _C.FEATURE_ALIGN_BIAS = False
    # weight each instance's mask loss by its class score times its box IoU (normalised to
    # mean 1)
    _C.MASK_ALIGN_WEIGHT = True
    # added to the widths and heights of the boxes (and their intersection) in that IoU, input
    # pixels: 2 is the authors' (mmdetection v1's +1 on the boxes at the stride-2 basis scale)
    _C.ALIGN_IOU_OFFSET = 0.0
    # positives whose masks are learned per image, drawn at random (0: all)
    _C.MAX_MASK_POS_PER_IMAGE = 0
    # which basis pixels a detection's box holds and which of the S x S cells each takes:
    # "centre" (pixel centres against the box, cells tiling it) or "index" (the integer pixel
    # index against the box, cells (w + 0.1) / S wide: the authors' CropSplit op); see
    # vis_d2.modeling.mask_windows.grids
    _C.CELL_RULE = "centre"
    # test masks: "crop_then_resize" (x2 to the input, crop its padding, resize to the output)
    # or "resize_then_crop" (one resize by 2 x output / input, then cropped: the authors')
    _C.MASK_RESIZE = "crop_then_resize"
    # LOSS_WEIGHTS.<NAME> weighs the loss loss_<name> (FCOS's class loss: LOSS_WEIGHT_CLS)
    _C.LOSS_WEIGHTS = CN({"MASK": 1.0, "MASK_IOU": 10.0})
    cfg.register_renamed_key("MODEL.SIPMASK.MASK_LOSS_WEIGHT", "MODEL.SIPMASK.LOSS_WEIGHTS.MASK")
    _C.MASK_THRESH = 0.5  # on the mask probability at test time
    # SipMask++'s mask re-scoring (image model): a small conv net predicts each detection's
    # mask IoU from its mask on the basis map; the output score is that IoU x the detection
    # score. Trained (loss_mask_iou) on the positives whose IoU target is in (MIN_IOU, 1] and
    # whose GT mask covers at least MIN_GT_AREA basis pixels
    _C.RESCORING = CN()
    _C.RESCORING.ENABLED = False
    _C.RESCORING.MIN_IOU = 0.1
    _C.RESCORING.MIN_GT_AREA = 100.0
    return cfg
