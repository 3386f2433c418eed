"""`validate` from object storage next to local disk, on the same masks.

The generated 640x480 semantic masks of the engine benchmark (``$FASTMASK_BENCH_DATA``)
are validated from three places, with 1 and 2 workers, by the command line exactly as a
user runs it (``fastmask validate DATASET --out REPORT``, default settings):

- ``local disk``: a folder of the masks;
- ``S3 (local server)``: the same masks uploaded to a moto S3 server on 127.0.0.1 (its own
  process);
- ``S3 + latency``: the same server behind a small TCP proxy that holds every request for
  a random 20-50 ms before forwarding it, as an object store across a network does;
- ``HTTP URL list``: the same files served by Python's threading static file server, read
  through a CSV URL list (``item_id,mask``), directly and behind the same latency proxy:
  a server several times faster than the S3 emulator, so the client's side shows.

Prints masks/s (median of the rounds; the wall time of the whole command, listing
included) and the ratio to local disk. Goal: with latency, at least 0.8x the local-disk
throughput with default settings. Then the time to list 100,000 objects (paged) through
``fastmask.storage``. Also printed: what the local S3 server (moto, a Python server sharing the machine's two
cores with the workers) serves on its own, the ceiling of any client here.
Default 5,000 masks (``$FASTMASK_BENCH_REMOTE_MASKS``), 3 rounds
(``$FASTMASK_BENCH_REMOTE_ROUNDS``): the local server serves about fifty masks a second
here, so 20,000 masks a round would take most of an hour.
``--quick``: 2,000 masks, 10,000 objects, one round.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.bench_engine import ensure_dataset

LATENCY_MS = (20, 50)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_moto() -> tuple[subprocess.Popen, int]:
    port = _free_port()
    return _serve([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port, "the moto S3 server")


def _serve(argv: list[str], port: int, what: str) -> tuple[subprocess.Popen, int]:
    """Start the server ``argv`` and wait until ``port`` on 127.0.0.1 answers."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{what} did not start")


class LatencyProxy:
    """A TCP proxy on 127.0.0.1 that delays every chunk a client sends (a request) by a
    random ``lo``-``hi`` ms before passing it on; replies pass straight back."""

    def __init__(self, upstream_port: int, lo_ms: float, hi_ms: float, seed: int = 0):
        self.upstream_port, self.lo, self.hi = upstream_port, lo_ms / 1000, hi_ms / 1000
        self.rng = random.Random(seed)
        self.port = _free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.ready = threading.Event()
        self.thread.start()
        self.ready.wait(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()

    async def _handle(self, reader, writer) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return

        async def client_to_server():
            try:
                while data := await reader.read(1 << 16):
                    await asyncio.sleep(self.rng.uniform(self.lo, self.hi))
                    up_writer.write(data)
                    await up_writer.drain()
            finally:
                up_writer.close()

        async def server_to_client():
            try:
                while data := await up_reader.read(1 << 16):
                    writer.write(data)
                    await writer.drain()
            finally:
                writer.close()

        await asyncio.gather(client_to_server(), server_to_client(), return_exceptions=True)

    def stop(self) -> None:
        async def shutdown():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.loop.stop()
        asyncio.run_coroutine_threadsafe(shutdown(), self.loop)
        self.thread.join(5)


def _env(endpoint: str) -> dict:
    return {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


def _upload(folder: Path, url: str, endpoint: str) -> None:
    import fsspec
    fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": endpoint}, key="bench", secret="bench",
                           skip_instance_cache=True)
    bucket, prefix = url[len("s3://"):].split("/", 1)
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    files = sorted(folder.glob("*.png"))
    for i in range(0, len(files), 500):  # concurrent PUTs, 500 at a time
        fs.pipe({f"{bucket}/{prefix}/{p.name}": p.read_bytes() for p in files[i:i + 500]})


def _start_http(folder: Path) -> tuple[subprocess.Popen, int]:
    """Python's threading static file server on 127.0.0.1 serving ``folder``."""
    port = _free_port()
    return _serve([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
                  port, "the HTTP server")


def _url_list(folder: Path, base: str, target: Path) -> str:
    """A CSV URL list (``item_id,mask``) of the masks in ``folder`` served under ``base``."""
    lines = ["item_id,mask"] + [f"{p.stem},{base}/{p.name}" for p in sorted(folder.glob("*.png"))]
    target.write_text("\n".join(lines) + "\n")
    return str(target)


def _validate(dataset: str, workers: int, env: dict, out: str) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "fastmask", "validate", dataset, "--out", out, "--overwrite", "--quiet",
           "--workers", str(workers), "--fail-on", "never"]
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {done.returncode}\n{done.stderr[-2000:]}")
    with open(os.path.join(out, "run.json")) as f:
        return wall, json.load(f)


def _server_ceiling(endpoint: str, url: str, in_flight: int = 16) -> float:
    """GETs/s the local S3 server itself serves for these objects with ``in_flight`` requests
    at a time, fetched by s3fs alone (no decoding, no fastmask): the most any client gets."""
    import fsspec
    fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": endpoint}, key="bench", secret="bench",
                           skip_instance_cache=True)
    keys = sorted(fs.find(url[len("s3://"):]))
    t = time.perf_counter()
    for i in range(0, len(keys), in_flight):
        fs.cat(keys[i:i + in_flight])  # concurrent GETs
    return len(keys) / (time.perf_counter() - t)


