"""fastmask.storage: one set of operations for local folders and object storage (local S3 server)."""
from __future__ import annotations

import pickle
import time

import pytest

from fastmask import storage
from fastmask.formats.errors import FormatError
from fastmask.storage import Location, error_code


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> Location:
    if request.param == "local":
        return Location(str(tmp_path / "root"))
    return Location(request.getfixturevalue("s3_bucket") + "/root")


def test_write_read_list_delete(root):
    (root / "a.bin").write_bytes(b"\x00\x01")
    (root / "sub" / "b.json").write_json({"k": [1, 2]})
    with (root / "sub" / "deeper" / "c.txt").writer() as f:
        f.write(b"streamed")
    assert (root / "a.bin").read_bytes() == b"\x00\x01"
    assert (root / "sub" / "b.json").read_json() == {"k": [1, 2]}
    assert (root / "sub" / "deeper" / "c.txt").read_text() == "streamed"
    assert sorted(root.find()) == [("a.bin", 2), ("sub/b.json", len((root / "sub" / "b.json").read_bytes())),
                                   ("sub/deeper/c.txt", 8)]
    assert root.iterdir() == ["a.bin", "sub"]
    assert root.is_dir() and (root / "a.bin").is_file() and not (root / "a.bin").is_dir()
    assert (root / "sub").is_dir() and not (root / "nope").exists()
    (root / "a.bin").unlink()
    assert not (root / "a.bin").exists()
    (root / "sub").rmtree()
    assert list(root.find()) == []
    (root / "missing").rmtree()  # nothing there: nothing to do


def test_failed_stream_leaves_nothing(root):
    with pytest.raises(RuntimeError):
        with (root / "half.bin").writer() as f:
            f.write(b"half")
            raise RuntimeError("killed")
    assert not (root / "half.bin").exists()
    assert [n for n, _ in root.find()] == []


def test_missing_object_has_its_code(root):
    with pytest.raises(FormatError) as e:
        (root / "none.png").read_bytes()
    assert e.value.code == ("not_found" if root.is_remote else "missing_file")
    assert "none.png" in e.value.message


def test_read_limit(root):
    (root / "big.bin").write_bytes(b"x" * 100)
    if root.is_remote:
        with pytest.raises(FormatError) as e:
            (root / "big.bin").read_bytes(limit=10)
        assert e.value.code == "too_large"
    assert (root / "big.bin").read_bytes(limit=100) == b"x" * 100


def test_location_pickles_with_its_options():
    loc = Location("s3://b/x", {"anon": True, "client_kwargs": {"endpoint_url": "http://127.0.0.1:1"}})
    back = pickle.loads(pickle.dumps(loc / "y.png"))
    assert back.url == "s3://b/x/y.png" and back.options == loc.options


def test_default_options_are_captured_when_made():
    storage.set_default_options({"anon": True})
    try:
        loc = Location("s3://b/x")
    finally:
        storage.set_default_options(None)
    assert loc.options == {"anon": True} and Location("s3://b/x").options == {}


def test_file_urls_are_local_paths(tmp_path):
    (tmp_path / "a.txt").write_text("hi")
    loc = Location(f"file://{tmp_path}") / "a.txt"
    assert not loc.is_remote and loc.local == str(tmp_path / "a.txt") and loc.read_text() == "hi"


def test_missing_backend_names_the_extra(monkeypatch):
    import fsspec

    def no_backend(*a, **k):
        raise ImportError("Install gcsfs to access Google Storage")
    monkeypatch.setattr(fsspec.core, "url_to_fs", no_backend)
    with pytest.raises(storage.MissingBackendError, match=r"fastmask-seg\[gcs\]"):
        Location("gs://bucket/x").exists()


class _ClientError(Exception):
    def __init__(self, status, text=""):
        super().__init__(text)
        self.response = {"ResponseMetadata": {"HTTPStatusCode": status}}


class _HTTPError(Exception):
    def __init__(self, status, message=""):
        super().__init__(message)
        self.status, self.message = status, message


@pytest.mark.parametrize("exc, code", [
    (FileNotFoundError("k"), "not_found"),
    (PermissionError("denied"), "forbidden"),
    (_HTTPError(403, "Forbidden"), "forbidden"),
    (_HTTPError(403, "Request has expired"), "expired_url"),
    (_HTTPError(404, "Not Found"), "not_found"),
    (_HTTPError(429, "Too Many Requests"), "transient"),
    (_HTTPError(503, "Slow Down"), "transient"),
    (_HTTPError(400, "bad request"), "remote_error"),
    (TimeoutError(), "transient"),
    (ConnectionResetError(), "transient"),
    (ValueError("what"), "remote_error"),
])
def test_error_codes(exc, code):
    assert error_code(exc, "https://host/a.png") == code


def test_wrapped_errors_are_classified_through_the_chain():
    try:
        try:
            raise _ClientError(403, "An error occurred (AccessDenied)")
        except _ClientError as inner:
            raise OSError("wrapped") from inner
    except OSError as e:
        assert error_code(e, "s3://b/k") == "forbidden"


def test_expired_signature_is_read_from_the_url():
    past = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 7200))
    future = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time()))
    url = "https://b.s3.amazonaws.com/k.png?X-Amz-Algorithm=AWS4&X-Amz-Date={}&X-Amz-Expires=3600&X-Amz-Signature=x"
    assert error_code(_HTTPError(403, "Forbidden"), url.format(past)) == "expired_url"
    assert error_code(_HTTPError(403, "Forbidden"), url.format(future)) == "forbidden"
    assert error_code(_HTTPError(403), f"https://h/k.png?Expires={int(time.time()) - 5}&Signature=s") == "expired_url"


def test_transient_faults_are_retried_then_reported(monkeypatch):
    monkeypatch.setattr(storage, "_BACKOFF", 0.0)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise _HTTPError(503, "Slow Down")
        return b"ok"
    loc = Location("s3://b/k")
    assert loc._call(flaky) == b"ok" and len(calls) == 3

    def down():
        raise _HTTPError(500, "Internal")
    with pytest.raises(FormatError) as e:
        loc._call(down)
    assert e.value.code == "remote_error" and f"after {storage.RETRIES} retries" in e.value.message

    def gone():
        calls.append(1)
        raise FileNotFoundError("k")
    calls.clear()
    with pytest.raises(FormatError) as e:
        loc._call(gone)
    assert e.value.code == "not_found" and len(calls) == 1  # permanent: never retried


def test_s3_listing_is_paged(s3_bucket):
    root = Location(s3_bucket + "/many")
    fs, path = root.fs
    for i in range(1100):  # more than one page of S3's 1,000 keys
        fs.pipe_file(f"{path}/m{i:05d}.png", b"x")
    names = [n for n, _ in root.find()]
    assert len(names) == 1100 and names[0] == "m00000.png" and names[-1] == "m01099.png"
