"""Config keys shared by all vis_d2 methods; each method adds its own in ``add_<method>_config``."""

from detectron2.config import CfgNode


def add_vis_config(cfg: CfgNode) -> CfgNode:
    """Add the video keys to a detectron2 config in place (and return it). Idempotent.

    ``INPUT.REF_FRAME_RANGE``: a training sample pairs a key frame t with a reference frame drawn
    from [t - R, t + R] of the same video (frames, not seconds).
    """
    cfg.INPUT.REF_FRAME_RANGE = 2
    return cfg
