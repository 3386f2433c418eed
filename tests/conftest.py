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


# -- a local S3 server (moto) for the object-storage tests: 127.0.0.1, a random port --------

@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 for the whole session; the AWS_* variables point at it
    (child processes such as Dask workers inherit them). Yields its endpoint URL."""
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    import logging
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_SESSION_TOKEN": "testing"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield endpoint
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh, empty bucket on the local S3 server: ``s3://fastmask-test-<random>``."""
    import uuid

    import fsspec
    name = f"fastmask-test-{uuid.uuid4().hex[:12]}"
    fs = fsspec.filesystem("s3", skip_instance_cache=False)
    fs.mkdir(name)
    return f"s3://{name}"
