"""Training and evaluation on YouTube-VIS-format data shaped like the released sets, through the
real loader, mapper, model and tools: frames without objects, crowd regions, every mask
encoding, one-frame videos, irregular file names, mixed sizes, and splits registered from the
command line (``DATASETS.REGISTER``)."""

import json
import os
import signal
import subprocess
import sys
from collections import Counter

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from conftest import REPO, run_python
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from test_sgnet import TINY, tiny_cfg
from ytvis_cases import (
    EDGE_CATEGORIES,
    Shape,
    Track,
    Video,
    check_training_sample,
    edge_case_videos,
    visible_ids,
    write_edge_case_set,
    write_random_set,
    write_split,
)

from vis_d2.data import (
    YTVISDatasetMapper,
    build_video_train_loader,
    get_video_dataset_dicts,
    register_config_splits,
    register_ytvis_splits,
)
from vis_d2.engine import VISTrainer
from vis_d2.engine.predictor import dataset_ids, metadata_of, setup_cfg

CONFIG = str(REPO / "configs" / "synthetic" / "SGNet_R18_synthetic.yaml")
NUM_CLASSES = len(EDGE_CATEGORIES)


@pytest.fixture(scope="module")
def edge_set(tmp_path_factory):
    return write_edge_case_set(tmp_path_factory.mktemp("edge_vis"))


@pytest.fixture
def registered():
    """Names registered by the test, unregistered after it."""
    names = []
    yield names
    for name in names:
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


def _register(registered: list, *triples) -> None:
    register_ytvis_splits([tuple(str(x) for x in t) for t in triples], "DATASETS.REGISTER")
    registered.extend(t[0] for t in triples)


def _edge_cfg(batch: int):
    cfg = tiny_cfg()
    cfg.DATASETS.TRAIN = ("edge_train",)
    cfg.DATASETS.TEST = ("edge_val",)
    cfg.MODEL.FCOS.NUM_CLASSES = NUM_CLASSES
    cfg.SOLVER.IMS_PER_BATCH = batch
    cfg.DATALOADER.NUM_WORKERS = 0
    return cfg


def test_edge_case_set_holds_every_case(edge_set):
    """The fixture holds what the tests below rely on."""
    train, val = edge_case_videos()
    for split in ("train", "valid"):
        data = json.loads(edge_set[split].read_text())
        segs = [s for a in data["annotations"] for s in a["segmentations"] if s is not None]
        assert any(isinstance(s, list) for s in segs)  # polygons
        assert any(isinstance(s, dict) and isinstance(s["counts"], list) for s in segs)
        assert any(isinstance(s, dict) and isinstance(s["counts"], str) for s in segs)
        assert any(a["iscrowd"] for a in data["annotations"])
        assert len({(v["height"], v["width"]) for v in data["videos"]}) >= 3
        assert any(v["length"] == 1 for v in data["videos"])
    for videos in (train, val):
        assert any(not any(t in tr.frames for tr in v.tracks if not tr.iscrowd)
                   for v in videos for t in range(len(v.file_names)))
        assert any(not n.endswith(f"{t:05d}.jpg")
                   for v in videos for t, n in enumerate(v.file_names))
    assert any(len(tr.frames) == 1 and len(v.file_names) > 1 for v in train for tr in v.tracks)
    in_val = {tr.category_id for v in val for tr in v.tracks}
    assert {c["id"] for c in EDGE_CATEGORIES} - in_val == {11}


