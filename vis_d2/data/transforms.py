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
"""

from __future__ import annotations

import cv2
import numpy as np
from detectron2.config import CfgNode
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

__all__ = [
    "RESIZE_BACKENDS",
    "OpenCVResizeShortestEdge",
    "OpenCVResizeTransform",
    "build_frame_augmentation",
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


def build_frame_augmentation(cfg: CfgNode, is_train: bool) -> list[T.Augmentation]:
    """detectron2's ``build_augmentation`` (the shortest-edge resize of ``INPUT.MIN_SIZE_*``
    / ``MAX_SIZE_*``, the training flip) with the resize done by ``INPUT.RESIZE_BACKEND``.

    Raises:
        ValueError: ``INPUT.RESIZE_BACKEND`` is not one of :data:`RESIZE_BACKENDS`.
    """
    backend = cfg.INPUT.RESIZE_BACKEND
    if backend not in RESIZE_BACKENDS:
        raise ValueError(f"INPUT.RESIZE_BACKEND '{backend}' is not one of {RESIZE_BACKENDS}")
    augmentations = utils.build_augmentation(cfg, is_train)
    if backend == "pil":
        return augmentations
    return [
        OpenCVResizeShortestEdge(a.short_edge_length, a.max_size, a.sample_style)
        if type(a) is T.ResizeShortestEdge
        else a
        for a in augmentations
    ]
