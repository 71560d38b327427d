"""SG-Net's movement head, its targets and loss, and the greedy tracker (SG-Net Sec. 3.3, Eq. 4)."""

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.structures import Boxes, Instances

from vis_d2.config import get_cfg
from vis_d2.modeling.sgnet.movement_head import MovementHead, movement_loss, movement_targets
from vis_d2.modeling.tracking import MovementTracker, build_tracker

CHANNELS = 32  # GroupNorm(32, C) needs C divisible by 32
SIZES = [(6, 7), (3, 4), (1, 2)]


# ---------------------------------------------------------------- targets and loss


def test_target_spec_example():
    centres = torch.tensor([[110.0, 95.0], [110.0, 95.0]])
    prev = torch.tensor([[100.0, 100.0], [100.0, 100.0]])
    targets, valid = movement_targets(centres, prev, torch.tensor([1.0, 8.0]))
    assert valid.tolist() == [True, True]
    torch.testing.assert_close(targets, torch.tensor([[10.0, -5.0], [1.25, -0.625]]))


def test_absent_instance_contributes_nothing():
    centres = torch.tensor([[110.0, 95.0], [50.0, 50.0]])
    prev = torch.tensor([[100.0, 100.0], [float("nan"), float("nan")]])
    targets, valid = movement_targets(centres, prev, torch.tensor([8.0, 16.0]))
    assert valid.tolist() == [True, False]
    assert torch.isfinite(targets).all()
    pred = torch.tensor([[1.0, -1.0], [7.0, 9.0]], requires_grad=True)
    loss = movement_loss(pred, targets, valid)
    assert loss.item() == pytest.approx(0.25 + 0.375)
    loss.backward()
    assert pred.grad[1].abs().sum() == 0
    other = movement_loss(torch.tensor([[1.0, -1.0], [-3.0, 100.0]]), targets, valid)
    assert other.item() == pytest.approx(loss.item())


def test_all_absent_gives_zero_loss_and_backward():
    nan = float("nan")
    targets, valid = movement_targets(
        torch.tensor([[10.0, 10.0], [20.0, 20.0]]),
        torch.full((2, 2), nan),
        torch.tensor([8.0, 8.0]),
    )
    assert not valid.any()
    pred = torch.randn(2, 2, requires_grad=True)
    loss = movement_loss(pred, targets, valid)
    assert loss.item() == 0
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros(2, 2))
    empty = torch.zeros(0, 2, requires_grad=True)
    loss = movement_loss(empty, torch.zeros(0, 2), torch.zeros(0, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0


def test_l1_hand_computed():
    pred = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, 3.0]])
    targets = torch.tensor([[0.0, 0.0], [1.0, -1.0], [0.0, 0.0]])
    valid = torch.tensor([True, True, False])
    # (|1| + |2| + |-1| + |1|) / 2 locations
    assert movement_loss(pred, targets, valid).item() == pytest.approx(2.5)


# ---------------------------------------------------------------- head


def _frames(batch=2, requires_grad=False, dtype=torch.float32):
    torch.manual_seed(0)
    return [
        [
            torch.randn(batch, CHANNELS, h, w, dtype=dtype, requires_grad=requires_grad)
            for h, w in SIZES
        ]
        for _ in range(2)
    ]


def _locations():
    """(im_inds, levels, loc_inds) covering corners, borders and random cells of every level."""
    g = torch.Generator().manual_seed(1)
    ims, levels, locs = [], [], []
    for level, (h, w) in enumerate(SIZES):
        cells = [0, w - 1, (h - 1) * w, h * w - 1]
        cells += torch.randint(0, h * w, (5,), generator=g).tolist()
        for im in (0, 1):
            ims += [im] * len(cells)
            levels += [level] * len(cells)
            locs += cells
    perm = torch.randperm(len(ims), generator=g)
    return tuple(torch.tensor(x)[perm] for x in (ims, levels, locs))


