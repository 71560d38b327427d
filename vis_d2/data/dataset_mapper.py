"""Video dataset mappers: a training frame pair (key + reference), a lazily decoded test video;
and detectron2's image ``DatasetMapper`` with the boxes given to the augmentations."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import numpy as np
import torch
from detectron2.config import CfgNode, configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BitMasks, BoxMode, Instances

from .ssd_augmentation import MinIoUCropTransform, box_centers_inside
from .transforms import build_frame_augmentation, build_image_augmentation

__all__ = [
    "BoxAwareDatasetMapper",
    "YTVISDatasetMapper",
    "YTVISTestMapper",
    "VideoFrames",
    "frame_instances",
    "frame_transforms",
    "sample_reference_frame",
]

logger = logging.getLogger(__name__)


def sample_reference_frame(
    key: int, length: int, frame_range: int, rng: np.random.Generator
) -> int:
    """A frame index uniform over [key - R, key + R] minus key within [0, length); key if none."""
    candidates = [
        t for t in range(key - frame_range, key + frame_range + 1) if t != key and 0 <= t < length
    ]
    return int(rng.choice(candidates)) if candidates else key


def _read_frame(video: dict, idx: int, image_format: str) -> np.ndarray:
    path = video["file_names"][idx]
    try:
        image = utils.read_image(path, format=image_format)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"video {video['video_id']}: frame {idx} file {path} does not exist"
        ) from e
    except OSError as e:
        raise OSError(
            f"video {video['video_id']}: frame {idx} file {path} cannot be decoded ({e})"
        ) from e
    expected = (video["height"], video["width"])
    if image.shape[:2] != expected:
        raise ValueError(
            f"video {video['video_id']}: frame {idx} file {path} is "
            f"{image.shape[1]}x{image.shape[0]}, the json says {expected[1]}x{expected[0]}"
        )
    return image


def frame_instances(annos: list[dict], image_size: tuple[int, int]) -> Instances:
    """The training targets of one frame: the one place that builds the mapper's output.

    ``annos``: the frame's non-crowd annotations, already transformed to the (H, W)
    ``image_size`` (``transform_instance_annotations``). For N instances, N >= 0, the result
    always has every field, each of length N:

    - ``gt_boxes``: :class:`Boxes` (N, 4), XYXY input pixels, clipped to the image;
    - ``gt_classes``: (N,) int64 contiguous class ids;
    - ``gt_masks``: :class:`BitMasks` (N, H, W);
    - ``gt_ids``: (N,) int64 instance ids of the json, unique within the frame, so that the
      same object is found in the other frame of a training pair.

    Instances whose box or mask is empty after augmentation are left out.
    """
    instances = utils.annotations_to_instances(annos, image_size, mask_format="bitmask")
    if not instances.has("gt_masks"):  # detectron2 gives a frame without annotation no masks
        instances.gt_masks = BitMasks(torch.zeros((0, *image_size), dtype=torch.bool))
    instances.gt_ids = torch.tensor([obj["id"] for obj in annos], dtype=torch.int64)
    return utils.filter_empty_instances(instances)


def _is_identity_resize(transform: T.Transform) -> bool:
    if not isinstance(transform, T.ResizeTransform):
        return False
    return (transform.h, transform.w) == (transform.new_h, transform.new_w)


class _FrameInput(T.AugInput):
    """A frame to augment whose resizes to its own size (``ResizeShortestEdge`` on frames
    already at the input size) are skipped: such a resize returns its input unchanged, after
    a round trip of the frame and of every mask through PIL."""

    def transform(self, tfm: T.Transform) -> None:
        if not _is_identity_resize(tfm):
            super().transform(tfm)


def frame_transforms(augmentations: T.AugmentationList, image: np.ndarray) -> T.TransformList:
    """The transforms ``augmentations`` draw for a frame (H, W, C), less resizes to its own
    size (which the drawing skips too)."""
    transforms = augmentations(_FrameInput(image))
    return T.TransformList([t for t in transforms.transforms if not _is_identity_resize(t)])


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))


class YTVISDatasetMapper:
    """Training: a per-video dict → one key frame and one reference frame of that video.

    The key frame t is uniform over the video, the reference uniform over [t-R, t+R] \\ {t}
    (``INPUT.REF_FRAME_RANGE``; t itself when the video has one frame). Both frames get the
    **same** augmentation. Returns ``image``/``ref_image`` ((C, H, W) uint8 tensors in
    ``INPUT.FORMAT``) and ``instances``/``ref_instances`` as :func:`frame_instances` builds
    them (every field present, possibly with no instance: objects that are absent from a
    frame, crowd regions and instances emptied by augmentation give none), plus
    ``frame_idx``/``ref_frame_idx``, ``video_id``, ``height``, ``width``, ``file_name``.

    Frames are chosen with the mapper's own generator when it is given a ``seed``, otherwise
    from numpy's global one, as detectron2's augmentations draw theirs (the training loader
    seeds it per sample).
    """

    @configurable
    def __init__(
        self,
        *,
        augmentations: list[T.Augmentation | T.Transform],
        image_format: str,
        ref_frame_range: int,
        seed: int | None = None,
    ):
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.ref_frame_range = ref_frame_range
        self._rng = np.random.default_rng(seed) if seed is not None else None
        logger.info(
            f"[YTVISDatasetMapper] augmentations: {augmentations}, "
            f"reference frames within ±{ref_frame_range}"
        )

    @classmethod
    def from_config(cls, cfg: CfgNode, is_train: bool = True) -> dict:
        return {
            "augmentations": build_frame_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "ref_frame_range": cfg.INPUT.REF_FRAME_RANGE,
        }

    def _frame_rng(self) -> np.random.Generator:
        if self._rng is not None:
            return self._rng
        return np.random.default_rng(np.random.randint(2**32, dtype=np.uint64))

    def _frame(self, video: dict, idx: int, image: np.ndarray, transforms: T.TransformList):
        image = transforms.apply_image(image)
        size = image.shape[:2]
        annos = [
            utils.transform_instance_annotations(copy.deepcopy(obj), transforms, size)
            for obj in video["annotations"][idx]
            if obj.get("iscrowd", 0) == 0
        ]
        for obj in annos:  # a resized mask is a read-only view of a PIL image
            if isinstance(obj["segmentation"], np.ndarray):
                obj["segmentation"] = np.require(obj["segmentation"], requirements="W")
        return _to_tensor(image), frame_instances(annos, size)

    def __call__(self, video: dict) -> dict:
        if "annotations" not in video:
            raise ValueError(
                f"video {video['video_id']} has no annotations; it cannot be trained on"
            )
        length = video["length"]
        rng = self._frame_rng()
        key = int(rng.integers(length))
        ref = sample_reference_frame(key, length, self.ref_frame_range, rng)
        key_image = _read_frame(video, key, self.image_format)
        # decided once, applied to both frames
        transforms = frame_transforms(self.augmentations, key_image)
        image, instances = self._frame(video, key, key_image, transforms)
        ref_image, ref_instances = self._frame(
            video, ref, _read_frame(video, ref, self.image_format), transforms
        )
        return {
            "video_id": video["video_id"],
            "height": video["height"],
            "width": video["width"],
            "file_name": video["file_names"][key],
            "frame_idx": key,
            "ref_frame_idx": ref,
            "image": image,
            "instances": instances,
            "ref_image": ref_image,
            "ref_instances": ref_instances,
        }


class VideoFrames(Sequence):
    """The frames of one video, decoded and resized only when indexed or iterated.

    Item t: ``{"image": (C, H', W') tensor, "height", "width", "frame_idx": t, "is_first": t == 0,
    "file_name"}`` where (height, width) is the original size, for ``detector_postprocess``.
    """

    def __init__(self, video: dict, augmentations: T.AugmentationList, image_format: str):
        self.video = {k: video[k] for k in ("video_id", "file_names", "height", "width", "length")}
        self.augmentations = augmentations
        self.image_format = image_format

    def __len__(self) -> int:
        return self.video["length"]

    def __getitem__(self, idx: int) -> dict:
        if not 0 <= idx < len(self):
            raise IndexError(idx)
        image = _read_frame(self.video, idx, self.image_format)
        image = frame_transforms(self.augmentations, image).apply_image(image)
        return {
            "image": _to_tensor(image),
            "height": self.video["height"],
            "width": self.video["width"],
            "frame_idx": idx,
            "is_first": idx == 0,
            "file_name": self.video["file_names"][idx],
        }


class YTVISTestMapper:
    """Test: a per-video dict → the video's fields plus ``frames``, a :class:`VideoFrames`.

    Nothing is decoded here, so a long video never sits in memory as a whole: the model reads
    ``frames`` one at a time.
    """

    @configurable
    def __init__(self, *, augmentations: list[T.Augmentation | T.Transform], image_format: str):
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        return {
            "augmentations": build_frame_augmentation(cfg, is_train=False),
            "image_format": cfg.INPUT.FORMAT,
        }

    def __call__(self, video: dict) -> dict:
        out = {k: video[k] for k in ("video_id", "file_names", "height", "width", "length")}
        out["frames"] = VideoFrames(video, self.augmentations, self.image_format)
        return out


def _annotation_boxes(annos: list[dict]) -> np.ndarray:
    """(N, 4) float32 XYXY_ABS boxes of ``annos`` (N >= 0), in their order."""
    boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos]
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


class _BoxesIntoAugInput(T.AugmentationList):
    """detectron2's ``AugmentationList`` that first sets ``aug_input.boxes`` to
    :attr:`boxes` (set by the mapper before each sample; None: no boxes)."""

    boxes: np.ndarray | None = None

    def __call__(self, aug_input: T.AugInput) -> T.TransformList:
        aug_input.boxes = None if self.boxes is None else self.boxes.copy()
        return super().__call__(aug_input)


class BoxAwareDatasetMapper(DatasetMapper):
    """detectron2's ``DatasetMapper`` whose augmentations also receive the image's boxes,
    for augmentations that draw from them (:class:`~vis_d2.data.ssd_augmentation.MinIoURandomCrop`),
    and that applies the authors' rule of that crop: the annotations whose box centre is not
    strictly inside a :class:`~vis_d2.data.ssd_augmentation.MinIoUCropTransform` are dropped
    (their number logged at DEBUG level). Everything else (reading, transforming,
    detectron2's own filtering of crowd and empty instances) is detectron2's.

    ``DatasetMapper.__call__`` builds ``AugInput(image, sem_seg=...)`` itself, so the boxes
    (those of the non-crowd annotations, XYXY_ABS pixels, in the annotations' order) reach
    it through the mapper's ``AugmentationList``, set just before detectron2's ``__call__``.

    From a config, the augmentations are :func:`vis_d2.data.transforms.build_image_augmentation`
    (``INPUT.FIXED_SIZE_*``, ``INPUT.SSD_AUGMENTATION``), preceded by detectron2's
    ``RandomCrop`` with ``INPUT.CROP.ENABLED`` as in detectron2's mapper.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # detectron2's, from a config or from arguments
        self.augmentations = _BoxesIntoAugInput(self.augmentations.augs)

    @classmethod
    def from_config(cls, cfg: CfgNode, is_train: bool = True) -> dict:
        """detectron2's arguments with the augmentations of ``build_image_augmentation``.

        Raises:
            ValueError: ``INPUT.CROP.ENABLED`` together with ``INPUT.SSD_AUGMENTATION.ENABLED``
                (two random crops), or a malformed key of ``build_image_augmentation``.
        """
        ret = super().from_config(cfg, is_train)
        augs = build_image_augmentation(cfg, is_train)
        if cfg.INPUT.CROP.ENABLED and is_train:
            if cfg.INPUT.SSD_AUGMENTATION.ENABLED:
                raise ValueError(
                    "INPUT.CROP.ENABLED and INPUT.SSD_AUGMENTATION.ENABLED both crop the "
                    "training images; enable one of them"
                )
            augs.insert(0, T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
        ret["augmentations"] = augs
        return ret

    def __call__(self, dataset_dict: dict) -> dict:
        """A detectron2 dataset dict → detectron2's mapper output (``image``: (C, H, W)
        tensor, ``instances`` in training), its augmentations given the boxes."""
        if "annotations" in dataset_dict:
            annos = [a for a in dataset_dict["annotations"] if a.get("iscrowd", 0) == 0]
            self.augmentations.boxes = _annotation_boxes(annos)
        try:
            return super().__call__(dataset_dict)
        finally:
            self.augmentations.boxes = None

    def _transform_annotations(
        self, dataset_dict: dict, transforms: T.TransformList, image_shape: tuple[int, int]
    ) -> None:
        """Drops the annotations whose box centre is not strictly inside a
        ``MinIoUCropTransform`` of ``transforms`` (centres taken just before that crop), then
        detectron2's ``_transform_annotations``."""
        annos = dataset_dict["annotations"]
        boxes = _annotation_boxes(annos).astype(np.float64)
        keep = np.ones(len(annos), dtype=bool)
        cropped = False
        for tfm in transforms.transforms:
            if isinstance(tfm, MinIoUCropTransform):
                cropped = True
                keep &= box_centers_inside(boxes, tfm.x0, tfm.y0, tfm.x0 + tfm.w, tfm.y0 + tfm.h)
            if len(boxes):
                boxes = tfm.apply_box(boxes)
        if cropped and not keep.all():
            logger.debug(
                f"[BoxAwareDatasetMapper] {dataset_dict.get('file_name')}: "
                f"{int((~keep).sum())} of {len(annos)} instances dropped, their box centre "
                "outside the crop"
            )
            dataset_dict["annotations"] = [a for a, k in zip(annos, keep, strict=True) if k]
        super()._transform_annotations(dataset_dict, transforms, image_shape)
