"""The authors' released STMask checkpoints (MinghanLi/STMask, YOLACT++-based; plain state dicts
of ``torch.save(net.state_dict())``, e.g. ``STMask_plus_base_ada.pth`` (R-101-DCN) or
``STMask_plus_resnet50_ada.pth`` (R-50-DCN)) → this implementation's ``STMask``
(``tools/convert_weights.py``).

Their model and where each part lands:

* ``backbone`` (torchvision-style ResNet: the stride in the 3×3 conv, so the model needs
  ``MODEL.RESNETS.STRIDE_IN_1X1 False``, which the weights cannot tell): ``conv1``/``bn1`` →
  ``stem.conv1`` (``.norm``), ``layers.{s-2}.{b}.conv{i}``/``bn{i}`` → ``res{s}.{b}.conv{i}``
  (``.norm``), ``downsample.0/1`` → ``shortcut`` (``.norm``). Their deformable blocks (DCNv2's
  ``DCN``) have ``conv2.conv_offset_mask`` (27 = 2·9 offsets, (dy, dx) per kernel tap
  row-major, then 9 modulation logits: DCNv2's and detectron2's layout alike) →
  ``conv2_offset`` as is; ``conv2.weight`` → ``conv2.weight``; their ``conv2.bias`` before
  BatchNorm is folded into the frozen BatchNorm (running_mean − bias computes the same), since
  detectron2's deformable conv has none. Which blocks are deformable is read from the file and
  must be the model's (``DEFORM_ON_PER_STAGE``, ``DEFORM_INTERVAL``; the configs of the
  YouTube-VIS 2019 release: every 3rd block of res3–res5, ``dcn_layers [0, 4, 6 | 23, 3]``,
  ``dcn_interval 3``; the R-50 config from June 2021 on: interval 2). A mismatch names the
  settings that fit the file.
* ``fpn``: ``lat_layers.i``/``pred_layers.i`` are stored top-down (i = 0 is C5) →
  ``fpn_lateral{5-i}``/``fpn_output{5-i}``; ``downsample_layers.j`` → ``downsample.j`` (P6, P7).
* ``proto_net`` (``make_net``: convs at Sequential indices 0, 2, 4, the ×2 upsampling at 6,
  then 8 and 10) → ``protonet.tower.{0,2,4}``, ``refine``, ``output``.
* ``prediction_layers.0`` (shared by the levels; the others hold no weights): ``upfeature.0``
  → ``head.upfeature.0``; ``conf_extra``/``bbox_extra``/``track_extra``/``mask_extra`` →
  ``head.towers.cls/box/track/mask``; per anchor shape k (3×3, 3×5, 5×3; one prior per
  location and shape, rows ordered (y, x, k) in both) ``conf_layer.k``/``track_layer.k``/
  ``mask_layer.k`` → ``head.last.cls/track/mask.k`` (a plain conv → ``.conv``; FCB's
  ``FeatureAlign``: ``conv_adaption`` (mmcv DeformConv2d, no bias) → ``.deform``, ``conv`` →
  ``.conv``, ``conv_offset`` (ada) → ``.conv_offset``), classes in the same order (background
  at 0, then the data set's categories by id). ``bbox_layer.k`` (4 deltas) and
  ``centerness_layer.k`` (1) are two convs on the box tower; here one conv gives both, so they
  are concatenated along the output channels (deltas 0–3, centerness 4).
* ``TemporalNet`` (``conv1-3``, ``fc``, ``fc_coeff``; input channels: the 11² correlation, the
  earlier then the later frame's T2S features, as here) → ``temporal_net.convs.0-2``,
  ``box_shift``, ``coeff_shift``.

A source weight combined into a model weight taken from another one (a DCN bias folded into
the BatchNorm, a centerness conv concatenated to the box conv) is listed among the unused with
what it went into, so the counts stay one to one and the report shows each combination.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

from vis_d2.engine.weight_conversion import (
    BN_STEP_COUNTER,
    UNUSED_STEP_COUNTER,
    Conversion,
    ConversionBuilder,
    ConversionError,
    register_converter,
)

__all__ = ["convert_authors_checkpoint", "deformable_interval"]

# the authors' module prefixes (STMask.py: backbone, fpn, proto_net, prediction_layers, and
# TemporalNet when temporal fusion is on)
RESNET = "backbone."
FPN = "fpn."
PROTO = "proto_net."
HEAD = "prediction_layers.0."
TF = "TemporalNet."
TARGET_RESNET = "backbone.fpn.bottom_up."

FOLDED_DCN_BIAS = (
    "DCN conv bias before BatchNorm: not a weight of the model, folded into its frozen "
    "BatchNorm (conv2.norm.running_mean = the source's bn2.running_mean - this bias)"
)
CONCATENATED_CENTERNESS = (
    "centerness conv: not a weight of its own in the model, concatenated to bbox_layer.k as "
    "output channel 4 of head.last.box.k"
)
TF_OFF = "TemporalNet: the model has no temporal fusion (MODEL.STMASK.TF.ON False)"

# the authors' head branches → ours (the box branch and its centerness are mapped apart)
BRANCHES = {"cls": "conf", "track": "track", "mask": "mask"}

_SOURCE_BLOCK = re.compile(r"^backbone\.layers\.(\d+)\.(\d+)\.")
_TARGET_BLOCK = re.compile(rf"^{re.escape(TARGET_RESNET)}res(\d+)\.(\d+)\.")
_TARGET_RESNET_NAME = re.compile(
    r"^(?:stem\.conv1(?P<stem_norm>\.norm)?\.(?P<stem_param>\w+)"
    r"|res(?P<stage>\d+)\.(?P<block>\d+)\.(?P<layer>conv\d|conv2_offset|shortcut)"
    r"(?P<norm>\.norm)?\.(?P<param>\w+))$"
)


@register_converter("STMask")
def convert_authors_checkpoint(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> Conversion:
    """The authors' STMask weights (their names, e.g. ``backbone.layers.2.3.conv2.weight``,
    ``prediction_layers.0.conf_layer.1.conv.weight``) → this ``STMask``'s."""
    _check_is_stmask(source)
    b = ConversionBuilder(source, target)
    _map_resnet(b)
    _map_fpn(b)
    _map_protonet(b)
    _map_head(b)
    _map_temporal_net(b)
    return b.finish()


