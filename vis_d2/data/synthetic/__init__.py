"""Synthetic video instance segmentation data in the YouTube-VIS 2019 on-disk format.

Every video shows 1-6 shapes (classes: ``CLASS_NAMES``) with textures (solid, stripes, checker,
noise) over a textured, slowly panning background. A shape's main colour is drawn around its
class's hue (``CLASS_HUES``, +-0.05), its second colour from any hue, so class is told by outline
and by colour family, as real categories have characteristic appearance. Shapes move with
acceleration, bounce off the frame walls or enter and leave the frame, change scale, rotate and
occlude each other (fixed z-order per video). Ground truth is the *visible* mask of each shape:
what the shapes in front of it cover is excluded, and a frame where less than
``MIN_VISIBLE_AREA`` pixels are visible is ``null``.

Layout written under ``out_dir``::

    train/JPEGImages/<video>/00000.jpg, ...    train.json
    valid/JPEGImages/<video>/00000.jpg, ...    valid.json
    train_coco.json, valid_coco.json           (with ``--coco``: the frames as COCO images)

Command line: ``python -m vis_d2.data.synthetic --out DIR --videos N --frames T --seed S``.
The output depends only on the arguments (not on ``workers``): every video draws from its own
``numpy.random.default_rng((seed, split, index))`` stream.

Modules: ``shapes`` (outlines, textures, backgrounds), ``motion`` (object trajectories),
``video`` (rendering one video and its visible masks), ``ytvis_json`` (a split's json),
``coco_json`` (a split's frames as a COCO instances json),
``dataset`` (``generate``: both splits, in parallel), ``cli`` (``main``).
"""

from .cli import main
from .coco_json import coco_from_ytvis, write_coco_json
from .dataset import generate
from .shapes import CLASS_HUES, CLASS_NAMES
from .video import MIN_VISIBLE_AREA

__all__ = [
    "CLASS_HUES",
    "CLASS_NAMES",
    "MIN_VISIBLE_AREA",
    "coco_from_ytvis",
    "generate",
    "main",
    "write_coco_json",
]
