"""Process safety for training launches: worker processes that end with their launcher and
leave their process group cleanly, and an OUTPUT_DIR that one training at a time may write."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

import torch.distributed as dist
from detectron2.utils import comm

__all__ = ["OutputDirInUseError", "close_process_group", "exit_with_parent", "hold_output_dir"]

logger = logging.getLogger(__name__)

LOCK_NAME = "training.lock"
_PR_SET_PDEATHSIG = 1  # prctl(2)


class OutputDirInUseError(RuntimeError):
    """Another live training holds the OUTPUT_DIR; the message names it and its process."""


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGKILL)


def exit_with_parent() -> None:
    """In a worker that detectron2's ``launch`` started (a multiprocessing child), make the
    worker die with its launcher: a launcher killed by SIGKILL cannot stop its workers, which
    would otherwise go on training (and writing checkpoints) on their own. Does nothing in a
    process that is not a multiprocessing child.

    On Linux the kernel sends the worker SIGKILL when the launcher ends (``PR_SET_PDEATHSIG``);
    elsewhere a thread polls the parent id once a second.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    armed = False
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent.pid,), daemon=True).start()
    if os.getppid() != parent.pid:  # the launcher ended before the signal was armed
        os.kill(os.getpid(), signal.SIGKILL)


def close_process_group() -> None:
    """End a worker's distributed run: wait for every rank, then destroy the process groups.
    A group left to the interpreter's exit can abort a worker after its work is done
    ("terminate called without an active exception" from a gloo thread, SIGABRT).
    Does nothing in a process without a process group."""
    if dist.is_available() and dist.is_initialized():
        comm.synchronize()
        dist.destroy_process_group()


@contextlib.contextmanager
def hold_output_dir(output_dir: str) -> Iterator[None]:
    """Hold ``output_dir`` for one training: an exclusive lock on ``output_dir/training.lock``
    (which names the holding process), released when the block ends or the process dies.

    Raises:
        OutputDirInUseError: a live process holds the lock already.
    """
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            raise OutputDirInUseError(
                f"OUTPUT_DIR {output_dir} is in use by a training that is still running "
                f"(process {holder}, {path}): wait for it to end, stop it, or choose another "
                "OUTPUT_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays, naming the last holder
