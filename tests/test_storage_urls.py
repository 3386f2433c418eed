"""Objects named one by one by URL: the ``urls`` layout, item-level remote faults, prefetch, the
local cache, and Labelbox / Nucleus masks fetched by URL -- against a local HTTP server (127.0.0.1,
a random port; it wants an Authorization header) and the local S3 server (tests/conftest.py)."""
from __future__ import annotations

import io
import json
import pickle
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from fastmask import storage
from fastmask.cli import main
from fastmask.engine import load_report_table, run_job
from fastmask.formats import FormatError, detect_layout, open_dataset, write_mask
from fastmask.jobs.convert import read_source
from fastmask.jobs.scan import ScanJob

TOKEN = "Bearer test-token"
AUTH = json.dumps({"headers": {"Authorization": TOKEN}})
EXPIRED_BODY = ("<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
                "<Message>Request has expired</Message><Expires>2020-01-01T00:00:00Z</Expires></Error>")


# ----------------------------------------------------------------------------- the HTTP server


class MaskServer:
    """Serves ``files`` (path -> bytes) on 127.0.0.1; wants ``Authorization: TOKEN`` (401 without, 403
    with another); ``/expired/...`` answers 403 "Request has expired", ``/private/...`` 403;
    ``fail[path]`` is a list of statuses answered first (e.g. [503, 429]); counts every request and
    the most requests in flight at once; ``delay`` seconds before each answer."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.fail: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str]] = []
        self.delay = 0.0
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _answer(self, body: bool):
                path = self.path.split("?", 1)[0]
                with server.lock:
                    server.requests.append((self.command, path))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    if server.delay:
                        time.sleep(server.delay)
                    status, data = server.answer(path, self.headers.get("Authorization"))
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Content-Type", "image/png" if status == 200 else "text/plain")
                    self.end_headers()
                    if body:
                        self.wfile.write(data)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def do_GET(self):
                self._answer(True)

            def do_HEAD(self):
                self._answer(False)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, path: str, auth: str | None) -> tuple[int, bytes]:
        if auth is None:
            return 401, b"Unauthorized: send an Authorization header"
        if auth != TOKEN:
            return 403, b"Forbidden: bad API key"
        if path.startswith("/expired/"):
            return 403, EXPIRED_BODY.encode()
        if path.startswith("/private/"):
            return 403, b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
        with self.lock:
            plan = self.fail.get(path)
            if plan:
                return plan.pop(0), b"slow down"
        if path not in self.files:
            return 404, b"Not Found"
        return 200, self.files[path]

    def count(self, prefix: str = "/") -> int:
        with self.lock:
            return sum(1 for _, p in self.requests if p.startswith(prefix))

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.max_in_flight = 0
        self.fail.clear()
        self.delay = 0.0

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server():
    s = MaskServer()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _clean_defaults(server):
    server.reset()
    yield
    storage.set_default_options(None)
    storage.set_fetch_defaults()


# ----------------------------------------------------------------------------- data


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def masks(n: int, seed: int = 0, shape=(24, 32)) -> dict[str, np.ndarray]:
    """item id -> a label mask of classes 0..3 (rectangles, so findings vary little by chance)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        m = np.zeros(shape, np.uint8)
        for _ in range(3):
            y, x = int(rng.integers(0, shape[0] - 6)), int(rng.integers(0, shape[1] - 6))
            m[y:y + int(rng.integers(3, 7)), x:x + int(rng.integers(3, 7))] = int(rng.integers(1, 4))
        out[f"im{i:02d}"] = m
    return out


