from .defaults import add_fcos_config, add_sgnet_config, add_vis_config

__all__ = ["add_fcos_config", "add_sgnet_config", "add_vis_config"]
