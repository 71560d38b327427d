import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY, build_model

from vis_d2 import add_vis_config
from vis_d2.config import get_cfg as vis_d2_cfg


def test_add_vis_config_adds_keys_and_merges(tmp_path):
    cfg = add_vis_config(get_cfg())
    assert cfg.INPUT.REF_FRAME_RANGE == 2
    (tmp_path / "c.yaml").write_text("INPUT:\n  REF_FRAME_RANGE: 5\n")
    cfg.merge_from_file(str(tmp_path / "c.yaml"))
    assert cfg.INPUT.REF_FRAME_RANGE == 5
    cfg.merge_from_list(["INPUT.REF_FRAME_RANGE", "1"])
    assert cfg.INPUT.REF_FRAME_RANGE == 1


REPO_DIR = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_DIR / "configs"
CONFIGS = sorted(CONFIG_DIR.rglob("*.yaml")) + sorted(
    p for p in (REPO_DIR / "projects").glob("*/configs/**/*.yaml") if not p.name.startswith("Base-")
)


def _load(path: Path):
    cfg = vis_d2_cfg()
    cfg.merge_from_file(str(path))
    return cfg


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_merges_and_builds(path):
    cfg = _load(path)
    assert cfg.MODEL.META_ARCHITECTURE in META_ARCH_REGISTRY
    assert cfg.MODEL.BACKBONE.NAME in BACKBONE_REGISTRY
    for name in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST):
        assert name in DatasetCatalog.list(), f"{path.name}: data set {name} is not registered"
    cfg.MODEL.DEVICE = "meta"
    with torch.device("meta"):  # the whole model, without memory for its weights
        model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_long_synthetic_config_is_the_synthetic_one_trained_longer():
    short = _load(CONFIG_DIR / "synthetic" / "SGNet_R18_synthetic.yaml")
    long = _load(CONFIG_DIR / "synthetic" / "SGNet_R18_synthetic_long.yaml")
    assert long.SOLVER.MAX_ITER > short.SOLVER.MAX_ITER
    assert (long.MODEL, long.INPUT, long.DATASETS) == (short.MODEL, short.INPUT, short.DATASETS)
    for key in ("OPTIMIZER", "BASE_LR", "IMS_PER_BATCH", "WARMUP_ITERS"):
        assert long.SOLVER[key] == short.SOLVER[key], key
    # its numbers were measured with the exponential decay to 5%, the short one's is linear
    assert (long.SOLVER.LR_SCHEDULER_NAME, long.SOLVER.EXP_DECAY_FINAL) == (
        "WarmupExponentialLR",
        0.05,
    )
    assert short.SOLVER.LR_SCHEDULER_NAME == "WarmupLinearLR"


def test_every_method_adds_its_keys_through_an_entry_point():
    from sipmask import add_sipmask_config
    from sipmask_vis import add_sipmask_vis_config
    from stmask import add_stmask_config

    from vis_d2.modeling.sgnet import add_sgnet_config

    adders = {e.name: e.load() for e in entry_points(group="vis_d2.method_configs")}
    assert adders == {
        "sgnet": add_sgnet_config,
        "sipmask": add_sipmask_config,
        "sipmask_vis": add_sipmask_vis_config,
        "stmask": add_stmask_config,
    }
    cfg = vis_d2_cfg()
    for node, add_config in (
        ("SGNET", add_sgnet_config),
        ("SIPMASK", add_sipmask_vis_config),
        ("STMASK", add_stmask_config),
    ):
        own = add_config(get_cfg())  # what the entry point adds, and only that
        assert set(own.MODEL) - set(get_cfg().MODEL) == {node}
        assert cfg.MODEL[node] == own.MODEL[node]


