"""The inputs of the SipMask-VIS reference fixture (``tests/fixtures/sipmask_vis_reference.npz``),
regenerated from formulas so that nothing but numbers is stored: the frames, a random-weight
checkpoint in the authors' format, and the summaries of large tensors both sides compare.

``dev/reference/sipmask_vis.py`` writes the fixture with these functions and the authors' code;
``tests/test_sipmask_vis_reference.py`` regenerates the same inputs and runs this project.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import OrderedDict

import cv2
import numpy as np
import torch

FRAME_SIZE = (288, 512)  # (H, W): x1.25 to the authors' test scale (640, 360) exactly
NUM_FRAMES = 3
WEIGHT_SEED = 32
SAMPLE_VALUES = 1500  # values of a tensor kept by summarise(), besides its channel sums


def frames() -> list[np.ndarray]:
    """The NUM_FRAMES BGR uint8 (H, W, 3) frames: a smooth background with noise and four
    filled shapes moving a few pixels a frame."""
    height, width = FRAME_SIZE
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background = np.stack(
        (60 + 80 * xx / width, 90 + 40 * yy / height, 140 - 60 * xx / width), axis=2
    )
    out = []
    for t in range(NUM_FRAMES):
        frame = background + rng.normal(0, 3, background.shape).astype(np.float32)
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        corners = (60 + 6 * t, 50 + 2 * t), (170 + 6 * t, 200 + 2 * t)
        cv2.rectangle(frame, *corners, (30, 40, 220), -1)
        cv2.circle(frame, (330 - 5 * t, 120 + 3 * t), 55, (220, 200, 40), -1)
        cv2.ellipse(frame, (420, 220 - 4 * t), (60, 30), 20, 0, 360, (40, 210, 60), -1)
        triangle = np.array([[230 + 4 * t, 250], [280 + 4 * t, 180], [320 + 4 * t, 260]])
        cv2.fillPoly(frame, [triangle], (200, 60, 200))
        out.append(frame)
    return out


def _values(key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 values of weight ``key``: normal draws of a generator seeded by the key's
    CRC-32, scaled per kind so that activations neither vanish nor explode and detections,
    masks and matches are not degenerate."""
    rng = np.random.default_rng([WEIGHT_SEED, zlib.crc32(key.encode())])
    draw = rng.standard_normal(shape).astype(np.float64)
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    name = key.rsplit(".", 1)[-1]
    is_norm = len(shape) == 1 and any(
        p in key for p in (".bn", "downsample.1", ".gn", "norm", "bn1")
    )
    if key.endswith("scale"):  # the per-level box scales
        return np.full(shape, 1.0, dtype=np.float32)
    if is_norm or ("neck" not in key and "bbox_head" not in key and len(shape) == 1):
        if name == "weight":
            # the last BN of a residual branch small, so that the residual sums stay bounded
            base = 0.25 if "bn3" in key else 1.0
            return (base * (1 + 0.1 * draw)).astype(np.float32)
        if name == "running_var":
            return (1 + 0.25 * np.abs(draw)).astype(np.float32)
        return (0.05 * draw).astype(np.float32)  # bias, running_mean
    if "fcos_cls" in key:
        if name == "weight":
            return (0.03 * draw).astype(np.float32)
        # two classes near the 0.03 threshold, the others far below it: few detections,
        # some of them kept by a threshold on the class score alone
        bias = np.full(shape, -9.0)
        bias[:2] = (-5.0, -5.3)
        return bias.astype(np.float32)
    if "fcos_reg" in key:
        return (0.02 * draw if name == "weight" else 3.0 + 0.3 * draw).astype(np.float32)
    if "fcos_centerness" in key:
        return (0.03 * draw if name == "weight" else 0.1 * draw).astype(np.float32)
    if "conv_offset" in key:
        return (0.1 * draw).astype(np.float32)
    if "sip_cof" in key:
        return (0.02 * draw if name == "weight" else 0.3 * draw).astype(np.float32)
    if "sipmask_track" in key:
        # small embeddings: soft matching probabilities, so that the box IoU and the "new
        # object" column take part in the match
        return (0.03 * np.sqrt(1 / fan_in) * draw).astype(np.float32)
    if name == "bias":
        return (0.05 * draw).astype(np.float32)
    gain = 1.0 if "neck" in key else 2.0  # FPN convs have no ReLU after them
    return (np.sqrt(gain / fan_in) * draw).astype(np.float32)


def checkpoint(keys: list[str], shapes: list[tuple[int, ...]]) -> dict:
    """The random-weight checkpoint in the authors' format (mmdetection v1:
    ``{"meta": ..., "state_dict": OrderedDict}``) for their model's weight names and shapes."""
    state = OrderedDict()
    for key, shape in zip(keys, shapes, strict=True):
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0, dtype=torch.int64)
        else:
            state[key] = torch.from_numpy(_values(key, tuple(shape)))
    return {"meta": {"mmdet_version": "1.0rc0", "note": "random weights"}, "state_dict": state}


def checksum(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the names and the bytes of every weight, in order."""
    digest = hashlib.sha256()
    for key, value in state.items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def frames_checksum(images: list[np.ndarray]) -> str:
    """SHA-256 of uint8 images' bytes, in order."""
    digest = hashlib.sha256()
    for image in images:
        digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def summarise(t: torch.Tensor) -> dict[str, np.ndarray]:
    """A (1, C, H, W) map → its per-channel sums (C,) (float64) and SAMPLE_VALUES values at a
    fixed stride of its flattening."""
    t = t.detach().double().cpu()[0]
    flat = t.flatten()
    step = max(1, len(flat) // SAMPLE_VALUES)
    return {"sum": t.flatten(1).sum(dim=1).numpy(), "sample": flat[::step].numpy()}
