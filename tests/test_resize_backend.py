"""INPUT.RESIZE_BACKEND: the frames' resize by PIL (detectron2's default) or OpenCV."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import transforms as T

from vis_d2.config import get_cfg
from vis_d2.data import build_frame_augmentation, frame_transforms
from vis_d2.engine.predictor import FramePreprocessor


def _cfg(backend: str | None = None):
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TEST = 360
    cfg.INPUT.MAX_SIZE_TEST = 640
    if backend is not None:
        cfg.INPUT.RESIZE_BACKEND = backend
    return cfg


def _frame(h: int = 288, w: int = 512) -> np.ndarray:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    frame[40:120, 60:200] = (20, 200, 90)  # an edge for the filters to disagree on
    return frame


@pytest.mark.parametrize("shape", [(288, 512), (720, 1280), (480, 854)])
def test_opencv_backend_is_cv2_resize(shape: tuple[int, int]) -> None:
    frame = _frame(*shape)
    out = FramePreprocessor(_cfg("opencv"))(frame)
    new_h, new_w = out["image"].shape[-2:]
    # the authors' size rule (mmcv.imrescale to (640, 360)): int(side * scale + 0.5)
    scale = min(640 / max(shape), 360 / min(shape))
    assert (new_w, new_h) == (int(shape[1] * scale + 0.5), int(shape[0] * scale + 0.5))
    expected = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    assert torch.equal(out["image"], torch.from_numpy(expected.transpose(2, 0, 1).copy()))
    assert (out["height"], out["width"]) == shape


def test_default_backend_is_detectron2_resize() -> None:
    cfg = _cfg()
    assert cfg.INPUT.RESIZE_BACKEND == "pil"
    frame = _frame(720, 1280)
    ours = frame_transforms(T.AugmentationList(build_frame_augmentation(cfg, False)), frame)
    d2 = T.ResizeShortestEdge(360, 640, "choice").get_transform(frame)
    assert type(ours.transforms[0]) is T.ResizeTransform
    resized = ours.apply_image(frame)
    assert np.array_equal(resized, d2.apply_image(frame))
    # the backends do differ on a downscale: PIL's bilinear filters over the scale factor
    cv = cv2.resize(frame, (640, 360), interpolation=cv2.INTER_LINEAR)
    assert np.abs(resized.astype(int) - cv.astype(int)).max() > 10


def test_opencv_backend_masks_and_training_flip() -> None:
    cfg = _cfg("opencv")
    cfg.INPUT.MIN_SIZE_TRAIN = (360,)
    cfg.INPUT.MAX_SIZE_TRAIN = 640
    augs = build_frame_augmentation(cfg, True)
    assert [type(a).__name__ for a in augs] == ["OpenCVResizeShortestEdge", "RandomFlip"]
    mask = np.zeros((288, 512), dtype=np.uint8)
    mask[10:50, 30:90] = 1
    tfm = augs[0].get_transform(_frame())
    expected = cv2.resize(mask, (640, 360), interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(tfm.apply_segmentation(mask), expected)
    boxes = tfm.apply_box(np.array([[0.0, 0.0, 512.0, 288.0]]))
    assert np.allclose(boxes, [[0, 0, 640, 360]])


def test_unknown_backend_is_named() -> None:
    with pytest.raises(ValueError, match="INPUT.RESIZE_BACKEND 'cv'"):
        build_frame_augmentation(_cfg("cv"), False)
