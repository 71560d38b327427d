"""The frames' resize, with the interpolation backend of ``INPUT.RESIZE_BACKEND``.

``"pil"`` is detectron2's ``ResizeShortestEdge`` unchanged (PIL's bilinear for frames,
nearest for masks). ``"opencv"`` resizes to the same size with ``cv2.resize`` (bilinear:
``INTER_LINEAR``, masks ``INTER_NEAREST``), as ``mmcv.imrescale``/``imresize`` do in the
mmdetection-based codes whose checkpoints vis_d2 converts. The two bilinear filters differ:
PIL's widens its kernel with the scale factor when it shrinks (an antialiasing filter), OpenCV's
always reads the 2 × 2 nearest pixels.

The size rule is detectron2's for both backends: scale = min(S / short side, L / long side)
for ``MIN_SIZE`` S and ``MAX_SIZE`` L, each side rounded as int(side · scale + 0.5). mmcv's
``imrescale(img, (L, S))`` computes the same scale as min(L / long, S / short) and rounds
the same way (``_scale_size``: int(w · scale + 0.5)); the sizes can only differ where the
two float products fall on either side of a .5, which 1 ulp decides.

``INPUT.FIXED_SIZE_TRAIN`` / ``FIXED_SIZE_TEST`` (height, width) replace that rule by a resize to
exactly that size, the aspect ratio not kept (mmcv's ``imresize``, mmdetection's
``keep_ratio=False``), by the same backend. :func:`build_image_augmentation` adds the SSD-style
augmentation of ``INPUT.SSD_AUGMENTATION`` (:mod:`vis_d2.data.ssd_augmentation`) for image
models trained through detectron2's ``DatasetMapper``.
"""

from __future__ import annotations

import cv2
import numpy as np
from detectron2.config import CfgNode
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .ssd_augmentation import Expand, MinIoURandomCrop, PhotometricDistortion

__all__ = [
    "RESIZE_BACKENDS",
    "OpenCVResize",
    "OpenCVResizeShortestEdge",
    "OpenCVResizeTransform",
    "build_frame_augmentation",
    "build_image_augmentation",
    "fixed_size",
]

RESIZE_BACKENDS = ("pil", "opencv")


class OpenCVResizeTransform(T.ResizeTransform):
    """detectron2's ``ResizeTransform`` (h, w) → (new_h, new_w) with images resized by
    ``cv2.resize``: bilinear (``INTER_LINEAR``) for images, nearest (``INTER_NEAREST``) for
    segmentations; coordinates as detectron2's (scaled by new / old per axis)."""

    def __init__(self, h: int, w: int, new_h: int, new_w: int):
        super().__init__(h, w, new_h, new_w)

    def _resize(self, img: np.ndarray, interpolation: int) -> np.ndarray:
        if img.shape[:2] != (self.h, self.w):
            raise ValueError(
                f"the resize expects a {self.h}x{self.w} image, got {img.shape[0]}x{img.shape[1]}"
            )
        out = cv2.resize(img, (self.new_w, self.new_h), interpolation=interpolation)
        if img.ndim == 3 and out.ndim == 2:  # cv2 drops a single channel
            out = out[:, :, None]
        return out

    def apply_image(self, img: np.ndarray, interp: int | None = None) -> np.ndarray:
        """(H, W[, C]) uint8 or float → (new_h, new_w[, C]), bilinear."""
        return self._resize(img, cv2.INTER_LINEAR)

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """(H, W) labels or masks → (new_h, new_w), nearest."""
        return self._resize(segmentation, cv2.INTER_NEAREST)


class OpenCVResizeShortestEdge(T.ResizeShortestEdge):
    """detectron2's ``ResizeShortestEdge`` (same sizes, same sampling of the short edge),
    resizing with :class:`OpenCVResizeTransform`."""

    def get_transform(self, image: np.ndarray) -> T.Transform:
        tfm = super().get_transform(image)
        if isinstance(tfm, T.ResizeTransform):
            return OpenCVResizeTransform(tfm.h, tfm.w, tfm.new_h, tfm.new_w)
        return tfm


class OpenCVResize(T.Resize):
    """detectron2's ``Resize`` to a fixed (h, w), resizing with :class:`OpenCVResizeTransform`."""

    def get_transform(self, image: np.ndarray) -> T.Transform:
        tfm = super().get_transform(image)
        return OpenCVResizeTransform(tfm.h, tfm.w, tfm.new_h, tfm.new_w)


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool)


def fixed_size(cfg: CfgNode, is_train: bool) -> tuple[int, int] | None:
    """``INPUT.FIXED_SIZE_TRAIN`` or ``_TEST`` as (height, width) pixels; None when empty.

    Raises:
        ValueError: the key is neither empty nor two positive ints (the message names it).
    """
    key = "FIXED_SIZE_TRAIN" if is_train else "FIXED_SIZE_TEST"
    value = cfg.INPUT.get(key, ())
    if isinstance(value, list | tuple) and len(value) == 0:
        return None
    if not (
        isinstance(value, list | tuple) and len(value) == 2
        and all(_is_int(v) and v > 0 for v in value)
    ):
        raise ValueError(
            f"INPUT.{key} must be () or (height, width), two positive ints; got {value!r}"
        )
    return int(value[0]), int(value[1])


