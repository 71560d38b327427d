"""Converting the released checkpoints of other implementations to vis_d2 models.

A method registers, under its ``META_ARCHITECTURE`` name, a converter ``(source, target) →
Conversion``: ``source`` the other implementation's weights (names → tensors), ``target`` the
model's ``state_dict()`` (read for its names and shapes). The converter accounts for every
tensor: each target weight is taken from a source weight or filled (with the reason), each
source weight is used or reported unused (with the reason); anything else is an error, as is
a shape that does not fit. :func:`convert_checkpoint` builds the model of a config, converts a
checkpoint file for it and loads the result strictly.

The helpers here read checkpoint files and map the parts that mmdetection v1 models share
(its caffe/pytorch-style ResNet, its FPN, its ``ConvModule`` towers) and maskrcnn-benchmark's
ResNet and FPN to detectron2's and vis_d2's modules; methods build on them with
:class:`ConversionBuilder`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model
from detectron2.utils.registry import Registry
from torch import nn

__all__ = [
    "WEIGHT_CONVERTER_REGISTRY",
    "Conversion",
    "ConversionBuilder",
    "ConversionError",
    "Converter",
    "convert_checkpoint",
    "load_checkpoint_weights",
    "map_conv_module_tower",
    "map_maskrcnn_benchmark_fpn",
    "map_maskrcnn_benchmark_resnet",
    "map_mmdet_fpn",
    "map_mmdet_resnet",
    "register_converter",
    "registered_converters",
]

WEIGHT_CONVERTER_REGISTRY = Registry("WEIGHT_CONVERTER")
WEIGHT_CONVERTER_REGISTRY.__doc__ = """
Converters of other implementations' checkpoints, keyed by the ``MODEL.META_ARCHITECTURE``
they convert to: ``(source, target) -> Conversion`` (see :func:`register_converter`).
"""

BN_STEP_COUNTER = "num_batches_tracked"
UNUSED_STEP_COUNTER = "BatchNorm step counter (a training statistic): frozen BatchNorm has none"
ZERO_BIAS_BEFORE_NORM = "conv bias (the source conv has none before its GroupNorm): 0"


class ConversionError(ValueError):
    """A checkpoint that cannot be converted for the model: unreadable, not the architecture
    the converter expects, or of other shapes. The message names the file where known."""


@dataclass
class Conversion:
    """The result of a converter.

    state_dict: every target weight (names and order of the model's ``state_dict()``);
    mapped: (target, source) name pairs of the weights taken from the source;
    filled: (target, why) the target weights not taken from the source;
    unused: (source, why) the source weights not used.
    """

    state_dict: dict[str, torch.Tensor]
    mapped: list[tuple[str, str]]
    filled: list[tuple[str, str]]
    unused: list[tuple[str, str]]

    @property
    def num_source(self) -> int:
        """The number of source weights: each is mapped once or unused."""
        return len(self.mapped) + len(self.unused)


Converter = Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor]], Conversion]


def register_converter(meta_architecture: str) -> Callable[[Converter], Converter]:
    """Decorator: register a converter for the models of ``meta_architecture`` (the function
    keeps its own name)."""

    def register(converter: Converter) -> Converter:
        WEIGHT_CONVERTER_REGISTRY._do_register(meta_architecture, converter)
        return converter

    return register


def registered_converters() -> list[str]:
    """The META_ARCHITECTUREs that have a converter, sorted."""
    return sorted(name for name, _ in WEIGHT_CONVERTER_REGISTRY)


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


class ConversionBuilder:
    """Collects a conversion weight by weight.

    ``take(target, source)`` copies a source weight (cast to the target dtype) after checking
    that both names exist and the shapes agree; ``fill(target, value, why)`` sets a target
    weight that has no source; ``ignore(pattern, why)`` declares the source weights whose
    names match ``pattern`` (a regular expression, searched) and that nothing takes as unused.
    :meth:`finish` fails on any target weight left unset or source weight neither taken nor
    ignored, so a converter cannot silently drop or invent weights.
    """

    def __init__(self, source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]):
        self.source = source
        self.target = target
        self._values: dict[str, torch.Tensor] = {}
        self._mapped: list[tuple[str, str]] = []
        self._filled: list[tuple[str, str]] = []
        self._taken: set[str] = set()
        self._ignored: list[tuple[re.Pattern, str]] = []

    # ----------------------------------------------------------------------------- queries
    def target_keys(self, prefix: str = "") -> list[str]:
        return [k for k in self.target if k.startswith(prefix)]

    def source_keys(self, prefix: str = "") -> list[str]:
        return [k for k in self.source if k.startswith(prefix)]

    def _check_target(self, target: str) -> torch.Tensor:
        if target not in self.target:
            raise ConversionError(
                f"the model has no weight {target}: its config is not the architecture this "
                "converter expects"
            )
        if target in self._values:
            raise ConversionError(f"{target} is set twice by the converter")
        return self.target[target]

    # ----------------------------------------------------------------------------- actions
    def take(
        self,
        target: str,
        source: str,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        """target ← source (through ``transform`` if given)."""
        want = self._check_target(target)
        if source not in self.source:
            raise ConversionError(
                f"the source has no weight {source} (needed for the model's {target}): it is "
                "not a checkpoint of the architecture this converter expects"
            )
        if source in self._taken:
            raise ConversionError(f"source weight {source} is used twice by the converter")
        value = self.source[source]
        if transform is not None:
            value = transform(value)
        if _shape(value) != _shape(want):
            raise ConversionError(
                f"source weight {source} has shape {_shape(value)}, but the model's {target} "
                f"has shape {_shape(want)}: is the config the source's architecture (number "
                "of classes, channels, depth)?"
            )
        self._values[target] = _cast(value, want)
        self._mapped.append((target, source))
        self._taken.add(source)

    def take_layer(
        self, target: str, source: str, names: tuple[str, ...] = ("weight", "bias")
    ) -> None:
        """``target.<name> ← source.<name>`` for each of ``names`` the target module has."""
        for name in names:
            if f"{target}.{name}" in self.target:
                self.take(f"{target}.{name}", f"{source}.{name}")

    def fill(self, target: str, value: torch.Tensor | float, why: str) -> None:
        """Set a target weight that no source weight gives (a tensor, or a constant)."""
        want = self._check_target(target)
        if isinstance(value, torch.Tensor):
            if _shape(value) != _shape(want):
                raise ConversionError(
                    f"filling {target}: shape {_shape(value)}, the model's is {_shape(want)}"
                )
            tensor = _cast(value, want)
        else:
            tensor = torch.full_like(want, value, device="cpu")
        self._values[target] = tensor
        self._filled.append((target, why))

    def ignore(self, pattern: str, why: str) -> None:
        """Source weights matching ``pattern`` that nothing takes are unused, because ``why``."""
        self._ignored.append((re.compile(pattern), why))

    def finish(self) -> Conversion:
        unset = [k for k in self.target if k not in self._values]
        if unset:
            raise ConversionError(
                f"{len(unset)} model weights have no counterpart in the source: "
                f"{_listing(unset)}; is the config the source's architecture?"
            )
        unused, unknown = [], []
        for key in self.source:
            if key in self._taken:
                continue
            why = next((w for p, w in self._ignored if p.search(key)), None)
            if why is None:
                unknown.append(key)
            else:
                unused.append((key, why))
        if unknown:
            raise ConversionError(
                f"{len(unknown)} source weights have no counterpart in the model: "
                f"{_listing(unknown)}; is the config the source's architecture?"
            )
        return Conversion(
            state_dict={k: self._values[k] for k in self.target},
            mapped=list(self._mapped),
            filled=list(self._filled),
            unused=unused,
        )


def _cast(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A CPU copy of ``value`` in the dtype of ``like`` (e.g. fp16 weights for an fp32 model)."""
    return value.detach().to(device="cpu", dtype=like.dtype).clone().contiguous()


def _listing(keys: list[str], limit: int = 8) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


# ----------------------------------------------------------------------------- checkpoints
def load_checkpoint_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The weights (names → CPU tensors) of a checkpoint file: mmcv/mmdetection's
    ``{"state_dict": ..., "meta": ...}``, detectron2's ``{"model": ...}`` or a bare state dict,
    with a ``module.`` prefix (DataParallel) removed. numpy arrays become tensors.

    Raises:
        ConversionError: naming the file, when it does not exist, cannot be read or holds no
            weights.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConversionError(f"checkpoint file {path} does not exist")
    try:
        # weights_only: a checkpoint is data; a file that needs arbitrary code to load is not
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load and pickle fail in many ways on a bad file
        raise ConversionError(
            f"{path} cannot be read as a checkpoint ({type(e).__name__}: {e}); it may be "
            "truncated (an interrupted download) or not a checkpoint"
        ) from e
    if isinstance(data, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(data.get(wrapper), Mapping):
                data = data[wrapper]
                break
    if not isinstance(data, Mapping) or not data:
        raise ConversionError(
            f"{path} is not a model checkpoint: it holds "
            f"{type(data).__name__}{' (empty)' if isinstance(data, Mapping) else ''} where "
            "weights (names to tensors, possibly under 'state_dict' or 'model') belong"
        )
    bad = [
        repr(k)
        for k, v in data.items()
        if not isinstance(k, str) or not isinstance(v, (torch.Tensor, np.ndarray))
    ]
    if bad:
        raise ConversionError(
            f"{path} is not a model checkpoint: it maps {_listing(bad)} to something other "
            "than a tensor"
        )
    weights = {k: torch.as_tensor(v) for k, v in data.items()}
    if all(k.startswith("module.") for k in weights):
        weights = {k[len("module.") :]: v for k, v in weights.items()}
    return weights


def convert_checkpoint(cfg: CfgNode, path: str | os.PathLike) -> tuple[Conversion, nn.Module]:
    """Build the model of ``cfg`` on the CPU, convert the checkpoint ``path`` with the
    converter of its META_ARCHITECTURE and load the result strictly.

    Returns:
        The :class:`Conversion` and the model, with the converted weights, in eval mode.

    Raises:
        ConversionError: no converter for the META_ARCHITECTURE (the message lists those
            there are), or the file cannot be converted (the message names it).
    """
    arch = cfg.MODEL.META_ARCHITECTURE
    if arch not in WEIGHT_CONVERTER_REGISTRY:
        known = ", ".join(registered_converters()) or "none"
        raise ConversionError(
            f"there is no weight converter for MODEL.META_ARCHITECTURE {arch}; converters "
            f"exist for: {known}"
        )
    converter = WEIGHT_CONVERTER_REGISTRY.get(arch)
    source = load_checkpoint_weights(path)
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    try:
        conversion = converter(source, model.state_dict())
    except ConversionError as e:
        raise ConversionError(f"{os.fspath(path)} cannot be converted for {arch}: {e}") from e
    model.load_state_dict(conversion.state_dict, strict=True)
    return conversion, model.eval()


# ------------------------------------------------------------------- mmdetection v1 parts
_RESNET_STAGE = re.compile(r"^res(\d+)\.(\d+)\.(conv\d+|conv2_offset|shortcut)(\.norm)?\.(\w+)$")
_RESNET_STEM = re.compile(r"^stem\.conv1(\.norm)?\.(\w+)$")
DETECTRON2_FROZEN_BN_EPS = 1e-5  # detectron2's FrozenBatchNorm2d: weight / sqrt(var + eps)


def _mmdet_resnet_name(name: str, stem: str = "") -> str | None:
    """detectron2 ResNet name (below the ResNet) → mmdetection v1 ResNet name (its stem's
    ``conv1``/``bn1`` under ``stem``), or None. A deformable block's offset conv
    (``conv2_offset``) is mmdetection's ``DeformConvPack`` ``conv2.conv_offset``."""
    m = _RESNET_STEM.match(name)
    if m:
        return f"{stem}bn1.{m[2]}" if m[1] else f"{stem}conv1.{m[2]}"
    m = _RESNET_STAGE.match(name)
    if not m:
        return None
    stage, block, layer, norm, param = m.groups()
    block_name = f"layer{int(stage) - 1}.{block}"
    if layer == "shortcut":
        return f"{block_name}.downsample.{1 if norm else 0}.{param}"
    if layer == "conv2_offset":
        return f"{block_name}.conv2.conv_offset.{param}"
    return f"{block_name}.{'bn' + layer[4:] if norm else layer}.{param}"


def _map_resnet(
    builder: ConversionBuilder,
    source_prefix: str,
    target_prefix: str,
    stem: str,
    transforms: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
) -> None:
    """Every weight of the detectron2 ResNet at ``target_prefix`` ← the mmdetection-style
    name under ``source_prefix`` (stem under ``stem``); ``transforms`` by parameter name."""
    keys = builder.target_keys(target_prefix)
    if not keys:
        raise ConversionError(f"the model has no ResNet weights under {target_prefix}")
    for key in keys:
        name = _mmdet_resnet_name(key[len(target_prefix) :], stem)
        if name is None:
            raise ConversionError(f"the model's ResNet weight {key} has no source name")
        param = key.rsplit(".", 1)[-1]
        builder.take(key, source_prefix + name, (transforms or {}).get(param))


def map_mmdet_resnet(builder: ConversionBuilder, source_prefix: str, target_prefix: str) -> None:
    """An mmdetection v1 ResNet (``conv1``, ``bn1``, ``layer{1-4}.{b}.conv{i}/bn{i}``,
    ``downsample.0/1``; deformable blocks ``conv2`` with ``conv2.conv_offset``) → detectron2's
    ResNet (``stem.conv1``, ``res{2-5}.{b}.conv{i}``, ``.norm``, ``shortcut``,
    ``conv2_offset``), any depth, every weight the target ResNet has. For the caffe-style
    source the target must put the stride in the 1×1 conv (``MODEL.RESNETS.STRIDE_IN_1X1``),
    which the weights cannot tell; its deformable blocks must be the source's
    (``DEFORM_ON_PER_STAGE``, one offset group, not modulated: the offsets are (dy, dx) per
    kernel tap in both). The source's BatchNorm step counters are declared unused
    (detectron2's frozen BatchNorm has none)."""
    _map_resnet(builder, source_prefix, target_prefix, stem="")
    builder.ignore(rf"^{re.escape(source_prefix)}.*\.{BN_STEP_COUNTER}$", UNUSED_STEP_COUNTER)


def map_maskrcnn_benchmark_resnet(
    builder: ConversionBuilder, source_prefix: str, target_prefix: str
) -> None:
    """A maskrcnn-benchmark ResNet (``stem.conv1``, ``stem.bn1``, ``layer{1-4}.{b}.conv{i}``,
    ``bn{i}``, ``downsample.0/1``: the mmdetection names but for the stem) → detectron2's
    ResNet, any depth. Its ``FrozenBatchNorm2d`` divides by sqrt(running_var) without an
    epsilon, detectron2's by sqrt(running_var + 1e-5): the running variances are taken less
    1e-5, so that both compute the same."""

    def less_eps(var: torch.Tensor) -> torch.Tensor:
        return var - DETECTRON2_FROZEN_BN_EPS

    _map_resnet(builder, source_prefix, target_prefix, "stem.", {"running_var": less_eps})


def map_mmdet_fpn(builder: ConversionBuilder, source_prefix: str, target_prefix: str) -> None:
    """An mmdetection v1 FPN (``lateral_convs.{i}.conv``, ``fpn_convs.{i}.conv``, the extra
    stride-2 convs last among ``fpn_convs``) → detectron2's FPN (``fpn_lateral{s}``,
    ``fpn_output{s}`` by increasing stage s, then the top block's ``p6``, ``p7``, ...). The
    FPNs must compute the same thing: the extra convs on the same input (detectron2's
    ``LastLevelP6P7`` on "p5": mmdetection's ``extra_convs_on_inputs=False`` with
    ``relu_before_extra_convs``), no norm in either."""
    stages = sorted(
        int(m[1])
        for k in builder.target_keys(target_prefix + "fpn_lateral")
        if (m := re.match(rf"^{re.escape(target_prefix)}fpn_lateral(\d+)\.weight$", k))
    )
    if not stages:
        raise ConversionError(f"the model has no FPN under {target_prefix}")
    for i, stage in enumerate(stages):
        builder.take_layer(
            f"{target_prefix}fpn_lateral{stage}", f"{source_prefix}lateral_convs.{i}.conv"
        )
        builder.take_layer(
            f"{target_prefix}fpn_output{stage}", f"{source_prefix}fpn_convs.{i}.conv"
        )
    extra = sorted(
        int(m[1])
        for k in builder.target_keys(target_prefix + "top_block.")
        if (m := re.match(rf"^{re.escape(target_prefix)}top_block\.p(\d+)\.weight$", k))
    )
    for i, level in enumerate(extra, start=len(stages)):
        builder.take_layer(
            f"{target_prefix}top_block.p{level}", f"{source_prefix}fpn_convs.{i}.conv"
        )


def map_maskrcnn_benchmark_fpn(
    builder: ConversionBuilder, source_prefix: str, target_prefix: str
) -> None:
    """A maskrcnn-benchmark FPN (``fpn_inner{i}``, ``fpn_layer{i}`` for backbone stage i + 1,
    i counted from 1 at C2; ``top_blocks.p6``/``p7``) → detectron2's FPN (``fpn_lateral{s}``,
    ``fpn_output{s}``, ``top_block.p6``/``p7``). Both must compute the same: the P6/P7 block on
    P5 (maskrcnn-benchmark's ``LastLevelP6P7`` with ``RETINANET.USE_C5`` False, detectron2's
    ``LastLevelP6P7`` on "p5"), no norm."""
    keys = builder.target_keys(target_prefix + "fpn_lateral")
    if not keys:
        raise ConversionError(f"the model has no FPN under {target_prefix}")
    for key in builder.target_keys(target_prefix):
        m = re.match(rf"^{re.escape(target_prefix)}fpn_(lateral|output)(\d+)\.(\w+)$", key)
        if m:
            kind = "inner" if m[1] == "lateral" else "layer"
            builder.take(key, f"{source_prefix}fpn_{kind}{int(m[2]) - 1}.{m[3]}")
            continue
        m = re.match(rf"^{re.escape(target_prefix)}top_block\.(p\d+)\.(\w+)$", key)
        if m:
            builder.take(key, f"{source_prefix}top_blocks.{m[1]}.{m[2]}")


def _tower_convs(builder: ConversionBuilder, prefix: str) -> list[int]:
    """The indices of the convs (4-D weights) in the target ``nn.Sequential`` at ``prefix``."""
    indices = []
    for key in builder.target_keys(prefix):
        m = re.match(rf"^{re.escape(prefix)}(\d+)\.weight$", key)
        if m and builder.target[key].dim() == 4:
            indices.append(int(m[1]))
    return sorted(indices)


def map_conv_module_tower(
    builder: ConversionBuilder, target_prefix: str, source_prefix: str
) -> None:
    """mmdetection ``ConvModule``s (``{i}.conv``, then ``{i}.gn`` or ``{i}.bn``) → a vis_d2
    tower (:func:`vis_d2.layers.build_tower`: conv at Sequential index j, its norm at j + 1).
    A target conv bias without a source bias (mmdetection leaves it out before a norm) is
    filled with 0, which computes the same as no bias."""
    convs = _tower_convs(builder, target_prefix)
    sources = sorted(
        int(m[1])
        for k in builder.source_keys(source_prefix)
        if (m := re.match(rf"^{re.escape(source_prefix)}(\d+)\.conv\.weight$", k))
    )
    if len(convs) != len(sources):
        raise ConversionError(
            f"the model's tower {target_prefix.rstrip('.')} has {len(convs)} convs, the "
            f"source's {source_prefix.rstrip('.')} has {len(sources)}"
        )
    for j, i in zip(convs, sources, strict=True):
        conv, src = f"{target_prefix}{j}", f"{source_prefix}{i}"
        builder.take(f"{conv}.weight", f"{src}.conv.weight")
        if f"{conv}.bias" in builder.target:
            if f"{src}.conv.bias" in builder.source:
                builder.take(f"{conv}.bias", f"{src}.conv.bias")
            else:
                builder.fill(f"{conv}.bias", 0.0, ZERO_BIAS_BEFORE_NORM)
        norm = f"{target_prefix}{j + 1}"
        norm_names = [k[len(norm) + 1 :] for k in builder.target_keys(norm + ".")]
        src_norm = next(
            (f"{src}.{n}" for n in ("gn", "bn") if f"{src}.{n}.weight" in builder.source), None
        )
        if norm_names and src_norm is None:
            raise ConversionError(f"the source's {src} has no norm for the model's {norm}")
        for name in norm_names:
            builder.take(f"{norm}.{name}", f"{src_norm}.{name}")