def _listing(endpoint: str, n: int) -> float:
    import fsspec

    from fastmask.storage import Location
    fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": endpoint}, key="bench", secret="bench",
                           skip_instance_cache=True)
    if not fs.exists("listing"):
        fs.mkdir("listing")
    have = len(fs.find(f"listing/n{n}/"))
    for i in range(have, n, 1000):
        fs.pipe({f"listing/n{n}/{j // 1000:04d}/{j:07d}.png": b"x" for j in range(i, min(n, i + 1000))})
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"})
    loc = Location(f"s3://listing/n{n}")
    t = time.perf_counter()
    count = sum(1 for _ in loc.find())
    seconds = time.perf_counter() - t
    assert count == n, (count, n)
    return seconds


def run(quick: bool = False) -> None:
    n = 2_000 if quick else int(os.environ.get("FASTMASK_BENCH_REMOTE_MASKS", "5000"))
    rounds = 1 if quick else int(os.environ.get("FASTMASK_BENCH_REMOTE_ROUNDS", "3"))
    manifest = ensure_dataset({"small": n})  # 640x480
    tmp = Path(tempfile.mkdtemp(prefix="fastmask-bench-remote-"))
    local = tmp / "masks"
    local.mkdir()
    for p in manifest.column("path").to_pylist():  # exactly these n files (hard links: no copy)
        os.link(p, local / Path(p).name)
    moto, port = _start_moto()
    direct = f"http://127.0.0.1:{port}"
    proxy = LatencyProxy(port, *LATENCY_MS)
    slow = f"http://127.0.0.1:{proxy.port}"
    http, http_port = _start_http(local)
    http_proxy = LatencyProxy(http_port, *LATENCY_MS, seed=1)
    fast_list = _url_list(local, f"http://127.0.0.1:{http_port}", tmp / "urls-direct.csv")
    slow_list = _url_list(local, f"http://127.0.0.1:{http_proxy.port}", tmp / "urls-latency.csv")
    try:
        print(f"uploading {n} masks to the local S3 server...", file=sys.stderr)
        _upload(local, "s3://bench/masks", direct)
        places = [("local disk", str(local), _env(direct)), ("S3 (local server)", "s3://bench/masks", _env(direct)),
                  (f"S3 + {LATENCY_MS[0]}-{LATENCY_MS[1]} ms latency", "s3://bench/masks", _env(slow)),
                  ("HTTP URL list (local server)", fast_list, _env(direct)),
                  (f"HTTP URL list + {LATENCY_MS[0]}-{LATENCY_MS[1]} ms", slow_list, _env(direct))]
        results: dict[tuple[str, int], list[float]] = {}
        for _ in range(rounds):
            for workers in (1, 2):
                for name, dataset, env in places:
                    wall, doc = _validate(dataset, workers, env, str(tmp / "report"))
                    results.setdefault((name, workers), []).append(n / wall)
        which = f"median of {rounds} rounds" if rounds % 2 else f"upper median of {rounds} rounds"
        print(f"\nvalidate {n} masks of 640x480 (the whole command, {which}), masks/s")
        print(f"{'from':<34}{'workers':>8}{'masks/s':>10}{'vs local':>10}")
        for workers in (1, 2):
            base = sorted(results[("local disk", workers)])[rounds // 2]
            for name, _, _ in places:
                v = sorted(results[(name, workers)])[rounds // 2]
                print(f"{name:<34}{workers:>8}{v:>10.0f}{v / base:>9.2f}x")
        ceiling = _server_ceiling(direct, "s3://bench/masks")
        print(f"the local S3 server alone (moto, same machine; s3fs GETs, 16 in flight, no decoding): "
              f"{ceiling:.0f} objects/s")
        objects = 10_000 if quick else int(os.environ.get("FASTMASK_BENCH_REMOTE_LISTING", "100000"))
        if not objects:
            return
        seconds = _listing(direct, objects)
        print(f"\nlisting {objects:,} objects (paged, 1,000 keys per request): {seconds:.2f} s "
              f"({objects / seconds:,.0f} objects/s)")
    finally:
        proxy.stop()
        http_proxy.stop()
        http.kill()
        moto.kill()
        moto.wait()
