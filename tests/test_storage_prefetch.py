"""Fetch-ahead for datasets whose root is a URL (mask folders, VOC, clean zip, panoptic PNGs):
the engine fetches a shard's objects ahead in a thread pool; reports equal the sequential reads."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from fastmask import storage
from fastmask.formats import open_dataset
from test_storage_read import sample, same_report, tables, upload  # noqa: F401 - fixtures, helpers

pytestmark = pytest.mark.usefixtures("s3_server")


def _count_fetch_threads(monkeypatch) -> dict:
    seen = {"pool": 0, "main": 0, "main_urls": []}
    real = storage.Fetcher.fetch

    def fetch(self, loc):
        ahead = threading.current_thread().name.startswith("fastmask-fetch")
        seen["pool" if ahead else "main"] += 1
        if not ahead:
            seen["main_urls"].append(loc.url)
        return real(self, loc)
    monkeypatch.setattr(storage.Fetcher, "fetch", fetch)
    return seen


@pytest.mark.parametrize("layout_dir", ["voc", "masks"])
def test_url_roots_are_fetched_ahead_with_the_same_report(sample, s3_bucket, tmp_path, monkeypatch, layout_dir):
    local = getattr(sample, layout_dir)
    url = upload(local, f"{s3_bucket}/{layout_dir}")
    seen = _count_fetch_threads(monkeypatch)
    same_report(tmp_path, "validate", [str(local)], [url], str(local), url, extra=("--prefetch", "8"))
    # every mask came through the fetch-ahead (the dataset's own files, e.g. a label map, are read
    # when it is opened)
    assert seen["pool"] > 0 and not [u for u in seen["main_urls"] if u.endswith(".png")], seen
    seen.update(pool=0, main=0)
    from fastmask.cli import main
    assert main(["validate", url, "--out", str(tmp_path / "off"), "--workers", "1", "--quiet",
                 "--prefetch", "0"]) in (0, 1)
    assert seen["pool"] == 0 and seen["main"] >= 2, seen  # --prefetch 0: read when needed
    on = tables(tmp_path / "validate-url", url, "<root>")
    off = tables(tmp_path / "off", url, "<root>")
    assert on == off


def test_root_prefetch_lists_only_remote_safe_names(s3_bucket, tmp_path):
    from fastmask.formats._fs import Root
    from fastmask.formats.png import write_mask

    (tmp_path / "m").mkdir()
    write_mask(tmp_path / "m" / "a.png", np.zeros((2, 2), np.uint8))
    url = upload(tmp_path / "m", f"{s3_bucket}/m")
    root = Root(url)
    [(fetcher, loc)] = root.prefetch("a.png")
    assert loc.url == f"{url}/a.png" and fetcher.read(loc)[:4] == b"\x89PNG"
    assert root.prefetch("../x.png") == [] and root.prefetch(None) == []
    assert Root(str(tmp_path / "m")).prefetch("a.png") == []  # local: nothing ahead
    ds = open_dataset(url, layout="masks")
    row = ds.manifest().to_pylist()[0]
    assert [loc.url for _, loc in ds.prefetch(row)] == [f"{url}/a.png"]
