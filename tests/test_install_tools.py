"""The set-up tools refuse bad input clearly: a tampered sdist, an unknown source, no GitHub."""

import os
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "dev"))
import install_detectron2  # noqa: E402
from install_detectron2 import Fix, InstallError, apply_fixes, verify_sdist  # noqa: E402


def test_tampered_sdist_is_refused(tmp_path, python):
    fake = tmp_path / install_detectron2.SDIST_FILE
    fake.write_bytes(b"not the release")
    out = python(str(REPO / "dev" / "install_detectron2.py"), "--sdist", str(fake))
    assert out.returncode == 1
    assert "refusing" in out.stderr and str(fake) in out.stderr and "sha256" in out.stderr
    with pytest.raises(InstallError, match="sha256"):
        verify_sdist(fake)


def test_verify_sdist_accepts_matching_hash(tmp_path):
    path = tmp_path / "x.tar.gz"
    path.write_bytes(b"abc")
    verify_sdist(path, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    with pytest.raises(InstallError, match="does not exist"):
        verify_sdist(tmp_path / "missing.tar.gz")


def test_strict_fix_requires_exactly_one_match(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\nx = 1\n")
    fix = Fix("k", "a.py", "x = 1\n", "x = 2\n", "why")
    with pytest.raises(InstallError, match="found it 2 times"):
        apply_fixes(tmp_path, (fix,), strict=True)
    assert apply_fixes(tmp_path, (fix,), strict=False)[0].lstrip().startswith("n/a")
    (tmp_path / "a.py").write_text("y = 0\nx = 1\n")
    apply_fixes(tmp_path, (fix,), strict=True)
    assert (tmp_path / "a.py").read_text() == "y = 0\nx = 2\n"
    assert install_detectron2.check_fixes(tmp_path, (fix,)) == {"k": "applied"}


def test_git_source_fails_fast_without_access(tmp_path, python):
    env = {**os.environ, "D2_SOURCE": "git", "D2_GIT_URL": "https://unreachable.invalid/d2.git",
           "VIS_D2_CACHE": str(tmp_path / "cache")}
    start = time.time()
    out = python(str(REPO / "dev" / "setup_env.py"), "--venv", str(tmp_path / "venv"), env=env,
                 timeout=120)
    assert out.returncode != 0
    assert "cannot reach https://unreachable.invalid/d2.git" in out.stderr
    assert "D2_SOURCE=pypi" in out.stderr  # says what to do instead
    assert time.time() - start < 60
    assert not (tmp_path / "venv").exists()


def test_unknown_source_is_refused(tmp_path, python):
    env = {**os.environ, "D2_SOURCE": "conda", "VIS_D2_CACHE": str(tmp_path)}
    out = python(str(REPO / "dev" / "setup_env.py"), "--venv", str(tmp_path / "venv"), env=env)
    assert out.returncode != 0 and "D2_SOURCE must be pypi, git or preinstalled" in out.stderr
