"""SSD-style training augmentation of the real-time SipMask models, as detectron2 ``Augmentation``s.

The authors' mmdetection v1 pipeline (``sipmask_r50_caffe_fpn_ssd_6x``) distorts the colours,
expands the image onto a canvas of the mean colour and crops a patch that overlaps every box
by a minimum IoU, before a fixed-size resize and a horizontal flip:

- :class:`PhotometricDistortion`: brightness, contrast, saturation, hue, channel swap, each
  with probability 0.5, on a float32 image whose values are not clipped between the steps
  (the authors' float pipeline); the output is always float32.
- :class:`Expand`: a :class:`~fvcore.transforms.PadTransform` (mean around the image, 0 around
  the masks) at a random offset, with probability 0.5.
- :class:`MinIoURandomCrop`: a :class:`~fvcore.transforms.CropTransform` drawn from the boxes
  (``get_transform(image, boxes)``); the instances whose box centre falls outside the crop are
  to be dropped by the mapper (:class:`vis_d2.data.dataset_mapper.BoxAwareDatasetMapper`),
  which finds the crop by its type :class:`MinIoUCropTransform`.

Random numbers come from numpy's global generator, as detectron2's augmentations draw theirs,
so that the training loader's per-worker seeding applies; they are drawn in the authors' order.

Where this differs from the authors' mmdetection v1 code:

- the crop's offset is drawn from U(0, W - width) (theirs, ``uniform(W - width)``, draws
  between 1 and W - width: numpy reads the one argument as the lower bound);
- IoUs are detectron2's, in continuous coordinates (theirs add 1 to widths and heights);
- the HSV round trip is skipped when neither saturation nor hue is drawn (theirs always
  converts, which is the identity except on pixels that the brightness step made negative);
- the boxes follow detectron2's conventions after the crop: clipped to [0, W] × [0, H] of
  the crop, flipped as W - x (mmdetection v1 clips the resized boxes to W - 1 and flips
  them as W - x - 1).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import cv2
import numpy as np
from detectron2.data import transforms as T

__all__ = [
    "Expand",
    "MeanPadTransform",
    "MinIoUCropTransform",
    "MinIoURandomCrop",
    "PhotometricDistortion",
    "PhotometricDistortionTransform",
    "box_centers_inside",
    "photometric_distort",
]

_HSV_CODES = {"BGR": (cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR),
              "RGB": (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB)}


def _check_range(name: str, value: Sequence[float], low: float) -> tuple[float, float]:
    if len(value) != 2 or not low <= value[0] <= value[1]:
        raise ValueError(f"{name} must be (lo, hi) with {low} <= lo <= hi, got {tuple(value)}")
    return float(value[0]), float(value[1])


def photometric_distort(
    image: np.ndarray,
    *,
    brightness: float | None = None,
    contrast: float | None = None,
    contrast_last: bool = False,
    saturation: float | None = None,
    hue: float | None = None,
    channel_order: Sequence[int] | None = None,
    image_format: str = "BGR",
) -> np.ndarray:
    """The authors' photometric steps with the given draws (None: step not applied).

    ``image``: (H, W, 3) uint8 or float, 0-255, channels in ``image_format`` ("BGR" or
    "RGB"). In order: + ``brightness``; × ``contrast`` (here unless ``contrast_last``);
    HSV saturation × ``saturation`` and hue + ``hue`` degrees (OpenCV's float HSV: H in
    [0, 360), S in [0, 1], V = max channel); × ``contrast`` (here if ``contrast_last``);
    channels reordered by ``channel_order``. No step clips. Returns (H, W, 3) float32.
    """
    img = np.array(image, dtype=np.float32)  # a copy: the input is left as it is
    if brightness is not None:
        img += brightness
    if contrast is not None and not contrast_last:
        img *= contrast
    if saturation is not None or hue is not None:
        to_hsv, from_hsv = _HSV_CODES[image_format]
        hsv = cv2.cvtColor(img, to_hsv)
        if saturation is not None:
            hsv[..., 1] *= saturation
        if hue is not None:
            hsv[..., 0] = np.mod(hsv[..., 0] + hue, 360.0)
        img = cv2.cvtColor(hsv, from_hsv)
    if contrast is not None and contrast_last:
        img *= contrast
    if channel_order is not None:
        img = np.ascontiguousarray(img[..., list(channel_order)])
    return img


class PhotometricDistortionTransform(T.ColorTransform):
    """detectron2's ``ColorTransform`` of :func:`photometric_distort` with fixed draws: the
    image changes, coordinates and segmentations do not."""

    def __init__(
        self,
        brightness: float | None = None,
        contrast: float | None = None,
        contrast_last: bool = False,
        saturation: float | None = None,
        hue: float | None = None,
        channel_order: tuple[int, ...] | None = None,
        image_format: str = "BGR",
    ):
        params = {
            "brightness": brightness,
            "contrast": contrast,
            "contrast_last": contrast_last,
            "saturation": saturation,
            "hue": hue,
            "channel_order": channel_order,
            "image_format": image_format,
        }
        super().__init__(functools.partial(photometric_distort, **params))
        self._set_attributes(params)


class PhotometricDistortion(T.Augmentation):
    """The authors' ``PhotoMetricDistortion``: each step with probability 0.5.

    Brightness + U(-``brightness_delta``, ``brightness_delta``) (0-255 units); contrast ×
    U(``contrast_range``), before the HSV steps or (equally likely) after them; saturation ×
    U(``saturation_range``); hue + U(-``hue_delta``, ``hue_delta``) degrees of 360; a random
    permutation of the three channels. ``image_format``: the images' channel order, "BGR" or
    "RGB" (detectron2's ``INPUT.FORMAT``), which the HSV conversion needs.
    """

    def __init__(
        self,
        brightness_delta: float = 32,
        contrast_range: Sequence[float] = (0.5, 1.5),
        saturation_range: Sequence[float] = (0.5, 1.5),
        hue_delta: float = 18,
        image_format: str = "BGR",
    ):
        super().__init__()
        if brightness_delta < 0:
            raise ValueError(f"brightness_delta must be >= 0, got {brightness_delta}")
        if not 0 <= hue_delta <= 180:
            raise ValueError(f"hue_delta must be in [0, 180] degrees, got {hue_delta}")
        if image_format not in _HSV_CODES:
            raise ValueError(f"image_format must be one of {tuple(_HSV_CODES)}, got {image_format}")
        contrast_range = _check_range("contrast_range", contrast_range, 0.0)
        saturation_range = _check_range("saturation_range", saturation_range, 0.0)
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> T.Transform:
        """``image``: (H, W, 3). Draws in the authors' order."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"PhotometricDistortion needs an (H, W, 3) image, got {image.shape}")
        rand = np.random
        brightness = contrast = saturation = hue = channel_order = None
        if rand.randint(2):
            brightness = rand.uniform(-self.brightness_delta, self.brightness_delta)
        contrast_last = rand.randint(2) == 0
        if not contrast_last and rand.randint(2):
            contrast = rand.uniform(*self.contrast_range)
        if rand.randint(2):
            saturation = rand.uniform(*self.saturation_range)
        if rand.randint(2):
            hue = rand.uniform(-self.hue_delta, self.hue_delta)
        if contrast_last and rand.randint(2):
            contrast = rand.uniform(*self.contrast_range)
        if rand.randint(2):
            channel_order = tuple(int(c) for c in rand.permutation(3))
        return PhotometricDistortionTransform(
            brightness, contrast, contrast_last, saturation, hue, channel_order, self.image_format
        )


class MeanPadTransform(T.PadTransform):
    """fvcore's ``PadTransform`` whose image padding is one value per channel (``pad_value``:
    a float or C floats, cast to the image's dtype); segmentations padded with
    ``seg_pad_value``, coordinates shifted by (``x0``, ``y0``), as fvcore's."""

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """(H, W[, C]) → (y0 + H + y1, x0 + W + x1[, C]), same dtype."""
        h, w = img.shape[:2]
        out = np.empty((self.y0 + h + self.y1, self.x0 + w + self.x1, *img.shape[2:]), img.dtype)
        out[...] = np.asarray(self.pad_value, dtype=np.float64).astype(img.dtype)
        out[self.y0:self.y0 + h, self.x0:self.x0 + w] = img
        return out


class Expand(T.Augmentation):
    """The authors' ``Expand``: with probability ``prob``, the image is placed on a canvas
    of (int(H·r), int(W·r)) pixels filled with ``fill``, r ~ U(``ratio_range``), at the
    offset (int(U(0, W·r - W)), int(U(0, H·r - H))); masks are padded with 0.

    ``fill``: one value or one per channel, in the images' channel order and units (the
    authors fill with the pixel mean).
    """

    def __init__(
        self,
        ratio_range: Sequence[float] = (1.0, 4.0),
        fill: float | Sequence[float] = 0.0,
        prob: float = 0.5,
    ):
        super().__init__()
        ratio_range = _check_range("ratio_range", ratio_range, 1.0)
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        fill = tuple(float(v) for v in np.atleast_1d(fill))
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> T.Transform:
        """``image``: (H, W[, C]) with C equal to the number of fill values (or any C for one)."""
        channels = image.shape[2] if image.ndim == 3 else 1
        if len(self.fill) not in (1, channels):
            raise ValueError(f"Expand has {len(self.fill)} fill values for {channels} channels")
        if np.random.uniform(0, 1) > self.prob:
            return T.NoOpTransform()
        h, w = image.shape[:2]
        ratio = np.random.uniform(*self.ratio_range)
        left = int(np.random.uniform(0, w * ratio - w))
        top = int(np.random.uniform(0, h * ratio - h))
        right, bottom = int(w * ratio) - w - left, int(h * ratio) - h - top
        fill = self.fill[0] if len(self.fill) == 1 else self.fill
        return MeanPadTransform(left, top, right, bottom, w, h, pad_value=fill, seg_pad_value=0)


def box_centers_inside(boxes: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """(N, 4) XYXY boxes → (N,) bool: the box centre lies strictly inside (x0, x1) × (y0, y1)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    return (cx > x0) & (cy > y0) & (cx < x1) & (cy < y1)


def _ious(patch: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one XYXY patch with (N, 4) XYXY boxes, in continuous coordinates."""
    iw = np.clip(np.minimum(patch[2], boxes[:, 2]) - np.maximum(patch[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(patch[3], boxes[:, 3]) - np.maximum(patch[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    area_patch = (patch[2] - patch[0]) * (patch[3] - patch[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area_patch + areas - inter)


class MinIoUCropTransform(T.CropTransform):
    """fvcore's ``CropTransform`` drawn by :class:`MinIoURandomCrop`: its instances whose box
    centre is not strictly inside the crop are to be dropped (the mapper finds it by type)."""


class MinIoURandomCrop(T.Augmentation):
    """The authors' ``MinIoURandomCrop``: a crop whose IoU with every box is at least a
    threshold drawn among ``min_ious``, and which holds at least one box centre.

    A mode is drawn uniformly from (no crop, *``min_ious``, 0); "no crop" returns a
    ``NoOpTransform``. For a threshold, up to 50 candidates are drawn: width ~ U(``min_crop_size``
    · W, W), height ~ U(``min_crop_size`` · H, H), kept only with height / width in [0.5, 2],
    left ~ U(0, W - width), top ~ U(0, H - height), all truncated to whole pixels; the first
    whose IoU with each box is >= the threshold and that holds a box centre (strictly inside)
    is returned. If none does, a new mode is drawn (the "no crop" mode ends it). With no box,
    the first candidate of an allowed shape is returned.
    """

    input_args = ("image", "boxes")

    def __init__(
        self, min_ious: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size: float = 0.3
    ):
        super().__init__()
        min_ious = tuple(float(v) for v in min_ious)
        if any(not 0 <= v <= 1 for v in min_ious):
            raise ValueError(f"min_ious must lie in [0, 1], got {min_ious}")
        if not 0 < min_crop_size <= 1:
            raise ValueError(f"min_crop_size must be in (0, 1], got {min_crop_size}")
        self._init(locals())

    def get_transform(self, image: np.ndarray, boxes: np.ndarray | None) -> T.Transform:
        """``image``: (H, W[, C]); ``boxes``: (N, 4) XYXY_ABS pixels of the image's instances
        (None or N = 0: no box)."""
        h, w = image.shape[:2]
        boxes = np.zeros((0, 4)) if boxes is None else np.asarray(boxes, np.float64).reshape(-1, 4)
        modes = (None, *self.min_ious, 0.0)
        while True:
            min_iou = modes[np.random.randint(len(modes))]
            if min_iou is None:
                return T.NoOpTransform()
            for _ in range(50):
                new_w = np.random.uniform(self.min_crop_size * w, w)
                new_h = np.random.uniform(self.min_crop_size * h, h)
                if not 0.5 <= new_h / new_w <= 2:
                    continue
                left = np.random.uniform(0, w - new_w)
                top = np.random.uniform(0, h - new_h)
                patch = np.array([int(left), int(top), int(left + new_w), int(top + new_h)])
                if patch[2] <= patch[0] or patch[3] <= patch[1]:
                    continue  # less than a pixel wide (an image of a few pixels)
                if len(boxes):
                    if _ious(patch, boxes).min() < min_iou:
                        continue
                    if not box_centers_inside(boxes, *patch).any():
                        continue
                x0, y0, x1, y1 = (int(v) for v in patch)
                return MinIoUCropTransform(x0, y0, x1 - x0, y1 - y0, orig_w=w, orig_h=h)
