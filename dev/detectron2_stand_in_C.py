"""Stand-in for ``detectron2._C``, the compiled C++/CUDA extension of detectron2.

vis_d2 installs detectron2 from the PyPI sdist ``pb1-detectron2==0.6``, which ships no C++ sources.
This module takes the extension's place so that every pure-Python part of detectron2 imports.
It answers the environment queries that ``detectron2.utils.collect_env`` and
``detectron2.engine.default_setup`` make; every compiled-only op (rotated boxes, the extension's
deformable conv kernels, the fast COCO evaluator) raises ``AttributeError`` naming the op, so
``hasattr(_C, op)`` checks stay honest.
"""

IS_STAND_IN = True

_MISSING = (
    "detectron2._C.{name} is a compiled detectron2 op, and this detectron2 was installed without "
    "its C++/CUDA extension (vis_d2's default 'pypi' source). Install detectron2 with compiled ops "
    "to use it: `D2_SOURCE=git make test` (needs access to GitHub; CUDA for the GPU kernels)."
)


def get_compiler_version() -> str:
    return "none (detectron2 installed without its compiled extension)"


def get_cuda_version() -> str:
    return "none (detectron2 installed without its compiled extension)"


def has_cuda() -> bool:
    return False


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    raise AttributeError(_MISSING.format(name=name))
