"""Reading videos frame by frame (video files, frame folders, globs) and writing results safely.

Frames are BGR ``uint8`` arrays of shape (H, W, 3), decoded one at a time, so memory does not
grow with the video's length.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from detectron2.data.detection_utils import read_image

__all__ = [
    "IMAGE_EXTENSIONS",
    "FrameSource",
    "Mp4Writer",
    "StagedOutputs",
    "VideoIOError",
    "check_output",
    "ensure_directory",
    "open_frames",
    "video_frames",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_GLOB_CHARS = re.compile(r"[*?\[]")


class VideoIOError(RuntimeError):
    """An input that cannot be read or an output that cannot be written; the message names the
    path."""


def _natural_key(path: str) -> list:
    """Sort key that orders ``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


class FrameSource:
    """The frames of one video, decoded lazily while iterating.

    Iterating yields ``(label, frame)``: ``label`` names the frame in messages (its file, or
    ``"<video> frame <t>"``), ``frame`` is BGR uint8 (H, W, 3). Every frame must have the size
    of the first one, unless ``same_size`` is False (images for an image model). ``name`` is a
    short name for output files, ``fps`` the video file's frame
    rate (None for images), ``num_frames`` the frame count when known in advance (None for a
    video file whose container does not say), ``paths`` the files it reads.
    """

    def __init__(
        self,
        name: str,
        description: str,
        *,
        images: list[str] | None = None,
        video: str | None = None,
        fps: float | None = None,
        num_frames: int | None = None,
        same_size: bool = True,
    ):
        self.name = name
        self.description = description
        self.fps = fps
        self.num_frames = num_frames
        self._images = images
        self._video = video
        self.paths = list(images) if images is not None else [video]
        self.same_size = same_size

    @property
    def is_video(self) -> bool:
        """Whether the frames come from a video file (else from image files)."""
        return self._video is not None

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        frames = self._read_images() if self._images is not None else self._read_video()
        first_shape = None
        for label, frame in frames:
            if first_shape is None:
                first_shape = frame.shape
            elif self.same_size and frame.shape != first_shape:
                raise VideoIOError(
                    f"frame {label} is {frame.shape[1]}x{frame.shape[0]}, but the first frame of "
                    f"{self.description} is {first_shape[1]}x{first_shape[0]}"
                )
            yield label, frame

    def _read_images(self) -> Iterator[tuple[str, np.ndarray]]:
        for path in self._images:
            # decoded as the data mappers decode frames (PIL, EXIF orientation applied), which
            # also fails on a truncated file where cv2.imread returns a partly grey image
            try:
                frame = read_image(path, format="BGR")
            except FileNotFoundError:
                raise VideoIOError(f"cannot decode frame {path}: it does not exist") from None
            except OSError as e:  # PIL: not an image, truncated, unreadable
                raise VideoIOError(f"cannot decode frame {path}: {e}") from e
            yield path, np.ascontiguousarray(frame)

    def _read_video(self) -> Iterator[tuple[str, np.ndarray]]:
        capture = cv2.VideoCapture(self._video)
        try:
            if not capture.isOpened():
                raise VideoIOError(f"cannot open video {self._video}")
            t = 0
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                yield f"{self._video} frame {t}", frame
                t += 1
            if t == 0:
                raise VideoIOError(f"video {self._video} has no frames that can be decoded")
            if self.num_frames and t < self.num_frames:
                logger.warning(
                    f"{self._video}: decoded {t} frames, the container announced {self.num_frames}"
                )
        finally:
            capture.release()


def video_frames(video: dict) -> FrameSource:
    """The frames of a loaded dataset video dict (``video_id``, ``file_names``), in order."""
    vid = video["video_id"]
    return _image_sequence(list(video["file_names"]), str(vid), f"video {vid}")


def _image_sequence(
    paths: list[str], name: str, description: str, same_size: bool = True
) -> FrameSource:
    return FrameSource(
        name, description, images=paths, num_frames=len(paths), same_size=same_size
    )


def _list_directory(path: str) -> list[str]:
    try:
        entries = os.listdir(path)
    except OSError as e:
        raise VideoIOError(f"cannot read input directory {path}: {e.strerror}") from e
    files = [os.path.join(path, f) for f in entries if _is_image(f)]
    return sorted((f for f in files if os.path.isfile(f)), key=_natural_key)


def _probe_video(path: str) -> FrameSource:
    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise VideoIOError(f"cannot open video {path}: not a video file cv2 can decode")
        ok, _ = capture.read()
        if not ok:
            raise VideoIOError(f"video {path} has no frames that can be decoded")
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    return FrameSource(
        Path(path).stem,
        f"video {path}",
        video=path,
        fps=fps if fps and fps > 0 else None,
        num_frames=count if count > 0 else None,
    )


