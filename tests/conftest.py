import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_python(*args: str, cwd: Path = REPO, timeout: float = 300, **kwargs):
    """Run the test interpreter in a fresh process; returns the CompletedProcess (text mode)."""
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, **kwargs
    )


@pytest.fixture
def python():
    return run_python
