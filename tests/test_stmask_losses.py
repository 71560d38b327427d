"""STMask's frame-level training signals: box coding, anchor matching, OHEM, box, centerness
and mask losses."""

import math

import pytest
import torch
from stmask.losses import (
    box_coder,
    box_losses,
    enlarge_boxes,
    match_anchors,
    ohem_cross_entropy,
)

ANCHORS = torch.tensor(
    [[10.0, 20.0, 50.0, 40.0], [0.0, 0.0, 30.0, 30.0], [60.0, 60.0, 90.0, 120.0]]
)


def test_box_coding_round_trip_identity_and_unit_shift():
    coder = box_coder((0.1, 0.2))
    torch.manual_seed(0)
    deltas = torch.randn(3, 4) * 0.5
    boxes = coder.apply_deltas(deltas, ANCHORS)
    assert torch.allclose(coder.get_deltas(ANCHORS, boxes), deltas, atol=1e-5)
    assert torch.allclose(coder.apply_deltas(torch.zeros(3, 4), ANCHORS), ANCHORS)
    # Δ = (1, 0, 0, 0) shifts the centre by 0.1 w: 4 px for the first 40 px wide anchor
    shifted = coder.apply_deltas(torch.tensor([[1.0, 0, 0, 0]]), ANCHORS[:1])
    assert shifted.tolist() == [[14.0, 20.0, 54.0, 40.0]]
    # Δw = ln 2 / 0.2 doubles the width about the centre
    wide = coder.apply_deltas(torch.tensor([[0, 0, math.log(2) / 0.2, 0]]), ANCHORS[:1])
    assert torch.allclose(wide, torch.tensor([[-10.0, 20.0, 70.0, 40.0]]), atol=1e-4)


def test_matching_thresholds_and_best_anchor_per_gt():
    anchors = torch.tensor(
        [[0.0, 0, 10, 10], [0, 0, 10, 12], [0, 0, 10, 17], [50, 50, 60, 60], [100, 100, 120, 120]]
    )
    gt = torch.tensor([[0.0, 0, 10, 10], [101.0, 101, 140, 140]])
    labels, matched = match_anchors(anchors, gt, torch.tensor([3, 5]))
    # IoUs with GT 0: 1, 0.83, 0.59 (positive), then 0 (background); anchor 4 has IoU 0.22
    # with GT 1, below 0.4, but is GT 1's best anchor, so it is positive too
    assert labels.tolist() == [4, 4, 4, 0, 6]
    assert matched[[0, 1, 2, 4]].tolist() == [0, 0, 0, 1]
    in_between = torch.tensor([[0.0, 0, 10, 22]])  # IoU 0.45 with GT 0: ignored
    labels, _ = match_anchors(torch.cat((anchors, in_between)), gt, torch.tensor([3, 5]))
    assert labels[-1].item() == -1
    empty, _ = match_anchors(anchors, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert empty.tolist() == [0] * 5


def test_class_aware_matching_adds_the_class_probability_and_raises_the_thresholds():
    anchors = torch.tensor(
        [[0.0, 0, 10, 10], [0, 0, 10, 15], [0, 0, 10, 22], [50, 50, 60, 60], [0, 0, 10, 12],
         [100, 100, 120, 120]]
    )  # fmt: skip
    gt, classes = torch.tensor([[0.0, 0, 10, 10], [101.0, 101, 140, 140]]), torch.tensor([3, 1])
    logits = torch.zeros(6, 7)
    logits[0, 4] = 20.0  # anchor 0 (IoU 1) is sure of GT 0's class: q = 1
    logits[1, 1] = 20.0  # anchor 1 (IoU 0.67) of another class: q ≈ 0
    logits[4, 4] = math.log(6 * 0.6 / 0.4)  # anchor 4 (IoU 0.83): p = 0.6, q = 0.75
    plain, _ = match_anchors(anchors, gt, classes)
    labels, matched = match_anchors(anchors, gt, classes, class_logits=logits)
    # IoU alone: anchors 0, 1, 4 positive, 2 (IoU 0.45) ignored, 3 background, 5 GT 1's best
    assert plain.tolist() == [4, 4, -1, 0, 4, 2]
    # the thresholds rise by the mean q (1 + 0 + 0.75) / 3 = 0.583: anchor 0 (1 + 1) and 4
    # (0.83 + 0.75) stay positive, anchor 1 (0.67 + 0) and 2 (0.45) fall below 0.4 + 0.583;
    # anchor 5 (IoU 0.23) is still GT 1's best
    assert labels.tolist() == [4, 0, 0, 0, 4, 2]
    assert matched[[0, 4, 5]].tolist() == [0, 0, 1]
    empty, _ = match_anchors(anchors, torch.zeros(0, 4), classes[:0], class_logits=logits)
    assert empty.tolist() == [0] * 6


def test_class_aware_matching_neutralises_anchors_between_two_gts():
    gt, classes = torch.tensor([[0.0, 0, 10, 10], [0.0, 5, 10, 15]]), torch.tensor([0, 1])
    between = torch.tensor([[0.0, 2.5, 10, 12.5], [0, 0, 10, 10], [0, 5, 10, 15]])
    # anchor 0 has IoU 0.6 with both GTs (> 0.4): scored (0.5 + 0.4) / 2 = 0.45; anchors 1 and
    # 2 are the GTs' own (p = 1/3 of 3 classes: q = 0.5), so the thresholds rise by 0.5 and
    # anchor 0 is background; with IoU alone it would be positive
    logits = torch.zeros(3, 3)
    labels, _ = match_anchors(between, gt, classes, class_logits=logits)
    assert labels.tolist() == [0, 1, 2]
    assert match_anchors(between, gt, classes)[0][0].item() > 0


def test_ohem_keeps_the_positives_and_the_hardest_three_negatives_each():
    logits = torch.zeros(10, 3)
    logits[:, 0] = torch.arange(10.0)  # background logit: anchor 0 is the hardest negative
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 2, -1])
    per_anchor = torch.nn.functional.cross_entropy(logits, labels.clamp(min=0), reduction="none")
    expected = (per_anchor[8] + per_anchor[[0, 1, 2]].sum()) / 1
    assert torch.allclose(ohem_cross_entropy(logits, labels), expected)
    # no positive: the single hardest negative, over 1
    assert torch.allclose(ohem_cross_entropy(logits, torch.zeros(10, dtype=torch.int64)),
                          per_anchor[0])  # fmt: skip


