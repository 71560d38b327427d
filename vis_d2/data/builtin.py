"""Named splits under ``$DETECTRON2_DATASETS`` (default ``./datasets``), registered on import.

Layout expected (the archives' own layout), with S in train, valid, test::

    ytvis_2019/S/JPEGImages/<video>/<frame>.jpg    ytvis_2019/S.json
    ytvis_2021/S/JPEGImages/<video>/<frame>.jpg    ytvis_2021/S.json
    ovis/S/<video>/<frame>.jpg                     ovis/annotations/annotations_S.json
    synthetic_vis/S/JPEGImages/...                 synthetic_vis/S.json (train and valid only)

and the synthetic set's frames as COCO instances sets (``python -m vis_d2.data.synthetic
--coco``), ``synthetic_coco_train``/``_val``, read by detectron2's ``register_coco_instances``::

    synthetic_vis/S/JPEGImages/...                 synthetic_vis/S_coco.json
"""

from __future__ import annotations

import os

from detectron2.data import DatasetCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.utils.colormap import colormap

from .synthetic import CLASS_NAMES as SYNTHETIC_CLASSES
from .ytvis import register_ytvis_instances

# category names in dataset-id order (ids 1..K), as in the released json files
YTVIS_2019_CLASSES = (
    "person",
    "giant_panda",
    "lizard",
    "parrot",
    "skateboard",
    "sedan",
    "ape",
    "dog",
    "snake",
    "monkey",
    "hand",
    "rabbit",
    "duck",
    "cat",
    "cow",
    "fish",
    "train",
    "horse",
    "turtle",
    "bear",
    "motorbike",
    "giraffe",
    "leopard",
    "fox",
    "deer",
    "owl",
    "surfboard",
    "airplane",
    "truck",
    "zebra",
    "tiger",
    "elephant",
    "snowboard",
    "boat",
    "shark",
    "mouse",
    "frog",
    "eagle",
    "earless_seal",
    "tennis_racket",
)
YTVIS_2021_CLASSES = (
    "airplane",
    "bear",
    "bird",
    "boat",
    "car",
    "cat",
    "cow",
    "deer",
    "dog",
    "duck",
    "earless_seal",
    "elephant",
    "fish",
    "flying_disc",
    "fox",
    "frog",
    "giant_panda",
    "giraffe",
    "horse",
    "leopard",
    "lizard",
    "monkey",
    "motorbike",
    "mouse",
    "parrot",
    "person",
    "rabbit",
    "shark",
    "skateboard",
    "snake",
    "snowboard",
    "squirrel",
    "surfboard",
    "tennis_racket",
    "tiger",
    "train",
    "truck",
    "turtle",
    "whale",
    "zebra",
)
OVIS_CLASSES = (
    "Person",
    "Bird",
    "Cat",
    "Dog",
    "Horse",
    "Sheep",
    "Cow",
    "Elephant",
    "Bear",
    "Zebra",
    "Giraffe",
    "Poultry",
    "Giant_panda",
    "Lizard",
    "Parrot",
    "Monkey",
    "Rabbit",
    "Tiger",
    "Fish",
    "Turtle",
    "Bicycle",
    "Motorcycle",
    "Airplane",
    "Boat",
    "Vehical",
)

_SPLITS = {"train": "train", "val": "valid", "test": "test"}


def class_metadata(class_names: tuple[str, ...]) -> dict:
    """Metadata for classes with dataset ids 1..K: names, id map and stable per-class colours."""
    palette = colormap(rgb=True, maximum=255).astype(int).tolist()
    return {
        "thing_classes": list(class_names),
        "thing_dataset_id_to_contiguous_id": {i + 1: i for i in range(len(class_names))},
        "thing_colors": [palette[i % len(palette)] for i in range(len(class_names))],
    }


def _builtin_splits() -> dict[str, tuple[tuple[str, ...], str, str]]:
    """name -> (classes, image root, json file), paths relative to the data sets root."""
    splits = {}
    for year, classes in (("2019", YTVIS_2019_CLASSES), ("2021", YTVIS_2021_CLASSES)):
        for split, folder in _SPLITS.items():
            splits[f"ytvis_{year}_{split}"] = (
                classes,
                f"ytvis_{year}/{folder}/JPEGImages",
                f"ytvis_{year}/{folder}.json",
            )
    for split, folder in _SPLITS.items():
        splits[f"ovis_{split}"] = (
            OVIS_CLASSES,
            f"ovis/{folder}",
            f"ovis/annotations/annotations_{folder}.json",
        )
    for split in ("train", "val"):
        folder = _SPLITS[split]
        splits[f"synthetic_vis_{split}"] = (
            SYNTHETIC_CLASSES,
            f"synthetic_vis/{folder}/JPEGImages",
            f"synthetic_vis/{folder}.json",
        )
    return splits


BUILTIN_SPLITS = _builtin_splits()


# the image sets: name -> (classes, image root, COCO json), paths relative to the root
BUILTIN_IMAGE_SPLITS = {
    f"synthetic_coco_{split}": (
        SYNTHETIC_CLASSES,
        f"synthetic_vis/{_SPLITS[split]}/JPEGImages",
        f"synthetic_vis/{_SPLITS[split]}_coco.json",
    )
    for split in ("train", "val")
}


def register_all(root: str) -> None:
    """Register every builtin split under ``root`` (existing registrations are left alone)."""
    for name, (classes, image_root, json_file) in BUILTIN_SPLITS.items():
        if name in DatasetCatalog.list():
            continue
        register_ytvis_instances(
            name,
            class_metadata(classes),
            os.path.join(root, json_file),
            os.path.join(root, image_root),
        )
    for name, (classes, image_root, json_file) in BUILTIN_IMAGE_SPLITS.items():
        if name not in DatasetCatalog.list():
            register_coco_instances(
                name,
                class_metadata(classes),
                os.path.join(root, json_file),
                os.path.join(root, image_root),
            )


def datasets_root() -> str:
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


register_all(datasets_root())
