"""Reference numbers of the authors' STMask code for tests/test_stmask_reference.py.

Given a checkout of MinghanLi/STMask, this builds the released STMask_plus_resnet50_ada model
of their code (their ``datasets.config`` STMask_plus_resnet50_ada_config), loads into it the
deterministic fake checkpoint of ``tests/stmask_authors.py`` (strictly: the checkpoint has
their model's names and shapes), runs their network, detection (``Detect_TF``), temporal
fusion (``CandidateShift``) and tracking (``Track_TF``) and their ``postprocess_ytbvis`` on
the frames of ``tests/stmask_authors.py`` and writes the numbers to an npz.

Their compiled ops run as pure-torch stand-ins, installed as the modules they import:
DCNv2's ``DCN`` and mmcv's ``DeformConv2d`` → ``torchvision.ops.deform_conv2d``, mmcv's
``roi_align`` → ``torchvision.ops.roi_align`` (aligned, as mmcv's default), the
spatial-correlation-sampler → a sum of shifted products, the Cython NMS (unused by STMask's
TF path) → absent. ``torch.cuda.current_device`` answers "cpu" (their matching score puts its
"new object" column there). Their ``datasets`` package is loaded with its ``config`` only (the
rest reads data sets with mmcv). Nothing of their logic is changed.

Usage: python dev/reference/stmask.py --authors /path/to/STMask
(writes tests/fixtures/stmask_reference.npz; ``--out`` another file; ``--commit`` the
checkout's commit where it is not a git work tree)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.ops import deform_conv2d, roi_align

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from stmask_authors import (  # noqa: E402
    CHANNEL_STEP,
    REFERENCE_CONFIG,
    REFERENCE_SIZE,
    ROW_STEP,
    checkpoint_digest,
    reference_checkpoint,
    reference_frames,
)


class DCN(nn.Module):
    """DCNv2's ``DCN``: a modulated deformable conv whose offsets and mask come from its own
    ``conv_offset_mask`` (the first 2·k² channels the offsets, the last k² the mask's logits)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 deformable_groups=1):  # fmt: skip
        super().__init__()
        k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.weight = nn.Parameter(torch.zeros(out_channels, in_channels, *k))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.conv_offset_mask = nn.Conv2d(in_channels, deformable_groups * 3 * k[0] * k[1], k,
                                          stride=stride, padding=padding)  # fmt: skip

    def forward(self, x):
        # DCNv2's layout: 2/3 of the channels are (dy, dx) offsets, the last third modulation
        offset_and_mask = self.conv_offset_mask(x)
        split = offset_and_mask.shape[1] * 2 // 3
        offset, mask = offset_and_mask[:, :split], offset_and_mask[:, split:]
        return deform_conv2d(
            x,
            offset,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            mask=mask.sigmoid(),
        )


class DeformConv2d(nn.Module):
    """mmcv's ``DeformConv2d`` (no bias): ``forward(x, offset)``."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, deform_groups=1, bias=False):  # fmt: skip
        super().__init__()
        k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.weight = nn.Parameter(torch.zeros(out_channels, in_channels // groups, *k))

    def forward(self, x, offset):
        return deform_conv2d(
            x, offset, self.weight, stride=self.stride, padding=self.padding, dilation=self.dilation
        )


def mmcv_roi_align(input, rois, output_size, spatial_scale=1.0, sampling_ratio=0,
                   pool_mode="avg", aligned=True):  # fmt: skip
    """mmcv.ops.roi_align with its defaults (average, adaptive sampling, aligned)."""
    return roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned)


def spatial_correlation_sample(x1, x2, kernel_size=1, patch_size=11, stride=1, padding=0,
                               dilation_patch=1):  # fmt: skip
    """spatial_correlation_sampler (kernel 1, stride 1, no padding): (B, P, P, H, W), entry
    (dy + r, dx + r) = Σ_c x1[c, y, x]·x2[c, y + dy·d, x + dx·d], 0 off the map."""
    if (kernel_size, stride, padding) != (1, 1, 0):
        raise NotImplementedError("only the settings STMask uses")
    r = patch_size // 2
    b, c, h, w = x1.shape
    pad = r * dilation_patch
    x2p = torch.nn.functional.pad(x2, (pad, pad, pad, pad))
    out = x1.new_zeros((b, patch_size, patch_size, h, w))
    for i in range(patch_size):
        for j in range(patch_size):
            dy, dx = i * dilation_patch, j * dilation_patch
            out[:, i, j] = (x1 * x2p[:, :, dy : dy + h, dx : dx + w]).sum(1)
    return out


def install_stand_ins(authors: Path) -> None:
    """Put the stand-ins where the authors' code imports its compiled ops, and their
    checkout on the path."""

    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    module("dcn_v2", DCN=DCN)
    mmcv = module("mmcv")
    mmcv.ops = module("mmcv.ops", DeformConv2d=DeformConv2d, roi_align=mmcv_roi_align)
    module("spatial_correlation_sampler", spatial_correlation_sample=spatial_correlation_sample)
    module("pyximport", install=lambda *a, **k: None)
    torch.cuda.current_device = lambda: "cpu"
    sys.path.insert(0, str(authors))
    datasets = module("datasets")
    datasets.__path__ = [str(authors / "datasets")]
    import datasets.config as config  # noqa: PLC0415

    datasets.__dict__.update({k: v for k, v in vars(config).items() if not k.startswith("__")})
    import utils  # noqa: PLC0415, F401

    module("utils.cython_nms", nms=None)


class _Recorder:
    """Calls their ``Detect_TF`` and keeps what it returns."""

    def __init__(self, detect):
        self.detect, self.outputs = detect, []

    def __call__(self, *args, **kwargs):
        out = self.detect(*args, **kwargs)
        self.outputs.append({k: v.clone() for k, v in out[0].items() if torch.is_tensor(v)})
        return out


def _np(x: torch.Tensor) -> np.ndarray:
    x = x.detach().cpu()
    return x.numpy().astype(np.float32) if x.is_floating_point() else x.numpy().astype(np.int64)


def run(authors: Path) -> dict[str, np.ndarray]:
    """Their model on the reference frames → the fixture's arrays (tests/fixtures/README.md
    lists them): boxes in input px, classes 0-based (foreground)."""
    install_stand_ins(authors)
    from datasets.config import MEANS, STD, cfg, set_cfg  # noqa: PLC0415
    from layers.output_utils import postprocess_ytbvis  # noqa: PLC0415

    set_cfg(REFERENCE_CONFIG)
    import STMask as authors_stmask  # noqa: PLC0415

    net = authors_stmask.STMask()
    weights = reference_checkpoint()
    net.load_state_dict(weights, strict=True)  # their names and shapes, all of them
    net.eval()
    captured: dict[str, list] = {"backbone": [], "fpn": [], "heads": [], "temporal": []}
    net.backbone.register_forward_hook(lambda m, i, o: captured["backbone"].append(o))
    net.fpn.register_forward_hook(lambda m, i, o: captured["fpn"].append(o))
    net.TemporalNet.register_forward_hook(lambda m, i, o: captured["temporal"].append(o))
    recorder = _Recorder(net.Detect_TF)
    net.Detect_TF = recorder
    height, width = REFERENCE_SIZE
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    out: dict[str, np.ndarray] = {"checkpoint_sha256": np.array(checkpoint_digest(weights))}
    mean, std = torch.tensor(MEANS).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    for t, frame in enumerate(reference_frames()):
        # their transform for this backbone: RGB, (x - MEANS) / STD
        assert cfg.backbone.transform.channel_order == "RGB" and cfg.backbone.transform.normalize
        image = (torch.from_numpy(frame).permute(2, 0, 1).float() - mean) / std
        shape = (height, width, 3)
        meta = {"is_first": t == 0, "ori_shape": shape, "img_shape": shape, "pad_shape": shape,
                "video_id": 0, "frame_id": t}  # fmt: skip
        with torch.no_grad():
            if t == 0:  # the dense outputs of the first frame
                fpn_outs, preds = net.forward_single(image[None])
                captured["heads"].append(preds)
            result = net(image[None], img_meta=[meta])[0]
            final = postprocess_ytbvis(result, meta, display_mask=True)
        det = recorder.outputs[-1]
        out[f"det{t}_boxes"] = _np(det["box"] * scale)
        out[f"det{t}_scores"] = _np(det["score"])
        out[f"det{t}_classes"] = _np(det["class"] - 1)
        memory = net.Track_TF.prev_candidate
        out[f"memory{t}_boxes"] = _np(memory["box"] * scale)
        out[f"memory{t}_scores"] = _np(memory["score"])
        out[f"memory{t}_missed"] = _np(memory["tracked_mask"].long())
        out[f"memory{t}_masks"] = np.packbits(_np(memory["mask"] > 0.5).astype(bool), axis=-1)
        detection = result["detection"]
        out[f"output{t}_ids"] = _np(detection["box_ids"].long())
        out[f"output{t}_scores"] = _np(detection["score"])
        out[f"output{t}_classes"] = _np(detection["class"] - 1)
        out[f"output{t}_boxes"] = _np(final["box"])  # clipped, truncated to integers
        out[f"output{t}_masks"] = np.packbits(_np(final["segm"]).astype(bool), axis=-1)
        if t > 0:  # temporal fusion's shifts of the memory entries, from frame t - 1 to t
            delta_box, delta_coef = captured["temporal"][-1]
            out[f"shift{t}_boxes"] = _np(delta_box)
            out[f"shift{t}_coefficients"] = _np(delta_coef)
    # the first frame's dense outputs, subsampled to keep the file small
    backbone = [captured["backbone"][0][i] for i in cfg.backbone.selected_layers]
    for level, x in zip(("res3", "res4", "res5"), backbone, strict=True):
        out[f"backbone_{level}"] = _np(x[0, :: CHANNEL_STEP["backbone"]])
    for level, x in enumerate(captured["fpn"][0]):
        out[f"fpn_p{level + 3}"] = _np(x[0, :: CHANNEL_STEP["fpn"]])
    preds = captured["heads"][0]
    rows = ROW_STEP
    out["head_box"] = _np(preds["loc"][0])
    out["head_centerness"] = _np(preds["centerness"][0, :, 0])
    out["head_class_logits"] = _np(preds["conf"][0, ::rows])
    out["head_coefficients"] = _np(preds["mask_coeff"][0, ::rows])
    out["head_track"] = _np(preds["track"][0, :: rows * 3])
    out["prototypes"] = _np(preds["proto"][0, :, :, :: CHANNEL_STEP["proto"]])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", type=Path, required=True, help="checkout of MinghanLi/STMask")
    parser.add_argument("--commit", help="the checkout's commit (default: git rev-parse HEAD)")
    parser.add_argument("--out", type=Path, default=REPO / "tests/fixtures/stmask_reference.npz")
    args = parser.parse_args()
    commit = (
        args.commit
        or subprocess.run(
            ["git", "-C", str(args.authors), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    )
    if not commit:
        parser.error(f"{args.authors} is not a git checkout: name its commit with --commit")
    results = run(args.authors.resolve())
    results["authors_commit"] = np.array(commit)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **results)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
