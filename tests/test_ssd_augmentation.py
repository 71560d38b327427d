"""The SSD-style augmentation of the real-time SipMask models (vis_d2.data.ssd_augmentation),
the mapper that gives it the boxes (BoxAwareDatasetMapper) and its config keys."""

from __future__ import annotations

import copy
import uuid

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_train_loader
from detectron2.data import transforms as T
from detectron2.data.datasets import register_coco_instances
from detectron2.structures import BoxMode

from vis_d2.config import get_cfg
from vis_d2.data import BoxAwareDatasetMapper, build_frame_augmentation, build_image_augmentation
from vis_d2.data.ssd_augmentation import (
    Expand,
    MeanPadTransform,
    MinIoUCropTransform,
    MinIoURandomCrop,
    PhotometricDistortion,
    PhotometricDistortionTransform,
)
from vis_d2.data.synthetic import main as synthetic_main
from vis_d2.data.transforms import OpenCVResize, OpenCVResizeTransform

# ---------------------------------------------------------------- PhotometricDistortion


def _pixel(*bgr: float) -> np.ndarray:
    return np.array(bgr, dtype=np.float32).reshape(1, 1, 3)


@pytest.mark.parametrize(
    ("bgr", "hue", "expected_bgr"),
    [
        # pure blue: H = 240; 258 lies in the sector [240, 300) where (R, G, B) = (V·f, 0, V),
        # f = (258 - 240) / 60 = 0.3
        ((255, 0, 0), 18.0, (255, 0, 76.5)),
        # pure red: H = 0; -18 wraps to 342, sector [300, 360): (R, G, B) = (V, 0, V·(1 - f)),
        # f = (342 - 300) / 60 = 0.7
        ((0, 0, 255), -18.0, (76.5, 0, 255)),
    ],
)
@pytest.mark.parametrize("image_format", ["BGR", "RGB"])
def test_hue_shift_of_a_pure_colour(bgr, hue, expected_bgr, image_format):
    order = slice(None) if image_format == "BGR" else slice(None, None, -1)
    image = _pixel(*bgr)[..., order]
    out = PhotometricDistortionTransform(hue=hue, image_format=image_format).apply_image(image)
    np.testing.assert_allclose(out[..., order].ravel(), expected_bgr, atol=1e-3)
    # the result, read back by OpenCV's float HSV, has the shifted hue and the same S and V
    h, s, v = cv2.cvtColor(_pixel(*expected_bgr), cv2.COLOR_BGR2HSV).ravel()
    h0, s0, v0 = cv2.cvtColor(_pixel(*bgr), cv2.COLOR_BGR2HSV).ravel()
    assert h == pytest.approx((h0 + hue) % 360, abs=1e-3)
    assert (s, v) == pytest.approx((s0, v0), abs=1e-5)


def test_brightness_contrast_saturation_channels_by_hand():
    image = np.array([[[100, 50, 200]]], dtype=np.uint8)  # B, G, R
    # + 10, × 2 (not clipped: 420 stays), channels (R, B, G)
    out = PhotometricDistortionTransform(
        brightness=10.0, contrast=2.0, channel_order=(2, 0, 1)).apply_image(image)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.ravel(), [420, 220, 120])
    # saturation × 0.5 keeps V = max and H: each channel x → V - (V - x) · 0.5
    out = PhotometricDistortionTransform(saturation=0.5).apply_image(_pixel(200, 100, 50))
    np.testing.assert_allclose(out.ravel(), [200, 150, 125], atol=1e-3)
    # contrast after the HSV steps (mode 0) and before them (mode 1): with a hue shift,
    # both equal (× commutes with the hue rotation), and the steps leave the input alone
    src = _pixel(30, 60, 90)
    first = PhotometricDistortionTransform(contrast=1.5, hue=10.0).apply_image(src)
    last = PhotometricDistortionTransform(
        contrast=1.5, hue=10.0, contrast_last=True).apply_image(src)
    np.testing.assert_allclose(first, last, rtol=1e-5)
    np.testing.assert_array_equal(src.ravel(), [30, 60, 90])