def test_box_losses_zero_at_the_gt_and_centerness_target_is_the_diou():
    coder = box_coder()
    gt = coder.apply_deltas(torch.tensor([[0.5, -0.2, 0.3, 0.1]] * 3), ANCHORS)
    perfect = coder.get_deltas(ANCHORS, gt)
    diou, ctr = box_losses(perfect, torch.ones(3), ANCHORS, gt, coder)
    assert torch.allclose(diou, torch.zeros(3), atol=1e-5) and torch.allclose(ctr, torch.zeros(3))
    off, ctr = box_losses(torch.zeros(3, 4), torch.zeros(3), ANCHORS, gt, coder)
    assert (off > 0).all()
    # smooth-L1 (beta 1) of 0 against DIoU = 1 - loss: 0.5 (1 - loss)^2 below 1
    assert torch.allclose(ctr, 0.5 * (1 - off) ** 2, atol=1e-6)


def test_enlarged_boxes_keep_their_centres():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 40.0]])
    assert enlarge_boxes(boxes, 1.2).tolist() == [[6.0, 18.0, 54.0, 42.0]]


def test_greedy_forced_matches_force_one_anchor_per_gt_which_serves_only_it():
    """MODEL.STMASK.FORCED_MATCHES greedy_first (the authors' code: GT by GT in order of their
    best IoU, its first arg-max among the anchors left, which no later GT takes)."""
    logits = torch.zeros(2, 3)
    # one GT tied between two anchors (IoU 1/3 each): all ties are forced, or the first only
    tied = torch.tensor([[0.0, 0, 10, 10], [10.0, 0, 20, 10]])
    gt, classes = torch.tensor([[5.0, 0, 15, 10]]), torch.tensor([1])
    assert match_anchors(tied, gt, classes, class_logits=logits)[0].tolist() == [2, 2]
    greedy = match_anchors(tied, gt, classes, class_logits=logits, forced="greedy_first")
    assert greedy[0].tolist() == [2, 0]
    # two GTs whose best anchor is anchor 0 (IoU 0.91 and 0.8): GT 0 takes it, GT 1 its next
    # best, anchor 1 (IoU 0.4, below the thresholds)
    anchors = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 20]])
    gt, classes = torch.tensor([[0.0, 0, 10, 11], [0.0, 0, 10, 8]]), torch.tensor([0, 1])
    labels, matched = match_anchors(anchors, gt, classes, class_logits=logits,
                                    forced="greedy_first")  # fmt: skip
    assert labels.tolist() == [1, 2] and matched.tolist() == [0, 1]
    with pytest.raises(ValueError, match="MODEL.STMASK.FORCED_MATCHES"):
        match_anchors(anchors, gt, classes, class_logits=logits, forced="first")
