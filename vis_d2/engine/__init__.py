from .checkpoint import CheckpointError, VISCheckpointer
from .defaults import VISTrainer
from .hooks import PeriodicCheckpointer
from .inference import inference_on_videos
from .lr_scheduler import build_lr_scheduler
from .optimizer import build_optimizer

__all__ = [
    "CheckpointError",
    "PeriodicCheckpointer",
    "VISCheckpointer",
    "VISTrainer",
    "build_lr_scheduler",
    "build_optimizer",
    "inference_on_videos",
]