def test_real_loader_and_mapper_train_on_frames_without_objects(edge_set, registered):
    """The training stream of the edge-case set, one pair per batch so that whole batches
    without an object occur: every sample keeps the mapper's contract, every loss is finite
    and every parameter receives a gradient (as DistributedDataParallel needs)."""
    _register(
        registered,
        ("edge_train", edge_set["train"], edge_set["train_images"]),
        ("edge_val", edge_set["valid"], edge_set["valid_images"]),
    )
    cfg = _edge_cfg(batch=1)
    videos = {v["video_id"]: v for v in get_video_dataset_dicts("edge_train")}
    stream = iter(build_video_train_loader(cfg))
    torch.manual_seed(0)
    model = build_model(cfg).train()
    seen = Counter()
    for iteration in range(60):
        batch = next(stream)
        (sample,) = batch
        video = videos[sample["video_id"]]
        check_training_sample(sample, video, NUM_CLASSES, cfg.INPUT.REF_FRAME_RANGE)
        key, ref = len(sample["instances"]), len(sample["ref_instances"])
        seen["key empty"] += key == 0 and ref > 0
        seen["reference empty"] += ref == 0 and key > 0
        seen["both empty"] += key == 0 and ref == 0
        seen["emptied by resizing"] += key == 0 and bool(visible_ids(video, sample["frame_idx"]))
        seen["one frame"] += video["length"] == 1
        with EventStorage(iteration):
            losses = model(batch)
        assert all(torch.isfinite(v) for v in losses.values()), (iteration, losses)
        model.zero_grad()
        sum(losses.values()).backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing, f"iteration {iteration}: no gradient for {missing[:5]}"
    cases = ("key empty", "reference empty", "both empty", "emptied by resizing", "one frame")
    assert all(seen[case] > 0 for case in cases), seen


def test_track_loss_treats_instances_missing_from_the_other_frame_as_absent(
    edge_set, registered
):
    """A pair whose earlier frame is empty gives no movement target (loss 0, not NaN); a pair
    with the object in both frames gives one."""
    _register(registered, ("edge_train", edge_set["train"], edge_set["train_images"]))
    cfg = _edge_cfg(batch=1)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    enter = next(v for v in get_video_dataset_dicts("edge_train") if v["length"] == 6)
    mapper = YTVISDatasetMapper(cfg, True, seed=0)
    found = {}
    for _ in range(200):
        sample = mapper(enter)
        pair = sorted((sample["frame_idx"], sample["ref_frame_idx"]))
        if pair in ([1, 2], [1, 3]):
            found.setdefault("earlier empty", sample)
        elif pair[0] >= 2:
            found.setdefault("both visible", sample)
        if len(found) == 2:
            break
    with EventStorage(0):
        absent = model([found["earlier empty"]])["loss_track"]
        both = model([found["both visible"]])["loss_track"]
    assert absent.item() == 0.0
    assert torch.isfinite(both) and both.item() > 0


def test_mapper_contract_on_random_sets(tmp_path, registered):
    """Seeded random small sets of every kind, each registered and streamed through the real
    training loader with random resizes and flips: the contract holds on every sample."""
    rng = np.random.default_rng(2024)
    samples = 0
    for draw in range(60):
        json_file, image_root = write_random_set(tmp_path / f"set{draw}", rng)
        name = f"random_vis_{draw}"
        _register(registered, (name, json_file, image_root))
        videos = get_video_dataset_dicts(name, filter_empty=False)
        if not any(visible_ids(v, t) for v in videos for t in range(v["length"])):
            continue  # nothing to train on: the loader refuses it (tested below)
        cfg = tiny_cfg()
        cfg.DATASETS.TRAIN = (name,)
        cfg.MODEL.FCOS.NUM_CLASSES = len(MetadataCatalog.get(name).thing_classes)
        cfg.INPUT.MIN_SIZE_TRAIN = (12, 32, 64, 100)
        cfg.INPUT.MAX_SIZE_TRAIN = 128
        cfg.INPUT.RANDOM_FLIP = "horizontal"
        cfg.INPUT.REF_FRAME_RANGE = int(rng.integers(1, 4))
        cfg.SOLVER.IMS_PER_BATCH = 2
        cfg.DATALOADER.NUM_WORKERS = 0
        cfg.SEED = draw
        by_id = {v["video_id"]: v for v in videos}
        stream = iter(build_video_train_loader(cfg))
        for _ in range(6):
            for sample in next(stream):
                check_training_sample(
                    sample, by_id[sample["video_id"]], cfg.MODEL.FCOS.NUM_CLASSES,
                    cfg.INPUT.REF_FRAME_RANGE,
                )
                samples += 1
    assert samples >= 500


