"""Every registered tracker keeps the ``Tracker.update`` contract and a bounded state on a
long video of new objects: each frame brings objects that match nothing seen before."""

import pytest
import torch
from detectron2.structures import Boxes, Instances

from vis_d2.config import get_cfg
from vis_d2.modeling.tracking import TRACKER_REGISTRY, build_tracker

FRAMES = 120
NEW_PER_FRAME = 3


def _new_objects(t: int) -> Instances:
    """Frame t: NEW_PER_FRAME objects whose boxes, masks, embeddings and classes match no
    object of another frame (boxes 60 px apart along x, one-hot embeddings per object)."""
    n = NEW_PER_FRAME
    k = torch.arange(n) + n * t
    x = 60.0 * k
    boxes = torch.stack((x, torch.zeros(n), x + 20, torch.full((n,), 20.0)), dim=1)
    embeddings = torch.zeros(n, n * FRAMES)
    embeddings[torch.arange(n), k] = 1.0
    mask_probs = torch.zeros(n, 4, n * FRAMES)
    mask_probs[torch.arange(n), :, k] = 1.0
    return Instances(
        (20, 60 * NEW_PER_FRAME * FRAMES),
        pred_boxes=Boxes(boxes),
        scores=torch.full((n,), 0.9),
        pred_classes=torch.zeros(n, dtype=torch.int64),
        embeddings=embeddings,
        displacements=torch.zeros(n, 2),
        coefficients=torch.zeros(n, 2),
        mask_probs=mask_probs,
    )


@pytest.mark.parametrize("name", sorted(TRACKER_REGISTRY._obj_map))
@pytest.mark.parametrize("forget_after", [10, 0])
def test_the_state_is_bounded_and_ids_are_new_unique_and_valid(name, forget_after):
    cfg = get_cfg()
    cfg.MODEL.TRACKER.NAME = name
    cfg.MODEL.TRACKER.FORGET_AFTER = forget_after
    tracker = build_tracker(cfg)
    sizes = []
    for t in range(FRAMES):
        ids = tracker.update(_new_objects(t))
        # no object of this frame matches an earlier one: fresh ids, in input order
        assert ids.tolist() == list(range(NEW_PER_FRAME * t, NEW_PER_FRAME * (t + 1)))
        sizes.append(len(tracker))
    if name == "MovementTracker":  # bounded by MAX_AGE (1: the last frame's tracks)
        bound = NEW_PER_FRAME * cfg.MODEL.TRACKER.MAX_AGE
    elif forget_after:  # the objects of the last forget_after + 1 frames
        bound = NEW_PER_FRAME * (forget_after + 1)
    else:  # the authors' memory: every object of the video
        bound = NEW_PER_FRAME * FRAMES
    assert max(sizes) == sizes[-1] == bound
    tracker.reset()
    assert len(tracker) == 0 and tracker.update(_new_objects(0)).tolist() == [0, 1, 2]


def test_every_registered_tracker_is_covered():
    names = {"EmbeddingTracker", "MemoryTracker", "MovementTracker"}
    assert set(TRACKER_REGISTRY._obj_map) == names
