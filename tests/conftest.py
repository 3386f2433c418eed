"""Shared test configuration: hypothesis profiles and the path to the real sample data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    deadline=None,  # Numba compiles on first call; never time tests
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("long", parent=settings.get_profile("default"), max_examples=5000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
# The command line's one-time "compiling kernels" line depends on the state of Numba's
# cache; tests that check stderr must not depend on it (tests of the line set it).
os.environ.setdefault("FASTMASK_COMPILE_NOTICE", "0")

ROOT = Path(__file__).resolve().parents[1]
SHARED_REAL = Path(os.environ.get("FASTMASK_SHARED_DATA", ROOT.parent / "shared" / "data" / "real"))


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Root of ../shared/data/real (real COCO, panoptic, VOC... samples)."""
    if not SHARED_REAL.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_REAL}")
    return SHARED_REAL
