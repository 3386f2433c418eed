"""Listing once per run, its time in run.json, and no secret in a report or its lock.

A resumed run reuses the manifest saved at the start (``manifest.parquet``) with the listing
facts saved in its schema metadata: it lists nothing of an ``s3://`` dataset (counted on the
storage layer), its listing problems and skipped report folders still reach the report, and
the report ends byte-identical. The same holds for every command: evaluate and audit save
their pairs and each dataset's listing facts, convert and instances their dataset's manifest,
rasterize of a COCO JSON reuses the first run's parse. ``--storage-options`` given inline is ``<redacted>`` in the
lock's command line.
"""
from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from fastmask.cli import main
from fastmask.engine import VOLATILE_RUN_KEYS
from fastmask.engine.lock import FolderLock, ObjectFolderLock, redact_command
from fastmask.engine.sink import LOCK_FILE
from fastmask.storage import Location

pytest.importorskip("s3fs")
pytest.importorskip("moto")

N = 12


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, "PNG")
    return buf.getvalue()


def masks_at(url: str, n: int = N) -> str:
    """``n`` small masks and a class list under ``url``, plus a fastmask report folder inside
    the dataset (skipped by the listing: a fact the report notes)."""
    rng = np.random.default_rng(5)
    root = Location(url)
    (root / "class_names.txt").write_text("background\na\nb\n")
    for i in range(n):
        (root / "masks" / f"m{i:02d}.png").write_bytes(png_bytes(rng.integers(0, 3, (8, 8)).astype(np.uint8)))
    run_json = {"report_format": 1, "fastmask_version": "0", "job": "scan", "status": "complete"}
    (root / "masks" / "old-report" / "run.json").write_text(json.dumps(run_json))
    (root / "masks" / "old-report" / "plots" / "chart.png").write_bytes(png_bytes(np.zeros((2, 2), np.uint8)))
    return url


def local_files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def stable(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in VOLATILE_RUN_KEYS}


