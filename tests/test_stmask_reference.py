"""STMask with the authors' weights computes what the authors' code computes: the reference
fixture tests/fixtures/stmask_reference.npz holds the numbers of the authors' own code
(MinghanLi/STMask, run by dev/reference/stmask.py; see tests/fixtures/README.md) for a fake
STMask_plus_resnet50_ada_YTVIS2021.pth (tests/stmask_authors.py) on three frames. Here that
checkpoint is generated again, converted by tools/convert_weights.py as a user would, and run
through ``inference_frame`` with STMask_R50_DCN_authors.yaml; every stage must match: the
backbone and FPN maps, the head's rows and prototypes, the detections after NMS, temporal
fusion's shifts, the memory and the output (ids, kept sets and classes exactly, values to a
relative 1e-4)."""

import numpy as np
import pytest
import torch
from conftest import REPO, run_python
from stmask_authors import (
    CHANNEL_STEP,
    REFERENCE_SIZE,
    ROW_STEP,
    checkpoint_digest,
    reference_checkpoint,
    reference_frames,
)

from vis_d2.engine.predictor import load_model, setup_cfg

FIXTURE = REPO / "tests" / "fixtures" / "stmask_reference.npz"
CONFIG = str(REPO / "projects" / "STMask" / "configs" / "STMask_R50_DCN_authors.yaml")
# the 2021 release (the authors' code since June 2021): DCN in every 2nd block of res3-res5;
# the converter names this setting when a checkpoint has that layout
OPTS = ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEFORM_INTERVAL", "2"]
RTOL = 1e-4