def test_photometric_draws_probabilities_ranges_and_seed():
    aug = PhotometricDistortion(brightness_delta=32, contrast_range=(0.5, 1.5),
                                saturation_range=(0.5, 1.5), hue_delta=18)
    image = np.zeros((4, 4, 3), np.uint8)
    np.random.seed(3)
    tfms = [aug.get_transform(image) for _ in range(2000)]
    np.random.seed(3)
    again = [aug.get_transform(image) for _ in range(20)]
    assert [repr(t) for t in tfms[:20]] == [repr(t) for t in again]
    for name in ("brightness", "contrast", "saturation", "hue", "channel_order"):
        applied = np.mean([getattr(t, name) is not None for t in tfms])
        assert 0.45 < applied < 0.55, name
    assert 0.45 < np.mean([t.contrast_last for t in tfms]) < 0.55
    values = {name: np.array([getattr(t, name) for t in tfms if getattr(t, name) is not None])
              for name in ("brightness", "contrast", "saturation", "hue")}
    assert np.abs(values["brightness"]).max() <= 32 and np.abs(values["hue"]).max() <= 18
    assert values["brightness"].min() < -28 and values["hue"].max() > 16
    for name in ("contrast", "saturation"):
        assert 0.5 <= values[name].min() < 0.55 and 1.45 < values[name].max() <= 1.5
    assert {tuple(t.channel_order) for t in tfms if t.channel_order} == {
        (0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)}
    # a colour transform: boxes and masks are left as they are
    boxes = np.array([[1.0, 2.0, 3.0, 4.0]])
    np.testing.assert_array_equal(tfms[0].apply_box(boxes), boxes)
    mask = np.eye(4, dtype=np.uint8)
    np.testing.assert_array_equal(tfms[0].apply_segmentation(mask), mask)


# ---------------------------------------------------------------- Expand


def test_expand_places_the_image_at_the_drawn_offset_on_the_mean():
    mean = (103.53, 116.28, 123.675)
    h, w = 10, 16
    image = np.random.default_rng(0).uniform(0, 255, (h, w, 3)).astype(np.float32)
    mask = np.zeros((h, w), np.uint8)
    mask[2:5, 3:9] = 1
    boxes = np.array([[3.0, 2.0, 9.0, 5.0]])
    polygon = np.array([[3.0, 2.0], [9.0, 2.0], [9.0, 5.0]])
    offsets = set()
    for seed in range(20):
        np.random.seed(seed)
        aug_input = T.AugInput(image.copy(), boxes=boxes.copy(), sem_seg=mask.copy())
        tfm = T.AugmentationList([Expand(ratio_range=(2.0, 3.0), fill=mean, prob=1.0)])(
            aug_input).transforms[0]
        assert isinstance(tfm, MeanPadTransform)
        x0, y0 = tfm.x0, tfm.y0
        out_h, out_w = aug_input.image.shape[:2]
        # canvas of int(H r), int(W r) for one r in [2, 3]; offset within it
        assert 2 * h <= out_h <= 3 * h and 2 * w <= out_w <= 3 * w
        assert abs(out_h / h - out_w / w) < max(1 / h, 1 / w)
        assert 0 <= x0 <= out_w - w and 0 <= y0 <= out_h - h
        placed = aug_input.image[y0:y0 + h, x0:x0 + w]
        np.testing.assert_array_equal(placed, image)
        around = np.ones((out_h, out_w), bool)
        around[y0:y0 + h, x0:x0 + w] = False
        np.testing.assert_allclose(aug_input.image[around], np.tile(mean, (around.sum(), 1)),
                                   rtol=1e-6)
        np.testing.assert_allclose(aug_input.boxes, boxes + [x0, y0, x0, y0])
        expected_mask = np.zeros((out_h, out_w), np.uint8)
        expected_mask[y0:y0 + h, x0:x0 + w] = mask
        np.testing.assert_array_equal(aug_input.sem_seg, expected_mask)
        np.testing.assert_allclose(tfm.apply_polygons([polygon.copy()])[0], polygon + [x0, y0])
        offsets.add((x0, y0))
    assert len(offsets) > 10  # the offset is drawn, not fixed


