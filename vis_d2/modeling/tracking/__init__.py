from .movement_tracker import MovementTracker

__all__ = ["MovementTracker"]