def build_frame_augmentation(cfg: CfgNode, is_train: bool) -> list[T.Augmentation]:
    """detectron2's ``build_augmentation`` (the shortest-edge resize of ``INPUT.MIN_SIZE_*``
    / ``MAX_SIZE_*``, the training flip) with the resize done by ``INPUT.RESIZE_BACKEND``,
    and, when ``INPUT.FIXED_SIZE_TRAIN`` / ``_TEST`` is set, to exactly that (height, width)
    instead.

    Raises:
        ValueError: ``INPUT.RESIZE_BACKEND`` is not one of :data:`RESIZE_BACKENDS`, or
            ``INPUT.FIXED_SIZE_*`` is malformed.
    """
    backend = cfg.INPUT.RESIZE_BACKEND
    if backend not in RESIZE_BACKENDS:
        raise ValueError(f"INPUT.RESIZE_BACKEND '{backend}' is not one of {RESIZE_BACKENDS}")
    size = fixed_size(cfg, is_train)
    augmentations = utils.build_augmentation(cfg, is_train)
    if size is not None:
        resize = T.Resize(size) if backend == "pil" else OpenCVResize(size)
        return [resize if type(a) is T.ResizeShortestEdge else a for a in augmentations]
    if backend == "pil":
        return augmentations
    return [
        OpenCVResizeShortestEdge(a.short_edge_length, a.max_size, a.sample_style)
        if type(a) is T.ResizeShortestEdge
        else a
        for a in augmentations
    ]


def _number_pair(cfg: CfgNode, key: str, low: float) -> tuple[float, float]:
    value = cfg.INPUT.SSD_AUGMENTATION.get(key)
    if not (
        isinstance(value, list | tuple) and len(value) == 2
        and all(_is_number(v) for v in value) and low <= value[0] <= value[1]
    ):
        raise ValueError(
            f"INPUT.SSD_AUGMENTATION.{key} must be (lo, hi) with {low} <= lo <= hi; got {value!r}"
        )
    return float(value[0]), float(value[1])


def _number(cfg: CfgNode, key: str, low: float, high: float, low_open: bool = False) -> float:
    value = cfg.INPUT.SSD_AUGMENTATION.get(key)
    if not (_is_number(value) and (low < value if low_open else low <= value) and value <= high):
        interval = f"{'(' if low_open else '['}{low}, {high}]"
        raise ValueError(
            f"INPUT.SSD_AUGMENTATION.{key} must be a number in {interval}; got {value!r}"
        )
    return float(value)


def _ssd_augmentation(cfg: CfgNode) -> list[T.Augmentation]:
    ssd = cfg.INPUT.SSD_AUGMENTATION
    if cfg.INPUT.FORMAT not in ("BGR", "RGB"):
        raise ValueError(
            f"INPUT.SSD_AUGMENTATION needs INPUT.FORMAT 'BGR' or 'RGB', got '{cfg.INPUT.FORMAT}'"
        )
    mean = cfg.MODEL.PIXEL_MEAN
    if len(mean) != 3 or not all(_is_number(v) for v in mean):
        raise ValueError(f"MODEL.PIXEL_MEAN (the fill of Expand) must be 3 numbers; got {mean!r}")
    min_ious = ssd.MIN_IOUS
    if not (
        isinstance(min_ious, list | tuple)
        and all(_is_number(v) and 0 <= v <= 1 for v in min_ious)
    ):
        raise ValueError(
            f"INPUT.SSD_AUGMENTATION.MIN_IOUS must be numbers in [0, 1]; got {min_ious!r}"
        )
    return [
        PhotometricDistortion(
            brightness_delta=_number(cfg, "BRIGHTNESS_DELTA", 0, 255),
            contrast_range=_number_pair(cfg, "CONTRAST_RANGE", 0.0),
            saturation_range=_number_pair(cfg, "SATURATION_RANGE", 0.0),
            hue_delta=_number(cfg, "HUE_DELTA", 0, 180),
            image_format=cfg.INPUT.FORMAT,
        ),
        Expand(
            ratio_range=_number_pair(cfg, "EXPAND_RATIO", 1.0),
            fill=tuple(float(v) for v in mean),
        ),
        MinIoURandomCrop(
            min_ious=tuple(float(v) for v in min_ious),
            min_crop_size=_number(cfg, "MIN_CROP_SIZE", 0, 1, low_open=True),
        ),
    ]


def build_image_augmentation(cfg: CfgNode, is_train: bool) -> list[T.Augmentation]:
    """The augmentation of an image model's ``DatasetMapper``: :func:`build_frame_augmentation`
    (the resize, fixed-size when ``INPUT.FIXED_SIZE_*`` is set, and the training flip),
    preceded in training with ``INPUT.SSD_AUGMENTATION.ENABLED`` by the authors' SSD steps:
    ``PhotometricDistortion``, ``Expand`` (filled with ``MODEL.PIXEL_MEAN``, which is in
    ``INPUT.FORMAT`` order), ``MinIoURandomCrop``. The boxes that ``MinIoURandomCrop`` needs
    are given by :class:`vis_d2.data.dataset_mapper.BoxAwareDatasetMapper`.

    Raises:
        ValueError: a malformed ``INPUT.SSD_AUGMENTATION.*``, ``INPUT.FIXED_SIZE_*`` or
            ``INPUT.RESIZE_BACKEND`` value (the message names the key).
    """
    frame = build_frame_augmentation(cfg, is_train)
    if is_train and cfg.INPUT.SSD_AUGMENTATION.ENABLED:
        return _ssd_augmentation(cfg) + frame
    return frame
