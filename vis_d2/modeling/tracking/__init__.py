from .build import TRACKER_REGISTRY, Tracker, build_tracker
from .embedding_tracker import EmbeddingTracker
from .memory_tracker import MemoryTracker
from .movement_tracker import MovementTracker

__all__ = [
    "TRACKER_REGISTRY",
    "EmbeddingTracker",
    "MemoryTracker",
    "MovementTracker",
    "Tracker",
    "build_tracker",
]
