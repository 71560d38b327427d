"""The inputs of the SipMask image reference fixture (``tests/fixtures/sipmask_reference.npz``),
regenerated from formulas so that nothing but numbers is stored: the images and a random-weight
checkpoint in the authors' format (mmdetection v1, ``sipmask_r50_caffe_fpn_gn_1x``).

The weights follow ``sipmask_vis_reference``'s per-name formulas (normal draws seeded by the
name's CRC-32, scaled per kind) except the class biases, which here put a few of the 80 classes
near the image model's 0.05 threshold on the class probability. ``dev/reference/sipmask.py``
writes the fixture with these functions and the authors' code;
``tests/test_sipmask_reference.py`` regenerates the same inputs and runs this project.
"""

from __future__ import annotations

from collections import OrderedDict

import cv2
import numpy as np
import sipmask_vis_reference as vis_ref
import torch

# (H, W) of the images: ×4/3 to the test scale (667, 400) exactly (half the authors' (1333,
# 800)), so that their scalar scale factor is the ratio of the sizes on both axes
IMAGE_SIZES = ((300, 450), (450, 300))
TEST_SCALE = (667, 400)
# class logits of the classes near the threshold (sigmoid(-2.9) = 0.052); the others −9
CLASS_BIASES = (-2.6, -2.9, -3.1, -3.3)


def images() -> list[np.ndarray]:
    """BGR uint8 (H, W, 3) images of :data:`IMAGE_SIZES`: a smooth background with noise and
    overlapping filled shapes."""
    out = []
    rng = np.random.default_rng(5)
    for i, (height, width) in enumerate(IMAGE_SIZES):
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        background = np.stack(
            (50 + 90 * xx / width, 100 + 50 * yy / height, 150 - 70 * xx / width), axis=2
        )
        image = background + rng.normal(0, 4, background.shape).astype(np.float32)
        image = np.clip(image, 0, 255).astype(np.uint8)
        s = min(height, width) / 300
        cv2.rectangle(image, (int(40 * s), int(50 * s)), (int(170 * s), int(210 * s)),
                      (30, 40, 220), -1)  # fmt: skip
        cv2.circle(image, (int(190 * s) + 20 * i, int(120 * s)), int(60 * s), (220, 200, 40), -1)
        cv2.ellipse(image, (width - int(80 * s), height - int(90 * s)),
                    (int(70 * s), int(35 * s)), 25 + 40 * i, 0, 360, (40, 210, 60), -1)  # fmt: skip
        triangle = np.array([[int(120 * s), height - 20], [int(200 * s), int(150 * s)],
                             [int(250 * s), height - 40]])  # fmt: skip
        cv2.fillPoly(image, [triangle], (200, 60, 200))
        out.append(image)
    return out


def _values(key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 values of weight ``key``: ``sipmask_vis_reference``'s, the class biases
    aside."""
    if "fcos_cls" in key and key.endswith("bias"):
        bias = np.full(shape, -9.0)
        bias[: len(CLASS_BIASES)] = CLASS_BIASES
        return bias.astype(np.float32)
    return vis_ref._values(key, shape)


def checkpoint(keys: list[str], shapes: list[tuple[int, ...]]) -> dict:
    """The random-weight checkpoint in the authors' format (``{"meta", "state_dict"}``) for
    their model's weight names and shapes."""
    state = OrderedDict()
    for key, shape in zip(keys, shapes, strict=True):
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0, dtype=torch.int64)
        else:
            state[key] = torch.from_numpy(_values(key, tuple(shape)))
    return {"meta": {"mmdet_version": "1.0rc0", "note": "random weights"}, "state_dict": state}


checksum = vis_ref.checksum
images_checksum = vis_ref.frames_checksum
summarise = vis_ref.summarise
