"""Config keys shared by all vis_d2 methods; each method adds its own in ``add_<method>_config``."""

from collections.abc import Callable
from importlib.metadata import entry_points

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg as get_detectron2_cfg


def add_fcos_config(cfg: CN) -> CN:
    """``MODEL.FCOS.*``: the FCOS detector every vis_d2 method builds on (AdelaiDet defaults)."""
    cfg.MODEL.FCOS = CN()
    _C = cfg.MODEL.FCOS
    _C.NUM_CLASSES = 40
    _C.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    _C.FPN_STRIDES = [8, 16, 32, 64, 128]
    # P3 [-1, 64], P4 [64, 128], ... P7 [512, inf] (pixels of the network input; bounds inclusive)
    _C.SIZES_OF_INTEREST = [64, 128, 256, 512]
    _C.TOP_LEVELS = 2
    _C.PRIOR_PROB = 0.01
    _C.NORM = "GN"  # in the towers: "GN" (GroupNorm, 32 groups) or "" (none)
    _C.NUM_CLS_CONVS = 4
    _C.NUM_BOX_CONVS = 4
    _C.NUM_SHARE_CONVS = 0
    _C.USE_SCALE = True
    # the ltrb regression after the per-level scale: "relu" (AdelaiDet) or "linear" (SipMask)
    _C.BOX_ACTIVATION = "relu"
    _C.CENTER_SAMPLE = True
    _C.POS_RADIUS = 1.5  # in strides
    _C.LOC_LOSS_TYPE = "giou"  # iou | linear_iou | giou | log_giou
    _C.LOSS_ALPHA = 0.25
    _C.LOSS_GAMMA = 2.0
    _C.LOSS_WEIGHT_CLS = 1.0
    _C.THRESH_WITH_CTR = False
    # detection score sqrt(cls * ctr) (AdelaiDet) or, when False, cls * ctr (mmdetection)
    _C.SQRT_SCORE = True
    _C.INFERENCE_TH_TRAIN = 0.05
    _C.INFERENCE_TH_TEST = 0.05
    # what PRE_NMS_TOPK_* counts per level: "pairs" ((location, class) pairs above the score
    # threshold) or "locations" (by their best class score x centerness; mmdetection's heads)
    _C.PRE_NMS_CANDIDATES = "pairs"
    _C.PRE_NMS_TOPK_TRAIN = 1000
    _C.PRE_NMS_TOPK_TEST = 1000
    _C.POST_NMS_TOPK_TRAIN = 100
    _C.POST_NMS_TOPK_TEST = 100
    _C.NMS_TH = 0.6
    _C.NMS_CLASS_AGNOSTIC = False  # one NMS over all classes instead of one per class
    # "standard" NMS, or YOLACT's "fast" NMS (suppressed boxes still suppress; considers the
    # FAST_NMS_TOPK best boxes of each class)
    _C.NMS_TYPE = "standard"
    _C.FAST_NMS_TOPK = 200
    # boxes clipped to [0, W - CLIP_OFFSET] x [0, H - CLIP_OFFSET] of the input, after NMS or,
    # with CLIP_BEFORE_NMS, before it (1 and True: mmdetection v1's distance2bbox)
    _C.CLIP_BEFORE_NMS = False
    _C.CLIP_OFFSET = 0.0
    # added to the widths and heights of the boxes (and their intersection) in the NMS IoU
    # (1: mmdetection v1's nms op)
    _C.NMS_IOU_OFFSET = 0.0
    # the pixels NMS_IOU_OFFSET is counted in: "input" (the network input's) or "output" (the
    # output image's, per axis: mmdetection v1's image detectors, which rescale their boxes to
    # the original image before NMS; models that pass their output sizes: SipMask)
    _C.NMS_IOU_OFFSET_UNIT = "input"
    return cfg


