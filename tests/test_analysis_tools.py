"""tools/visualize_data.py, tools/visualize_json_results.py and tools/analyze_model.py on a
YouTube-VIS-format set registered from the command line and the CPU config."""

import json
import re

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from test_demo import CONFIG, TINY, load_tool, read_video, save_random_weights
from ytvis_cases import write_edge_case_set

from vis_d2.engine.predictor import FramePreprocessor, load_model, setup_cfg


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    root = tmp_path_factory.mktemp("edge_tools")
    paths = write_edge_case_set(root)
    register = (
        f"(('tools_train', '{paths['train']}', '{paths['train_images']}'), "
        f"('tools_val', '{paths['valid']}', '{paths['valid_images']}'))"
    )
    weights = root / "weights.pth"
    save_random_weights(weights)
    return {**paths, "register": ["DATASETS.REGISTER", register], "weights": weights}


def test_visualize_data_draws_every_video_and_training_samples(edge, tmp_path):
    tool = load_tool("visualize_data")
    out = tmp_path / "gt"
    data = [*edge["register"], "DATASETS.TRAIN", "('tools_train',)"]
    assert tool.main(["--config-file", CONFIG, "--output-dir", str(out), *data]) == 0
    train = json.loads(edge["train"].read_text())
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{v['id']}.mp4" for v in train["videos"]
    )
    for v in train["videos"]:
        frames, _ = read_video(out / f"{v['id']}.mp4")
        assert len(frames) == v["length"] and frames[0].shape[:2] == (v["height"], v["width"])
    # the drawing covers each instance: colour changes inside the masks of video 1, frame 3
    frames, _ = read_video(out / "1.mp4")
    raw = cv2.imread(str(edge["train_images"] / train["videos"][0]["file_names"][3]))
    inside = np.zeros(raw.shape[:2], bool)
    for ann in train["annotations"]:
        seg = ann["segmentations"][3] if ann["video_id"] == 1 else None
        if isinstance(seg, dict) and isinstance(seg["counts"], str):
            inside |= mask_util.decode({**seg, "counts": seg["counts"].encode()}).astype(bool)
    diff = np.abs(frames[3].astype(int) - raw.astype(int)).mean(axis=2)
    assert diff[inside].mean() > diff[~inside].mean() + 10

    samples = tmp_path / "samples"
    code = tool.main(["--config-file", CONFIG, "--output-dir", str(samples), "--source",
                      "dataloader", "--num-samples", "3", *TINY, *data])
    assert code == 0
    names = sorted(p.name for p in samples.iterdir())
    assert len(names) == 3 and all(re.fullmatch(r"sample_\d{3}_video\d_frames\d-\d\.png", n)
                                   for n in names)
    short_side = setup_cfg(CONFIG).INPUT.MIN_SIZE_TRAIN[0]
    for name in names:  # key | reference, resized as the training loader resizes them
        height, width = cv2.imread(str(samples / name)).shape[:2]
        assert width % 2 == 0 and min(height, width // 2) == short_side

    assert tool.main(["--config-file", CONFIG, "--output-dir", str(out), *data]) == 1  # exists


def test_visualize_json_results_draws_results_beside_the_ground_truth(edge, tmp_path, capsys):
    val = json.loads(edge["valid"].read_text())
    # the ground truth itself as results: what is drawn on the left equals the right's masks
    results = [
        {"video_id": a["video_id"], "category_id": a["category_id"], "score": 0.9,
         "segmentations": [
             None if s is None else mask_util.encode(np.asfortranarray(
                 _decode(s, a["height"], a["width"]).astype(np.uint8)))
             for s in a["segmentations"]]}
        for a in val["annotations"] if not a["iscrowd"]
    ]  # fmt: skip
    for r in results:
        for s in r["segmentations"]:
            if s is not None:
                s["counts"] = s["counts"].decode()
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    tool = load_tool("visualize_json_results")
    out = tmp_path / "drawn"
    code = tool.main(["--input", str(path), "--output", str(out), "--config-file", CONFIG,
                      *edge["register"], "DATASETS.TEST", "('tools_val',)"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        {f"{r['video_id']}.mp4" for r in results}
    )
    frames, _ = read_video(out / "1.mp4")
    width = val["videos"][0]["width"]
    assert len(frames) == val["videos"][0]["length"] and frames[0].shape[1] == 2 * width
    left, right = frames[2][:, :width].astype(int), frames[2][:, width:].astype(int)
    raw = cv2.imread(str(edge["valid_images"] / val["videos"][0]["file_names"][2])).astype(int)
    assert np.abs(left - raw).mean() > 2 and np.abs(right - raw).mean() > 2

    path.write_text(json.dumps([{**results[0], "video_id": 99}]))
    code = tool.main(["--input", str(path), "--output", str(tmp_path / "x"), "--config-file",
                      CONFIG, *edge["register"], "DATASETS.TEST", "('tools_val',)"])
    assert code == 1
    assert "result 0 is of video 99, which tools_val does not have" in capsys.readouterr().err


def _decode(seg, height, width):
    if isinstance(seg, list):
        return mask_util.decode(mask_util.merge(mask_util.frPyObjects(seg, height, width)))
    if isinstance(seg["counts"], list):
        return mask_util.decode(mask_util.frPyObjects(seg, height, width))
    return mask_util.decode({**seg, "counts": seg["counts"].encode()})


def test_analyze_model_counts_parameters_and_per_frame_flops(edge, capsys):
    tool = load_tool("analyze_model")
    frames_dir = edge["valid_images"] / "v_enter"
    opts = [*TINY, "MODEL.WEIGHTS", str(edge["weights"])]
    code = tool.main(["--config-file", CONFIG, "--tasks", "parameter", "flop", "activation",
                      "--input", str(frames_dir), "--num-frames", "3", *opts])
    assert code == 0
    out = capsys.readouterr().out
    for module in ("backbone", "fcos.head", "base_mask", "sam", "movement_head"):
        assert re.search(rf"\| {re.escape(module)} +\|", out), module
    flops = re.search(r"FLOPs per frame \(G\): first frame ([\d.]+), later frames ([\d.]+)", out)
    assert flops and re.search(r"Activations per frame \(G\): first frame [\d.]+", out)

    # at least the backbone's own count, as fvcore gives it on the same input
    cfg = setup_cfg(CONFIG, opts)
    model = load_model(cfg)
    frame = FramePreprocessor(cfg)(cv2.imread(str(sorted(frames_dir.iterdir())[0])))
    image = ((frame["image"].float() - model.pixel_mean) / model.pixel_std)[None]
    with torch.no_grad():
        backbone = FlopCountAnalysis(model.backbone, image)
        backbone.unsupported_ops_warnings(False)
        backbone_g = backbone.total() / 1e9
    first, later = float(flops.group(1)), float(flops.group(2))
    assert backbone_g > 0 and first >= backbone_g - 1e-3 and later >= backbone_g - 1e-3
    assert first < 3 * backbone_g  # the heads cost less than the backbone and FPN twice over
