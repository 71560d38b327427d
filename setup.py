"""vis_d2: one-stage video instance segmentation on Detectron2."""

from setuptools import find_packages, setup

setup(
    name="vis_d2",
    version="0.1.0",
    description="One-stage video instance segmentation (SG-Net, SipMask-VIS, STMask) on Detectron2",
    packages=find_packages(include=("vis_d2", "vis_d2.*")),
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