@pytest.mark.parametrize("num_convs", [1, 0])
def test_predict_equals_dense_read(num_convs):
    # unit-scale weights in float64, so that 1e-6 is a tight bound on outputs of size ~10
    head = MovementHead(in_channels=CHANNELS, num_convs=num_convs).double()
    torch.nn.init.normal_(head.predictor.weight, std=1.0)
    torch.nn.init.normal_(head.predictor.bias, std=1.0)
    current, previous = _frames(dtype=torch.float64)
    with torch.no_grad():
        towers = head.forward_towers(current, previous)
        expected_channels = CHANNELS if num_convs else 2 * CHANNELS
        assert [tuple(t.shape) for t in towers] == [(2, expected_channels, h, w) for h, w in SIZES]
        dense = head.dense(towers)
        assert [tuple(d.shape) for d in dense] == [(2, 2, h, w) for h, w in SIZES]
        ims, levels, locs = _locations()
        pred = head.predict(towers, ims, levels, locs)
    assert pred.shape == (len(ims), 2)
    read = torch.stack(
        [
            dense[lv][im, :, loc // SIZES[lv][1], loc % SIZES[lv][1]]
            for im, lv, loc in zip(ims.tolist(), levels.tolist(), locs.tolist(), strict=True)
        ]
    )
    assert (pred - read).abs().max() < 1e-6


def test_literal_variant_is_one_conv_on_concatenation():
    head = MovementHead(in_channels=CHANNELS, num_convs=0)
    assert len(head.tower) == 0
    current, previous = _frames()
    towers = head.forward_towers(current, previous)
    assert torch.equal(towers[0], torch.cat((current[0], previous[0]), dim=1))


def test_init_and_predict_empty():
    torch.manual_seed(0)
    head = MovementHead(in_channels=CHANNELS)
    assert head.predictor.weight.shape == (2, CHANNELS, 1, 1)
    assert head.predictor.bias.abs().sum() == 0
    assert head.predictor.weight.std().item() == pytest.approx(0.01, rel=0.5)
    towers = head.forward_towers(*_frames())
    empty = torch.zeros(0, dtype=torch.int64)
    assert head.predict(towers, empty, empty, empty).shape == (0, 2)


def test_gradients_reach_both_frames():
    head = MovementHead(in_channels=CHANNELS)
    current, previous = _frames(requires_grad=True)
    towers = head.forward_towers(current, previous)
    ims, levels, locs = _locations()
    pred = head.predict(towers, ims, levels, locs)
    targets = torch.ones_like(pred)
    movement_loss(pred, targets, torch.ones(len(pred), dtype=torch.bool)).backward()
    for frame in (current, previous):
        for x in frame:
            assert x.grad is not None and x.grad.abs().sum() > 0
    assert head.predictor.weight.grad.abs().sum() > 0


def test_from_config():
    cfg = get_cfg()
    head = MovementHead(cfg, [ShapeSpec(channels=CHANNELS, stride=s) for s in (8, 16, 32)])
    assert len(head.tower) == 3  # conv, GN, ReLU
    assert isinstance(head.tower[1], torch.nn.GroupNorm)
    cfg.MODEL.SGNET.TRACK.NUM_CONVS = 0
    assert MovementHead(cfg, [ShapeSpec(channels=CHANNELS)]).predictor.in_channels == 2 * CHANNELS
    cfg.MODEL.TRACKER.MAX_AGE = 3
    cfg.MODEL.TRACKER.SAME_CLASS = True
    tracker = build_tracker(cfg)  # MODEL.TRACKER.NAME: MovementTracker, from the registry
    assert isinstance(tracker, MovementTracker) and tracker.max_age == 3 and tracker.same_class
    cfg.MODEL.TRACKER.NAME = "NoSuchTracker"
    with pytest.raises(KeyError, match="NoSuchTracker"):
        build_tracker(cfg)


def test_tracker_keys_moved_from_the_sgnet_node_are_named_on_merge():
    cfg = get_cfg()
    with pytest.raises(KeyError, match="MODEL.SGNET.TRACK.MAX_AGE was renamed to MODEL.TRACKER"):
        cfg.merge_from_list(["MODEL.SGNET.TRACK.MAX_AGE", "2"])


# ---------------------------------------------------------------- tracker


def _boxes(*specs):
    """(cx, cy, w, h) tuples → (N, 4) XYXY."""
    t = torch.tensor(specs, dtype=torch.float32).reshape(-1, 4)
    return torch.cat((t[:, :2] - t[:, 2:] / 2, t[:, :2] + t[:, 2:] / 2), dim=1)


def _frame(tracker, specs, scores=None, disp=None, classes=None):
    n = len(specs)
    scores = torch.linspace(0.9, 0.5, n) if scores is None else torch.tensor(scores)
    classes = torch.zeros(n, dtype=torch.int64) if classes is None else torch.tensor(classes)
    return tracker.update(_detections(_boxes(*specs), scores, classes, disp)).tolist()


def _detections(boxes, scores, classes, disp=None):
    det = Instances((1000, 1000), pred_boxes=Boxes(boxes), scores=scores, pred_classes=classes)
    if disp is not None:
        det.displacements = torch.tensor(disp, dtype=torch.float32).reshape(-1, 2)
    return det


A = (100, 100, 50, 50)
B = (300, 100, 80, 40)


def _ab_tracker(**kwargs):
    tracker = MovementTracker(**kwargs)
    assert _frame(tracker, [A, B]) == [0, 1]
    return tracker


def test_ids_kept_with_movement():
    tracker = _ab_tracker()
    # B' first in the input: the ids follow the positions, not the order
    ids = _frame(tracker, [(290, 105, 80, 40), (110, 100, 50, 50)], disp=[(-10, 5), (10, 0)])
    assert ids == [1, 0]


def test_outside_radius_starts_new_id():
    tracker = _ab_tracker()
    assert _frame(tracker, [(160, 100, 50, 50)], disp=[(0, 0)]) == [2]
    tracker = _ab_tracker()
    assert _frame(tracker, [(150, 100, 50, 50)], disp=[(0, 0)]) == [0]  # distance 50 = r_A


def test_higher_score_wins_the_track():
    tracker = _ab_tracker()
    # the closer detection has the lower score
    ids = _frame(tracker, [(101, 100, 50, 50), (110, 100, 50, 50)], scores=[0.5, 0.9])
    assert ids == [2, 0]


def test_taken_track_leaves_the_next_nearest():
    tracker = MovementTracker()
    assert _frame(tracker, [A, (130, 100, 50, 50)]) == [0, 1]
    ids = _frame(tracker, [(110, 100, 50, 50), (112, 100, 50, 50)], scores=[0.5, 0.9])
    assert ids == [1, 0]


def test_first_frame_ids_and_reset():
    tracker = MovementTracker()
    specs = [A, B, (200, 200, 10, 10), (50, 300, 30, 30)]
    assert _frame(tracker, specs, scores=[0.2, 0.9, 0.5, 0.7]) == [0, 1, 2, 3]
    tracker.reset()
    assert _frame(tracker, specs[:2], disp=[(0, 0), (0, 0)]) == [0, 1]


def test_max_age_one_forgets_a_missed_track():
    tracker = MovementTracker(max_age=1)
    assert _frame(tracker, [A]) == [0]
    assert _frame(tracker, [(500, 500, 20, 20)]) == [1]
    assert _frame(tracker, [A], disp=[(0, 0)]) == [2]


def test_max_age_three_matches_the_moved_track():
    def run(max_age):
        tracker = MovementTracker(max_age=max_age)
        ids = [_frame(tracker, [(100, 100, 20, 20)])]
        ids.append(_frame(tracker, [(130, 100, 20, 20)], disp=[(30, 0)]))
        ids.append(_frame(tracker, []))
        # c - D = (160, 100): the track moved by its last movement, 30 px > r = 20 from (130, 100)
        ids.append(_frame(tracker, [(190, 100, 20, 20)], disp=[(30, 0)]))
        return ids

    assert run(3) == [[0], [0], [], [0]]
    assert run(1) == [[0], [0], [], [1]]


def test_track_expires_after_max_age():
    tracker = MovementTracker(max_age=2)
    assert _frame(tracker, [A]) == [0]
    assert _frame(tracker, []) == []
    assert _frame(tracker, [A], disp=[(0, 0)]) == [0]
    assert _frame(tracker, []) == []
    assert _frame(tracker, []) == []
    assert _frame(tracker, [A], disp=[(0, 0)]) == [1]


def test_same_class():
    for same_class, expected in ((True, [1]), (False, [0])):
        tracker = MovementTracker(same_class=same_class)
        assert _frame(tracker, [A], classes=[3]) == [0]
        assert _frame(tracker, [A], disp=[(0, 0)], classes=[4]) == expected


def test_no_displacement_and_empty_frames():
    tracker = MovementTracker()
    empty = tracker.update(_detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0)))
    assert empty.dtype == torch.int64 and empty.shape == (0,)
    assert _frame(tracker, [A, B]) == [0, 1]
    assert _frame(tracker, [(105, 100, 50, 50), (300, 95, 80, 40)]) == [0, 1]
    assert _frame(tracker, []) == []
    assert _frame(tracker, [A]) == [2]


def test_invalid_max_age():
    with pytest.raises(ValueError):
        MovementTracker(max_age=0)