# ------------------------------------------------------------------------------ helpers
def _check_is_stmask(source: dict[str, torch.Tensor]) -> None:
    needed = (
        f"{RESNET}layers.0.0.conv1.weight",
        f"{FPN}lat_layers.0.weight",
        f"{HEAD}upfeature.0.weight",
    )
    if not all(k in source for k in needed):
        prefixes = sorted({k.split(".")[0] for k in source})
        raise ConversionError(
            "it is not a checkpoint of the authors' STMask: it lacks their weights "
            f"{', '.join(k for k in needed if k not in source)} (YOLACT++ names backbone.layers.*, "
            f"fpn.*, proto_net.*, prediction_layers.0.*); its weights are under "
            f"{', '.join(prefixes[:8])}{' ...' if len(prefixes) > 8 else ''}"
        )


def _require(b: ConversionBuilder, source: str, target: str) -> torch.Tensor:
    if source not in b.source:
        raise ConversionError(
            f"the source has no weight {source} (needed for the model's {target}): it is not a "
            "checkpoint of the architecture this converter expects"
        )
    return b.source[source]


def _convs(keys: list[str], prefix: str) -> list[int]:
    """The Sequential indices i of ``prefix{i}.weight`` among ``keys``, sorted."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)\.weight$")
    return sorted(int(m[1]) for k in keys if (m := pattern.match(k)))


def _count_mismatch(what: str, theirs: int, ours: int, setting: str) -> ConversionError:
    return ConversionError(
        f"the checkpoint has {theirs} {what}, the model {ours}: set {setting} to match"
    )


# ------------------------------------------------------------------------------- ResNet
def _source_blocks(source) -> dict[int, set[int]]:
    """Stage (2-5) → the block indices of the authors' ResNet."""
    blocks: dict[int, set[int]] = {}
    for key in source:
        if m := _SOURCE_BLOCK.match(key):
            blocks.setdefault(int(m[1]) + 2, set()).add(int(m[2]))
    return blocks


def _target_blocks(target) -> dict[int, set[int]]:
    blocks: dict[int, set[int]] = {}
    for key in target:
        if m := _TARGET_BLOCK.match(key):
            blocks.setdefault(int(m[1]), set()).add(int(m[2]))
    return blocks


