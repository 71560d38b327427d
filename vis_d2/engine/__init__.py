from .checkpoint import CheckpointError, VISCheckpointer
from .defaults import ImageTrainer, VISTrainer, trainer_class
from .hooks import PeriodicCheckpointer
from .inference import inference_on_videos
from .launch import OutputDirInUseError, close_process_group, exit_with_parent, hold_output_dir
from .lr_scheduler import build_lr_scheduler
from .optimizer import build_optimizer

__all__ = [
    "CheckpointError",
    "ImageTrainer",
    "OutputDirInUseError",
    "PeriodicCheckpointer",
    "VISCheckpointer",
    "VISTrainer",
    "build_lr_scheduler",
    "build_optimizer",
    "close_process_group",
    "exit_with_parent",
    "hold_output_dir",
    "inference_on_videos",
    "trainer_class",
]
