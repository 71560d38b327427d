"""tools/demo.py on tiny synthetic videos: outputs, their consistency with the model, errors."""

import importlib.util
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from conftest import REPO, run_python
from detectron2.modeling import build_model

from vis_d2.data.synthetic import generate
from vis_d2.engine.predictor import FramePreprocessor, load_model, setup_cfg
from vis_d2.utils.video_io import open_frames

CONFIG = str(REPO / "configs" / "synthetic" / "SGNet_R18_synthetic.yaml")
# a tiny SG-Net; random weights score ~0.2-0.5, so these thresholds give a few detections
# per frame, and a different number on different frames
TINY = [
    "MODEL.DEVICE", "cpu",
    "MODEL.FPN.OUT_CHANNELS", "32",
    "MODEL.FCOS.NUM_CLS_CONVS", "1",
    "MODEL.FCOS.NUM_BOX_CONVS", "1",
    "MODEL.FCOS.POST_NMS_TOPK_TEST", "100",
    "MODEL.FCOS.INFERENCE_TH_TEST", "0.25",
    "MODEL.SGNET.BASE.CONVS_DIM", "16",
    "MODEL.SGNET.SAM.CONVS_DIM", "32",
    "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "96",
]  # fmt: skip
NUM_FRAMES = 5


def save_random_weights(path) -> None:
    """Random-initialised tiny SG-Net weights that give detections worth comparing: class
    scores that vary with the image, boxes about two strides from their cell on each side (the
    FCOS initialisation predicts empty boxes) and mask logits well away from 0."""
    cfg = setup_cfg(CONFIG, TINY + ["MODEL.WEIGHTS", ""])
    torch.manual_seed(0)
    model = build_model(cfg)
    head = model.fcos.head
    torch.nn.init.normal_(head.cls_logits.weight, std=0.1)
    torch.nn.init.normal_(head.bbox_pred.weight, std=0.1)
    torch.nn.init.constant_(head.bbox_pred.bias, 2.0)
    torch.nn.init.normal_(model.sam.predictor.weight, std=0.1)
    torch.save({"model": model.state_dict()}, path)


def write_mp4(path, frames, fps: float) -> None:
    size = frames[0].shape[1::-1]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for frame in frames:
        writer.write(frame)
    writer.release()


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """Weights, the config overrides that use them, a frame folder and the same video as mp4."""
    root = tmp_path_factory.mktemp("demo_assets")
    generate(root / "data", 1, NUM_FRAMES, seed=0, num_val_videos=1, width=96, height=64,
             progress=False)
    frames_dir = next((root / "data" / "valid" / "JPEGImages").iterdir())
    weights = root / "weights.pth"
    save_random_weights(weights)
    video = root / "clip.mp4"
    write_mp4(video, [f for _, f in open_frames(str(frames_dir))], fps=5)
    return {
        "root": root,
        "frames": frames_dir,
        "video": video,
        "weights": weights,
        "opts": TINY + ["MODEL.WEIGHTS", str(weights)],
    }


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tools_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo():
    return load_tool("demo")


def read_video(path):
    """(frames as a list of BGR arrays, fps) of a video file."""
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames, fps


def eager_frames(assets, source):
    """The eager model's per-frame instances on ``source`` (a frame folder or video)."""
    cfg = setup_cfg(CONFIG, assets["opts"])
    model = load_model(cfg)
    preprocess = FramePreprocessor(cfg)
    model.reset()
    return [model.inference_frame(preprocess(f)) for _, f in open_frames(str(source))]


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


