"""YouTube-VIS evaluation: official-equal scoring and the detectron2 evaluator."""

from .ytvis_eval import STAT_NAMES, YTVISEvalResult, evaluate_ytvis
from .ytvis_evaluation import YTVISEvaluator, frames_to_tracks

__all__ = ["STAT_NAMES", "YTVISEvalResult", "YTVISEvaluator", "evaluate_ytvis", "frames_to_tracks"]