def test_a_split_without_any_instance_is_refused_by_name(tmp_path, registered):
    crowd_only = Video("c", 32, 48, ["c/0.jpg", "c/1.jpg"])
    crowd_only.tracks = [Track(1, {0: Shape((2, 2, 20, 20))}, iscrowd=1)]
    path = write_split(tmp_path / "train", [crowd_only], [{"id": 1, "name": "x"}], seed=0)
    _register(registered, ("crowd_only_vis", path, tmp_path / "train" / "JPEGImages"))
    with pytest.raises(ValueError, match="no video of crowd_only_vis shows a"):
        get_video_dataset_dicts("crowd_only_vis")


def test_register_option_errors_name_the_entry(edge_set, tmp_path, registered):
    train, images = str(edge_set["train"]), str(edge_set["train_images"])
    with pytest.raises(FileNotFoundError, match=r"'mine': json file .*nope\.json does not exist"):
        register_ytvis_splits([("mine", str(tmp_path / "nope.json"), images)], "DATASETS.REGISTER")
    with pytest.raises(FileNotFoundError, match=r"'mine': image root .*frames is not a directory"):
        register_ytvis_splits([("mine", train, str(tmp_path / "frames"))], "DATASETS.REGISTER")
    with pytest.raises(ValueError, match="the name 'mine' is given twice"):
        register_ytvis_splits([("mine", train, images), ("mine", train, images)])
    with pytest.raises(ValueError, match="'ytvis_2019_train' is already registered"):
        register_ytvis_splits([("ytvis_2019_train", train, images)])
    with pytest.raises(ValueError, match=r"is not a \(name, json_file, image_root\) triple"):
        register_ytvis_splits([("mine", train)])
    with pytest.raises(ValueError, match=r"lists \(name, json_file, image_root\) triples, not"):
        register_ytvis_splits(("mine", train, images))  # one triple, not a list of them
    assert "mine" not in DatasetCatalog.list()
    _register(registered, ("mine", train, images))
    register_ytvis_splits([("mine", train, images)])  # the same registration again: a no-op


def test_training_refuses_more_classes_than_the_model_has(edge_set, registered):
    _register(registered, ("edge_train", edge_set["train"], edge_set["train_images"]))
    cfg = _edge_cfg(batch=2)
    cfg.MODEL.FCOS.NUM_CLASSES = 3
    with pytest.raises(ValueError, match="has 4 classes and MODEL.FCOS.NUM_CLASSES is 3"):
        VISTrainer(cfg)  # through the trainer, which compares the model and the data


@pytest.mark.parametrize("where", ["command line", "config file"])
def test_tools_read_class_names_of_a_registered_split(edge_set, registered, tmp_path, where):
    """The demo's class names and dataset ids come from the json of a split registered on the
    command line or in a config file, before any of its videos is loaded."""
    triple = [f"{edge_set['valid']}", f"{edge_set['valid_images']}"]
    if where == "command line":
        config = CONFIG
        opts = ["DATASETS.REGISTER", f"(('edge_val', '{triple[0]}', '{triple[1]}'),)",
                "DATASETS.TEST", "('edge_val',)"]
    else:
        config, opts = tmp_path / "mine.yaml", []
        config.write_text(
            f'_BASE_: "{CONFIG}"\nDATASETS:\n'
            f'  REGISTER: [["edge_val", "{triple[0]}", "{triple[1]}"]]\n  TEST: ("edge_val",)\n'
        )
    cfg = setup_cfg(str(config), opts)
    register_config_splits(cfg)
    registered.append("edge_val")
    metadata = metadata_of(cfg)
    assert metadata.thing_classes == ["boat", "deer", "kite", "lamp"]  # sorted by dataset id
    assert dataset_ids(metadata, NUM_CLASSES) == {0: 2, 1: 5, 2: 9, 3: 11}


