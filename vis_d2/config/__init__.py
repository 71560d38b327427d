from .defaults import add_fcos_config, add_vis_config, get_cfg

__all__ = ["add_fcos_config", "add_vis_config", "get_cfg"]
