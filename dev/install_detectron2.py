#!/usr/bin/env python
"""Install detectron2 into the running interpreter's environment, from a selectable source.

Sources (``--source`` or ``$D2_SOURCE``):

* ``pypi`` (default): the PyPI sdist ``pb1-detectron2==0.6`` (the Python code of upstream tag
  v0.6), verified by sha256, built as the distribution ``detectron2`` without its compiled
  extension, with a ``detectron2._C`` stand-in and the compatibility fixes in ``FIXES`` applied
  before the build, so ``pip show``/``pip uninstall detectron2`` work and the files match RECORD.
* ``git``: upstream detectron2 from GitHub, built with its compiled C++/CUDA ops; the fixes that
  still apply to that revision are applied to the checkout before the build.
* ``preinstalled``: use the detectron2 the environment already has; nothing is changed, the fixes
  are only reported (``--check``).

Stdlib only: it runs before anything else is installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST_NAME = "pb1-detectron2"
SDIST_VERSION = "0.6"
SDIST_FILE = f"{SDIST_NAME}-{SDIST_VERSION}.tar.gz"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
GIT_URL = "https://github.com/facebookresearch/detectron2.git"
DEFAULT_GIT_REF = "main"
STAND_IN = Path(__file__).with_name("detectron2_stand_in_C.py")


def default_cache() -> Path:
    """Machine-wide cache of vis_d2's environments and downloads (``$VIS_D2_CACHE``)."""
    xdg = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(os.environ.get("VIS_D2_CACHE", xdg / "vis_d2"))


class InstallError(RuntimeError):
    """A failure with a message meant for the user."""


@dataclasses.dataclass(frozen=True)
class Fix:
    """One exact text replacement in a detectron2 source file (path relative to the source root)."""

    key: str
    path: str
    old: str
    new: str
    reason: str


# Applied to the sdist's setup.py: build the pure-Python package under detectron2's own name.
SETUP_FIXES = (
    Fix(
        "dist-name",
        "setup.py",
        'name="pb1-detectron2",',
        'name="detectron2",',
        "install as the distribution 'detectron2' so importlib.metadata and other packages' "
        "requirements see it",
    ),
    Fix(
        "no-extension",
        "setup.py",
        "    ext_modules=get_extensions(),\n"
        '    cmdclass={"build_ext": torch.utils.cpp_extension.BuildExtension},\n',
        "",
        "the sdist ships no C++ sources; detectron2/_C.py (the stand-in) takes the extension's place",
    ),
    Fix(
        "model-zoo-configs",
        "setup.py",
        '    config_paths = glob.glob("configs/**/*.yaml", recursive=True) + glob.glob(\n'
        '        "configs/**/*.py", recursive=True\n'
        "    )\n",
        '    zoo = path.join("detectron2", "model_zoo")\n'
        '    config_paths = glob.glob("configs/**/*.yaml", root_dir=zoo, recursive=True) + glob.glob(\n'
        '        "configs/**/*.py", root_dir=zoo, recursive=True\n'
        "    )\n",
        "the sdist keeps the model-zoo configs in detectron2/model_zoo/configs, but setup.py looked "
        "for them under ./configs and installed none",
    ),
)

