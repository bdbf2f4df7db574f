"""`python -m segloop info`: readable output for real scans, one error line and non-zero exit for bad files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from segloop.config import PROJECT_ROOT


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segloop", "info", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_info_table_and_json_on_real_scans(msd_dir, dicom_dir):
    nifti = msd_dir / "imagesTr" / "hippocampus_003.nii.gz"
    series = next((dicom_dir / "Study3").iterdir())
    table = _run(str(nifti), str(series))
    assert table.returncode == 0, table.stderr
    assert "hippocampus_003" in table.stdout and "spacing (mm)" in table.stdout
    assert "LPS" in table.stdout and "DICOM (int16)" in table.stdout
    out = _run(str(nifti), str(series), "--json")
    assert out.returncode == 0, out.stderr
    infos = json.loads(out.stdout)
    assert [i["name"] for i in infos] == ["hippocampus_003", series.name]
    assert infos[0]["format"] == "NIfTI" and infos[0]["file_dtype"] == "float32"
    assert infos[0]["spacing_mm"] == [1.0, 1.0, 1.0] and infos[0]["source_orientation"] == "RAS"
    assert infos[1]["shape_ras"][2] == 40 and infos[1]["voxels"] == 34 * 50 * 40
    assert infos[1]["physical_size_mm"] == [34.0, 50.0, 40.0]
    it = infos[0]["intensity"]
    assert it["min"] <= it["p1"] <= it["p50"] <= it["p99"] <= it["max"]


def test_info_on_a_corrupt_file_is_one_error_line(tmp_path: Path, msd_dir):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes((msd_dir / "imagesTr" / "hippocampus_001.nii.gz").read_bytes()[:300])
    for target in (bad, tmp_path / "missing.nrrd", tmp_path):
        res = _run(str(target))
        assert res.returncode == 2, res
        assert "Traceback" not in res.stderr and res.stdout == ""
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {target.name}:"), lines
