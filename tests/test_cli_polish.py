"""Command-line polish: refused resumes name what changed, help texts, usage errors, plurals."""
from __future__ import annotations

import numpy as np
import pytest

from fastmask.cli import main
from fastmask.formats import write_mask


@pytest.fixture
def mask_folder(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    for i in range(3):
        m = np.zeros((8, 8), np.uint8)
        m[: i + 2, : i + 2] = 1
        write_mask(masks / f"m{i}.png", m)
    return masks


def test_refused_resume_names_each_changed_argument_once(mask_folder, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["validate", str(mask_folder), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["validate", str(mask_folder), "--out", str(out), "--workers", "1", "--quiet", "--resume",
                 "--min-island", "3", "--connectivity", "4"]) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "cannot resume" in lines[0]
    changed = [ln.strip() for ln in lines[1:] if ln.startswith("  ")]
    # exactly the two changed flags, old and new values, each once (the job's and the run's
    # argument records both hold them)
    assert sorted(changed) == ["config.connectivity: was 8, now 4", "config.min_island: was 16, now 3"], err
    assert "--overwrite" in lines[-1]
