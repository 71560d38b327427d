"""Video data: YouTube-VIS/OVIS loading and registration, mappers, loaders, the synthetic set;
the image mapper and augmentation of image models."""

from . import builtin  # noqa: F401  registers the named splits
from .build import (
    build_image_test_loader,
    build_image_train_loader,
    build_video_test_loader,
    build_video_train_loader,
    get_video_dataset_dicts,
)
from .builtin import BUILTIN_SPLITS, class_metadata
from .dataset_mapper import (
    BoxAwareDatasetMapper,
    VideoFrames,
    YTVISDatasetMapper,
    YTVISTestMapper,
    frame_instances,
    frame_transforms,
    sample_reference_frame,
)
from .transforms import RESIZE_BACKENDS, build_frame_augmentation, build_image_augmentation
from .ytvis import (
    DatasetFormatError,
    load_categories,
    load_ytvis_json,
    register_config_splits,
    register_ytvis_instances,
    register_ytvis_splits,
)

__all__ = [
    "BUILTIN_SPLITS",
    "BoxAwareDatasetMapper",
    "RESIZE_BACKENDS",
    "DatasetFormatError",
    "VideoFrames",
    "YTVISDatasetMapper",
    "YTVISTestMapper",
    "build_frame_augmentation",
    "build_image_augmentation",
    "build_image_test_loader",
    "build_image_train_loader",
    "build_video_test_loader",
    "build_video_train_loader",
    "class_metadata",
    "frame_instances",
    "frame_transforms",
    "get_video_dataset_dicts",
    "load_categories",
    "load_ytvis_json",
    "register_config_splits",
    "register_ytvis_instances",
    "register_ytvis_splits",
    "sample_reference_frame",
]
