"""vis_d2: one-stage video instance segmentation on Detectron2."""

import shutil
from pathlib import Path

from setuptools import find_packages, setup


def model_zoo_configs() -> list[str]:
    """Put configs/ into the package as vis_d2/model_zoo/configs (a link in a source checkout,
    so that edits show at once; a copy where links cannot be made) and list its files."""
    source = Path(__file__).resolve().parent / "configs"
    destination = source.parent / "vis_d2" / "model_zoo" / "configs"
    if destination.is_symlink() or destination.is_file():
        destination.unlink()
    elif destination.is_dir():
        shutil.rmtree(destination)
    try:
        destination.symlink_to(source, target_is_directory=True)
    except OSError:
        shutil.copytree(source, destination)
    return [str(p.relative_to(destination.parent)) for p in destination.rglob("*.yaml")]


setup(
    name="vis_d2",
    version="0.1.0",
    description="One-stage video instance segmentation (SG-Net, SipMask-VIS, STMask) on Detectron2",
    packages=find_packages(include=("vis_d2", "vis_d2.*")),
    package_data={"vis_d2.model_zoo": model_zoo_configs()},
    python_requires=">=3.10",
    # the exact pins live in requirements.txt; detectron2 comes from tools/install_detectron2.py
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
