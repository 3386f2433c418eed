"""Files fastmask writes get the mode the user's umask gives (0644 under umask 022), like any open()."""
from __future__ import annotations

import json
import os
import stat

import pytest

from fastmask.cli import main
from fastmask.formats import layout_writers as lw
from fastmask.formats import writers

TINY = "super-gradients/tests/data/tinycoco/annotations/instances_val2017.json"


@pytest.fixture
def umask():
    """Set a umask for the test, restore the old one after."""
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def modes(folder):
    return {p: stat.S_IMODE(os.stat(os.path.join(d, p)).st_mode)
            for d, _, files in os.walk(folder) for p in files}


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_follows_umask(tmp_path, umask, mask, expected):
    umask(mask)
    writers.atomic_write(tmp_path / "a.bin", b"x")
    lw.atomic_write(tmp_path / "sub" / "b.txt", b"y")
    writers.write_semantic_png(tmp_path / "m.png", __import__("numpy").zeros((2, 3), "uint8"))
    assert modes(tmp_path) == {"a.bin": expected, "b.txt": expected, "m.png": expected}


def test_rasterize_and_convert_outputs_are_0644_under_umask_022(real_data, tmp_path, umask):
    umask(0o022)
    data = json.loads((real_data / TINY).read_text())
    data["images"], keep = data["images"][:3], {i["id"] for i in data["images"][:3]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    src = tmp_path / "instances_val2017.json"
    src.write_text(json.dumps(data))
    assert main(["rasterize", str(src), "--out", str(tmp_path / "r"), "--quiet", "--workers", "1"]) == 0
    assert main(["convert", str(src), "--to", "cleanzip", "--out", str(tmp_path / "c"),
                 "--quiet", "--workers", "1"]) == 0
    written = {**{"r/" + k: v for k, v in modes(tmp_path / "r").items()},
               **{"c/" + k: v for k, v in modes(tmp_path / "c").items()}}
    assert any(k.endswith(".png") for k in written) and any(k.endswith(".json") for k in written)
    assert {k: v for k, v in written.items() if v != 0o644} == {}