# Applied to the detectron2 package itself; each keeps v0.6 working on today's libraries.
FIXES = (
    Fix(
        "pillow-linear",
        "detectron2/data/transforms/transform.py",
        "interp=Image.LINEAR,",
        "interp=Image.BILINEAR,",
        "Pillow >= 10 removed Image.LINEAR (an alias of BILINEAR); it is a default argument, so "
        "importing detectron2.data fails without this",
    ),
    Fix(
        "numpy-int-histogram",
        "detectron2/data/build.py",
        "histogram = np.zeros((num_classes,), dtype=np.int)",
        "histogram = np.zeros((num_classes,), dtype=int)",
        "numpy >= 1.24 removed np.int; the class histogram printed at loader build time failed",
    ),
    Fix(
        "numpy-int-histogram-classes",
        "detectron2/data/build.py",
        '[x["category_id"] for x in annos if not x.get("iscrowd", 0)], dtype=np.int',
        '[x["category_id"] for x in annos if not x.get("iscrowd", 0)], dtype=int',
        "numpy >= 1.24 removed np.int",
    ),
    Fix(
        "numpy-sem-seg-int",
        "detectron2/evaluation/sem_seg_evaluation.py",
        "pred = np.array(output, dtype=np.int)",
        "pred = np.array(output, dtype=int)",
        "numpy >= 1.24 removed np.int",
    ),
    Fix(
        "numpy-sem-seg-gt-int",
        "detectron2/evaluation/sem_seg_evaluation.py",
        "gt = np.array(Image.open(f), dtype=np.int)",
        "gt = np.array(Image.open(f), dtype=int)",
        "numpy >= 1.24 removed np.int",
    ),
    Fix(
        "numpy-sem-seg-float",
        "detectron2/evaluation/sem_seg_evaluation.py",
        "        acc = np.full(self._num_classes, np.nan, dtype=np.float)\n"
        "        iou = np.full(self._num_classes, np.nan, dtype=np.float)\n"
        "        tp = self._conf_matrix.diagonal()[:-1].astype(np.float)\n"
        "        pos_gt = np.sum(self._conf_matrix[:-1, :-1], axis=0).astype(np.float)\n",
        "        acc = np.full(self._num_classes, np.nan, dtype=float)\n"
        "        iou = np.full(self._num_classes, np.nan, dtype=float)\n"
        "        tp = self._conf_matrix.diagonal()[:-1].astype(float)\n"
        "        pos_gt = np.sum(self._conf_matrix[:-1, :-1], axis=0).astype(float)\n",
        "numpy >= 1.24 removed np.float",
    ),
    Fix(
        "numpy-sem-seg-float-pred",
        "detectron2/evaluation/sem_seg_evaluation.py",
        "pos_pred = np.sum(self._conf_matrix[:-1, :-1], axis=1).astype(np.float)",
        "pos_pred = np.sum(self._conf_matrix[:-1, :-1], axis=1).astype(float)",
        "numpy >= 1.24 removed np.float",
    ),
    Fix(
        "numpy-voc-str",
        "detectron2/data/datasets/pascal_voc.py",
        "fileids = np.loadtxt(f, dtype=np.str)",
        "fileids = np.loadtxt(f, dtype=str)",
        "numpy >= 1.24 removed np.str",
    ),
    Fix(
        "numpy-bool-masks-empty",
        "detectron2/structures/masks.py",
        "return np.zeros((height, width)).astype(np.bool)",
        "return np.zeros((height, width)).astype(bool)",
        "numpy 1.24-1.26 have no np.bool (numpy 2 has it again); polygon rasterisation failed",
    ),
    Fix(
        "numpy-bool-masks-decode",
        "detectron2/structures/masks.py",
        "return mask_util.decode(rle).astype(np.bool)",
        "return mask_util.decode(rle).astype(bool)",
        "numpy 1.24-1.26 have no np.bool",
    ),
    Fix(
        "numpy-bool-masks-keep",
        "detectron2/structures/masks.py",
        "return torch.from_numpy(np.asarray(keep, dtype=np.bool))",
        "return torch.from_numpy(np.asarray(keep, dtype=bool))",
        "numpy 1.24-1.26 have no np.bool",
    ),
    Fix(
        "numpy-bool-visualizer",
        "detectron2/utils/visualizer.py",
        "return (self._seg != empty_ids[0]).numpy().astype(np.bool)",
        "return (self._seg != empty_ids[0]).numpy().astype(bool)",
        "numpy 1.24-1.26 have no np.bool",
    ),
    Fix(
        "numpy-bool-visualizer-segments",
        "detectron2/utils/visualizer.py",
        "            yield (self._seg == sid).numpy().astype(np.bool), sinfo\n",
        "            yield (self._seg == sid).numpy().astype(bool), sinfo\n",
        "numpy 1.24-1.26 have no np.bool",
    ),
    Fix(
        "numpy-bool-visualizer-mask",
        "detectron2/utils/visualizer.py",
        "            mask = (self._seg == sid).numpy().astype(np.bool)\n",
        "            mask = (self._seg == sid).numpy().astype(bool)\n",
        "numpy 1.24-1.26 have no np.bool",
    ),
    Fix(
        "numpy-bool-video-visualizer",
        "detectron2/utils/video_visualizer.py",
        "is_crowd = np.zeros((len(instances),), dtype=np.bool)",
        "is_crowd = np.zeros((len(instances),), dtype=bool)",
        "numpy 1.24-1.26 have no np.bool",
    ),
    Fix(
        "numpy-bool-voc-eval",
        "detectron2/evaluation/pascal_voc_evaluation.py",
        'difficult = np.array([x["difficult"] for x in R]).astype(np.bool)',
        'difficult = np.array([x["difficult"] for x in R]).astype(bool)',
        "numpy 1.24-1.26 have no np.bool",
    ),
    Fix(
        "export-without-caffe2",
        "detectron2/export/__init__.py",
        "from .api import *\n",
        "import importlib.util as _importlib_util\n\n"
        "# the Caffe2 exporters need a PyTorch build that still ships caffe2\n"
        'if _importlib_util.find_spec("caffe2") is not None:\n'
        "    from .api import *\n",
        "detectron2.export imported caffe2 unconditionally, so TracingAdapter and the TorchScript "
        "helpers could not be imported from any current PyTorch",
    ),
    Fix(
        "launch-cpu-gloo",
        "detectron2/engine/launch.py",
        '    assert torch.cuda.is_available(), "cuda is not available. Please check your installation."\n'
        "    global_rank = machine_rank * num_gpus_per_machine + local_rank\n"
        "    try:\n"
        "        dist.init_process_group(\n"
        '            backend="NCCL",\n',
        "    has_gpu = torch.cuda.is_available()\n"
        "    global_rank = machine_rank * num_gpus_per_machine + local_rank\n"
        "    try:\n"
        "        dist.init_process_group(\n"
        '            backend="NCCL" if has_gpu else "GLOO",\n',
        "launch() asserted CUDA and used NCCL; without a GPU the workers now use gloo, so "
        "multi-process training runs (and is testable) on CPU",
    ),
    Fix(
        "launch-cpu-set-device",
        "detectron2/engine/launch.py",
        "    assert num_gpus_per_machine <= torch.cuda.device_count()\n"
        "    torch.cuda.set_device(local_rank)\n",
        "    if has_gpu:\n"
        "        assert num_gpus_per_machine <= torch.cuda.device_count()\n"
        "        torch.cuda.set_device(local_rank)\n",
        "bind a worker to a GPU only when there is one",
    ),
    Fix(
        "ddp-cpu-device-ids",
        "detectron2/engine/defaults.py",
        '    if "device_ids" not in kwargs:\n',
        '    if "device_ids" not in kwargs and next(model.parameters()).is_cuda:\n',
        "DistributedDataParallel refuses device_ids for a CPU model",
    ),
    Fix(
        "deform-conv-cpu",
        "detectron2/layers/deform_conv.py",
        "deform_conv = _DeformConv.apply\nmodulated_deform_conv = _ModulatedDeformConv.apply\n",
        "def _use_compiled(input, op):\n"
        "    return input.is_cuda and hasattr(_C, op)\n"
        "\n"
        "\n"
        "def deform_conv(\n"
        "    input, offset, weight, stride=1, padding=0, dilation=1, groups=1, deformable_groups=1,\n"
        "    im2col_step=64,\n"
        "):\n"
        '    if _use_compiled(input, "deform_conv_forward"):\n'
        "        return _DeformConv.apply(\n"
        "            input, offset, weight, stride, padding, dilation, groups, deformable_groups,\n"
        "            im2col_step,\n"
        "        )\n"
        "    # torchvision's kernel has forward and backward on every device, weight groups and\n"
        "    # offset groups (both inferred from the tensor shapes)\n"
        "    return deform_conv2d(\n"
        "        input, offset, weight, stride=stride, padding=padding, dilation=dilation\n"
        "    )\n"
        "\n"
        "\n"
        "def modulated_deform_conv(\n"
        "    input, offset, mask, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,\n"
        "    deformable_groups=1,\n"
        "):\n"
        '    if _use_compiled(input, "modulated_deform_conv_forward"):\n'
        "        return _ModulatedDeformConv.apply(\n"
        "            input, offset, mask, weight, bias, stride, padding, dilation, groups,\n"
        "            deformable_groups,\n"
        "        )\n"
        "    return deform_conv2d(\n"
        "        input, offset, weight, bias, stride=stride, padding=padding, dilation=dilation,\n"
        "        mask=mask,\n"
        "    )\n",
        "v0.6 DeformConv had no CPU backward and no CPU groups, ModulatedDeformConv no CPU path at "
        "all; torchvision.ops.deform_conv2d has both (same offset layout) and is used whenever the "
        "compiled kernel is absent or the input is on the CPU",
    ),
    Fix(
        "coco-eval-fallback-import",
        "detectron2/evaluation/coco_evaluation.py",
        "from detectron2.evaluation.fast_eval_api import COCOeval_opt\n",
        "from detectron2 import _C\nfrom detectron2.evaluation.fast_eval_api import COCOeval_opt\n",
        "needed by the fallback below",
    ),
    Fix(
        "coco-eval-fallback",
        "detectron2/evaluation/coco_evaluation.py",
        "    coco_eval = (COCOeval_opt if use_fast_impl else COCOeval)(coco_gt, coco_dt, iou_type)\n",
        "    # the fast implementation lives in the compiled extension; pycocotools is the official one\n"
        '    use_fast_impl = use_fast_impl and hasattr(_C, "COCOevalEvaluateImages")\n'
        "    coco_eval = (COCOeval_opt if use_fast_impl else COCOeval)(coco_gt, coco_dt, iou_type)\n",
        "COCOEvaluator's default fast path needs the compiled extension; fall back to pycocotools",
    ),
    Fix(
        "model-zoo-no-pkg-resources",
        "detectron2/model_zoo/model_zoo.py",
        "    cfg_file = pkg_resources.resource_filename(\n"
        '        "detectron2.model_zoo", os.path.join("configs", config_path)\n'
        "    )\n",
        '    cfg_file = os.path.join(os.path.dirname(__file__), "configs", config_path)\n',
        "setuptools >= 82 removed pkg_resources; the configs are package data next to this file",
    ),
    Fix(
        "model-zoo-no-pkg-resources-import",
        "detectron2/model_zoo/model_zoo.py",
        "import pkg_resources\n",
        "",
        "setuptools >= 82 removed pkg_resources",
    ),
    Fix(
        "checkpoint-weights-only",
        "detectron2/checkpoint/detection_checkpoint.py",
        "        loaded = super()._load_file(filename)  # load native pth checkpoint\n",
        "        # torch >= 2.6 loads with weights_only=True, which refuses the non-tensor objects that\n"
        "        # detectron2 checkpoints hold; the checkpoint is a file the user chose to load\n"
        '        with PathManager.open(filename, "rb") as f:\n'
        '            loaded = torch.load(f, map_location=torch.device("cpu"), weights_only=False)\n',
        "torch >= 2.6 defaults torch.load to weights_only=True",
    ),
)


