"""tools/space_snapshot.sh: the repository as a Hugging Face Space push can take it (one commit, every
binary file a Git LFS pointer whose object holds the real bytes)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    if shutil.which("git-lfs") is None:
        if os.environ.get("CI"):
            pytest.fail("git-lfs is not installed: CI installs it (.ci/run)", pytrace=False)
        pytest.skip("git-lfs is not installed")
    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=ROOT, capture_output=True, text=True)
    if inside.stdout.strip() != "true":
        pytest.skip("not a git checkout (a source archive): there is no HEAD to snapshot")
    dest = tmp_path_factory.mktemp("space") / "snap"
    res = subprocess.run([str(ROOT / "tools" / "space_snapshot.sh"), str(dest)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "no history" in res.stdout
    return dest


def test_one_commit_and_no_binary_blob(snapshot):
    assert git(snapshot, "rev-list", "--count", "HEAD").strip() == "1"
    empty = git(snapshot, "hash-object", "-t", "tree", "/dev/null").strip()
    binaries = [line for line in git(snapshot, "diff", "--numstat", empty, "HEAD").splitlines() if line.startswith("-\t")]
    assert binaries == []
    assert (snapshot / ".gitattributes").read_text() == (ROOT / "tools" / "space.gitattributes").read_text()
    assert not (ROOT / ".gitattributes").exists()  # the repository itself keeps plain files (see space.gitattributes)


def test_weights_and_images_travel_as_lfs_objects_with_their_real_bytes(snapshot):
    in_lfs = set(git(snapshot, "lfs", "ls-files", "-n").split("\n")) - {""}
    tracked = set(git(ROOT, "ls-files").split("\n"))
    wanted = {f for f in tracked if f.endswith((".onnx", ".pt", ".png"))}
    assert wanted and wanted <= in_lfs
    for name in sorted(wanted):
        pointer = git(snapshot, "show", f"HEAD:{name}")
        assert pointer.startswith("version https://git-lfs.github.com/spec/v1")
        oid = next(line.split(":", 1)[1] for line in pointer.splitlines() if line.startswith("oid sha256:"))
        original = (ROOT / name).read_bytes()
        assert oid == hashlib.sha256(original).hexdigest()
        assert (snapshot / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).read_bytes() == original


def test_the_space_configuration_comes_along(snapshot):
    front = (snapshot / "README.md").read_text().split("---")[1]
    assert "sdk: docker" in front and "app_port: 7860" in front
    assert (snapshot / "Dockerfile").read_text() == git(ROOT, "show", "HEAD:Dockerfile")  # the snapshot is of HEAD
