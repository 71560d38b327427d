from .defaults import VISTrainer
from .inference import inference_on_videos
from .lr_scheduler import build_lr_scheduler

__all__ = ["VISTrainer", "build_lr_scheduler", "inference_on_videos"]