def test_expand_probability_and_uint8_fill():
    image = np.full((4, 6, 3), 7, np.uint8)
    np.random.seed(0)
    kinds = [type(Expand(fill=(1.9, 2.0, 3.0), prob=0.5).get_transform(image)) for _ in range(400)]
    assert 0.42 < kinds.count(MeanPadTransform) / 400 < 0.58
    assert set(kinds) == {MeanPadTransform, T.NoOpTransform}
    tfm = MeanPadTransform(1, 0, 0, 0, 6, 4, pad_value=(1.9, 2.0, 3.0))
    out = tfm.apply_image(image)
    assert out.dtype == np.uint8 and out.shape == (4, 7, 3)
    np.testing.assert_array_equal(out[:, 0], [[1, 2, 3]] * 4)  # cast as astype does
    with pytest.raises(ValueError, match="fill"):
        Expand(fill=(1.0, 2.0)).get_transform(image)


# ---------------------------------------------------------------- MinIoURandomCrop


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _force_mode(monkeypatch, index: int) -> None:
    """Make MinIoURandomCrop draw mode ``index`` of (no crop, *min_ious, 0) every time (the
    mode is its only randint draw)."""
    monkeypatch.setattr(np.random, "randint", lambda n: index)


def test_min_iou_crop_satisfies_the_iou_rule(monkeypatch):
    h, w = 100, 120
    image = np.zeros((h, w, 3), np.uint8)
    boxes = np.array([[20.0, 15.0, 100.0, 90.0], [30.0, 20.0, 95.0, 85.0]])
    aug = MinIoURandomCrop(min_ious=(0.1, 0.5), min_crop_size=0.3)
    _force_mode(monkeypatch, 2)  # min IoU 0.5
    sizes = set()
    for seed in range(100):
        np.random.seed(seed)
        tfm = aug.get_transform(image, boxes)
        assert isinstance(tfm, MinIoUCropTransform)
        crop = np.array([tfm.x0, tfm.y0, tfm.x0 + tfm.w, tfm.y0 + tfm.h], float)
        assert 0 <= crop[0] < crop[2] <= w and 0 <= crop[1] < crop[3] <= h
        assert all(_iou(crop, b) >= 0.5 for b in boxes)
        assert tfm.w >= int(0.3 * w) and tfm.h >= int(0.3 * h)
        assert 0.5 * (tfm.w - 1) <= tfm.h + 1 and tfm.h - 1 <= 2 * (tfm.w + 1)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        assert ((centres > crop[:2]) & (centres < crop[2:])).all(axis=1).any()
        assert (tfm.orig_w, tfm.orig_h) == (w, h)
        sizes.add((tfm.w, tfm.h))
    assert len(sizes) > 50
    # mode "no crop": a no-op
    _force_mode(monkeypatch, 0)
    assert isinstance(aug.get_transform(image, boxes), T.NoOpTransform)


def test_min_iou_crop_modes_and_unreachable_thresholds():
    # two 4 × 4 boxes in opposite corners: no crop of >= 30 % of the sides has an IoU >= 0.1
    # with both, so only "no crop" and mode 0 (a crop holding a centre) can come out
    image = np.zeros((100, 100), np.uint8)
    boxes = np.array([[0.0, 0.0, 4.0, 4.0], [96.0, 96.0, 100.0, 100.0]])
    aug = MinIoURandomCrop()
    np.random.seed(0)
    tfms = [aug.get_transform(image, boxes) for _ in range(300)]
    crops = [t for t in tfms if isinstance(t, MinIoUCropTransform)]
    assert len(crops) + sum(isinstance(t, T.NoOpTransform) for t in tfms) == 300
    # each round draws "no crop" or 0 with probability 1/7 each: half the results are crops
    assert 0.4 < len(crops) / 300 < 0.6
    for t in crops:
        centres = np.array([[2.0, 2.0], [98.0, 98.0]])
        lo, hi = np.array([t.x0, t.y0]), np.array([t.x0 + t.w, t.y0 + t.h])
        assert ((centres > lo) & (centres < hi)).all(axis=1).any()
    # no box: any crop of an allowed shape; "no crop" in 1 of 7 draws
    np.random.seed(1)
    tfms = [aug.get_transform(image, None) for _ in range(700)]
    assert 70 < sum(isinstance(t, T.NoOpTransform) for t in tfms) < 135


# ---------------------------------------------------------------- the mapper