def assert_same(a: dict[str, bytes], b: dict[str, bytes]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        if name == "run.json":
            assert stable(json.loads(a[name])) == stable(json.loads(b[name]))
        else:
            assert a[name] == b[name], name


@pytest.fixture
def counted(monkeypatch):
    """Calls that list objects (a paged listing, a folder's entries, a prefix check), by URL."""
    calls: list[tuple[str, str]] = []
    for name in ("find", "iterdir", "is_dir"):
        real = getattr(Location, name)

        def spy(self, *a, _real=real, _name=name, **k):
            calls.append((_name, self.url))
            return _real(self, *a, **k)
        monkeypatch.setattr(Location, name, spy)
    import fastmask.storage as storage

    real_has = storage.prefix_has_objects

    def has(loc):
        calls.append(("prefix_has_objects", loc.url))
        return real_has(loc)
    monkeypatch.setattr(storage, "prefix_has_objects", has)
    return calls


def interrupt(out: Path, shard: int) -> None:
    """Make ``out`` look like a run stopped before ``shard`` was done."""
    (out / "_shards" / f"{shard:05d}.json").unlink()
    doc = json.loads((out / "run.json").read_text())
    doc["status"] = "stopped"
    (out / "run.json").write_text(json.dumps(doc))


def test_a_resumed_run_lists_nothing_and_keeps_the_listing_facts(s3_bucket, tmp_path, counted, capsys):
    url = masks_at(f"{s3_bucket}/ds")
    out = tmp_path / "report"
    argv = ["scan", url, "--out", str(out), "--workers", "1", "--shard-size", "2", "--quiet"]
    assert main(argv) == 0
    first_out = capsys.readouterr().out
    assert ", listing " in first_out and f"({N + 3} objects)" in first_out, first_out
    assert [c for c in counted if c[0] == "find" and c[1].startswith(url)] == [("find", url)]  # one paged listing
    doc = json.loads((out / "run.json").read_text())
    assert doc["listing"] == {"objects": N + 3}  # masks, class list, the report folder's two objects
    assert doc["timing"]["listing_reused"] is False and doc["timing"]["listing_seconds"] >= 0
    assert doc["summary"]["skipped_reports"] == [f"{url}/masks/old-report"]
    saved = pq.read_schema(out / "manifest.parquet").metadata[b"fastmask.listing"]
    assert json.loads(saved)["skipped_reports"] == [f"{url}/masks/old-report"]
    finished = local_files(out)

    interrupt(out, 3)
    counted.clear()
    assert main([*argv, "--resume"]) == 0
    assert "saved manifest reused: no listing" in capsys.readouterr().out
    # nothing below the dataset was listed: no paged listing, no folder's entries; the layout
    # came from run.json (no detection); the label map was found with single-object requests
    assert [c for c in counted if c[1].startswith(url) and c[0] in ("find", "iterdir")] == [], counted
    doc = json.loads((out / "run.json").read_text())
    assert doc["timing"]["listing_reused"] is True and doc["timing"]["listing_seconds"] == 0
    assert doc["timing"]["skipped_shards"] == 5
    assert doc["summary"]["skipped_reports"] == [f"{url}/masks/old-report"]
    assert_same(local_files(out), finished)


def test_listing_problems_reach_the_report_on_resume(s3_bucket, tmp_path, capsys):
    """Two zip entries with one name are a listing problem found while listing the zip: the
    resumed run, which does not list, reports it from the saved manifest."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(6):
            zf.writestr(f"m{i}.png", png_bytes(np.full((4, 4), i % 2, np.uint8)))
        with pytest.warns(UserWarning):
            zf.writestr("m0.png", png_bytes(np.ones((4, 4), np.uint8)))  # a second entry of that name
    url = f"{s3_bucket}/twice.zip"
    Location(url).write_bytes(buf.getvalue())
    out = tmp_path / "report"
    argv = ["validate", url, "--out", str(out), "--workers", "1", "--shard-size", "2", "--quiet",
            "--fail-on", "never"]
    assert main(argv) == 0
    doc = json.loads((out / "run.json").read_text())
    problems = doc["summary"]["listing_problems"]
    assert [p["code"] for p in problems] == ["duplicate_entry"] and doc["listing"] == {"objects": 7}
    finished = local_files(out)
    capsys.readouterr()

    interrupt(out, 1)
    assert main([*argv, "--resume"]) == 0
    doc = json.loads((out / "run.json").read_text())
    assert doc["summary"]["listing_problems"] == problems and doc["timing"]["listing_reused"] is True
    assert_same(local_files(out), finished)  # dataset_findings included: the problem is a finding there


# --------------------------------------------------------------------------- secrets


def test_redact_command_hides_inline_storage_options_only():
    argv = ["fastmask", "validate", "s3://b/voc", "--storage-options", '{"secret": "TOPSECRET"}', "--out", "r"]
    assert redact_command(argv) == "fastmask validate s3://b/voc --storage-options <redacted> --out r"
    assert redact_command(["fastmask", "scan", "d", '--storage-options={"key": "K"}']) == \
        "fastmask scan d --storage-options=<redacted>"
    assert redact_command(["fastmask", "scan", "d", "--storage-opt", '{"key": "K"}']) == \
        "fastmask scan d --storage-opt <redacted>"  # argparse's abbreviation too
    assert redact_command(["fastmask", "scan", "d", "--storage-options", "@opts.json"]) == \
        "fastmask scan d --storage-options @opts.json"
    assert redact_command("fastmask scan d --out r") == "fastmask scan d --out r"


@pytest.mark.parametrize("where", ["local", "s3"])
def test_no_secret_in_the_lock_or_the_report(where, s3_bucket, tmp_path, monkeypatch):
    url = masks_at(f"{s3_bucket}/ds")
    out = str(tmp_path / "report") if where == "local" else f"{s3_bucket}/reports/r"
    secret = "TOPSECRET-42"
    options = json.dumps({"key": "testing", "secret": secret})
    argv = ["validate", url, "--out", out, "--workers", "1", "--quiet", "--fail-on", "never",
            "--storage-options", options]
    monkeypatch.setattr(sys, "argv", ["fastmask", *argv])
    seen = []
    for cls in (FolderLock, ObjectFolderLock):
        real = cls.release

        def release(self, _real=real):
            seen.append(Location(str(self.path)) if isinstance(self.path, Path) else self.path)
            seen.append(seen[-1].read_bytes())  # the lock as it was held during the run
            return _real(self)
        monkeypatch.setattr(cls, release.__name__, release)
    assert main(argv) == 0
    lock = seen[1]
    assert secret.encode() not in lock
    assert json.loads(lock)["command"].endswith("--storage-options <redacted>")
    root = Location(out)
    files = {name: (root / name).read_bytes() for name, _ in root.find()}
    assert "run.json" in files and LOCK_FILE not in files
    assert not [name for name, data in files.items() if secret.encode() in data]


# --------------------------------------------------------------------------- jobs of two datasets


def test_a_resumed_evaluate_pairs_nothing_again_and_lists_neither_dataset(s3_bucket, tmp_path, counted, capsys):
    """evaluate saves its pairs and both listings' facts in its manifest: a resumed run lists
    neither dataset, keeps the not-scored counts and skipped report folders, and ends identical."""
    gt = masks_at(f"{s3_bucket}/gt")
    pred = masks_at(f"{s3_bucket}/pred", N - 2)  # two ground-truth items without a prediction
    out = tmp_path / "report"
    argv = ["evaluate", "--gt", gt, "--pred", pred, "--num-classes", "3", "--allow-missing", "--out", str(out),
            "--workers", "1", "--shard-size", "2", "--quiet"]
    assert main(argv) == 0
    first_out = capsys.readouterr().out
    doc = json.loads((out / "run.json").read_text())
    assert doc["listing"] == {"objects": (N + 3) + (N - 2 + 3)}  # both datasets' objects
    assert doc["timing"]["listing_reused"] is False
    assert doc["summary"]["not_scored"] == {"missing_prediction": 2}
    assert doc["summary"]["skipped_reports"] == [f"{gt}/masks/old-report", f"{pred}/masks/old-report"]
    assert doc["arguments"]["gt_layout"] == doc["arguments"]["pred_layout"] == "masks"
    finished = local_files(out)

    interrupt(out, 2)
    counted.clear()
    assert main([*argv, "--resume"]) == 0
    again_out = capsys.readouterr().out
    assert [c for c in counted if c[0] in ("find", "iterdir") and c[1].startswith((gt, pred))] == [], counted
    doc = json.loads((out / "run.json").read_text())
    assert doc["timing"]["listing_reused"] is True and doc["timing"]["skipped_shards"] == 5
    assert doc["summary"]["not_scored"] == {"missing_prediction": 2}
    assert doc["summary"]["skipped_reports"] == [f"{gt}/masks/old-report", f"{pred}/masks/old-report"]
    assert_same(local_files(out), finished)
    assert [ln for ln in again_out.splitlines() if ln.startswith("note: skipped")] == \
        [ln for ln in first_out.splitlines() if ln.startswith("note: skipped")]


def test_a_resumed_convert_lists_nothing_and_writes_the_same_dataset(s3_bucket, tmp_path, counted, capsys):
    url = masks_at(f"{s3_bucket}/ds")
    out = tmp_path / "report"
    argv = ["convert", url, "--to", "coco", "--out", str(out), "--workers", "1", "--shard-size", "2", "--quiet"]
    assert main(argv) == 0
    doc = json.loads((out / "run.json").read_text())
    assert doc["listing"] == {"objects": N + 3} and doc["timing"]["listing_reused"] is False
    assert doc["summary"]["skipped_reports"] == [f"{url}/masks/old-report"]
    finished = local_files(out)
    assert any(name.startswith("dataset/") for name in finished)
    capsys.readouterr()

    interrupt(out, 3)
    counted.clear()
    assert main([*argv, "--resume"]) == 0
    assert [c for c in counted if c[0] in ("find", "iterdir") and c[1].startswith(url)] == [], counted
    doc = json.loads((out / "run.json").read_text())
    assert doc["timing"]["listing_reused"] is True and doc["timing"]["skipped_shards"] == 5
    assert doc["summary"]["skipped_reports"] == [f"{url}/masks/old-report"]
    assert_same(local_files(out), finished)  # the converted dataset too


def test_a_resumed_audit_lists_none_of_its_three_datasets(s3_bucket, tmp_path, counted, capsys):
    """audit pairs ground truth, predictions and confidence maps once: a resumed run lists none
    of them, and its dataset pass (which reads the run's own statistics) ends identical."""
    gt = masks_at(f"{s3_bucket}/gt")
    pred = masks_at(f"{s3_bucket}/pred", N - 2)
    conf = masks_at(f"{s3_bucket}/conf")
    out = tmp_path / "report"
    argv = ["audit", "--gt", gt, "--pred", pred, "--confidence", f"{conf}/masks", "--num-classes", "3",
            "--allow-missing", "--out", str(out), "--workers", "1", "--shard-size", "2", "--quiet"]
    assert main(argv) == 0
    doc = json.loads((out / "run.json").read_text())
    # the confidence folder's listing: its masks and the report folder inside it
    assert doc["listing"] == {"objects": (N + 3) + (N - 2 + 3) + (N + 2)}
    assert doc["summary"]["skipped_reports"] == [f"{gt}/masks/old-report", f"{pred}/masks/old-report"]
    finished = local_files(out)
    capsys.readouterr()

    interrupt(out, 2)
    counted.clear()
    assert main([*argv, "--resume"]) == 0
    assert [c for c in counted if c[0] in ("find", "iterdir") and c[1].startswith((gt, pred, conf))] == [], counted
    doc = json.loads((out / "run.json").read_text())
    assert doc["timing"]["listing_reused"] is True and doc["timing"]["skipped_shards"] == 5
    assert doc["summary"]["skipped_reports"] == [f"{gt}/masks/old-report", f"{pred}/masks/old-report"]
    assert_same(local_files(out), finished)


# --------------------------------------------------------------------------- jobs of one dataset


def test_a_resumed_instances_run_lists_nothing(s3_bucket, tmp_path, counted, capsys):
    url = masks_at(f"{s3_bucket}/ds")
    out = tmp_path / "report"
    argv = ["instances", url, "--out", str(out), "--workers", "1", "--shard-size", "2", "--quiet"]
    assert main(argv) == 0
    doc = json.loads((out / "run.json").read_text())
    assert doc["listing"] == {"objects": N + 3} and doc["timing"]["listing_reused"] is False
    finished = local_files(out)
    capsys.readouterr()

    interrupt(out, 3)
    counted.clear()
    assert main([*argv, "--resume"]) == 0
    assert [c for c in counted if c[0] in ("find", "iterdir") and c[1].startswith(url)] == [], counted
    doc = json.loads((out / "run.json").read_text())
    assert doc["timing"]["listing_reused"] is True and doc["summary"]["skipped_reports"] == [f"{url}/masks/old-report"]
    assert_same(local_files(out), finished)


def test_a_resumed_rasterize_reuses_the_parse_of_its_coco_json(s3_bucket, tmp_path, counted, capsys, monkeypatch):
    """A COCO JSON's "listing" is its parse into the local cache: a resumed run takes the saved
    manifest and reads the annotations from the cache the first run made (no parse again)."""
    from fastmask.formats import _cocojson

    images = [{"id": i + 1, "file_name": f"f{i}.jpg", "width": 8, "height": 8} for i in range(N)]
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1 + i % 2, "iscrowd": 0, "area": 9.0,
             "bbox": [1, 1, 3, 3], "segmentation": [[1, 1, 4, 1, 4, 4, 1, 4]]} for i in range(N)]
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    url = f"{s3_bucket}/coco/instances.json"
    Location(url).write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    parses = []
    real_build = _cocojson._build
    monkeypatch.setattr(_cocojson, "_build", lambda *a, **k: (parses.append(a[0]), real_build(*a, **k))[1])
    out = tmp_path / "report"
    argv = ["rasterize", url, "--out", str(out), "--workers", "1", "--shard-size", "2", "--quiet"]
    assert main(argv) == 0
    assert parses == [url]
    finished = local_files(out)
    capsys.readouterr()

    interrupt(out, 3)
    counted.clear()
    assert main([*argv, "--resume"]) == 0
    assert parses == [url]  # the cache of the first run answered
    assert [c for c in counted if c[0] in ("find", "iterdir") and c[1].startswith(f"{s3_bucket}/coco")] == []
    doc = json.loads((out / "run.json").read_text())
    assert doc["timing"]["listing_reused"] is True and doc["timing"]["skipped_shards"] == 5
    assert_same(local_files(out), finished)
