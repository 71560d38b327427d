#!/usr/bin/env python3
"""Create or refresh the project environment ``.venv`` (``make test`` and ``make demo`` run it).

The heavy part, torch + torchvision + detectron2 + the pinned requirements (~5.5 GB), is built once
per machine into a *stack* environment under ``$VIS_D2_CACHE`` (default ``~/.cache/vis_d2``), keyed
by the hash of everything that decides its content (requirements.txt, the detectron2 installer
and its fixes, the detectron2 source, the Python version). ``.venv`` is a thin virtual environment
on top of it: its site-packages adds the stack's with one ``.pth`` line and holds only the editable
install of vis_d2. A fresh clone on a machine that already has the stack is set up in seconds and
nothing is copied; a second run with nothing changed installs nothing.

Environment: ``D2_SOURCE=pypi|git|preinstalled`` (see dev/install_detectron2.py), ``D2_GIT_URL``,
``D2_GIT_REF``, ``VIS_D2_CACHE``. Stdlib only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import install_detectron2 as d2inst

ROOT = Path(__file__).resolve().parent.parent
STACK_INPUTS = ("requirements.txt", "dev/install_detectron2.py", "dev/detectron2_stand_in_C.py")
VENV_INPUTS = ("setup.py",)
KEEP_STACKS = 2  # the current stack and the most recently used other one


def _digest(paths: tuple[str, ...], *extra: str) -> str:
    h = hashlib.sha256()
    for rel in paths:
        h.update(rel.encode() + b"\0" + (ROOT / rel).read_bytes() + b"\0")
    for item in extra:
        h.update(item.encode() + b"\0")
    return h.hexdigest()[:16]


def _run(cmd: list[str], **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    if subprocess.call([str(c) for c in cmd], **kwargs) != 0:
        sys.exit(f"setup_env: command failed: {' '.join(str(c) for c in cmd)}")


def stack_key(source: str, git_ref: str) -> str:
    return _digest(
        STACK_INPUTS, source, git_ref if source == "git" else "", sys.version, platform.machine()
    )


def build_stack(stack: Path, source: str) -> None:
    """Create the stack environment at ``stack``; ``stack/.complete`` marks a finished build."""
    shutil.rmtree(stack, ignore_errors=True)
    venv_cmd = [sys.executable, "-m", "venv", stack]
    if source == "preinstalled":
        venv_cmd.insert(3, "--system-site-packages")
    _run(venv_cmd)
    python = stack / "bin" / "python"
    _run([python, "-m", "pip", "install", "--quiet", "-r", ROOT / "requirements.txt"])
    _run([python, ROOT / "dev" / "install_detectron2.py", "--source", source])
    _run([python, "-m", "pip", "check"])
    (stack / ".complete").write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))


def prune_stacks(stacks: Path, current: Path) -> None:
    """Delete finished stacks beyond the current one and the most recently used other one."""
    others = sorted(
        (p for p in stacks.iterdir() if p.is_dir() and p != current and (p / ".complete").exists()),
        key=lambda p: (p / ".complete").stat().st_mtime,
        reverse=True,
    )
    for old in others[KEEP_STACKS - 1:]:
        print(f"setup_env: removing unused stack {old}")
        shutil.rmtree(old, ignore_errors=True)
        old.with_name(f"{old.name}.lock").unlink(missing_ok=True)


def ensure_stack(cache: Path, source: str, git_url: str, git_ref: str) -> Path:
    stacks = cache / "stacks"
    stacks.mkdir(parents=True, exist_ok=True)
    stack = stacks / stack_key(source, git_ref)
    with open(stacks / f"{stack.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per stack; others wait, then reuse it
        if not (stack / ".complete").exists():
            if source == "git":
                try:
                    d2inst.check_git_reachable(git_url, git_ref)
                except d2inst.InstallError as e:
                    sys.exit(f"setup_env: error: {e}")
            print(f"setup_env: building the stack {stack} (once per machine)", flush=True)
            start = time.time()
            build_stack(stack, source)
            print(f"setup_env: stack built in {time.time() - start:.0f} s")
            prune_stacks(stacks, stack)
        os.utime(stack / ".complete")
    return stack


def ensure_venv(venv: Path, stack: Path) -> None:
    marker = venv / "vis_d2-stack.txt"
    wanted = f"{stack}\n{_digest(VENV_INPUTS)}\n"
    if marker.is_file() and marker.read_text() == wanted:
        print(f"setup_env: {venv} is up to date (stack {stack.name})")
        return
    shutil.rmtree(venv, ignore_errors=True)
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    purelib = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True
    ).strip()
    stack_lib = sysconfig.get_path("purelib", vars={"base": str(stack), "platbase": str(stack)})
    # addsitedir (not a bare path line) so the stack's own .pth files are processed too
    Path(purelib, "_vis_d2_stack.pth").write_text(f"import site; site.addsitedir({stack_lib!r})\n")
    # pip, setuptools and the build come from the stack; only vis_d2's links land in .venv
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", ROOT])
    marker.write_text(wanted)
    print(f"setup_env: {venv} ready (stack {stack})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv")
    args = parser.parse_args()
    source = os.environ.get("D2_SOURCE", "pypi")
    if source not in ("pypi", "git", "preinstalled"):
        sys.exit(f"setup_env: D2_SOURCE must be pypi, git or preinstalled, not {source!r}")
    stack = ensure_stack(
        d2inst.default_cache(),
        source,
        os.environ.get("D2_GIT_URL", d2inst.GIT_URL),
        os.environ.get("D2_GIT_REF", d2inst.DEFAULT_GIT_REF),
    )
    ensure_venv(args.venv.absolute(), stack)


if __name__ == "__main__":
    main()