def apply_fixes(root: Path, fixes: tuple[Fix, ...], strict: bool) -> list[str]:
    """Apply ``fixes`` to the source tree at ``root``; returns one status line per fix.

    A fix whose old text occurs exactly once is applied. With ``strict`` (the pinned sdist), any
    other count is an error: the source is not the one the table was written for. Otherwise a fix whose
    old text is absent is reported as not applicable (the revision already differs there).
    """
    lines = []
    for fix in fixes:
        path = root / fix.path
        if not path.is_file():
            if strict:
                raise InstallError(f"fix '{fix.key}': {path} does not exist")
            lines.append(f"  n/a      {fix.key} ({fix.path} absent)")
            continue
        text = path.read_text(encoding="utf-8")
        count = text.count(fix.old)
        if count == 1:
            path.write_text(text.replace(fix.old, fix.new), encoding="utf-8")
            lines.append(f"  applied  {fix.key}: {fix.reason}")
        elif strict:
            raise InstallError(
                f"fix '{fix.key}': expected its old text once in {path}, found it {count} times; "
                "the sdist is not the pinned one"
            )
        else:
            lines.append(f"  n/a      {fix.key} (old text not found in {fix.path})")
    return lines


def check_fixes(root: Path, fixes: tuple[Fix, ...] = FIXES) -> dict[str, str]:
    """Status of each fix in an installed tree: 'applied', 'needed' (old text present) or 'n/a'."""
    status = {}
    for fix in fixes:
        path = root / fix.path
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        if fix.new and fix.new in text or not fix.new and fix.old not in text:
            status[fix.key] = "applied"
        elif fix.old in text:
            status[fix.key] = "needed"
        else:
            status[fix.key] = "n/a"
    return status


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sdist(path: Path, expected: str = SDIST_SHA256) -> None:
    if not path.is_file():
        raise InstallError(f"detectron2 sdist {path} does not exist")
    actual = sha256_of(path)
    if actual != expected:
        raise InstallError(
            f"refusing {path}: its sha256 is {actual}, but {SDIST_NAME}=={SDIST_VERSION} has "
            f"{expected}. The file is corrupt or not the pinned release; delete it and run again."
        )


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    print("+", " ".join(cmd), flush=True)
    if subprocess.call(cmd) != 0:
        raise InstallError(f"command failed: {' '.join(cmd)}")


