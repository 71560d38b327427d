"""``MODEL.STMASK.*``: STMask's own keys (Li et al., CVPR 2021). Defaults follow the authors'
released code where it differs from the paper; the paper's choices are options."""

from __future__ import annotations

from detectron2.config import CfgNode as CN

__all__ = ["add_stmask_config"]


def add_stmask_config(cfg: CN) -> CN:
    """Add ``MODEL.STMASK`` to ``cfg`` in place (and return it)."""
    cfg.MODEL.STMASK = CN()
    _C = cfg.MODEL.STMASK
    _C.NUM_CLASSES = 40  # foreground classes; the softmax adds background
    # backbone: FPN levels P3-P5 with ReLU outputs, then NUM_DOWNSAMPLE strided convs (P6, P7)
    _C.NUM_DOWNSAMPLE = 2
    # the FPN's top-down upsampling: "nearest" x2 (detectron2's) or "bilinear" to the lateral's
    # size (the authors' code; their converted weights run with it)
    _C.FPN_UPSAMPLE = "nearest"
    # protonet on P3: PROTO_CONVS x (3x3 conv PROTO_DIM, ReLU), x2, 3x3 conv, 1x1 -> NUM_PROTOS
    _C.PROTO_CONVS = 3
    _C.PROTO_DIM = 256
    # kernel-shaped anchors (FCA): (h, w) in strides per location, 3s x 3s, 3s x 5s, 5s x 3s;
    # the prediction head's last convs take the same kernel shapes
    _C.ANCHOR_SHAPES = [[3, 3], [3, 5], [5, 3]]
    _C.NUM_PROTOS = 32
    _C.EMBED_DIM = 128
    # feature calibration (FCB): "ada" (learned offsets from the box deltas), "ali" (the
    # offsets of the box geometry) or "none", on the branches listed (code: cls only; paper:
    # ada on cls, mask and track, ali on mask and track)
    _C.FCB = "ada"
    _C.FCB_BRANCHES = ["cls"]
    _C.BOX_VARIANCES = (0.1, 0.2)  # SSD box coding: centre / 0.1, log size / 0.2
    _C.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    _C.EXTRA_CONVS = 2  # per branch of the prediction head, after the shared conv
    # training: anchors with IoU >= POS_IOU positive, < NEG_IOU background; OHEM keeps
    # OHEM_RATIO negatives per positive
    _C.POS_IOU = 0.5
    _C.NEG_IOU = 0.4
    # the authors' code adds the GT class's probability to the IoU of confident anchors and
    # neutralises anchors near several GTs (not in the paper; see match_anchors)
    _C.CLASS_AWARE_MATCHING = False
    # the anchors forced positive for a GT after the thresholds (with CLASS_AWARE_MATCHING):
    # "all_ties", every anchor tied at the GT's best IoU; "greedy_first", GT by GT in order of
    # their best IoU, one anchor each (the first arg-max among those no earlier GT took),
    # which then serves only that GT (the authors' code)
    _C.FORCED_MATCHES = "all_ties"
    # which centerness each anchor row takes (see prediction_head.CENTERNESS_ORDERS):
    # "anchor", its own; "shape_major", the authors' code's order, which their weights need
    _C.CENTERNESS_ORDER = "anchor"
    # the prototype pixels a mask keeps around its box: RULE "centre", pixels whose centre is
    # in the box (x1 <= u + 0.5 < x2, prototype px); "index", pixels whose index is
    # (x1 <= u < x2, the authors' code); PADDING widens the box on each side by that many
    # prototype pixels (the authors': 1)
    _C.MASK_CROP = CN()
    _C.MASK_CROP.RULE = "centre"
    _C.MASK_CROP.PADDING = 0
    _C.OHEM_RATIO = 3.0
    _C.MASK_BOX_ENLARGE = 1.2  # the predicted box crops the mask loss, enlarged this much
    # LOSS_WEIGHTS.<NAME> weighs the loss loss_<name> (BOX_SHIFT, MASK_SHIFT: temporal fusion's)
    _C.LOSS_WEIGHTS = CN(
        {
            "CLS": 6.125,
            "BOX": 5.0,
            "CTR": 20.0,
            "MASK": 6.125,
            "TRACK": 5.0,
            "BOX_SHIFT": 5.0,
            "MASK_SHIFT": 6.125,
        }
    )
    # temporal fusion: the correlation (PATCH x PATCH displacements) of CORR_FEATURE between
    # the two frames of a pair and both frames' T2S features there, pooled POOL x POOL at the
    # earlier frame's boxes, regress each instance's box and coefficient shifts (TemporalNet
    # conv widths CHANNELS); its losses B_shift and M_shift weigh LOSS_WEIGHTS.BOX_SHIFT and
    # LOSS_WEIGHTS.MASK_SHIFT
    _C.TF = CN()
    _C.TF.ON = True
    _C.TF.CORR_FEATURE = "p4"
    _C.TF.PATCH = 11
    _C.TF.POOL = 7
    _C.TF.CHANNELS = (512, 512, 1024)
    cfg.register_renamed_key("MODEL.STMASK.TF.BOX_WEIGHT", "MODEL.STMASK.LOSS_WEIGHTS.BOX_SHIFT")
    cfg.register_renamed_key("MODEL.STMASK.TF.MASK_WEIGHT", "MODEL.STMASK.LOSS_WEIGHTS.MASK_SHIFT")
    # inference of the anchor head (the FCOS methods': MODEL.FCOS.INFERENCE_TH_TEST, NMS_TH,
    # POST_NMS_TOPK_TEST): candidates whose best class probability exceeds SCORE_THRESH and
    # whose centerness is positive, scored by their product, cross-class Fast NMS over the
    # NMS_TOPK best
    _C.TEST = CN()
    _C.TEST.SCORE_THRESH = 0.05
    _C.TEST.NMS_THRESH = 0.5
    _C.TEST.NMS_TOPK = 200
    _C.TEST.DETECTIONS_PER_FRAME = 100
    # keep only candidates with a positive centerness (False: any, as the authors' code, where
    # a negative score ranks last in NMS and the tracker's memory)
    _C.TEST.POSITIVE_CENTERNESS = True
    # where boxes are clipped to the input: "all", the decoded boxes before NMS and the boxes
    # temporal fusion shifts; "output", only the boxes of the frame's output (the authors'
    # code: NMS overlaps and the boxes TF shifts are those of the unclipped boxes)
    _C.TEST.CLIP_BOXES = "all"
    _C.MASK_THRESH = 0.5  # on the mask probability at test time
    cfg.register_renamed_key("MODEL.STMASK.TEST.MASK_THRESH", "MODEL.STMASK.MASK_THRESH")
    return cfg
