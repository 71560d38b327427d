"""Converting the authors' released SipMask image checkpoints (SipMask-mmdetection's
high-accuracy, real-time and SipMask++ models, SipMask-benchmark's) to ``SipMask`` with
tools/convert_weights.py and the configs of projects/SipMask/configs. The fake releases
(tests/sipmask_authors_checkpoints.py) have the authors' names and shapes, derived from their
code independently of this project's model."""

from __future__ import annotations

from pathlib import Path

import pytest
import sipmask_authors_checkpoints as authors
import torch
from conftest import REPO, run_python
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model
from sipmask.mask_rescoring import MaskRescoring
from torch.nn import functional as F

from vis_d2.engine.predictor import setup_cfg
from vis_d2.engine.weight_conversion import ConversionError, convert_checkpoint

CONFIGS = REPO / "projects/SipMask/configs"
TOOL = "tools/convert_weights.py"
OPTS = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""]


def _config(name: str) -> str:
    return str(CONFIGS / name)


def _save(checkpoint: dict, folder: Path, name: str) -> Path:
    path = folder / name
    torch.save(checkpoint, path)
    return path


def _tool(config: str, source: Path, output: Path):
    return run_python(
        TOOL, "--config-file", config, "--input", str(source), "--output", str(output),
        "MODEL.DEVICE", "cpu",
    )  # fmt: skip


def _convert_with_tool(config: str, checkpoint: dict, folder: Path) -> tuple[dict, str]:
    """The tool's converted weights (checked to load strictly into the config's model here
    too) and its report."""
    source = _save(checkpoint, folder, "release.pth")
    output = folder / "converted.pth"
    proc = _tool(config, source, output)
    assert proc.returncode == 0, proc.stderr[-3000:]
    weights = torch.load(output, weights_only=True)["model"]
    model = build_model(setup_cfg(config, OPTS))
    model.load_state_dict(weights, strict=True)
    return weights, proc.stdout


def _counts(report: str, num_source: int, unused: int, num_target: int, filled: int) -> None:
    mapped = num_source - unused
    assert f"{num_source} weights in the file, {mapped} mapped, {unused} unused" in report
    assert f"{num_target} model weights, {mapped} from the file, {filled} filled" in report


@pytest.fixture(scope="module")
def high_accuracy(tmp_path_factory):
    source = authors.mmdet_state_dict()
    folder = tmp_path_factory.mktemp("sipmask_r50_1x")
    weights, report = _convert_with_tool(
        _config("SipMask_R50_1x.yaml"), authors.mmdet_checkpoint(source), folder
    )
    return source, weights, report


def test_high_accuracy_mmdetection_release(high_accuracy):
    source, weights, report = high_accuracy
    counters = [k for k in source if k.endswith("num_batches_tracked")]
    # the GN towers' convs have no bias in their ConvModules: 3 + 4 filled with 0
    biases = [f"fcos.head.cls_tower.{j}.bias" for j in (0, 3, 6)]
    biases += [f"fcos.head.bbox_tower.{j}.bias" for j in (0, 3, 6, 9)]
    _counts(report, len(source), len(counters), len(weights), len(biases))
    for key in biases:
        assert key in report and not weights[key].any()
    h = "bbox_head."
    for ours, theirs in [
        ("fcos.head.cls_tower.4.weight", h + "cls_convs.1.gn.weight"),
        ("fcos.head.bbox_tower.9.weight", h + "reg_convs.3.conv.weight"),
        ("fcos.head.cls_logits.bias", h + "fcos_cls.bias"),
        ("fcos.head.ctrness.weight", h + "fcos_centerness.weight"),
        ("feature_align.conv.weight", h + "feat_align.conv_adaption.weight"),
        ("feature_align.conv_offset.weight", h + "feat_align.conv_offset.weight"),
        ("feature_align.norm.bias", h + "feat_align.norm.bias"),
        ("coefficients.conv.weight", h + "sip_cof.weight"),
        ("basis.lateral.weight", h + "sip_mask_lat0.weight"),
        ("basis.output.bias", h + "sip_mask_lat.bias"),
        ("backbone.bottom_up.stem.conv1.norm.running_var", "backbone.bn1.running_var"),
        ("backbone.bottom_up.res4.5.conv3.weight", "backbone.layer3.5.conv3.weight"),
        ("backbone.bottom_up.res5.0.shortcut.norm.running_mean",
         "backbone.layer4.0.downsample.1.running_mean"),
        ("backbone.fpn_lateral4.weight", "neck.lateral_convs.1.conv.weight"),
        ("backbone.top_block.p7.bias", "neck.fpn_convs.4.conv.bias"),
    ]:  # fmt: skip
        assert torch.equal(weights[ours], source[theirs]), ours
    scales = [float(weights[f"fcos.head.scales.{i}.scale"]) for i in range(5)]
    assert scales == pytest.approx([1.0, 1.1, 1.2, 1.3, 1.4])


