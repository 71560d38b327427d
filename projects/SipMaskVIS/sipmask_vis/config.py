"""``MODEL.SIPMASK.*`` of SipMask-VIS: SipMask's keys (:func:`sipmask.add_sipmask_config`) and
those of its track branch. Its choices among the shared FCOS keys are in
``configs/Base-SipMaskVIS.yaml``."""

from __future__ import annotations

from detectron2.config import CfgNode as CN
from sipmask import add_sipmask_config

__all__ = ["add_sipmask_vis_config"]


def add_sipmask_vis_config(cfg: CN) -> CN:
    """Add SipMask's keys and the track branch's to ``cfg.MODEL.SIPMASK`` in place (and
    return it)."""
    add_sipmask_config(cfg)
    _C = cfg.MODEL.SIPMASK
    if "TRACK_LEVELS" in _C:
        return cfg
    # track branch: TRACK_CONVS-conv tower on the first TRACK_LEVELS FPN levels, resized to
    # the first, concatenated, 1x1 conv -> EMBED_DIM (stride of the first level)
    _C.TRACK_LEVELS = 3
    _C.TRACK_CONVS = 2
    _C.EMBED_DIM = 512
    # reference boxes of the track loss: GT boxes with centre and size jittered by up to this
    # fraction of their width and height
    _C.REF_BOX_JITTER = 0.05
    # detection and mask losses also on the reference frame of each pair (the authors train
    # them on the current frame only)
    _C.REF_FRAME_LOSSES = False
    # the track loss also drops the positives whose box has at most one basis pixel of area
    # (as the mask loss does; the authors')
    _C.TRACK_MIN_BOX_AREA = False
    # the track loss of a batch: "mean" over the images that have one, or "per_image" (their
    # sum divided by all images of the batch: the authors')
    _C.TRACK_LOSS_AVERAGE = "mean"
    _C.LOSS_WEIGHTS.TRACK = 1.0
    cfg.register_renamed_key("MODEL.SIPMASK.TRACK_LOSS_WEIGHT", "MODEL.SIPMASK.LOSS_WEIGHTS.TRACK")
    return cfg
