from .defaults import add_vis_config

__all__ = ["add_vis_config"]