def _train_net(*opts, timeout=600):
    return run_python(str(REPO / "tools" / "train_net.py"), "--config-file", CONFIG, *opts,
                      timeout=timeout)


def test_train_net_on_splits_registered_from_the_command_line(edge_set, tmp_path):
    """tools/train_net.py trains on the edge-case set given as DATASETS.REGISTER, then
    --eval-only scores its val split (where one category has no instance)."""
    register = (
        f"(('edge_train', '{edge_set['train']}', '{edge_set['train_images']}'), "
        f"('edge_val', '{edge_set['valid']}', '{edge_set['valid_images']}'))"
    )
    data = ["DATASETS.REGISTER", register, "DATASETS.TRAIN", "('edge_train',)",
            "DATASETS.TEST", "('edge_val',)", "MODEL.FCOS.NUM_CLASSES", str(NUM_CLASSES)]
    out = tmp_path / "out"
    trained = _train_net(*TINY, *data, "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2",
                         "SOLVER.WARMUP_ITERS", "1", "DATALOADER.NUM_WORKERS", "0",
                         "TEST.EVAL_PERIOD", "0", "OUTPUT_DIR", str(out))
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (out / "model_final.pth").is_file()
    assert f"Registered 'edge_train': {edge_set['train']}" in trained.stdout

    # an untrained model's scores are low: keep every detection
    evaluated = _train_net("--eval-only", *TINY, *data, "MODEL.FCOS.INFERENCE_TH_TEST", "0.0",
                           "MODEL.WEIGHTS", str(out / "model_final.pth"),
                           "OUTPUT_DIR", str(tmp_path / "eval"))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    log = evaluated.stdout + evaluated.stderr
    assert "Evaluation results for edge_val in csv format" in log
    results = json.loads(
        (tmp_path / "eval" / "inference" / "edge_val" / "results.json").read_text()
    )
    lengths = {1: 5, 2: 1, 3: 4}  # video id -> frames
    assert results and {r["category_id"] for r in results} <= {2, 5, 9, 11}
    for r in results:
        assert len(r["segmentations"]) == lengths[r["video_id"]]
        for seg in r["segmentations"]:
            if seg is not None:
                assert mask_util.decode(seg).shape == tuple(seg["size"])


def test_train_net_names_a_bad_register_entry(edge_set, tmp_path):
    missing = tmp_path / "missing.json"
    proc = _train_net(*TINY, "DATASETS.REGISTER",
                      f"(('mine', '{missing}', '{edge_set['train_images']}'),)",
                      "OUTPUT_DIR", str(tmp_path / "out"), timeout=300)
    assert proc.returncode != 0
    assert f"DATASETS.REGISTER: 'mine': json file {missing} does not exist" in proc.stderr


def test_two_process_training_on_frames_without_objects(edge_set, tmp_path):
    """Two processes (gloo) of one pair each: a process whose later frame holds no object must
    still reduce every gradient, or DistributedDataParallel waits forever."""
    register = f"(('edge_train', '{edge_set['train']}', '{edge_set['train_images']}'),)"
    args = [sys.executable, str(REPO / "tools" / "train_net.py"), "--num-gpus", "2",
            "--config-file", CONFIG, *TINY, "DATASETS.REGISTER", register,
            "DATASETS.TRAIN", "('edge_train',)", "DATASETS.TEST", "()",
            "MODEL.FCOS.NUM_CLASSES", str(NUM_CLASSES), "SOLVER.MAX_ITER", "30",
            "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0",
            "SOLVER.CHECKPOINT_PERIOD", "1000", "OUTPUT_DIR", str(tmp_path / "out")]
    # a session of its own, so that a hung run's workers can be stopped with it
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"two-process training did not finish in 240 s:\n{log[-3000:]}")
    assert proc.returncode == 0, log[-3000:]
    assert "iter: 29" in log
    assert "Warning" not in log, log[-3000:]  # DDP, storage, read-only array notices