def _record(tmp_path, mask_format: str) -> dict:
    """A 60 × 80 image with three objects (XYWH boxes, tight masks) and a crowd region."""
    image = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    path = tmp_path / "image.png"
    cv2.imwrite(str(path), image)
    annos = []
    for i, (x, y, bw, bh) in enumerate([(10, 10, 20, 20), (40, 30, 30, 20), (0, 40, 16, 12),
                                        (50, 0, 20, 10)]):
        mask = np.zeros((60, 80), np.uint8)
        mask[y:y + bh, x:x + bw] = 1
        segm = ([[x, y, x + bw, y, x + bw, y + bh, x, y + bh]] if mask_format == "polygon"
                else mask_util.encode(np.asfortranarray(mask)))
        annos.append({"bbox": [x, y, bw, bh], "bbox_mode": BoxMode.XYWH_ABS,
                      "category_id": i, "segmentation": segm, "iscrowd": int(i == 3)})
    return {"file_name": str(path), "height": 60, "width": 80, "image_id": 0,
            "annotations": annos}


def _mapper(augmentations, mask_format: str) -> BoxAwareDatasetMapper:
    return BoxAwareDatasetMapper(is_train=True, augmentations=augmentations, image_format="BGR",
                                 use_instance_mask=True, instance_mask_format=mask_format)


