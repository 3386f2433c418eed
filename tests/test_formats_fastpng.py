"""The optional pyspng path of read_mask gives exactly the Pillow path's MaskData."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastmask.formats.png as png
from fastmask.formats import FormatError, write_mask

pytest.importorskip("pyspng")


def _both(path):
    # pyspng's path alone, then Pillow's (fastmask's own decoder off for both)
    saved = png.USE_PYSPNG, png.USE_MASKPNG
    try:
        png.USE_PYSPNG, png.USE_MASKPNG = True, False
        fast = png.read_mask(path)
        png.USE_PYSPNG = False
        slow = png.read_mask(path)
    finally:
        png.USE_PYSPNG, png.USE_MASKPNG = saved
    return fast, slow


@given(st.integers(1, 40), st.integers(1, 40), st.sampled_from([np.uint8, np.uint16]), st.integers(0, 2**32 - 1))
def test_fast_grey_path_equals_pillow(tmp_path_factory, h, w, dtype, seed):
    path = tmp_path_factory.mktemp("g") / "m.png"
    a = np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, (h, w), endpoint=True).astype(dtype)
    write_mask(path, a)
    fast, slow = _both(path)
    assert np.array_equal(fast.array, a) and fast.array.dtype == slow.array.dtype
    assert {k: v for k, v in vars(fast).items() if k != "array"} == {k: v for k, v in vars(slow).items() if k != "array"}


def test_fast_path_falls_back_for_errors_and_other_modes(tmp_path):
    good = tmp_path / "g.png"
    write_mask(good, np.arange(12, dtype=np.uint8).reshape(3, 4))
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:40])  # inside the image data
    with pytest.raises(FormatError) as e:
        png.read_mask(cut)
    assert e.value.code == "truncated"
    pal = tmp_path / "p.png"
    write_mask(pal, np.arange(12, dtype=np.uint8).reshape(3, 4), palette="voc")
    m = png.read_mask(pal)  # palette PNGs keep the Pillow path (indices + palette)
    assert m.mode == "P" and m.palette is not None
    assert png._read_grey_png_fast(pal.read_bytes(), "p") is None


def _use_pyspng_in_new_process(value):
    import os
    import subprocess
    import sys

    code = "import fastmask.formats.png as p; print(p.USE_PYSPNG, p.USE_MASKPNG)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "FASTMASK_PNG_DECODER": value})


def test_decoder_setting_reaches_new_processes():
    # FASTMASK_PNG_DECODER is read at import, so spawned workers follow it too
    # (pyspng used, fastmask's mask decoder used)
    assert _use_pyspng_in_new_process("pillow").stdout.strip() == "False False"
    assert _use_pyspng_in_new_process("auto").stdout.strip() == "True True"
    assert _use_pyspng_in_new_process("fastmask").stdout.strip() == "False True"
    assert _use_pyspng_in_new_process("pyspng").stdout.strip() == "True False"
    bad = _use_pyspng_in_new_process("libpng")
    assert bad.returncode != 0
    assert "FASTMASK_PNG_DECODER='libpng'" in bad.stderr and "auto, pillow, fastmask, pyspng" in bad.stderr
