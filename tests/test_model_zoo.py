"""vis_d2.model_zoo: every shipped config by name, from a source checkout and from an installed
(non-editable) package."""

import shutil
import subprocess
import sys

import pytest
from conftest import REPO, run_python

from vis_d2 import model_zoo


def _project_name(path):
    """projects/<Method>/configs/<rest> → "<Method>/<rest>"."""
    method, _, *rest = path.relative_to(REPO / "projects").parts
    return "/".join([method, *rest])


SHIPPED = sorted(
    [str(p.relative_to(REPO / "configs")) for p in (REPO / "configs").rglob("*.yaml")]
    + [_project_name(p) for p in (REPO / "projects").glob("*/configs/**/*.yaml")]
)


def test_every_shipped_config_is_listed_and_loads():
    assert model_zoo.list_configs() == SHIPPED
    for name in SHIPPED:
        cfg = model_zoo.get_config(name)
        assert cfg.MODEL.META_ARCHITECTURE != "GeneralizedRCNN", name  # detectron2's default


def test_an_unknown_name_lists_the_configs():
    with pytest.raises(FileNotFoundError, match="not a config of the vis_d2 model zoo; .*R50"):
        model_zoo.get_config_file("SGNet_R500.yaml")


def test_an_installed_package_carries_the_configs(tmp_path):
    """pip install (not editable) of a copy of the sources into a folder of its own; that copy
    finds every config in itself, not in this checkout."""
    source, site = tmp_path / "source", tmp_path / "site"
    # without the packages' links to the config folders, which setup.py makes
    ignore = shutil.ignore_patterns("__pycache__", "configs")
    shutil.copytree(REPO / "vis_d2", source / "vis_d2", ignore=ignore)
    shutil.copytree(REPO / "configs", source / "configs")
    for project in (REPO / "projects").iterdir():
        for package in (p for p in project.iterdir() if (p / "__init__.py").is_file()):
            shutil.copytree(
                package, source / "projects" / project.name / package.name, ignore=ignore
            )
        shutil.copytree(project / "configs", source / "projects" / project.name / "configs")
    shutil.copy(REPO / "setup.py", source)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    probe = (
        f"import sys; sys.path.insert(0, {str(site)!r})\n"
        "from vis_d2 import model_zoo\n"
        "print(model_zoo.__file__)\n"
        "print(model_zoo.get_config_file('SGNet_R50.yaml'))\n"
        "print(model_zoo.get_config('synthetic/SGNet_R18_synthetic.yaml').MODEL.RESNETS.DEPTH)\n"
        "print(model_zoo.get_config_file('SipMaskVIS/SipMaskVIS_R50.yaml'))\n"
        "print('|'.join(model_zoo.list_configs()))\n"
    )
    proc = run_python("-c", probe, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    module, config, depth, project, names = proc.stdout.strip().splitlines()[-5:]
    assert module.startswith(str(site)) and config.startswith(str(site))
    assert project.startswith(str(site)), project
    assert depth == "18" and names.split("|") == SHIPPED
