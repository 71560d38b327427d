"""Keeping a long video's memory flat under glibc's allocator.

The frames, masks and feature maps of a video are freed and allocated anew every frame. Under
glibc (whose mmap threshold rises as large blocks are freed, so that later ones come from the
heap) the freed pages stay resident, so the resident size grows with the video. Handing the
heap's free pages back every few frames (``malloc_trim``) keeps it flat; fixing the mmap
threshold does too, but makes every frame's large blocks fresh mmaps, which costs frame time
(the README's long-video figures).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable

__all__ = ["TRIM_EVERY", "trim_heap"]

# frames between two trims: a trim costs about a frame's worth of page faults afterwards
TRIM_EVERY = 8


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return trim


def trim_heap() -> bool:
    """Return the C heap's free pages to the system; False where the C library is not glibc
    (nothing to do)."""
    trim = _malloc_trim()
    return trim is not None and trim(0) >= 0