def add_vis_config(cfg: CN) -> CN:
    """Add the video keys and the shared FCOS keys to a detectron2 config in place (and return it).

    ``INPUT.REF_FRAME_RANGE``: a training sample pairs a key frame t with a reference frame drawn
    from [t - R, t + R] of the same video (frames, not seconds). ``DATASETS.REGISTER``: see
    :func:`vis_d2.data.register_ytvis_splits`.
    """
    cfg.INPUT.REF_FRAME_RANGE = 2
    # the frames' resize: "pil" (detectron2's ResizeShortestEdge) or "opencv" (the same sizes
    # by cv2.resize, bilinear, as mmcv.imrescale in the mmdetection-based codes); see
    # vis_d2.data.transforms
    cfg.INPUT.RESIZE_BACKEND = "pil"
    # (height, width): when set, frames are resized to exactly this size, the aspect ratio
    # not kept (mmdetection's keep_ratio=False; the real-time SipMask trains at (576, 576)
    # and tests at (544, 544)), by RESIZE_BACKEND, instead of the MIN_SIZE_*/MAX_SIZE_*
    # shortest-edge resize; () keeps that resize
    cfg.INPUT.FIXED_SIZE_TRAIN = ()
    cfg.INPUT.FIXED_SIZE_TEST = ()
    # image models' training (vis_d2.data.BoxAwareDatasetMapper): the SSD-style augmentation
    # of the real-time SipMask models, before the resize and the flip, in the authors' order
    # (see vis_d2.data.ssd_augmentation): a photometric distortion (brightness +- DELTA in
    # 0-255 units, contrast and saturation factors, hue +- HUE_DELTA degrees of 360, each
    # with probability 0.5; the image becomes float32, not clipped), an expansion onto a
    # canvas EXPAND_RATIO times larger filled with MODEL.PIXEL_MEAN (probability 0.5), and a
    # crop whose IoU with every box is at least one of MIN_IOUS (or 0, or no crop), sides
    # at least MIN_CROP_SIZE of the image's; instances whose box centre is outside the crop
    # are dropped
    cfg.INPUT.SSD_AUGMENTATION = CN()
    cfg.INPUT.SSD_AUGMENTATION.ENABLED = False
    cfg.INPUT.SSD_AUGMENTATION.BRIGHTNESS_DELTA = 32
    cfg.INPUT.SSD_AUGMENTATION.CONTRAST_RANGE = (0.5, 1.5)
    cfg.INPUT.SSD_AUGMENTATION.SATURATION_RANGE = (0.5, 1.5)
    cfg.INPUT.SSD_AUGMENTATION.HUE_DELTA = 18
    cfg.INPUT.SSD_AUGMENTATION.EXPAND_RATIO = (1.0, 4.0)
    cfg.INPUT.SSD_AUGMENTATION.MIN_IOUS = (0.1, 0.3, 0.5, 0.7, 0.9)
    cfg.INPUT.SSD_AUGMENTATION.MIN_CROP_SIZE = 0.3
    # with DEFORM_ON_PER_STAGE: block i of such a stage is deformable when i % DEFORM_INTERVAL
    # == 0 (1: every block, detectron2's behaviour; YOLACT++/STMask's R-DCN models use 3)
    cfg.MODEL.RESNETS.DEFORM_INTERVAL = 1
    # the online tracker of TRACKER_REGISTRY that gives detections their track ids
    cfg.MODEL.TRACKER = CN()
    cfg.MODEL.TRACKER.NAME = "MovementTracker"
    cfg.MODEL.TRACKER.MAX_AGE = 1  # frames a lost track can still be matched
    cfg.MODEL.TRACKER.SAME_CLASS = False  # match only detections of the track's class
    # EmbeddingTracker, MemoryTracker: objects missed for more than this many frames are
    # forgotten (never matched again, their ids not given again), so that the tracker's state
    # and the work of a frame do not grow with the video; 0 keeps every object ever seen (the
    # authors' trackers). MemoryTracker: 0 or at least MEMORY.MAX_MISSED
    cfg.MODEL.TRACKER.FORGET_AFTER = 30
    # EmbeddingTracker: weights of (log detection score, box IoU, same class) added to the
    # embedding log-softmax (MaskTrack R-CNN's comprehensive score; SipMask-VIS's values)
    cfg.MODEL.TRACKER.MATCH_COEFFS = (1.0, 2.0, 10.0)
    # EmbeddingTracker: added to the widths and heights of the boxes (and of their
    # intersection) in that IoU; 1 is mmdetection v1's bbox_overlaps (boxes in output pixels)
    cfg.MODEL.TRACKER.BOX_IOU_OFFSET = 0.0
    # MemoryTracker: match weights of (score, mask IoU, box IoU, same class) added to the
    # embeddings' (cos + 1) / 2, the IoUs of the "new object" column, and which missed entries
    # are still shown (STMask's values)
    cfg.MODEL.TRACKER.MEMORY = CN()
    cfg.MODEL.TRACKER.MEMORY.MATCH_COEFFS = (0.0, 1.0, 2.0, 0.0)
    cfg.MODEL.TRACKER.MEMORY.DUMMY_IOU = 0.3
    cfg.MODEL.TRACKER.MEMORY.MAX_MISSED = 10
    cfg.MODEL.TRACKER.MEMORY.SCORE_DECAY = 0.95
    cfg.MODEL.TRACKER.MEMORY.MIN_SCORE = 0.05
    # what a frame shows: "detections", the frame's detections and the missed entries still
    # shown; "memory", every entry still shown (missed <= MAX_MISSED, score > MIN_SCORE, mask
    # of more than one pixel), matched and new ones included
    cfg.MODEL.TRACKER.MEMORY.OUTPUT = "detections"
    # the "new object" column of the matching score also takes the same-class term (weight
    # MATCH_COEFFS[3]) when True
    cfg.MODEL.TRACKER.MEMORY.DUMMY_SAME_CLASS = False
    # a detection whose best entry a higher-scoring detection took: "next_option", it takes
    # its next best entry or a new id; "drop", it gets no id and no entry
    cfg.MODEL.TRACKER.MEMORY.CONFLICT = "next_option"
    cfg.register_renamed_key("MODEL.TRACKER.MEMORY.FORGET_AFTER", "MODEL.TRACKER.FORGET_AFTER")
    # YouTube-VIS-format splits that the tools register before building anything, as
    # (name, json_file, image_root) triples; DATASETS.TRAIN/TEST can then name them
    cfg.DATASETS.REGISTER = ()
    # SOLVER.LR_SCHEDULER_NAME "WarmupExponentialLR" decays to BASE_LR * EXP_DECAY_FINAL at
    # MAX_ITER ("WarmupLinearLR" decays linearly to 0; detectron2's names are also accepted)
    cfg.SOLVER.EXP_DECAY_FINAL = 0.01
    # "SGD" (detectron2's) or "ADAMW", both on detectron2's parameter groups
    cfg.SOLVER.OPTIMIZER = "SGD"
    cfg.SOLVER.BETAS = (0.9, 0.999)  # AdamW only
    # results.json entries per track: 1 = its majority-vote class (as SG-Net scores); k > 1 =
    # its k best classes by mean class score, each an entry with the same masks
    cfg.TEST.CLASSES_PER_TRACK = 1
    # inference of the dense graphs (backbone, heads) under autocast, channels-last: bf16 on
    # the CPU (oneDNN: AMX / AVX-512 BF16), fp16 on CUDA; post-processing and tracking in fp32
    cfg.TEST.AMP = CN()
    cfg.TEST.AMP.ENABLED = False
    add_fcos_config(cfg)
    return cfg