def close(actual, expected, scale: float | None = None) -> None:
    """|actual − expected| ≤ RTOL · max|expected| (the arrays' own scale, or ``scale``)."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    bound = RTOL * (scale if scale is not None else max(np.abs(expected).max(), 1e-6))
    worst = np.abs(actual - expected).max() if actual.size else 0.0
    assert worst <= bound, f"max |Δ| {worst:.3g} > {bound:.3g}"


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(FIXTURE))


@pytest.fixture(scope="module")
def ours(reference, tmp_path_factory):
    """The converted checkpoint run on the frames: per stage what the fixture holds."""
    weights = reference_checkpoint()
    assert checkpoint_digest(weights) == str(reference["checkpoint_sha256"]), (
        "tests/stmask_authors.py no longer generates the checkpoint of the fixture: regenerate "
        "the fixture (tests/fixtures/README.md) or restore the generator"
    )
    folder = tmp_path_factory.mktemp("stmask_reference")
    source, converted = folder / "STMask_plus_resnet50_ada_YTVIS2021.pth", folder / "model.pth"
    torch.save(weights, source)
    proc = run_python(
        "tools/convert_weights.py", "--config-file", CONFIG, "--input", str(source),
        "--output", str(converted), *OPTS,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = load_model(setup_cfg(CONFIG, [*OPTS, "MODEL.WEIGHTS", str(converted)]))
    seen: dict[str, list] = {"bottom_up": [], "fpn": [], "head": [], "proto": [], "shift": []}
    model.backbone.fpn.bottom_up.register_forward_hook(lambda m, i, o: seen["bottom_up"].append(o))
    model.backbone.register_forward_hook(lambda m, i, o: seen["fpn"].append(o))
    model.head.register_forward_hook(lambda m, i, o: seen["head"].append(o))
    model.protonet.register_forward_hook(lambda m, i, o: seen["proto"].append(o))
    model.temporal_net.register_forward_hook(lambda m, i, o: seen["shift"].append(o))
    detect, detections = model.detector.detect, []

    def recording_detect(*args, **kwargs):
        detections.append(detect(*args, **kwargs))
        return detections[-1]

    model.detector.detect = recording_detect
    out: dict[str, np.ndarray] = {}
    height, width = REFERENCE_SIZE
    for t, frame in enumerate(reference_frames()):
        # the frame as it is (already the network's input size: no resize, no padding)
        image = torch.from_numpy(frame).permute(2, 0, 1)
        with torch.no_grad():
            result = model.inference_frame(
                {"image": image, "height": height, "width": width, "is_first": t == 0}
            )
        det = detections[-1]
        out[f"det{t}_boxes"] = det.pred_boxes.tensor.numpy()
        out[f"det{t}_scores"] = det.scores.numpy()
        out[f"det{t}_classes"] = det.pred_classes.numpy()
        memory = model.tracker.memory
        out[f"memory{t}_boxes"] = memory.pred_boxes.tensor.numpy().copy()
        out[f"memory{t}_scores"] = memory.scores.numpy().copy()
        out[f"memory{t}_missed"] = model.tracker.missed.numpy().copy()
        out[f"memory{t}_masks"] = np.packbits((memory.mask_probs > 0.5).numpy(), axis=-1)
        out[f"output{t}_ids"] = result.track_ids.numpy()
        out[f"output{t}_scores"] = result.scores.numpy()
        out[f"output{t}_classes"] = result.pred_classes.numpy()
        out[f"output{t}_boxes"] = result.pred_boxes.tensor.numpy()
        out[f"output{t}_masks"] = np.packbits(result.pred_masks.numpy(), axis=-1)
        if t > 0:
            delta_box, delta_coef = seen["shift"][-1]
            out[f"shift{t}_boxes"] = delta_box.numpy()
            out[f"shift{t}_coefficients"] = delta_coef.numpy()
    for level in ("res3", "res4", "res5"):
        out[f"backbone_{level}"] = seen["bottom_up"][0][level][0, :: CHANNEL_STEP["backbone"]]
    for level in range(3, 8):
        out[f"fpn_p{level}"] = seen["fpn"][0][f"p{level}"][0, :: CHANNEL_STEP["fpn"]]
    rows = {k: torch.cat([level[k] for level in seen["head"][0]], dim=1)[0] for k in
            ("cls", "box", "ctr", "mask", "track")}  # fmt: skip
    out["head_box"] = rows["box"]
    out["head_centerness"] = rows["ctr"]
    out["head_class_logits"] = rows["cls"][::ROW_STEP]
    out["head_coefficients"] = rows["mask"][::ROW_STEP]
    out["head_track"] = rows["track"][:: ROW_STEP * 3]
    out["prototypes"] = seen["proto"][0][0, :: CHANNEL_STEP["proto"]].permute(1, 2, 0)
    return {k: v.numpy() if torch.is_tensor(v) else v for k, v in out.items()}


DENSE = ["backbone_res3", "backbone_res4", "backbone_res5"] + [f"fpn_p{i}" for i in range(3, 8)]
HEAD = ["head_box", "head_centerness", "head_class_logits", "head_coefficients", "head_track",
        "prototypes"]  # fmt: skip


@pytest.mark.parametrize("name", DENSE + HEAD)
def test_network(reference, ours, name):
    close(ours[name], reference[name])


@pytest.mark.parametrize("t", range(3))
def test_detections_after_nms(reference, ours, t):
    """The kept set (in score order), its classes exactly; boxes and scores."""
    np.testing.assert_array_equal(ours[f"det{t}_classes"], reference[f"det{t}_classes"])
    close(ours[f"det{t}_scores"], reference[f"det{t}_scores"])
    close(ours[f"det{t}_boxes"], reference[f"det{t}_boxes"], scale=max(REFERENCE_SIZE))


@pytest.mark.parametrize("t", (1, 2))
def test_temporal_fusion_shifts(reference, ours, t):
    close(ours[f"shift{t}_boxes"], reference[f"shift{t}_boxes"])
    close(ours[f"shift{t}_coefficients"], reference[f"shift{t}_coefficients"])


@pytest.mark.parametrize("t", range(3))
def test_memory(reference, ours, t):
    """Every entry in id order: missed counts, decayed scores, boxes and masks (prototype
    resolution, binarised at 0.5)."""
    np.testing.assert_array_equal(ours[f"memory{t}_missed"], reference[f"memory{t}_missed"])
    close(ours[f"memory{t}_scores"], reference[f"memory{t}_scores"])
    close(ours[f"memory{t}_boxes"], reference[f"memory{t}_boxes"], scale=max(REFERENCE_SIZE))
    assert_masks_agree(ours[f"memory{t}_masks"], reference[f"memory{t}_masks"], f"memory {t}")


@pytest.mark.parametrize("t", range(3))
def test_output(reference, ours, t):
    """The frame's output: the ids shown, their classes and scores, masks at the frame's size
    and boxes (the authors' are clipped and truncated to whole pixels)."""
    np.testing.assert_array_equal(ours[f"output{t}_ids"], reference[f"output{t}_ids"])
    np.testing.assert_array_equal(ours[f"output{t}_classes"], reference[f"output{t}_classes"])
    close(ours[f"output{t}_scores"], reference[f"output{t}_scores"])
    np.testing.assert_array_equal(np.floor(ours[f"output{t}_boxes"]), reference[f"output{t}_boxes"])
    assert_masks_agree(ours[f"output{t}_masks"], reference[f"output{t}_masks"], f"output {t}")


def assert_masks_agree(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    """Bit-packed masks equal but for at most 1 pixel in 100,000: probabilities within a few
    ulps of the 0.5 threshold fall either way with the CPU's SIMD kernels (AVX2's moves 2 of
    the 4.4 million output pixels of frame 0 against AVX-512's, on which the fixture was
    written)."""
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != {theirs.shape}"
    differ = int(np.unpackbits(ours ^ theirs).sum())
    total = ours.size * 8
    assert differ <= max(2, total // 100_000), f"{what}: {differ} of {total} mask pixels differ"
