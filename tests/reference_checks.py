"""What the end-to-end reference tests share: the tolerance check of our arrays against a
fixture's, and the fixture's checkpoint regenerated and converted as a user converts it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RTOL = 1e-4


def assert_close(ours, theirs, what: str, rtol: float = RTOL) -> None:
    """Relative ``rtol``, against the largest magnitude of the reference (sums can cancel)."""
    theirs = np.asarray(theirs, dtype=np.float64)
    ours = np.asarray(ours, dtype=np.float64)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != {theirs.shape}"
    scale = max(float(np.abs(theirs).max(initial=0.0)), 1e-12)
    err = float(np.abs(ours - theirs).max(initial=0.0)) / scale
    assert err <= rtol, f"{what}: relative error {err:.2e} > {rtol}"


def assert_close_summary(ref: ModuleType, t: torch.Tensor, fixture, key: str) -> None:
    """Each part of ``ref.summarise(t)`` against the fixture's ``<key>_<part>``."""
    for part, value in ref.summarise(t).items():
        assert_close(value, fixture[f"{key}_{part}"], f"{key} ({part})")


def converted_checkpoint(ref: ModuleType, fixture, config: Path, folder: Path) -> Path:
    """The fixture's checkpoint regenerated in the authors' format by ``ref.checkpoint`` (its
    checksum checked) and converted with ``tools/convert_weights.py`` and ``config``; returns
    the converted file in ``folder``."""
    keys = [str(k) for k in fixture["ckpt_keys"]]
    shapes = [tuple(int(d) for d in s.split(",") if d) for s in fixture["ckpt_shapes"]]
    ckpt = ref.checkpoint(keys, shapes)
    assert ref.checksum(ckpt["state_dict"]) == str(fixture["ckpt_sha256"]), (
        f"the regenerated checkpoint differs from the fixture's: {ref.__name__}.py changed "
        "since its dev/reference script wrote it"
    )
    source, target = folder / "authors.pth", folder / "converted.pth"
    torch.save(ckpt, source)
    done = subprocess.run(
        [sys.executable, str(REPO / "tools/convert_weights.py"), "--config-file", str(config),
         "--input", str(source), "--output", str(target)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, f"convert_weights.py failed:\n{done.stdout}{done.stderr}"
    return target