def test_real_time_mmdetection_release(tmp_path):
    """sipmask_r50_caffe_fpn_ssd_6x: towers with conv biases and no norm; their FeatureAlign's
    GroupNorm exists but is not applied, so it is reported unused."""
    source = authors.mmdet_state_dict(stacked_convs=2, norm=False, seed=1)
    weights, report = _convert_with_tool(
        _config("SipMask_R50_544_6x.yaml"), authors.mmdet_checkpoint(source), tmp_path
    )
    counters = [k for k in source if k.endswith("num_batches_tracked")]
    _counts(report, len(source), len(counters) + 2, len(weights), 0)
    assert "bbox_head.feat_align.norm.weight" in report
    assert "applied only with a norm" in report
    assert not any(k.startswith("feature_align.norm") for k in weights)
    h = "bbox_head."
    for ours, theirs in [
        ("fcos.head.cls_tower.0.bias", h + "cls_convs.0.conv.bias"),
        ("fcos.head.bbox_tower.2.weight", h + "reg_convs.1.conv.weight"),
        ("fcos.head.bbox_tower.2.bias", h + "reg_convs.1.conv.bias"),
        ("coefficients.conv.bias", h + "sip_cof.bias"),
    ]:
        assert torch.equal(weights[ours], source[theirs]), ours


def test_sipmask_plus_plus_mmdetection_release(tmp_path):
    """sipmask++_r101_caffe_fpn_ssd_6x: DeformConvPack 3×3 convs in every block of res3-res5,
    the mask re-scoring convs."""
    source = authors.mmdet_state_dict(
        depth=101, stacked_convs=2, norm=False, rescoring=True, dcn=(2, 3, 4), seed=2
    )
    weights, report = _convert_with_tool(
        _config("SipMaskPP_R101_544_6x.yaml"), authors.mmdet_checkpoint(source), tmp_path
    )
    counters = [k for k in source if k.endswith("num_batches_tracked")]
    _counts(report, len(source), len(counters) + 2, len(weights), 0)
    offsets = [k for k in weights if ".conv2_offset." in k]
    assert len(offsets) == 2 * (4 + 23 + 3)
    r, h = "backbone.bottom_up.", "bbox_head."
    for ours, theirs in [
        (r + "res3.0.conv2_offset.weight", "backbone.layer2.0.conv2.conv_offset.weight"),
        (r + "res4.22.conv2_offset.bias", "backbone.layer3.22.conv2.conv_offset.bias"),
        (r + "res5.2.conv2.weight", "backbone.layer4.2.conv2.weight"),
        (r + "res5.2.conv2.norm.weight", "backbone.layer4.2.bn2.weight"),
        ("rescoring.convs.0.weight", h + "convs_scoring.0.conv.weight"),
        ("rescoring.convs.10.bias", h + "convs_scoring.5.conv.bias"),
        ("rescoring.score.weight", h + "mask_scoring.weight"),
        ("rescoring.score.bias", h + "mask_scoring.bias"),
    ]:
        assert torch.equal(weights[ours], source[theirs]), ours
    assert not any(k.startswith(r + "res2.") and "offset" in k for k in weights)
    # their test-time re-scoring (sipmask_head.py get_bboxes_single): the ConvModules (3×3
    # conv, stride 2, no padding, ReLU), mask_scoring, ReLU, max-pool over the map
    rescoring = MaskRescoring(authors.NUM_CLASSES)
    rescoring.load_state_dict({k: weights["rescoring." + k] for k in rescoring.state_dict()})
    masks = torch.rand(2, 130, 140, generator=torch.Generator().manual_seed(0))
    x = masks[:, None]
    for i in range(6):
        w, b = (source[f"{h}convs_scoring.{i}.conv.{n}"] for n in ("weight", "bias"))
        x = torch.relu(F.conv2d(x, w, b, stride=2))
    x = torch.relu(F.conv2d(x, source[h + "mask_scoring.weight"], source[h + "mask_scoring.bias"]))
    expected = F.max_pool2d(x, kernel_size=x.shape[2:]).flatten(1)
    with torch.no_grad():
        torch.testing.assert_close(rescoring(masks), expected)


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    source = authors.benchmark_state_dict(seed=3)
    folder = tmp_path_factory.mktemp("sipmask_bench")
    weights, report = _convert_with_tool(
        _config("SipMask_bench_R50_1x.yaml"), authors.benchmark_checkpoint(source), folder
    )
    return source, weights, report


