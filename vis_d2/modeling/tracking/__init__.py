from .build import TRACKER_REGISTRY, Tracker, build_tracker
from .embedding_tracker import EmbeddingTracker
from .movement_tracker import MovementTracker

__all__ = ["TRACKER_REGISTRY", "EmbeddingTracker", "MovementTracker", "Tracker", "build_tracker"]