def download_sdist(cache: Path) -> Path:
    """The sdist in ``cache``, downloaded with pip (so the user's index and proxy settings apply)."""
    path = cache / SDIST_FILE
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            # --no-build-isolation: the sdist's setup.py imports torch while pip reads its metadata
            _pip(
                "download", "--no-deps", "--no-build-isolation", "--no-binary", SDIST_NAME,
                "--dest", tmp, f"{SDIST_NAME}=={SDIST_VERSION}",
            )
            os.replace(Path(tmp) / SDIST_FILE, path)
    return path


def install_pypi(sdist: Path | None, cache: Path) -> None:
    sdist = sdist or download_sdist(cache)
    verify_sdist(sdist)
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        root = Path(tmp) / f"{SDIST_NAME}-{SDIST_VERSION}"
        print("detectron2 compatibility fixes:")
        print("\n".join(apply_fixes(root, SETUP_FIXES + FIXES, strict=True)))
        shutil.copyfile(STAND_IN, root / "detectron2" / "_C.py")
        # the sdist's stale egg-info would keep the old distribution name
        shutil.rmtree(root / "pb1_detectron2.egg-info", ignore_errors=True)
        _pip("install", "--no-deps", "--no-build-isolation", "--no-cache-dir", str(root))


def check_git_reachable(url: str, ref: str) -> None:
    """Fail fast, with what to do instead, when ``url`` cannot be reached (no GitHub access)."""
    probe = ["git", "ls-remote", "--exit-code", url, ref]
    try:
        reachable = subprocess.run(
            probe, capture_output=True, text=True, timeout=30,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except FileNotFoundError as e:
        raise InstallError("D2_SOURCE=git needs the `git` command; install git first") from e
    except subprocess.TimeoutExpired as e:
        raise InstallError(f"D2_SOURCE=git: {url} did not answer within 30 s") from e
    if reachable.returncode != 0:
        raise InstallError(
            f"D2_SOURCE=git: cannot reach {url} (ref '{ref}'): {reachable.stderr.strip()}\n"
            "Without access to GitHub use the default source (D2_SOURCE=pypi, no compiled ops), or "
            "D2_SOURCE=preinstalled with a detectron2 you installed yourself."
        )


def install_git(url: str, ref: str) -> None:
    check_git_reachable(url, ref)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "detectron2"
        subprocess.check_call(["git", "clone", "--quiet", url, str(root)])
        subprocess.check_call(["git", "-C", str(root), "checkout", "--quiet", ref])
        print("detectron2 compatibility fixes:")
        print("\n".join(apply_fixes(root, FIXES, strict=False)))
        # builds detectron2._C with the CUDA kernels when a CUDA toolchain is present
        _pip("install", "--no-deps", "--no-build-isolation", "--no-cache-dir", str(root))


def installed_root() -> Path:
    """Directory holding the importable ``detectron2`` package, as a fresh interpreter sees it."""
    code = "import detectron2, os; print(os.path.dirname(detectron2.__path__[0]))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        raise InstallError(f"detectron2 does not import:\n{out.stderr.strip()}")
    return Path(out.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=os.environ.get("D2_SOURCE", "pypi"),
                        choices=("pypi", "git", "preinstalled"))
    parser.add_argument("--sdist", type=Path, help="use this local sdist file (pypi source)")
    parser.add_argument("--cache", type=Path, default=default_cache(),
                        help="where the downloaded sdist is kept (under downloads/)")
    parser.add_argument("--git-url", default=os.environ.get("D2_GIT_URL", GIT_URL))
    parser.add_argument("--git-ref", default=os.environ.get("D2_GIT_REF", DEFAULT_GIT_REF))
    parser.add_argument("--check", action="store_true",
                        help="only report the state of each fix in the installed detectron2")
    args = parser.parse_args(argv)
    try:
        if args.check:
            status = check_fixes(installed_root())
            for key, state in status.items():
                print(f"{state:8s} {key}")
            return int(any(state == "needed" for state in status.values()))
        if args.source == "pypi":
            install_pypi(args.sdist, args.cache / "downloads")
        elif args.source == "git":
            install_git(args.git_url, args.git_ref)
        root = installed_root()
        print(f"detectron2 ({args.source}) imports from {root}")
    except InstallError as e:
        print(f"install_detectron2: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
