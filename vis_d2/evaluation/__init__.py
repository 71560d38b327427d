"""YouTube-VIS evaluation: official-equal scoring and the detectron2 evaluator."""

from .ytvis_eval import STAT_NAMES, YTVISEvalResult, evaluate_ytvis
from .ytvis_evaluation import TrackResults, YTVISEvaluator

__all__ = [
    "STAT_NAMES",
    "TrackResults",
    "YTVISEvalResult",
    "YTVISEvaluator",
    "evaluate_ytvis",
]