def _names(blocks: set[tuple[int, int]]) -> str:
    return ", ".join(f"res{s}.{i}" for s, i in sorted(blocks)) or "none"


def deformable_interval(
    deformable: set[tuple[int, int]], blocks: dict[int, set[int]]
) -> tuple[list[bool], int] | None:
    """``MODEL.RESNETS.DEFORM_ON_PER_STAGE`` and ``DEFORM_INTERVAL`` that make exactly the
    (stage, block) pairs ``deformable`` deformable in a ResNet of ``blocks`` (stage → block
    indices), or None if no such settings exist."""
    on = [any(s == stage for s, _ in deformable) for stage in (2, 3, 4, 5)]
    most = max((len(blocks.get(s, ())) for s in (2, 3, 4, 5)), default=1)
    for interval in range(1, most + 1):
        expected = {
            (s, i)
            for s, flag in zip((2, 3, 4, 5), on, strict=True)
            if flag
            for i in blocks.get(s, ())
            if i % interval == 0
        }
        if expected == deformable:
            return on, interval
    return None


def _deform_hint(deformable: set[tuple[int, int]], blocks: dict[int, set[int]]) -> str:
    found = deformable_interval(deformable, blocks)
    if found is None:
        return "no DEFORM_ON_PER_STAGE / DEFORM_INTERVAL gives that"
    on, interval = found
    if not any(on):
        return "set MODEL.RESNETS.DEFORM_ON_PER_STAGE [False, False, False, False]"
    flags = ", ".join(str(f) for f in on)
    return (
        f"set MODEL.RESNETS.DEFORM_ON_PER_STAGE [{flags}], DEFORM_MODULATED True, "
        f"DEFORM_INTERVAL {interval}"
    )


def _map_resnet(b: ConversionBuilder) -> None:
    theirs, ours = _source_blocks(b.source), _target_blocks(b.target)
    depth = {(3, 4, 6, 3): "ResNet-50", (3, 4, 23, 3): "ResNet-101"}
    counts = tuple(len(theirs.get(s, ())) for s in (2, 3, 4, 5))
    our_counts = tuple(len(ours.get(s, ())) for s in (2, 3, 4, 5))
    if counts != our_counts:
        raise ConversionError(
            f"the checkpoint's ResNet has {counts} blocks in res2-res5 "
            f"({depth.get(counts, 'an unknown depth')}), the model's {our_counts} "
            f"({depth.get(our_counts, 'another depth')}): set MODEL.RESNETS.DEPTH to match"
        )
    src_dcn = {
        (s, i)
        for s, ids in theirs.items()
        for i in ids
        if f"{RESNET}layers.{s - 2}.{i}.conv2.conv_offset_mask.weight" in b.source
    }
    tgt_dcn = {
        (s, i)
        for s, ids in ours.items()
        for i in ids
        if f"{TARGET_RESNET}res{s}.{i}.conv2_offset.weight" in b.target
    }
    if src_dcn != tgt_dcn:
        raise ConversionError(
            f"the checkpoint's deformable 3x3 convs are in {_names(src_dcn)}, the model's in "
            f"{_names(tgt_dcn)}: {_deform_hint(src_dcn, theirs)}"
        )
    for s, i in sorted(tgt_dcn):
        channels = b.target[f"{TARGET_RESNET}res{s}.{i}.conv2_offset.weight"].shape[0]
        if channels != 27:
            raise ConversionError(
                f"the checkpoint's deformable convs are modulated (DCNv2: 27 offset and mask "
                f"channels), the model's res{s}.{i}.conv2_offset has {channels}: set "
                "MODEL.RESNETS.DEFORM_MODULATED True"
            )

    for key in b.target_keys(TARGET_RESNET):
        name = key[len(TARGET_RESNET) :]
        m = _TARGET_RESNET_NAME.match(name)
        if m is None:
            raise ConversionError(f"the model's ResNet weight {key} has no counterpart")
        if m["stem_param"]:
            b.take(key, f"{RESNET}{'bn1' if m['stem_norm'] else 'conv1'}.{m['stem_param']}")
            continue
        stage, block, layer, param = int(m["stage"]), m["block"], m["layer"], m["param"]
        src = f"{RESNET}layers.{stage - 2}.{block}."
        if layer == "shortcut":
            b.take(key, f"{src}downsample.{1 if m['norm'] else 0}.{param}")
        elif layer == "conv2_offset":
            b.take(key, f"{src}conv2.conv_offset_mask.{param}")
        elif not m["norm"]:
            b.take(key, f"{src}{layer}.{param}")
        elif (
            layer == "conv2"
            and param == "running_mean"
            and (stage, int(block)) in tgt_dcn
            and f"{TARGET_RESNET}res{stage}.{block}.conv2.bias" not in b.target
        ):
            bias = _require(b, f"{src}conv2.bias", key)
            b.take(key, f"{src}bn2.running_mean", transform=_minus(bias))
        else:
            b.take(key, f"{src}bn{layer[4:]}.{param}")
    b.ignore(rf"^{re.escape(RESNET)}layers\.\d+\.\d+\.conv2\.bias$", FOLDED_DCN_BIAS)
    b.ignore(rf"^{re.escape(RESNET)}.*\.{BN_STEP_COUNTER}$", UNUSED_STEP_COUNTER)