class _RecordBoxes(T.Augmentation):
    """Records the boxes it is given; no change."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def get_transform(self, image, boxes):
        self.seen.append(None if boxes is None else boxes.copy())
        return T.NoOpTransform()


@pytest.mark.parametrize("mask_format", ["polygon", "bitmask"])
def test_mapper_drops_instances_whose_centre_is_outside_the_min_iou_crop(tmp_path, mask_format):
    record = _record(tmp_path, mask_format)
    recorder = _RecordBoxes()
    # a crop of x in [20, 60], y in [0, 50]: centres (20, 20) on its border (dropped: strict),
    # (55, 40) inside, (8, 46) outside; the crowd region is detectron2's to drop
    crop = MinIoUCropTransform(20, 0, 40, 50, orig_w=80, orig_h=60)
    out = _mapper([recorder, crop], mask_format)(copy.deepcopy(record))
    np.testing.assert_array_equal(
        recorder.seen[0], [[10, 10, 30, 30], [40, 30, 70, 50], [0, 40, 16, 52]])
    inst = out["instances"]
    assert out["image"].shape == (3, 50, 40)
    assert inst.gt_classes.tolist() == [1]
    np.testing.assert_allclose(inst.gt_boxes.tensor.numpy(), [[20, 30, 40, 50]])  # clipped
    masks = (inst.gt_masks.tensor.numpy() if mask_format == "bitmask"
             else np.stack([mask_util.decode(mask_util.merge(mask_util.frPyObjects(
                 [p.tolist() for p in polys], 50, 40))) for polys in inst.gt_masks.polygons]))
    expected = np.zeros((50, 40), bool)
    expected[30:50, 20:40] = True
    np.testing.assert_array_equal(masks[0].astype(bool), expected)
    # the same crop as a plain CropTransform: detectron2 keeps every instance it overlaps
    plain = T.CropTransform(20, 0, 40, 50, orig_w=80, orig_h=60)
    assert _mapper([plain], mask_format)(copy.deepcopy(record))["instances"].gt_classes.tolist() \
        == [0, 1]


def test_mapper_takes_the_centres_after_the_expansion(tmp_path):
    # padded by 30 on the left, the crop x in [20, 56] holds the centre 10 + 30 of the first
    # box, not 40 + 30 of the second (which it overlaps)
    path = tmp_path / "black.png"
    cv2.imwrite(str(path), np.zeros((60, 80, 3), np.uint8))
    record = {"file_name": str(path), "height": 60, "width": 80, "image_id": 0, "annotations": [
        {"bbox": [0, 10, 20, 20], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0,
         "segmentation": [[0, 10, 20, 10, 20, 30, 0, 30]], "iscrowd": 0},
        {"bbox": [20, 10, 40, 20], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1,
         "segmentation": [[20, 10, 60, 10, 60, 30, 20, 30]], "iscrowd": 0},
    ]}
    pad = MeanPadTransform(30, 0, 0, 0, 80, 60, pad_value=(0.0, 0.0, 0.0))
    crop = MinIoUCropTransform(20, 0, 36, 60, orig_w=110, orig_h=60)
    out = _mapper([pad, crop], "polygon")(record)
    assert out["instances"].gt_classes.tolist() == [0]
    np.testing.assert_allclose(out["instances"].gt_boxes.tensor.numpy(), [[10, 10, 30, 30]])


def test_mapper_mode_no_crop_changes_nothing(tmp_path, monkeypatch):
    record = _record(tmp_path, "bitmask")
    _force_mode(monkeypatch, 0)
    out = _mapper([MinIoURandomCrop()], "bitmask")(copy.deepcopy(record))
    ref = _mapper([], "bitmask")(copy.deepcopy(record))
    assert out["image"].equal(ref["image"])
    assert out["instances"].gt_classes.tolist() == [0, 1, 2]
    assert out["instances"].gt_boxes.tensor.equal(ref["instances"].gt_boxes.tensor)
    assert out["instances"].gt_masks.tensor.equal(ref["instances"].gt_masks.tensor)


# ---------------------------------------------------------------- config


def test_defaults_leave_the_frame_augmentation_as_it_was():
    cfg = get_cfg()
    assert cfg.INPUT.FIXED_SIZE_TRAIN == () and cfg.INPUT.FIXED_SIZE_TEST == ()
    ssd = cfg.INPUT.SSD_AUGMENTATION
    assert not ssd.ENABLED and ssd.MIN_IOUS == (0.1, 0.3, 0.5, 0.7, 0.9)
    for is_train in (True, False):
        assert [repr(a) for a in build_image_augmentation(cfg, is_train)] == [
            repr(a) for a in build_frame_augmentation(cfg, is_train)]
        assert type(build_frame_augmentation(cfg, is_train)[0]) is T.ResizeShortestEdge
    cfg.INPUT.SSD_AUGMENTATION.ENABLED = True  # training only
    assert type(build_image_augmentation(cfg, False)[0]) is T.ResizeShortestEdge


def test_ssd_augmentation_in_the_authors_order():
    cfg = get_cfg()
    cfg.merge_from_list(["INPUT.SSD_AUGMENTATION.ENABLED", "True",
                         "INPUT.FIXED_SIZE_TRAIN", "(576, 576)",
                         "INPUT.FIXED_SIZE_TEST", "(544, 544)"])
    augs = build_image_augmentation(cfg, True)
    assert [type(a) for a in augs] == [PhotometricDistortion, Expand, MinIoURandomCrop,
                                       T.Resize, T.RandomFlip]
    assert augs[1].fill == tuple(cfg.MODEL.PIXEL_MEAN) and augs[1].prob == 0.5
    assert augs[3].shape == (576, 576) and augs[4].prob == 0.5 and augs[4].horizontal
    assert augs[0].image_format == "BGR" and augs[0].hue_delta == 18
    test = build_image_augmentation(cfg, False)
    assert len(test) == 1 and test[0].shape == (544, 544)
    cfg.INPUT.RESIZE_BACKEND = "opencv"
    resize = build_image_augmentation(cfg, False)[0]
    assert type(resize) is OpenCVResize
    frame = np.random.default_rng(0).integers(0, 256, (100, 130, 3), dtype=np.uint8)
    tfm = resize.get_transform(frame)
    assert isinstance(tfm, OpenCVResizeTransform)
    np.testing.assert_array_equal(
        tfm.apply_image(frame), cv2.resize(frame, (544, 544), interpolation=cv2.INTER_LINEAR))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("INPUT.FIXED_SIZE_TRAIN", (576,)),
        ("INPUT.FIXED_SIZE_TRAIN", (0, 576)),
        ("INPUT.FIXED_SIZE_TEST", (544.0, 544)),
        ("INPUT.SSD_AUGMENTATION.CONTRAST_RANGE", (1.5, 0.5)),
        ("INPUT.SSD_AUGMENTATION.SATURATION_RANGE", (0.5,)),
        ("INPUT.SSD_AUGMENTATION.HUE_DELTA", 200),
        ("INPUT.SSD_AUGMENTATION.BRIGHTNESS_DELTA", -1),
        ("INPUT.SSD_AUGMENTATION.EXPAND_RATIO", (0.5, 2.0)),
        ("INPUT.SSD_AUGMENTATION.MIN_IOUS", (0.5, 1.5)),
        ("INPUT.SSD_AUGMENTATION.MIN_CROP_SIZE", 0.0),
    ],
)
def test_malformed_keys_are_named(key, value):
    cfg = get_cfg()
    cfg.INPUT.SSD_AUGMENTATION.ENABLED = True
    node, name = cfg, key.split(".")
    for part in name[:-1]:
        node = node[part]
    node[name[-1]] = value
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        build_image_augmentation(cfg, is_train="TEST" not in key)


def test_crop_and_ssd_augmentation_together_are_refused():
    cfg = get_cfg()
    cfg.INPUT.SSD_AUGMENTATION.ENABLED = True
    cfg.INPUT.CROP.ENABLED = True
    with pytest.raises(ValueError, match="INPUT.CROP.ENABLED"):
        BoxAwareDatasetMapper(cfg, True)


# ---------------------------------------------------------------- the user's path


@pytest.fixture(scope="module")
def coco_train(tmp_path_factory):
    out = tmp_path_factory.mktemp("ssd_coco")
    argv = ["--out", str(out), "--videos", "4", "--frames", "3", "--val-videos", "1",
            "--width", "96", "--height", "64", "--coco", "--no-progress"]
    assert synthetic_main(argv) == 0
    name = f"ssd_coco_{uuid.uuid4().hex[:8]}"
    register_coco_instances(
        name, {}, str(out / "train_coco.json"), str(out / "train" / "JPEGImages"))
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _inside_box(masks: np.ndarray, boxes: np.ndarray, exact_centre: bool) -> bool:
    """Every mask pixel of each (H, W) mask lies in its XYXY box: its centre, where the masks
    are resized by sampling pixel centres (PIL's nearest), otherwise (OpenCV's nearest samples
    floor(x · scale), the pixel's left edge, or its right edge once flipped) its square
    overlaps the box."""
    eps = 1e-3
    for mask, (x0, y0, x1, y1) in zip(masks, boxes, strict=True):
        ys, xs = np.nonzero(mask)
        if exact_centre:
            inside = ((xs + 0.5 >= x0 - eps) & (xs + 0.5 <= x1 + eps)
                      & (ys + 0.5 >= y0 - eps) & (ys + 0.5 <= y1 + eps))
        else:
            inside = (xs + 1 > x0 + eps) & (xs < x1 - eps) & (ys + 1 > y0 + eps) & (ys < y1 - eps)
        if not inside.all():
            return False
    return True


@pytest.mark.parametrize("backend", ["pil", "opencv"])
def test_detectron2_train_loader_with_the_ssd_augmentation(coco_train, backend):
    cfg = get_cfg()
    cfg.merge_from_list([
        "DATASETS.TRAIN", f"('{coco_train}',)", "MODEL.MASK_ON", "True",
        "INPUT.MASK_FORMAT", "bitmask", "INPUT.SSD_AUGMENTATION.ENABLED", "True",
        "INPUT.FIXED_SIZE_TRAIN", "(72, 80)", "INPUT.RESIZE_BACKEND", backend,
        "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "4", "SEED", "0",
    ])
    np.random.seed(0)
    loader = iter(build_detection_train_loader(cfg, mapper=BoxAwareDatasetMapper(cfg, True)))
    counts, sizes = [], set()
    for _ in range(8):
        for item in next(loader):
            assert tuple(item["image"].shape) == (3, 72, 80)
            assert item["image"].dtype.is_floating_point
            inst = item["instances"]
            assert inst.image_size == (72, 80)
            masks = inst.gt_masks.tensor.numpy()
            boxes = inst.gt_boxes.tensor.numpy()
            assert _inside_box(masks, boxes, exact_centre=backend == "pil")
            assert ((boxes[:, 2:] > boxes[:, :2]).all())
            counts.append(len(inst))
            sizes.add(round(float((boxes[:, 2] - boxes[:, 0]).max()), 1) if len(inst) else 0)
    assert sum(counts) > 0 and min(counts) >= 1  # MinIoURandomCrop keeps a centre
    assert len(sizes) > 10  # the boxes are not one fixed layout: the crops and scales vary
