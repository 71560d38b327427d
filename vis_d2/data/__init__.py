"""Video data: YouTube-VIS/OVIS loading and registration, mappers, loaders, the synthetic set."""

from . import builtin  # noqa: F401  registers the named splits
from .build import build_video_test_loader, build_video_train_loader, get_video_dataset_dicts
from .builtin import BUILTIN_SPLITS, class_metadata
from .dataset_mapper import (
    VideoFrames,
    YTVISDatasetMapper,
    YTVISTestMapper,
    sample_reference_frame,
)
from .ytvis import DatasetFormatError, load_ytvis_json, register_ytvis_instances

__all__ = [
    "BUILTIN_SPLITS",
    "DatasetFormatError",
    "VideoFrames",
    "YTVISDatasetMapper",
    "YTVISTestMapper",
    "build_video_test_loader",
    "build_video_train_loader",
    "class_metadata",
    "get_video_dataset_dicts",
    "load_ytvis_json",
    "register_ytvis_instances",
    "sample_reference_frame",
]