def _minus(bias: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """running_mean → running_mean − bias: BN(conv(x) + bias) with the mean μ equals BN(conv(x))
    with the mean μ − bias (computed in float64, then cast to the model's dtype)."""

    def fold(mean: torch.Tensor) -> torch.Tensor:
        if mean.shape != bias.shape:
            return mean  # the shape check of take names both weights
        return mean.double() - bias.double()

    return fold


# ------------------------------------------------------------------------- FPN, protonet
def _map_fpn(b: ConversionBuilder) -> None:
    prefix = "backbone.fpn."
    levels = sorted(
        int(m[1])
        for k in b.target_keys(prefix + "fpn_lateral")
        if (m := re.match(rf"^{re.escape(prefix)}fpn_lateral(\d+)\.weight$", k))
    )
    laterals = _convs(b.source_keys(FPN + "lat_layers."), FPN + "lat_layers.")
    if len(laterals) != len(levels):
        raise _count_mismatch("FPN levels", len(laterals), len(levels), "MODEL.FPN.IN_FEATURES")
    # stored top-down: lat_layers.0 / pred_layers.0 are the deepest level's
    for i, level in enumerate(reversed(levels)):
        b.take_layer(f"{prefix}fpn_lateral{level}", f"{FPN}lat_layers.{i}")
        b.take_layer(f"{prefix}fpn_output{level}", f"{FPN}pred_layers.{i}")
    theirs = _convs(b.source_keys(FPN + "downsample_layers."), FPN + "downsample_layers.")
    ours = _convs(b.target_keys("backbone.downsample."), "backbone.downsample.")
    if len(theirs) != len(ours):
        raise _count_mismatch(
            "extra strided levels", len(theirs), len(ours), "MODEL.STMASK.NUM_DOWNSAMPLE"
        )
    for i, j in zip(ours, theirs, strict=True):
        b.take_layer(f"backbone.downsample.{i}", f"{FPN}downsample_layers.{j}")


def _map_protonet(b: ConversionBuilder) -> None:
    theirs = _convs(b.source_keys(PROTO), PROTO)
    ours = [
        f"protonet.tower.{i}" for i in _convs(b.target_keys("protonet.tower."), "protonet.tower.")
    ]
    ours += ["protonet.refine", "protonet.output"]
    if len(theirs) != len(ours):
        raise _count_mismatch(
            "protonet convs", len(theirs), len(ours), "MODEL.STMASK.PROTO_CONVS (theirs minus 2)"
        )
    for target, i in zip(ours, theirs, strict=True):
        b.take_layer(target, f"{PROTO}{i}")


# ------------------------------------------------------------------------- prediction head
def _source_mode(b: ConversionBuilder, prefix: str) -> str | None:
    if f"{prefix}conv_offset.weight" in b.source:
        return "ada"
    if f"{prefix}conv_adaption.weight" in b.source:
        return "ali"
    if f"{prefix}weight" in b.source:
        return "none"
    return None


def _target_mode(b: ConversionBuilder, prefix: str) -> str:
    if f"{prefix}conv_offset.weight" in b.target:
        return "ada"
    if f"{prefix}deform.weight" in b.target:
        return "ali"
    return "none"


def _map_head(b: ConversionBuilder) -> None:
    b.take_layer("head.upfeature.0", f"{HEAD}upfeature.0")
    for ours, theirs in (("cls", "conf"), ("box", "bbox"), ("track", "track"), ("mask", "mask")):
        target, source = f"head.towers.{ours}.", f"{HEAD}{theirs}_extra."
        ours_convs = _convs(b.target_keys(target), target)
        theirs_convs = _convs(b.source_keys(source), source)
        if len(ours_convs) != len(theirs_convs):
            what = f"convs in {source.rstrip('.')}"
            setting = "MODEL.STMASK.EXTRA_CONVS"
            raise _count_mismatch(what, len(theirs_convs), len(ours_convs), setting)
        for i, j in zip(ours_convs, theirs_convs, strict=True):
            b.take_layer(f"{target}{i}", f"{source}{j}")

    shapes = _convs(b.target_keys("head.last.box."), "head.last.box.")
    theirs = _convs(b.source_keys(f"{HEAD}bbox_layer."), f"{HEAD}bbox_layer.")
    if len(shapes) != len(theirs):
        raise _count_mismatch(
            "anchor shapes", len(theirs), len(shapes), "MODEL.STMASK.ANCHOR_SHAPES"
        )
    _check_classes(b)
    for k in shapes:
        # box deltas (4) and centerness (1): two convs there, one here
        for param in ("weight", "bias"):
            target = f"head.last.box.{k}.{param}"
            centerness = _require(b, f"{HEAD}centerness_layer.{k}.{param}", target)
            b.take(target, f"{HEAD}bbox_layer.{k}.{param}", transform=_append(centerness))
        for ours, theirs_name in BRANCHES.items():
            target, source = f"head.last.{ours}.{k}.", f"{HEAD}{theirs_name}_layer.{k}."
            mode, our_mode = _source_mode(b, source), _target_mode(b, target)
            if mode is None:
                _require(b, f"{source}weight", f"{target}conv.weight")
            if mode != our_mode:
                raise ConversionError(
                    f"the checkpoint's {source.rstrip('.')} is FCB({mode}), the model's "
                    f"{target.rstrip('.')} FCB({our_mode}): set MODEL.STMASK.FCB and "
                    f"FCB_BRANCHES so that the {ours} branch is {mode}"
                )
            if mode == "none":
                b.take_layer(f"{target}conv", source.rstrip("."))
                continue
            b.take(f"{target}deform.weight", f"{source}conv_adaption.weight")
            b.take_layer(f"{target}conv", f"{source}conv")
            if mode == "ada":
                b.take(f"{target}conv_offset.weight", f"{source}conv_offset.weight")
    b.ignore(rf"^{re.escape(HEAD)}centerness_layer\.\d+\.(weight|bias)$", CONCATENATED_CENTERNESS)


def _append(extra: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """value → cat(value, extra) along the output channels (dim 0)."""

    def concatenate(value: torch.Tensor) -> torch.Tensor:
        if value.shape[1:] != extra.shape[1:]:
            return value  # the shape check of take names both weights
        return torch.cat([value, extra.to(value.dtype)], dim=0)

    return concatenate


def _check_classes(b: ConversionBuilder) -> None:
    source = f"{HEAD}conf_layer.0."
    weight = b.source.get(f"{source}conv.weight", b.source.get(f"{source}weight"))
    ours = b.target.get("head.last.cls.0.conv.weight")
    if weight is None or ours is None or weight.shape[0] == ours.shape[0]:
        return
    known = {41: "YouTube-VIS 2019/2021", 26: "OVIS"}
    data = known.get(weight.shape[0])
    raise ConversionError(
        f"the checkpoint predicts {weight.shape[0]} class logits (background and "
        f"{weight.shape[0] - 1} classes{', ' + data if data else ''}), the model "
        f"{ours.shape[0]}: set MODEL.STMASK.NUM_CLASSES {weight.shape[0] - 1}"
    )


# -------------------------------------------------------------------------- temporal fusion
def _map_temporal_net(b: ConversionBuilder) -> None:
    if not b.target_keys("temporal_net."):
        b.ignore(rf"^{re.escape(TF)}", TF_OFF)
        return
    for i in range(3):
        b.take_layer(f"temporal_net.convs.{i}", f"{TF}conv{i + 1}")
    b.take_layer("temporal_net.box_shift", f"{TF}fc")
    b.take_layer("temporal_net.coeff_shift", f"{TF}fc_coeff")
