from detectron2.config import get_cfg

from vis_d2 import add_vis_config


def test_add_vis_config_adds_keys_and_merges(tmp_path):
    cfg = add_vis_config(get_cfg())
    assert cfg.INPUT.REF_FRAME_RANGE == 2
    (tmp_path / "c.yaml").write_text("INPUT:\n  REF_FRAME_RANGE: 5\n")
    cfg.merge_from_file(str(tmp_path / "c.yaml"))
    assert cfg.INPUT.REF_FRAME_RANGE == 5
    cfg.merge_from_list(["INPUT.REF_FRAME_RANGE", "1"])
    assert cfg.INPUT.REF_FRAME_RANGE == 1