def test_frame_folder_gives_video_pngs_and_tracks_matching_the_model(
    assets, demo, tmp_path, caplog
):
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="vis_d2.demo"):
        code = demo.main(
            ["--config-file", CONFIG, "--input", str(assets["frames"]), "--output", str(out),
             "--json", "--save-frames", "--confidence-threshold", "0", *assets["opts"]]
        )  # fmt: skip
    assert code == 0
    name = assets["frames"].name
    video, results, pngs = out / f"{name}.mp4", out / f"{name}.json", out / f"{name}_frames"
    assert str(video) in caplog.text and str(results) in caplog.text and str(pngs) in caplog.text
    frames, fps = read_video(video)
    assert len(frames) == NUM_FRAMES and fps == 10
    assert all(f.shape == (64, 96, 3) for f in frames)
    assert sorted(p.name for p in pngs.iterdir()) == [f"{t:05d}.png" for t in range(NUM_FRAMES)]
    assert cv2.imread(str(pngs / "00000.png")).shape == (64, 96, 3)
    assert leftovers(out) == []

    entries = json.loads(results.read_text())
    expected = eager_frames(assets, assets["frames"])
    track_ids = sorted({tid for inst in expected for tid in inst.track_ids.tolist()})
    # each track is written once per class it is given, its classes one after the other
    k = setup_cfg(CONFIG, assets["opts"]).TEST.CLASSES_PER_TRACK
    assert track_ids == list(range(len(entries) // k)) and len(entries) >= 2 * k
    for i in range(0, len(entries), k):
        assert len({e["category_id"] for e in entries[i : i + k]}) == k
        assert all(e["segmentations"] == entries[i]["segmentations"] for e in entries[i : i + k])
    for i, entry in enumerate(entries):
        # every entry names its track: the #id drawn in the video
        assert set(entry) == {"video_id", "category_id", "score", "segmentations", "track_id"}
        tid = entry["track_id"]
        assert tid == track_ids[i // k]
        assert entry["video_id"] == 1 and 1 <= entry["category_id"] <= 6
        assert 0 < entry["score"] <= 1
        segs = entry["segmentations"]
        assert len(segs) == NUM_FRAMES
        present = [tid in inst.track_ids.tolist() for inst in expected]
        assert [s is not None for s in segs] == present
        for seg, inst in zip(segs, expected, strict=True):
            if seg is not None:
                assert seg["size"] == [64, 96]
                mask = inst.pred_masks[inst.track_ids == tid][0].numpy()
                decoded = mask_util.decode({**seg, "counts": seg["counts"].encode()})
                assert np.array_equal(decoded.astype(bool), mask)


def test_video_file_input_keeps_its_frame_rate(assets, demo, tmp_path):
    out = tmp_path / "result.mp4"
    code = demo.main(
        ["--config-file", CONFIG, "--input", str(assets["video"]), "--output", str(out),
         "--json", *assets["opts"]]
    )  # fmt: skip
    assert code == 0
    frames, fps = read_video(out)
    assert len(frames) == NUM_FRAMES and fps == 5
    assert frames[0].shape == (64, 96, 3)
    entries = json.loads(out.with_suffix(".json").read_text())
    assert all(len(e["segmentations"]) == NUM_FRAMES for e in entries)
    assert all(e["score"] >= 0.3 for e in entries)  # the default --confidence-threshold
    assert not out.with_name("result_frames").exists()


def test_glob_input_and_fps_option(assets, demo, tmp_path):
    code = demo.main(
        ["--config-file", CONFIG, "--input", str(assets["frames"] / "0000[0-2].jpg"),
         "--output", str(tmp_path), "--fps", "4", *assets["opts"]]
    )  # fmt: skip
    assert code == 0
    frames, fps = read_video(tmp_path / f"{assets['frames'].name}.mp4")
    assert len(frames) == 3 and fps == 4


def _corrupt_folder(tmp_path, assets):
    folder = tmp_path / "corrupt"
    folder.mkdir()
    for src in sorted(assets["frames"].iterdir())[:2]:
        (folder / src.name).write_bytes(src.read_bytes())
    (folder / "00002.jpg").write_bytes(b"not a jpeg")
    return folder, folder / "00002.jpg"


def _mixed_sizes(tmp_path, assets):
    folder = tmp_path / "mixed"
    folder.mkdir()
    first = sorted(assets["frames"].iterdir())[0]
    (folder / "00000.jpg").write_bytes(first.read_bytes())
    cv2.imwrite(str(folder / "00001.jpg"), np.zeros((32, 32, 3), np.uint8))
    return folder, folder / "00001.jpg"


def _empty_folder(tmp_path, assets):
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder, folder


def _empty_glob(tmp_path, assets):
    pattern = str(assets["frames"] / "*.png")
    return pattern, pattern


def _missing_input(tmp_path, assets):
    return tmp_path / "missing.mp4", tmp_path / "missing.mp4"


def _truncated_frame(tmp_path, assets):
    """A JPEG cut to a third of its bytes: libjpeg decodes it half grey with only a warning."""
    folder = tmp_path / "truncated"
    folder.mkdir()
    for src in sorted(assets["frames"].iterdir()):
        (folder / src.name).write_bytes(src.read_bytes())
    cut = folder / "00004.jpg"
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    return folder, cut


def _zero_byte_frame(tmp_path, assets):
    folder, _ = _corrupt_folder(tmp_path, assets)
    (folder / "00002.jpg").write_bytes(b"")
    return folder, folder / "00002.jpg"


@pytest.mark.parametrize(
    "make_input",
    [_missing_input, _corrupt_folder, _truncated_frame, _zero_byte_frame, _mixed_sizes,
     _empty_folder, _empty_glob],
    ids=["missing", "corrupt-frame", "truncated-jpeg", "zero-byte-frame", "mixed-sizes",
         "empty-folder", "empty-glob"],
)  # fmt: skip
def test_bad_inputs_fail_naming_the_path_and_leave_no_output(
    assets, demo, tmp_path, capsys, make_input
):
    spec, named = make_input(tmp_path, assets)
    out = tmp_path / "out"
    code = demo.main(
        ["--config-file", CONFIG, "--input", str(spec), "--output", str(out), "--json",
         "--save-frames", *assets["opts"]]
    )  # fmt: skip
    assert code != 0
    assert str(named) in capsys.readouterr().err
    assert not out.exists()  # not even an empty folder


def test_unwritable_output_and_missing_weights_fail_naming_the_path(
    assets, demo, tmp_path, capsys
):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for output in (blocker / "out", blocker / "out" / "clip.mp4", blocker):
        code = demo.main(
            ["--config-file", CONFIG, "--input", str(assets["frames"]), "--output",
             str(output), *assets["opts"]]
        )  # fmt: skip
        assert code != 0
        assert str(blocker) in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]

    missing = tmp_path / "missing.pth"
    out = tmp_path / "out"
    code = demo.main(
        ["--config-file", CONFIG, "--input", str(assets["frames"]), "--output", str(out),
         *TINY, "MODEL.WEIGHTS", str(missing)]
    )  # fmt: skip
    assert code != 0
    assert f"MODEL.WEIGHTS file {missing} does not exist" in capsys.readouterr().err
    assert not out.exists()

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(Path(assets["weights"]).read_bytes()[:200])
    code = demo.main(
        ["--config-file", CONFIG, "--input", str(assets["frames"]), "--output", str(out),
         *TINY, "MODEL.WEIGHTS", str(truncated)]
    )  # fmt: skip
    assert code != 0
    assert str(truncated) in capsys.readouterr().err
    assert not out.exists()


def test_cli_runs(assets, tmp_path):
    proc = run_python(
        str(REPO / "tools" / "demo.py"), "--config-file", CONFIG, "--input",
        str(assets["frames"] / "00000.jpg"), "--output", str(tmp_path / "one.mp4"),
        *assets["opts"], timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"wrote video {tmp_path / 'one.mp4'}" in proc.stdout + proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr[-3000:]
    assert len(read_video(tmp_path / "one.mp4")[0]) == 1


def test_cli_exits_non_zero_on_errors(assets, tmp_path):
    missing = tmp_path / "missing_dir"
    proc = run_python(
        str(REPO / "tools" / "demo.py"), "--config-file", CONFIG, "--input", str(missing),
        "--output", str(tmp_path / "out"), *assets["opts"], timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert f"input {missing} does not exist" in proc.stderr
    assert not (tmp_path / "out").exists()


def _md5(path) -> str:
    import hashlib

    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def test_an_output_never_replaces_an_input(assets, demo, tmp_path, capsys):
    same = tmp_path / "same"
    same.mkdir()
    clip = same / "clip.mp4"
    clip.write_bytes(Path(assets["video"]).read_bytes())
    before = _md5(clip)
    for extra in ([], ["--overwrite"]):
        code = demo.main(["--config-file", CONFIG, "--input", str(clip), "--output",
                          f"{same}/", *extra, *assets["opts"]])
        assert code == 1
        assert f"output {clip} would replace the input {clip}" in capsys.readouterr().err
    assert _md5(clip) == before and sorted(p.name for p in same.iterdir()) == ["clip.mp4"]

    # the PNG folder of an output named like the input folder's video
    frames = tmp_path / "clip_frames"
    frames.mkdir()
    for src in sorted(assets["frames"].iterdir()):
        (frames / src.name).write_bytes(src.read_bytes())
    listing = sorted(p.name for p in frames.iterdir())
    code = demo.main(["--config-file", CONFIG, "--input", str(frames), "--output",
                      str(tmp_path / "clip.mp4"), "--save-frames", "--overwrite",
                      *assets["opts"]])
    assert code == 1
    assert f"output {frames} would replace the input {frames}" in capsys.readouterr().err
    assert sorted(p.name for p in frames.iterdir()) == listing
    assert not (tmp_path / "clip.mp4").exists()


def test_an_existing_output_is_replaced_only_with_overwrite(assets, demo, tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"a file of the user's")
    args = ["--config-file", CONFIG, "--input", str(assets["frames"]), "--output", str(out),
            *assets["opts"]]
    assert demo.main(args) == 1
    assert f"output {out} exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert out.read_bytes() == b"a file of the user's"
    assert demo.main(["--overwrite", *args]) == 0
    assert len(read_video(out)[0]) == NUM_FRAMES


def test_command_line_mistakes_get_the_stated_message(assets, demo, tmp_path, capsys):
    frames = [str(p) for p in sorted(assets["frames"].iterdir())[:3]]

    def error_of(*args) -> str:
        with pytest.raises(SystemExit) as exit_info:
            demo.main(["--config-file", CONFIG, *args, *assets["opts"]])
        assert exit_info.value.code == 2
        return capsys.readouterr().err

    # an unquoted glob, expanded by the shell
    err = error_of("--input", *frames, "--output", str(tmp_path / "out"))
    assert f"--input takes one path, but {frames[1]} follows it" in err and "quote it" in err
    err = error_of("--input", frames[0], "--output", str(tmp_path / "out.avi"))
    assert "only .mp4 videos are written; give an .mp4 path or a folder" in err
    assert not (tmp_path / "out.avi").exists()

    no_weights = ["--config-file", CONFIG, "--input", frames[0], "--output",
                  str(tmp_path / "random.mp4"), *TINY, "MODEL.WEIGHTS", ""]
    assert demo.main(no_weights) == 1
    assert "MODEL.WEIGHTS is empty" in capsys.readouterr().err
    assert not (tmp_path / "random.mp4").exists()
    assert demo.main(["--random-weights", *no_weights]) == 0


@pytest.mark.parametrize("args", [["--help"], ["--input", "missing.mp4", "--output", "o/"]],
                         ids=["help", "missing-input"])
def test_help_and_input_errors_answer_before_the_model_stack_loads(tmp_path, args):
    """Neither torch nor detectron2 is imported for --help or for an input that is missing."""
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['demo.py', '--config-file', {CONFIG!r}, *{args!r}]\n"
        "try:\n"
        f"    runpy.run_path({str(REPO / 'tools' / 'demo.py')!r}, run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code, sorted({'torch', 'detectron2'} & set(sys.modules)))\n"
    )
    proc = run_python("-c", probe, cwd=tmp_path, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] in ("exit 0 []", "exit 1 []"), proc.stdout
    if args == ["--help"]:
        assert "--overwrite" in proc.stdout
    else:
        assert "input missing.mp4 does not exist" in proc.stderr