def place(server, s3, folder: Path, arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """Put each mask on the HTTP server, on S3 or beside the list (in turn); item id -> its cell.
    Also writes every mask into ``folder/local`` (the same files, read locally: the oracle)."""
    import fsspec
    fs = fsspec.filesystem("s3")
    (folder / "local").mkdir(parents=True, exist_ok=True)
    (folder / "m").mkdir(exist_ok=True)
    cells = {}
    for k, (iid, arr) in enumerate(sorted(arrays.items())):
        data = png(arr)
        (folder / "local" / f"{iid}.png").write_bytes(data)
        where = k % 3
        if where == 0:
            server.files[f"/ds/{iid}.png"] = data
            cells[iid] = f"{server.url}/ds/{iid}.png?X-Amz-Signature=secret{k}"
        elif where == 1:
            fs.pipe_file(f"{s3[len('s3://'):]}/masks/{iid}.png", data)
            cells[iid] = f"{s3}/masks/{iid}.png"
        else:
            (folder / "m" / f"{iid}.png").write_bytes(data)
            cells[iid] = f"m/{iid}.png"
    return cells


def write_list(path: Path, rows: list[dict]) -> Path:
    """A URL list in the format its suffix names (csv / jsonl / parquet)."""
    cols = ["item_id", "mask", "image", "width", "height"]
    if path.suffix == ".csv":
        lines = [",".join(cols)] + [",".join("" if r.get(c) is None else str(r[c]) for c in cols) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(pa.table({c: pa.array([r.get(c) for r in rows], pa.int64() if c in ("width", "height")
                                             else pa.string()) for c in cols}), path)
    return path


def items(out) -> dict[str, dict]:
    return {r["item_id"]: r for r in load_report_table(out).to_pylist()}


def sorted_table(out, name: str, drop=("message", "extra")) -> list[dict]:
    rows = [{k: v for k, v in r.items() if k not in drop} for r in load_report_table(out, name).to_pylist()]
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def cli(*args) -> int:
    return main([*args, "--workers", "1", "--quiet"])


# ----------------------------------------------------------------------------- the layout


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_url_list_mixing_http_s3_and_local_reads_like_the_local_masks(tmp_path, server, s3_bucket, suffix):
    arrays = masks(9)
    cells = place(server, s3_bucket, tmp_path, arrays)
    lst = write_list(tmp_path / f"list{suffix}", [{"item_id": i, "mask": cells[i], "width": 32, "height": 24}
                                                   for i in sorted(cells)])
    assert detect_layout(lst) == "urls"
    assert cli("scan", str(lst), "--storage-options", AUTH, "--out", str(tmp_path / "s_url")) == 0
    assert cli("scan", str(tmp_path / "local"), "--out", str(tmp_path / "s_local")) == 0
    got, want = items(tmp_path / "s_url"), items(tmp_path / "s_local")
    assert got.keys() == want.keys() == set(arrays)
    for iid in arrays:  # every column the same, whichever store held the mask
        assert {k: v for k, v in got[iid].items() if not k.startswith("image_")} == \
               {k: v for k, v in want[iid].items() if not k.startswith("image_")}
        assert (got[iid]["image_width"], got[iid]["image_height"]) == (32, 24)  # from the row
    for iid, arr in arrays.items():  # and the values are the pixels (not just equal to each other)
        vals, counts = np.unique(arr, return_counts=True)
        assert got[iid]["values"] == vals.tolist() and got[iid]["value_pixels"] == counts.tolist()
    assert server.count("/ds/") == 3  # one GET per HTTP mask, no HEAD
    assert all(m == "GET" for m, _ in server.requests)
    for cmd in ("validate", "coverage"):
        assert cli(cmd, str(lst), "--storage-options", AUTH, "--out", str(tmp_path / f"{cmd}_url")) in (0, 1)
        assert cli(cmd, str(tmp_path / "local"), "--out", str(tmp_path / f"{cmd}_local")) in (0, 1)
    assert sorted_table(tmp_path / "validate_url", "findings") == sorted_table(tmp_path / "validate_local", "findings")
    assert sorted_table(tmp_path / "coverage_url", "class_coverage") == \
           sorted_table(tmp_path / "coverage_local", "class_coverage")


def test_evaluate_with_url_lists_on_both_sides(tmp_path, server, s3_bucket):
    gt, pred = masks(6, seed=1), masks(6, seed=2)
    cells_gt = place(server, s3_bucket, tmp_path / "gt", gt)
    server_pred = {k: v for k, v in pred.items()}
    (tmp_path / "pred").mkdir()
    for iid, arr in server_pred.items():
        server.files[f"/pred/{iid}.png"] = png(arr)
        (tmp_path / "pred" / f"{iid}.png").write_bytes(png(arr))
    lgt = write_list(tmp_path / "gt" / "gt.parquet", [{"item_id": i, "mask": c} for i, c in cells_gt.items()])
    lpred = write_list(tmp_path / "pred.jsonl", [{"item_id": i, "mask": f"{server.url}/pred/{i}.png"} for i in pred])
    args = ("--num-classes", "4", "--storage-options", AUTH)
    assert cli("evaluate", "--gt", str(lgt), "--pred", str(lpred), *args, "--out", str(tmp_path / "e_url")) == 0
    assert cli("evaluate", "--gt", str(tmp_path / "gt" / "local"), "--pred", str(tmp_path / "pred"), *args,
               "--out", str(tmp_path / "e_local")) == 0
    assert sorted_table(tmp_path / "e_url", "image_scores") == sorted_table(tmp_path / "e_local", "image_scores")
    url_run = json.loads((tmp_path / "e_url" / "run.json").read_text())["summary"]
    local_run = json.loads((tmp_path / "e_local" / "run.json").read_text())["summary"]
    assert url_run["miou"] == local_run["miou"] and url_run["miou"] is not None
    # the oracle: the summed confusion of the arrays themselves
    tp = fp = fn = np.zeros(4)
    for iid in gt:
        g, p = gt[iid].ravel(), pred[iid].ravel()
        tp = tp + np.bincount(g[g == p], minlength=4)
        fp = fp + np.bincount(p[g != p], minlength=4)
        fn = fn + np.bincount(g[g != p], minlength=4)
    union = tp + fp + fn
    assert url_run["miou"] == pytest.approx(float(np.mean(tp[union > 0] / union[union > 0])))


def test_convert_reads_a_url_list(tmp_path, server, s3_bucket):
    arrays = masks(4, seed=3)
    cells = place(server, s3_bucket, tmp_path, arrays)
    lst = write_list(tmp_path / "l.csv", [{"item_id": i, "mask": c} for i, c in cells.items()])
    assert cli("convert", str(lst), "--to", "masks", "--storage-options", AUTH, "--out", str(tmp_path / "c")) == 0
    written = {p.stem: np.asarray(Image.open(p)) for p in (tmp_path / "c").rglob("*.png")
               if "plots" not in p.parts}
    assert {k: v.tolist() for k, v in written.items() if k in arrays} == {k: v.tolist() for k, v in arrays.items()}
    # instances reads it too: the same instance masks as from the local copies
    assert cli("instances", str(lst), "--storage-options", AUTH, "--out", str(tmp_path / "i_url")) == 0
    assert cli("instances", str(tmp_path / "local"), "--out", str(tmp_path / "i_local")) == 0
    url_masks = {p.stem: np.asarray(Image.open(p)).tolist() for p in (tmp_path / "i_url").rglob("*.png")}
    local_masks = {p.stem: np.asarray(Image.open(p)).tolist() for p in (tmp_path / "i_local").rglob("*.png")}
    assert set(arrays) <= set(url_masks) and url_masks == local_masks


def test_url_list_on_s3_names_masks_relative_to_itself(tmp_path, s3_bucket):
    import fsspec
    fs = fsspec.filesystem("s3")
    arrays = masks(3, seed=4)
    for iid, arr in arrays.items():
        fs.pipe_file(f"{s3_bucket[5:]}/data/masks/{iid}.png", png(arr))
    fs.pipe_file(f"{s3_bucket[5:]}/data/lists/l.csv",
                 ("item_id,mask\n" + "".join(f"{i},../masks/{i}.png\n" for i in arrays)).encode())
    url = f"{s3_bucket}/data/lists/l.csv"
    assert detect_layout(url) == "urls"
    ds = open_dataset(url)
    assert [r["item_id"] for r in ds.manifest().to_pylist()] == sorted(arrays)
    for row in ds.manifest().to_pylist():
        assert np.array_equal(ds.read_item(row).mask.array, arrays[row["item_id"]])
    with pytest.raises(FormatError) as e:  # a list read from a URL names no local file
        ds.locate("/etc/passwd")
    assert e.value.code == "path_outside_root"
    with pytest.raises(FormatError) as e:
        ds.locate("../../../../x.png")
    assert e.value.code == "path_outside_root"


def test_bad_rows_are_listing_problems_or_error_rows(tmp_path, capsys):
    write_mask(tmp_path / "a.png", np.eye(4, dtype=np.uint8))
    (tmp_path / "l.csv").write_text("item_id,mask,width,height\n"
                                    "a,a.png,4,4\n"
                                    "a,b.png,,\n"           # duplicate id: the first row is the item
                                    ",a.png,,\n"            # no item_id: no item
                                    "e,,,\n"                # empty mask cell: error row
                                    "w,a.png,-3,4\n"        # bad width: error row
                                    "x,a.png,1,2,3,4\n"     # more fields than the header
                                    "\n"
                                    "g,gone.png,,\n")       # missing local file: error row
    ds = open_dataset(tmp_path / "l.csv")
    assert [r["item_id"] for r in ds.manifest().to_pylist()] == ["a", "e", "g", "w"]
    assert [(p["kind"], p["path"].rsplit(":", 1)[1]) for p in ds.problems()] == [
        ("bad_url_list", "4"), ("bad_url_list", "7"), ("duplicate_entry", "3")]
    assert cli("scan", str(tmp_path / "l.csv"), "--out", str(tmp_path / "r")) == 1  # a listing problem: exit 1
    out = capsys.readouterr().out
    assert "duplicate_entry" in out and "bad_url_list" in out
    rows = items(tmp_path / "r")
    assert {k: (r["status"], r["error_code"]) for k, r in rows.items()} == {
        "a": ("ok", None), "e": ("error", "bad_url_list"), "g": ("error", "missing_file"),
        "w": ("error", "bad_url_list")}
    assert "empty mask cell" in rows["e"]["error_message"] and "width" in rows["w"]["error_message"]
    assert cli("validate", str(tmp_path / "l.csv"), "--out", str(tmp_path / "v")) == 1
    found = load_report_table(tmp_path / "v", "dataset_findings").to_pylist()
    assert sorted(f["rule"] for f in found if f["rule"] in ("bad_url_list", "duplicate_entry")) == [
        "bad_url_list", "bad_url_list", "duplicate_entry"]
    # JSONL: a line that is not a JSON object is a problem too; a file without the columns is refused
    (tmp_path / "l.jsonl").write_text('{"item_id": "a", "mask": "a.png"}\n{not json\n[1, 2]\n{"item_id": 7, '
                                      '"mask": "a.png"}\n')
    ds = open_dataset(tmp_path / "l.jsonl", layout="urls")
    assert [r["item_id"] for r in ds.manifest().to_pylist()] == ["7", "a"]
    assert [p["kind"] for p in ds.problems()] == ["bad_url_list", "bad_url_list"]
    (tmp_path / "n.csv").write_text("id,path\na,a.png\n")
    with pytest.raises(FormatError) as e:
        open_dataset(tmp_path / "n.csv", layout="urls").manifest()
    assert e.value.code == "bad_url_list"
    with pytest.raises(FormatError) as e:
        detect_layout(tmp_path / "n.csv")
    assert e.value.code == "unknown_layout"


def test_url_list_dataset_pickles_small(tmp_path):
    rows = [{"item_id": f"i{k:05d}", "mask": f"https://h.example/masks/{k}.png"} for k in range(5000)]
    ds = open_dataset(write_list(tmp_path / "l.jsonl", rows))
    assert ds.manifest().num_rows == 5000
    assert len(pickle.dumps(ds)) < 2000  # rows travel in shards, never with the dataset


# ----------------------------------------------------------------------------- faults


def test_remote_faults_are_item_error_rows_with_their_codes(tmp_path, server, capsys):
    ok = png(np.eye(8, dtype=np.uint8))
    for name in ("ok", "flaky", "busy"):
        server.files[f"/f/{name}.png"] = ok
    server.fail["/f/flaky.png"] = [503, 503]
    server.fail["/f/busy.png"] = [429]
    server.fail["/f/down.png"] = [500] * 50  # never recovers
    cells = {"ok": "/f/ok.png", "flaky": "/f/flaky.png", "busy": "/f/busy.png", "gone": "/f/gone.png",
             "denied": "/private/x.png", "expired": "/expired/x.png?X-Amz-Date=20200101T000000Z&X-Amz-Expires=60",
             "down": "/f/down.png"}
    lst = write_list(tmp_path / "l.csv", [{"item_id": k, "mask": server.url + v} for k, v in cells.items()])
    assert cli("scan", str(lst), "--storage-options", AUTH, "--out", str(tmp_path / "r")) == 0  # the run goes on
    rows = items(tmp_path / "r")
    assert {k: r["error_code"] for k, r in rows.items()} == {
        "ok": None, "flaky": None, "busy": None, "gone": "not_found", "denied": "forbidden",
        "expired": "expired_url", "down": "remote_error"}
    assert server.count("/f/flaky.png") == 3 and server.count("/f/busy.png") == 2  # retried, then read
    assert server.count("/f/down.png") == storage.RETRIES + 1
    assert "X-Amz-Signature" not in json.dumps(rows) and "X-Amz-Date" not in json.dumps(rows)
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["counts"]["error_codes"] == {"expired_url": 1, "forbidden": 1, "not_found": 1, "remote_error": 1}
    assert "not_found: 1" in capsys.readouterr().out
    # validate: unreadable items are error findings, as for local files (exit code 1)
    assert cli("validate", str(lst), "--storage-options", AUTH, "--out", str(tmp_path / "v")) == 1
    assert {k: r["error_code"] for k, r in items(tmp_path / "v").items()}["expired"] == "expired_url"
    # without the header: 401 -> forbidden for every item (but the one whose URL says it expired)
    assert cli("scan", str(lst), "--out", str(tmp_path / "noauth")) == 0
    codes = {k: r["error_code"] for k, r in items(tmp_path / "noauth").items()}
    assert codes.pop("expired") == "expired_url" and set(codes.values()) == {"forbidden"}


@pytest.mark.parametrize("options", [{"headers": {"Authorization": TOKEN}},
                                     {"client_kwargs": {"headers": {"Authorization": TOKEN}}},
                                     {"https": {"headers": {"Authorization": "x"}}, "http": {"headers": {
                                         "Authorization": TOKEN}}, "s3": {"anon": False}}])
def test_headers_forms_of_storage_options(server, options):
    server.files["/h/a.png"] = b"abc"
    fetcher = storage.Fetcher(options=options)
    assert fetcher.read(fetcher.location(server.url + "/h/a.png")) == b"abc"
    assert storage.scoped_options("s3://b/k", options).get("headers") is None


def test_expiry_in_the_url_alone_is_expired_url(server):
    # a signed URL past its X-Amz-Date + X-Amz-Expires: expired_url even when the body says nothing
    fetcher = storage.Fetcher(options={"headers": {"Authorization": TOKEN}})
    with pytest.raises(FormatError) as e:
        fetcher.read(fetcher.location(server.url + "/private/a.png?X-Amz-Date=20200101T000000Z&X-Amz-Expires=60"))
    assert e.value.code == "expired_url" and "X-Amz" not in e.value.message


# ----------------------------------------------------------------------------- prefetch and cache


def test_prefetch_bounds_requests_in_flight_and_changes_nothing(tmp_path, server):
    arrays = masks(24, seed=5)
    for iid, arr in arrays.items():
        server.files[f"/p/{iid}.png"] = png(arr)
    lst = write_list(tmp_path / "l.csv", [{"item_id": i, "mask": f"{server.url}/p/{i}.png"} for i in arrays])
    server.delay = 0.05
    reports = {}
    for n in (0, 1, 6):
        server.reset()
        server.delay = 0.05
        out = tmp_path / f"r{n}"
        assert cli("validate", str(lst), "--storage-options", AUTH, "--prefetch", str(n), "--out", str(out)) == 0
        assert server.count("/p/") == len(arrays)  # each object fetched once, prefetched or not
        if n == 0:
            assert server.max_in_flight == 1  # one at a time, when the item is read
        else:
            assert server.max_in_flight <= n  # bounded
        if n == 6:
            assert server.max_in_flight > 1  # and really ahead
        reports[n] = (sorted_table(out, "items", drop=()), sorted_table(out, "findings", drop=()))
    assert reports[0] == reports[1] == reports[6]


def test_prefetch_window_hands_each_row_its_objects():
    # the window itself: any depth, rows with 0..3 objects, a fault, in order
    calls = []

    class Fake(storage.Fetcher):
        def fetch(self, loc):
            calls.append(loc.url)
            if loc.url.endswith("bad"):
                raise FormatError("not_found", f"{loc.url}: gone")
            return loc.url.encode()

    rows = [[f"https://h/{r}/{k}" for k in range(r % 4)] + (["https://h/bad"] if r == 5 else []) for r in range(12)]
    for depth in (1, 2, 5, 40):
        calls.clear()
        f = Fake(prefetch=depth, options={})
        with storage.prefetching(lambda row: [(f, f.location(u)) for u in row], rows) as ready:
            for i, row in enumerate(rows):
                with ready(i):
                    for u in row:
                        if u.endswith("bad"):
                            with pytest.raises(FormatError):
                                f.read(f.location(u))
                        else:
                            assert f.read(f.location(u)) == u.encode()
        assert sorted(calls) == sorted(u for row in rows for u in row)  # each once, none re-read


def test_cache_makes_a_rerun_request_nothing(tmp_path, server):
    arrays = masks(6, seed=6)
    for iid, arr in arrays.items():
        server.files[f"/c/{iid}.png"] = png(arr)
    lst = write_list(tmp_path / "l.jsonl", [{"item_id": i, "mask": f"{server.url}/c/{i}.png?sig=1"} for i in arrays])
    cache = tmp_path / "cache"
    assert cli("scan", str(lst), "--storage-options", AUTH, "--cache", str(cache), "--out", str(tmp_path / "a")) == 0
    assert server.count("/c/") == len(arrays)
    server.reset()
    assert cli("scan", str(lst), "--storage-options", AUTH, "--cache", str(cache), "--out", str(tmp_path / "b")) == 0
    assert server.count() == 0  # every object came from the cache
    assert sorted_table(tmp_path / "a", "items", drop=()) == sorted_table(tmp_path / "b", "items", drop=())
    assert len([p for p in cache.rglob("*") if p.is_file()]) == len(arrays)


def test_cache_is_bounded(tmp_path, monkeypatch, server):
    monkeypatch.setenv("FASTMASK_CACHE_BYTES", "3000")
    f = storage.Fetcher(prefetch=0, cache=tmp_path / "cache", options={"headers": {"Authorization": TOKEN}})
    for k in range(10):
        server.files[f"/b/{k}"] = bytes([k]) * 1000
        assert f.read(f.location(f"{server.url}/b/{k}")) == bytes([k]) * 1000
        time.sleep(0.01)  # distinct modification times: the oldest go first
    kept = sorted(p.stat().st_size for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert sum(kept) <= 3000 and kept
    server.reset()
    assert f.read(f.location(f"{server.url}/b/9")) == bytes([9]) * 1000 and server.count() == 0  # the newest stayed


def test_fetch_settings_travel_to_worker_processes(tmp_path, server):
    arrays = masks(4, seed=7)
    for iid, arr in arrays.items():
        server.files[f"/w/{iid}.png"] = png(arr)
    lst = write_list(tmp_path / "l.csv", [{"item_id": i, "mask": f"{server.url}/w/{i}.png"} for i in arrays])
    assert main(["scan", str(lst), "--storage-options", AUTH, "--cache", str(tmp_path / "cache"), "--workers", "2",
                 "--shard-size", "2", "--quiet", "--out", str(tmp_path / "r")]) == 0
    assert {r["status"] for r in items(tmp_path / "r").values()} == {"ok"}  # the header reached the workers
    assert len([p for p in (tmp_path / "cache").rglob("*") if p.is_file()]) == len(arrays)


# ----------------------------------------------------------------------------- platforms by URL

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
NAMES = ["car", "person", "tree", "dog"]


def labelbox_export(base_url: str, arrays: dict[str, np.ndarray], *, expired: set = frozenset()) -> tuple[str, dict]:
    """Export NDJSON (composite masks by URL) and the files {url path: bytes} it names."""
    lines, files = [], {}
    for key, arr in arrays.items():
        rgb = np.zeros(arr.shape + (3,), np.uint8)
        objs = []
        path = f"{'/expired' if key in expired else ''}/lb/masks/{key}/composite.png"
        for v in [int(x) for x in np.unique(arr) if x]:
            rgb[arr == v] = COLORS[v - 1]
            objs.append({"feature_id": f"f-{key}-{v}", "name": NAMES[v - 1], "annotation_kind":
                         "ImageSegmentationMask", "composite_mask": {"url": f"{base_url}{path}?token=t",
                                                                     "color_rgb": list(COLORS[v - 1])}})
        files[path] = png(rgb)
        lines.append({"data_row": {"id": "dr-" + key, "global_key": key}, "media_attributes": {
            "width": arr.shape[1], "height": arr.shape[0]}, "projects": {"p": {"labels": [
                {"id": "L-" + key, "annotations": {"objects": objs}}]}}})
    return "".join(json.dumps(x) + "\n" for x in lines), files


def maps(ds) -> dict:
    out = {}
    for row in ds.manifest().to_pylist():
        src = read_source(ds, row)
        out[row["item_id"]] = (src.class_map.tolist(), None if src.instance_map is None else src.instance_map.tolist())
    return out


def test_labelbox_masks_fetched_by_url_with_the_api_key(tmp_path, server):
    arrays = masks(4, seed=8)
    text, files = labelbox_export(server.url, arrays, expired={"im03"})
    server.files.update(files)
    (tmp_path / "remote").mkdir()
    (tmp_path / "remote" / "export.ndjson").write_text(text)
    (tmp_path / "copies").mkdir()  # the same export with the masks downloaded beside it (the oracle)
    (tmp_path / "copies" / "export.ndjson").write_text(text)
    for path, data in files.items():
        p = tmp_path / "copies" / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    storage.set_default_options({"headers": {"Authorization": TOKEN}})
    remote, copies = open_dataset(tmp_path / "remote" / "export.ndjson"), open_dataset(tmp_path / "copies" / "export.ndjson")
    assert remote.layout == "labelbox"
    rows = {r["item_id"]: r for r in remote.manifest().to_pylist()}
    with pytest.raises(FormatError) as e:
        remote.read_item(rows["im03"])
    assert e.value.code == "expired_url"
    del server.files["/expired/lb/masks/im03/composite.png"]
    ok = {k: v for k, v in maps(copies).items() if k != "im03"}
    server.reset()
    got = {}
    for k in ok:
        src = read_source(remote, rows[k])
        got[k] = (src.class_map.tolist(), src.instance_map.tolist())
    assert got == ok and server.count("/lb/") == 3  # fetched, pixel for pixel what the copies give
    for k in ok:  # and the class map is the source's classes through the names' label map
        lm = {n: i for i, n in remote.labelmap.names.items()}
        want = np.vectorize(lambda v: lm[NAMES[v - 1]] if v else 0)(arrays[k])
        assert np.array_equal(np.array(got[k][0]), want)
    storage.set_default_options(None)
    # through the CLI: the expired URL is an error row, the others are read
    server.reset()
    assert cli("scan", str(tmp_path / "remote" / "export.ndjson"), "--storage-options", AUTH,
               "--out", str(tmp_path / "r")) == 0
    assert {k: r["error_code"] for k, r in items(tmp_path / "r").items()} == {
        "im00": None, "im01": None, "im02": None, "im03": "expired_url"}


def test_nucleus_masks_fetched_by_url(tmp_path, server, s3_bucket):
    import fsspec
    arrays = masks(4, seed=9)
    recs = []
    for k, (iid, arr) in enumerate(sorted(arrays.items())):
        if k % 2:
            fsspec.filesystem("s3").pipe_file(f"{s3_bucket[5:]}/nuc/{iid}.png", png(arr))
            url = f"{s3_bucket}/nuc/{iid}.png"
        else:
            server.files[f"/nuc/{iid}.png"] = png(arr)
            url = f"{server.url}/nuc/{iid}.png"
        recs.append({"type": "mask", "reference_id": iid, "mask_url": url, "annotations": [
            {"label": "background", "index": 0}] + [{"label": NAMES[v - 1], "index": v} for v in range(1, 4)]})
    recs.append({"type": "mask", "reference_id": "gone", "mask_url": f"{server.url}/nuc/gone.png",
                 "annotations": [{"label": "background", "index": 0}]})
    (tmp_path / "seg.json").write_text(json.dumps(recs))
    assert detect_layout(tmp_path / "seg.json") == "nucleus"
    assert cli("scan", str(tmp_path / "seg.json"), "--storage-options", AUTH, "--out", str(tmp_path / "r")) == 0
    rows = items(tmp_path / "r")
    assert rows["gone"]["error_code"] == "not_found"
    for iid, arr in arrays.items():
        assert rows[iid]["status"] == "ok"
        vals, counts = np.unique(arr, return_counts=True)
        lm = open_dataset(tmp_path / "seg.json").labelmap
        ids = {n: i for i, n in lm.names.items()}
        want = {ids[NAMES[v - 1]] if v else 0: int(c) for v, c in zip(vals.tolist(), counts.tolist())}
        assert dict(zip(rows[iid]["values"], rows[iid]["value_pixels"])) == want


def test_scan_job_api_uses_the_options_captured_at_open(tmp_path, server):
    server.files["/api/a.png"] = png(np.eye(5, dtype=np.uint8))
    lst = write_list(tmp_path / "l.csv", [{"item_id": "a", "mask": f"{server.url}/api/a.png"}])
    storage.set_default_options({"headers": {"Authorization": TOKEN}})
    ds = open_dataset(lst)
    storage.set_default_options(None)  # later changes do not reach an open dataset
    run_job(ScanJob(ds), ds.manifest(), tmp_path / "r", workers=1, quiet=True)
    assert items(tmp_path / "r")["a"]["status"] == "ok"


def test_any_fsspec_filesystem_through_the_same_path(tmp_path):
    # memory:// (fsspec's in-process filesystem) stands for any other backend: a list on it,
    # masks on it by URL and relative to it, a missing object not_found
    import fsspec
    fs = fsspec.filesystem("memory")
    arrays = masks(3, seed=10)
    for iid, arr in arrays.items():
        fs.pipe_file(f"/fm-test/masks/{iid}.png", png(arr))
    fs.pipe_file("/fm-test/l.csv", ("item_id,mask\n" + "".join(
        f"{i},{'masks/' + i + '.png' if k % 2 else 'memory://fm-test/masks/' + i + '.png'}\n"
        for k, i in enumerate(arrays)) + "z,masks/none.png\n").encode())
    ds = open_dataset("memory://fm-test/l.csv")
    assert ds.layout == "urls"
    run_job(ScanJob(ds), ds.manifest(), tmp_path / "r", workers=1, quiet=True)
    rows = items(tmp_path / "r")
    assert rows["z"]["error_code"] == "not_found"
    for iid, arr in arrays.items():
        vals, counts = np.unique(arr, return_counts=True)
        assert (rows[iid]["values"], rows[iid]["value_pixels"]) == (vals.tolist(), counts.tolist())
    fs.rm("/fm-test", recursive=True)


def test_url_list_served_over_https_with_relative_masks(tmp_path, server):
    arrays = masks(3, seed=11)
    for iid, arr in arrays.items():
        server.files[f"/rel/masks/{iid}.png"] = png(arr)
    server.files["/rel/lists/l.jsonl"] = "".join(
        json.dumps({"item_id": i, "mask": f"../masks/{i}.png"}) + "\n" for i in arrays).encode()
    url = f"{server.url}/rel/lists/l.jsonl"
    for layout in ([], ["--layout", "urls"]):  # detected from its first record, or chosen
        out = tmp_path / f"r{len(layout)}"
        assert cli("scan", url, *layout, "--storage-options", AUTH, "--out", str(out)) == 0
        rows = items(out)
        for iid, arr in arrays.items():
            vals, counts = np.unique(arr, return_counts=True)
            assert (rows[iid]["values"], rows[iid]["value_pixels"]) == (vals.tolist(), counts.tolist())
    # a list that cannot be read stops the command (exit code 2), naming the code
    assert cli("scan", f"{server.url}/rel/lists/none.jsonl", "--layout", "urls", "--storage-options", AUTH,
               "--out", str(tmp_path / "none")) == 2