def test_get_cfg_holds_every_key_and_no_method_changes_the_shared_defaults():
    from vis_d2.config import add_fcos_config
    from vis_d2.config import get_cfg as get_vis_cfg

    cfg = get_vis_cfg()
    assert "SGNET" in cfg.MODEL and cfg.INPUT.REF_FRAME_RANGE == 2
    assert cfg.MODEL.FCOS == add_fcos_config(get_cfg()).MODEL.FCOS
    # SG-Net's own choices among the shared keys come with its Base config (Eq. 5, Sec. 4.1)
    sgnet = get_vis_cfg()
    sgnet.merge_from_file(str(CONFIG_DIR / "SGNet_R50.yaml"))
    assert sgnet.MODEL.FCOS.LOC_LOSS_TYPE == "log_giou"
    assert (sgnet.MODEL.FCOS.NMS_TH, sgnet.MODEL.FCOS.POST_NMS_TOPK_TEST) == (0.5, 10)


METHODS = ("SGNET", "SIPMASK", "STMASK")


def _leaves(node, prefix: str = "") -> dict:
    leaves = {}
    for key, value in node.items():
        if isinstance(value, dict):
            leaves |= _leaves(value, f"{prefix}{key}.")
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


def test_a_setting_that_the_methods_share_has_one_key_in_each():
    cfg = vis_d2_cfg()
    for method in METHODS:
        leaves = _leaves(cfg.MODEL[method])
        assert leaves["MASK_THRESH"] == 0.5, method
        assert min(leaves["LOSS_WEIGHTS.MASK"], leaves["LOSS_WEIGHTS.TRACK"]) > 0, method
        thresholds = [k for k in leaves if k.endswith("MASK_THRESH")]
        weights = [k for k, v in leaves.items() if "WEIGHT" in k and isinstance(v, float)]
        assert thresholds == ["MASK_THRESH"], method
        assert all(k.startswith("LOSS_WEIGHTS.") for k in weights), (method, weights)
    assert cfg.MODEL.SGNET.MAX_MASK_POS_PER_IMAGE == 100
    assert cfg.MODEL.SIPMASK.MAX_MASK_POS_PER_IMAGE == 0


# the keys that were spelled differently per method, and their names now
RENAMED = {
    "MODEL.SGNET.MASK_LOSS_WEIGHT": "MODEL.SGNET.LOSS_WEIGHTS.MASK",
    "MODEL.SGNET.TRACK.LOSS_WEIGHT": "MODEL.SGNET.LOSS_WEIGHTS.TRACK",
    "MODEL.SIPMASK.MASK_LOSS_WEIGHT": "MODEL.SIPMASK.LOSS_WEIGHTS.MASK",
    "MODEL.SIPMASK.TRACK_LOSS_WEIGHT": "MODEL.SIPMASK.LOSS_WEIGHTS.TRACK",
    "MODEL.STMASK.TF.BOX_WEIGHT": "MODEL.STMASK.LOSS_WEIGHTS.BOX_SHIFT",
    "MODEL.STMASK.TF.MASK_WEIGHT": "MODEL.STMASK.LOSS_WEIGHTS.MASK_SHIFT",
    "MODEL.STMASK.TEST.MASK_THRESH": "MODEL.STMASK.MASK_THRESH",
}


@pytest.mark.parametrize("old", RENAMED)
def test_a_config_with_a_renamed_key_is_told_the_new_key(old, tmp_path):
    new = RENAMED[old]
    error = f"Key {re.escape(old)} was renamed to {re.escape(new)}"
    with pytest.raises(KeyError, match=error):
        vis_d2_cfg().merge_from_list([old, "0.25"])
    *parents, leaf = old.split(".")
    lines = [f"{'  ' * depth}{key}:" for depth, key in enumerate(parents)]
    (tmp_path / "old.yaml").write_text("\n".join([*lines, f"{'  ' * len(parents)}{leaf}: 0.25\n"]))
    with pytest.raises(KeyError, match=error):
        vis_d2_cfg().merge_from_file(str(tmp_path / "old.yaml"))
    cfg = vis_d2_cfg()
    cfg.merge_from_list([new, "0.25"])
    assert _leaves(cfg)[new] == 0.25
