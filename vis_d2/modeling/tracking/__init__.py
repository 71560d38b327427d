from .build import TRACKER_REGISTRY, build_tracker
from .movement_tracker import MovementTracker

__all__ = ["TRACKER_REGISTRY", "MovementTracker", "build_tracker"]
