"""The built wheel installs kernels/ as fastmask.kernels and nothing named plain `kernels`."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_layout(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheels = list(tmp_path.glob("fastmask_seg-*.whl"))
    assert len(wheels) == 1, wheels
    names = zipfile.ZipFile(wheels[0]).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"fastmask", wheels[0].name.split("-")[0] + "-" + wheels[0].name.split("-")[1] + ".dist-info"}
    assert "fastmask/kernels/rle.py" in names
    assert "fastmask/kernels/polygon.py" in names
    assert not any(n.startswith("kernels/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "fastmask = fastmask.cli:main" in zipfile.ZipFile(wheels[0]).read(entry_points).decode()


def test_wheel_declares_licence_as_spdx_expression(tmp_path):
    # the current pyproject form (PEP 639): an SPDX expression plus the licence file, no deprecated table
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = zipfile.ZipFile(next(tmp_path.glob("fastmask_seg-*.whl")))
    names = wheel.namelist()
    metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: BSD-3-Clause" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
