"""Installs on every platform: requirement markers per platform, the package metadata, the Dockerfile's promises.

The resolution test asks the package registry which wheels exist for each platform (network: the
registry only), with uv's resolver, which evaluates every marker, the dependencies' own included, for
the target platform (pip's `--platform` keeps evaluating markers for the machine it runs on).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PLATFORMS = {
    # name: (marker environment overrides, uv --python-platform)
    "linux-x86_64": ({"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"},
                     "x86_64-manylinux_2_28"),
    # torch 2.13 and onnxruntime 1.31 ship macOS wheels for Apple silicon and macOS 14+ only
    "macos-arm64": ({"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64"},
                    "aarch64-apple-darwin"),
    "windows-amd64": ({"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64",
                       "os_name": "nt"}, "x86_64-pc-windows-msvc"),
}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirements_for(platform: str, extras: tuple[str, ...] = ("app", "train"), requirements_txt: bool = True) -> list[str]:
    """The requirements the README's install command asks for on a platform: pyproject dependencies and
    extras plus requirements.txt's own lines (unless `requirements_txt` is False: a `pip install
    ".[extras]"` such as the Dockerfile's), markers evaluated for that platform, markers dropped."""
    env = {**default_environment(), **PLATFORMS[platform][0]}
    project = _pyproject()["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    if requirements_txt:
        lines += [ln for ln in (ROOT / "requirements.txt").read_text().splitlines()
                  if ln.strip() and not ln.startswith(("#", "-"))]
    out = []
    for line in lines:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
            out.append(f"{req.name}{'[' + ','.join(sorted(req.extras)) + ']' if req.extras else ''}{req.specifier}")
    return out


def test_each_platform_gets_exactly_one_onnx_runtime():
    for platform, expected in (("linux-x86_64", "onnxruntime-gpu"), ("windows-amd64", "onnxruntime-gpu"),
                               ("macos-arm64", "onnxruntime")):
        runtimes = [r for r in requirements_for(platform) if r.startswith("onnxruntime")]
        assert runtimes == [f"{expected}==1.31.1"], (platform, runtimes)
    assert not [r for r in requirements_for("linux-x86_64", ("app", "cpu")) if r.startswith("onnxruntime==")] == []


def test_package_metadata_and_console_script():
    project = _pyproject()["project"]
    assert project["scripts"]["segloop"] == "segloop.cli:main"
    extras = project["optional-dependencies"]
    assert {"app", "train", "cpu", "gpu", "ray"} <= set(extras)
    # the core runs inference and evaluation without PyTorch, MONAI or onnx: a slim install (the Space's)
    core = {Requirement(d).name.lower() for d in project["dependencies"]}
    assert not core & {"torch", "monai", "onnx"}, core
    assert {Requirement(d).name for d in extras["train"]} == {"torch", "monai", "onnx"}
    assert "torch==2.13.0" in extras["train"]  # pinned: no surprise CUDA build
    # local installs (requirements files) still train
    assert "-e .[app,train]" in (ROOT / "requirements.txt").read_text()
    assert "[app,train,gpu]" in (ROOT / "requirements-gpu.txt").read_text()


def _resolve(platform: str, requirements: list[str], tmp_path: Path) -> str:
    """uv's lock file for `requirements` on `platform` (binary wheels only; nothing is installed)."""
    import os
    import shutil

    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv, "uv (requirements-dev.txt) is needed to resolve for other platforms"
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("\n".join(requirements))
    env = {**os.environ, "MACOSX_DEPLOYMENT_TARGET": "14.0"}
    res = subprocess.run([uv, "pip", "compile", str(reqs), "--python-platform", PLATFORMS[platform][1],
                          "--python-version", "3.11", "--only-binary", ":all:", "--quiet", "-o", str(tmp_path / "lock")],
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, f"{platform}: {res.stderr[-2000:]}"
    return (tmp_path / "lock").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_requirements_resolve_to_wheels_on_every_platform(platform, tmp_path):
    """The platform's requirements resolve to binary wheels on the registry (nothing is installed)."""
    lock = _resolve(platform, requirements_for(platform), tmp_path)
    assert re.search(r"^torch==2\.13\.0", lock, re.M) and re.search(r"^onnxruntime(-gpu)?==1\.31\.1", lock, re.M)
    assert re.search(r"^monai==1\.6\.1", lock, re.M) and re.search(r"^onnx==", lock, re.M)


@pytest.mark.slow
def test_the_slim_space_install_resolves_without_the_training_stack(tmp_path):
    """`pip install ".[app,cpu]"` (the Space's image) pulls no PyTorch, MONAI, onnx, nor torch's sympy."""
    lock = _resolve("linux-x86_64", requirements_for("linux-x86_64", ("app", "cpu"), requirements_txt=False), tmp_path)
    assert re.search(r"^onnxruntime==1\.31\.1", lock, re.M) and re.search(r"^streamlit==", lock, re.M)
    for heavy in ("torch", "monai", "onnx", "sympy", "onnxruntime-gpu"):  # networkx stays: scikit-image needs it
        assert not re.search(rf"^{heavy}==", lock, re.M), f"{heavy} is in the slim install"


def test_dockerfile_promises():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"useradd .*--uid 1000", text) and "USER user" in text
    assert "EXPOSE 7860" in text and "--server.port 7860" in text
    assert "mkdir -p /data && chown 1000:1000 /data" in text
    # the slim core (app, CPU ONNX Runtime: no torch), training one build argument away (EXTRAS=app,cpu,train)
    assert '".[app,cpu]"' in text or ("ARG EXTRAS=app,cpu\n" in text and '".[$EXTRAS]"' in text)
    assert "download.pytorch.org/whl/cpu" in text  # a torch, when asked for, is the CPU build
    assert "! pip show onnxruntime-gpu" in text  # never both runtimes in the image
    assert 'if [ -n \\"$SPACE_ID\\" ]' in text  # XSRF protection off only inside a Space
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"tests", "bench", "docs", ".venv", ".git"} <= set(ignored)
    front = (ROOT / "README.md").read_text().split("---")[1]
    assert "sdk: docker" in front and "app_port: 7860" in front