# the entry-point group through which every method package adds its keys (see setup.py)
METHOD_CONFIG_GROUP = "vis_d2.method_configs"


def method_config_adders() -> list[Callable[[CN], CN]]:
    """The ``add_<method>_config`` functions of every installed method: the entry points of
    group ``vis_d2.method_configs`` (see ``setup.py``), sorted by name. Loading one imports
    its package, which registers the method's modules.

    Raises:
        ImportError: a method package is declared but cannot be imported (the message names
            it; reinstall with ``make setup``).
    """
    adders = []
    for entry in sorted(entry_points(group=METHOD_CONFIG_GROUP), key=lambda e: e.name):
        try:
            adders.append(entry.load())
        except ImportError as e:
            raise ImportError(
                f"the vis_d2 method package '{entry.name}' ({entry.value}) cannot be imported: "
                f"{e}; reinstall vis_d2 (make setup)"
            ) from e
    return adders


def get_cfg() -> CN:
    """detectron2's default config with every vis_d2 key at its default: the video keys, the
    shared FCOS keys and each installed method's own (``MODEL.<METHOD>.*``, added by the
    entry points of group ``vis_d2.method_configs``). The entry point of the tools; a
    method's choices among the shared keys live in its Base config file."""
    cfg = get_detectron2_cfg()
    add_vis_config(cfg)
    for add_config in method_config_adders():
        add_config(cfg)
    return cfg
