"""vis_d2: one-stage video instance segmentation on Detectron2."""

import shutil
from pathlib import Path

from setuptools import find_packages, setup


def link_configs(source: Path, destination: Path) -> list[str]:
    """Put the config folder ``source`` into a package as ``destination`` (a link in a source
    checkout, so that edits show at once; a copy where links cannot be made) and list its
    files relative to the package."""
    if destination.is_symlink() or destination.is_file():
        destination.unlink()
    elif destination.is_dir():
        shutil.rmtree(destination)
    try:
        destination.symlink_to(source, target_is_directory=True)
    except OSError:
        shutil.copytree(source, destination)
    return [str(p.relative_to(destination.parent)) for p in destination.rglob("*.yaml")]


ROOT = Path(__file__).resolve().parent
# the methods built on vis_d2, projects/<Method>/ with a package and a configs/ folder:
# installed with vis_d2; model_zoo finds their configs (as "<Method>/<name>") through the
# entry points below
PROJECTS = {"SipMask": "sipmask", "SipMaskVIS": "sipmask_vis", "STMask": "stmask"}
# every method's add_<method>_config, SG-Net's included: get_cfg() adds the keys of each
METHOD_CONFIG_ADDERS = {
    "sgnet": "vis_d2.modeling.sgnet.config:add_sgnet_config",
    "sipmask": "sipmask.config:add_sipmask_config",
    "sipmask_vis": "sipmask_vis.config:add_sipmask_vis_config",
    "stmask": "stmask.config:add_stmask_config",
}

package_dir = {pkg: f"projects/{name}/{pkg}" for name, pkg in PROJECTS.items()}
package_data = {
    "vis_d2.model_zoo": link_configs(ROOT / "configs", ROOT / "vis_d2" / "model_zoo" / "configs"),
    "vis_d2.benchmark": ["speed_goals.yaml"],
}
for name, pkg in PROJECTS.items():
    project = ROOT / "projects" / name
    package_data[pkg] = link_configs(project / "configs", project / pkg / "configs")

setup(
    name="vis_d2",
    version="0.1.0",
    description=(
        "One-stage video instance segmentation (SG-Net, SipMask-VIS, STMask) and SipMask for "
        "images on Detectron2"
    ),
    packages=find_packages(include=("vis_d2", "vis_d2.*")) + list(package_dir),
    package_dir=package_dir,
    package_data=package_data,
    entry_points={
        "vis_d2.method_configs": [f"{k} = {v}" for k, v in METHOD_CONFIG_ADDERS.items()],
        "vis_d2.model_zoo": [f"{name} = {pkg}" for name, pkg in PROJECTS.items()],
    },
    python_requires=">=3.10",
    # the exact pins live in requirements.txt; detectron2 comes from dev/install_detectron2.py
    install_requires=[
        "detectron2>=0.6",
        "torch>=2.0",
        "torchvision",
        "fvcore",
        "iopath",
        "numpy",
        "opencv-python-headless",
        "pycocotools>=2.0.2",
        "tqdm",
        "tensorboard",
        "matplotlib",
        "shapely",
    ],
)