def test_maskrcnn_benchmark_release(benchmark):
    """sipmask_R_50_FPN_1x saved from DistributedDataParallel: every weight mapped, none
    filled, the scales (1,) → ()."""
    source, weights, report = benchmark
    _counts(report, len(source), 0, len(weights), 0)
    r, h = "backbone.bottom_up.", "rpn.head."
    for ours, theirs in [
        (r + "stem.conv1.weight", "backbone.body.stem.conv1.weight"),
        (r + "stem.conv1.norm.weight", "backbone.body.stem.bn1.weight"),
        (r + "res3.3.conv2.weight", "backbone.body.layer2.3.conv2.weight"),
        (r + "res4.0.shortcut.weight", "backbone.body.layer3.0.downsample.0.weight"),
        ("backbone.fpn_lateral3.weight", "backbone.fpn.fpn_inner2.weight"),
        ("backbone.fpn_output5.bias", "backbone.fpn.fpn_layer4.bias"),
        ("backbone.top_block.p6.weight", "backbone.fpn.top_blocks.p6.weight"),
        ("fcos.head.cls_tower.6.bias", h + "cls_tower.6.bias"),
        ("fcos.head.bbox_tower.10.weight", h + "bbox_tower.10.weight"),
        ("fcos.head.ctrness.weight", h + "centerness.weight"),
        ("fcos.head.bbox_pred.bias", h + "bbox_pred.bias"),
        ("feature_align.conv.bias", h + "feat_align.conv_adaption.bias"),
        ("feature_align.norm.weight", h + "feat_align.norm.weight"),
        ("coefficients.conv.weight", h + "sip_cof.weight"),
        ("basis.lateral.bias", h + "sip_mask_lat0.bias"),
    ]:
        assert torch.equal(weights[ours], source[theirs]), ours
    scale = weights["fcos.head.scales.3.scale"]
    assert scale.shape == () and float(scale) == pytest.approx(1.3)


def test_benchmark_frozen_bn_computes_theirs(benchmark):
    """maskrcnn-benchmark's FrozenBatchNorm2d: x · w / sqrt(var) + b − mean · w / sqrt(var),
    no epsilon; detectron2's adds 1e-5 to the converted variance."""
    source, weights, _ = benchmark
    theirs = "backbone.body.layer3.4.bn2."
    ours = "backbone.bottom_up.res4.4.conv2.norm."
    bn = FrozenBatchNorm2d(256)
    bn.load_state_dict({k: weights[ours + k] for k in bn.state_dict()})
    x = torch.randn(2, 256, 3, 3, generator=torch.Generator().manual_seed(0))
    w, b, mean, var = (source[theirs + k].view(1, -1, 1, 1)
                       for k in ("weight", "bias", "running_mean", "running_var"))  # fmt: skip
    scale = w * var.rsqrt()
    torch.testing.assert_close(bn(x), x * scale + (b - mean * scale), rtol=1e-6, atol=1e-6)


def test_bare_benchmark_state_dict_converts(tmp_path):
    """A state dict saved without the wrapper or the ``module.`` prefix."""
    source = authors.benchmark_state_dict(seed=4)
    path = _save(source, tmp_path, "bare.pth")
    conversion, _ = convert_checkpoint(setup_cfg(_config("SipMask_bench_R50_1x.yaml"), OPTS), path)
    assert len(conversion.mapped) == len(source) and not conversion.unused


def _conversion_error(config: str, source: dict, tmp_path: Path, opts=()) -> str:
    path = _save({"state_dict": source}, tmp_path, "release.pth")
    with pytest.raises(ConversionError) as info:
        convert_checkpoint(setup_cfg(_config(config), OPTS + list(opts)), path)
    return str(info.value)


def test_high_accuracy_release_does_not_fit_the_real_time_config(high_accuracy, tmp_path):
    source, _, _ = high_accuracy
    message = _conversion_error("SipMask_R50_544_6x.yaml", source, tmp_path)
    assert "fcos.head.cls_tower" in message and "cls_convs" in message


def test_real_time_release_does_not_fit_the_gn_config(tmp_path):
    source = authors.mmdet_state_dict(stacked_convs=2, norm=False, seed=1)
    message = _conversion_error("SipMask_R50_GN_544_10x.yaml", source, tmp_path)
    assert "bbox_head.cls_convs.0 has no norm for the model's fcos.head.cls_tower.1" in message


def test_deformable_release_needs_the_deformable_config(tmp_path):
    source = authors.mmdet_state_dict(
        depth=101, stacked_convs=2, norm=False, rescoring=True, dcn=(2, 3, 4), seed=2
    )
    message = _conversion_error("SipMask_R101_544_6x.yaml", source, tmp_path,
                                ["MODEL.SIPMASK.RESCORING.ENABLED", "True"])  # fmt: skip
    assert "backbone.layer2.0.conv2.conv_offset.weight" in message
    message = _conversion_error("SipMaskPP_R101_544_6x.yaml", source, tmp_path,
                                ["MODEL.SIPMASK.RESCORING.ENABLED", "False"])  # fmt: skip
    assert "bbox_head.convs_scoring.0.conv" in message


def test_benchmark_release_needs_the_feature_align_bias(benchmark, tmp_path):
    source, _, _ = benchmark
    message = _conversion_error("SipMask_bench_R50_1x.yaml", source, tmp_path,
                                ["MODEL.SIPMASK.FEATURE_ALIGN_BIAS", "False"])  # fmt: skip
    assert "rpn.head.feat_align.conv_adaption.bias" in message


def test_tool_names_a_checkpoint_of_neither_layout(tmp_path):
    source = _save({"state_dict": {"head.cls.weight": torch.zeros(2)}}, tmp_path, "other.pth")
    proc = _tool(_config("SipMask_R50_1x.yaml"), source, tmp_path / "out.pth")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "bbox_head.* (SipMask-mmdetection) or rpn.head.*" in proc.stderr
    assert "head.cls.weight" in proc.stderr