def open_frames(spec: str, same_size: bool = True) -> FrameSource:
    """A :class:`FrameSource` for ``spec``: a video file (anything cv2 can decode), an image
    file (a one-frame video), a folder of images or a glob of image files (both in natural
    order; of one size, unless ``same_size`` is False). Checks that the input exists, can be
    read and has at least one frame; a frame that cannot be decoded is reported when it is
    reached.

    Raises:
        VideoIOError: naming the path, when the input is missing, unreadable or empty.
    """
    if os.path.isdir(spec):
        frames = _list_directory(spec)
        if not frames:
            raise VideoIOError(
                f"input directory {spec} has no frames (no files ending in "
                f"{', '.join(IMAGE_EXTENSIONS)})"
            )
        name = Path(os.path.abspath(spec)).name
        return _image_sequence(frames, name, f"directory {spec}", same_size)
    if os.path.isfile(spec):
        if not os.access(spec, os.R_OK):
            raise VideoIOError(f"cannot read input {spec}: permission denied")
        if _is_image(spec):
            return _image_sequence([spec], Path(spec).stem, f"image {spec}", same_size)
        return _probe_video(spec)
    if _GLOB_CHARS.search(spec):
        matches = glob.glob(spec)
        frames = [f for f in matches if _is_image(f) and os.path.isfile(f)]
        frames.sort(key=_natural_key)
        if not frames:
            raise VideoIOError(
                f"input glob {spec} matches no image files ({len(matches)} matches in all)"
            )
        name = Path(os.path.abspath(frames[0])).parent.name
        return _image_sequence(frames, name, f"glob {spec}", same_size)
    raise VideoIOError(f"input {spec} does not exist")


def check_output(final: str | os.PathLike, inputs: list[str], *, overwrite: bool) -> Path:
    """Check that ``final`` (a file or folder to be written) can be written without touching
    any of ``inputs`` or anything the caller was not asked to replace: it must not be an input
    or hold one, may exist only with ``overwrite``, and its nearest existing ancestor must be
    a writable folder. Creates nothing.

    Raises:
        VideoIOError: naming the path and the problem.
    """
    final = Path(final)
    if final.exists():
        real = os.path.realpath(final)
        inside = real.rstrip(os.sep) + os.sep if final.is_dir() else None
        for path in inputs:
            input_real = os.path.realpath(path)
            if input_real == real or (inside is not None and input_real.startswith(inside)):
                raise VideoIOError(
                    f"output {final} would replace the input {path}; choose another --output"
                )
        if not overwrite:
            raise VideoIOError(f"output {final} exists; pass --overwrite to replace it")
    for parent in final.parents:
        if parent.exists():
            if not parent.is_dir():
                raise VideoIOError(f"cannot write to {final}: {parent} is not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise VideoIOError(f"cannot write to {parent}: permission denied")
            break
    return final


def ensure_directory(path: str | os.PathLike) -> Path:
    """Create the folder ``path`` (and its parents) if needed.

    Raises:
        VideoIOError: naming ``path`` when it cannot be created or written to.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:
        raise VideoIOError(f"cannot write to {path}: it exists and is not a directory") from e
    except OSError as e:
        raise VideoIOError(f"cannot create output directory {path}: {e.strerror}") from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise VideoIOError(f"cannot write to output directory {path}: permission denied")
    return path


class StagedOutputs:
    """Outputs written under temporary names beside their final paths.

    :meth:`commit` renames them into place (replacing older outputs of the same names);
    :meth:`discard`, which also runs when a ``with`` block is left by an exception, deletes
    them and the folders made for them, so a failed run leaves nothing behind.
    """

    def __init__(self):
        self._staged: list[tuple[Path, Path]] = []
        self._made: list[Path] = []  # folders created for the outputs, outermost first

    def _temporary(self, final: Path) -> Path:
        missing = [p for p in (final.parent, *final.parent.parents) if not p.exists()]
        ensure_directory(final.parent)
        self._made.extend(reversed(missing))
        tmp = final.parent / f".{final.stem}.partial-{uuid.uuid4().hex[:8]}{final.suffix}"
        self._staged.append((tmp, final))
        return tmp

    def file(self, final: str | os.PathLike) -> Path:
        """A temporary path (same folder and suffix) to write ``final`` to."""
        return self._temporary(Path(final))

    def directory(self, final: str | os.PathLike) -> Path:
        """A new, empty temporary folder beside ``final`` to fill with its contents."""
        tmp = self._temporary(Path(final))
        try:
            tmp.mkdir()
        except OSError as e:
            raise VideoIOError(f"cannot create {tmp}: {e.strerror}") from e
        return tmp

    def commit(self) -> list[Path]:
        """Move everything into place; returns the final paths."""
        for tmp, final in self._staged:
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)
            os.replace(tmp, final)
        done = [final for _, final in self._staged]
        self._staged, self._made = [], []
        return done

    def discard(self) -> None:
        """Delete whatever was staged and not committed, and the folders made for it."""
        for tmp, _ in self._staged:
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        for folder in reversed(self._made):
            try:
                folder.rmdir()
            except OSError:  # no longer empty: something else writes there too
                break
        self._staged, self._made = [], []

    def __enter__(self) -> StagedOutputs:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()


class Mp4Writer:
    """Writes BGR uint8 (H, W, 3) frames, all of one size, to an mp4 file (codec mp4v) at
    ``fps`` frames per second. The file is opened with the first frame's size."""

    def __init__(self, path: str | os.PathLike, fps: float):
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = str(path)
        self.fps = float(fps)
        self.size: tuple[int, int] | None = None  # (width, height)
        self.num_frames = 0
        self._writer: cv2.VideoWriter | None = None

    def write(self, frame: np.ndarray) -> None:
        height, width = frame.shape[:2]
        if self._writer is None:
            self._writer = cv2.VideoWriter(
                self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height)
            )
            if not self._writer.isOpened():
                raise VideoIOError(f"cannot write video {self.path} (cv2.VideoWriter, mp4v)")
            self.size = (width, height)
        elif (width, height) != self.size:
            raise ValueError(
                f"frame is {width}x{height}, the video {self.path} is {self.size[0]}x{self.size[1]}"
            )
        self._writer.write(np.ascontiguousarray(frame))
        self.num_frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
