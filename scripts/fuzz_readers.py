"""Coverage-guided fuzzing of fastmask's parsers with atheris (optional; not run in CI).

    pip install atheris                      # needs a clang toolchain on some platforms
    python scripts/fuzz_readers.py rle  -atheris_runs=200000 corpus-rle/
    python scripts/fuzz_readers.py png  -max_len=4096 corpus-png/
    python scripts/fuzz_readers.py labelmap
    python scripts/fuzz_readers.py coco
    NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR=/tmp/nb-bc python scripts/fuzz_readers.py rle   # catch out-of-bounds

Targets: ``rle`` (compressed strings + sizes into decode/area/toBbox/merge/iou, and flat
polygons into frPyObjects), ``png`` (read_mask/read_panoptic/read_image_size on the bytes),
``labelmap`` (load_labelmap on a .txt / .json file), ``coco`` (open_dataset + read_item + the
validate job on a COCO JSON). An exception outside the documented ones (ValueError/TypeError
for the RLE API, FormatError for readers, ItemError for the job) is a finding: atheris stops
and writes the input to ``crash-<sha1>``; turn it into a regression test in tests/test_fuzz.py.

Without atheris the same targets run on random mutations of built-in seeds
(``--plain N`` iterations), which needs nothing beyond the test extras.

With ``NUMBA_BOUNDSCHECK=1`` Numba checks every array index (and raises IndexError) instead of
corrupting memory: use a separate ``NUMBA_CACHE_DIR`` so normal cached kernels are not reused.
"""
from __future__ import annotations

import io
import json
import os
import random
import struct
import sys
import tempfile

import numpy as np

import fastmask.rle as R
from fastmask.engine import ItemError
from fastmask.formats import FormatError, open_dataset, png
from fastmask.formats import labelmap as L

TMP = tempfile.mkdtemp(prefix="fastmask-fuzz-")
os.environ.setdefault("FASTMASK_CACHE", os.path.join(TMP, "cache"))


def _seed_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.arange(63, dtype=np.uint8).reshape(7, 9) % 4).save(buf, "PNG")
    return buf.getvalue()


SEEDS = {
    "rle": [b"\x05\x05" + b"52203", b"\x06\x08" + b"0" * 8 + b"ooooooo1", b"\x03\x03" + b"09"],
    "png": [_seed_png()],
    "labelmap": [b"txt:background:0,0,0::\ncat:128,0,0::\n", b'json:{"labels": {"0": "bg", "1": "cat"}}'],
    "coco": [json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 6}],
                         "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [1, 1, 4, 3],
                                          "segmentation": [[1, 1, 5, 1, 5, 4]]}],
                         "categories": [{"id": 1, "name": "a"}]}).encode()],
}


def target_rle(data: bytes) -> None:
    if len(data) < 2:
        return
    h, w = data[0] % 16, data[1] % 16
    rle = {"size": [h, w], "counts": data[2:]}
    for f in (R.decode, R.area, R.toBbox, R.merge):
        try:
            f([rle])
        except (ValueError, TypeError):
            pass
    try:
        R.iou([rle], [rle], [0])
    except (ValueError, TypeError):
        pass
    n = (len(data) - 2) // 8
    if n:
        coords = np.frombuffer(data[2:2 + 8 * n], dtype="<f8").tolist()
        try:
            R.frPyObjects([coords], h, w)
        except (ValueError, TypeError):
            pass


def target_png(data: bytes) -> None:
    for f in (png.read_mask, png.read_panoptic, png.read_image_size):
        try:
            f(data)
        except FormatError:
            pass


def target_labelmap(data: bytes) -> None:
    kind, _, body = data.partition(b":")
    name = "labelmap.json" if kind == b"json" else "labelmap.txt"
    path = os.path.join(TMP, name)
    with open(path, "wb") as f:
        f.write(body)
    try:
        L.load_labelmap(path)
    except FormatError:
        pass


_N = [0]


def target_coco(data: bytes) -> None:
    from fastmask.jobs.validate import ValidateJob

    _N[0] += 1
    path = os.path.join(TMP, f"instances_{_N[0]}.json")
    with open(path, "wb") as f:
        f.write(data)
    try:
        ds = open_dataset(path)
        manifest = ds.manifest()
        job = ValidateJob(ds)
    except FormatError:
        return
    for row in manifest.slice(0, 20).to_pylist():
        try:
            ds.read_item(row)
        except FormatError:
            pass
        try:
            job.process(row)
        except ItemError:
            pass
    os.unlink(path)


TARGETS = {"rle": target_rle, "png": target_png, "labelmap": target_labelmap, "coco": target_coco}


def _mutate(rnd: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 8)):
        op = rnd.randrange(4)
        pos = rnd.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(pos, len(b) - 1)] = rnd.randrange(256)
        elif op == 1:
            b[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 4)))
        elif op == 2:
            del b[pos:pos + rnd.randint(1, 8)]
        else:
            b[pos:pos] = struct.pack("<d", rnd.choice([1e300, -1e300, 3.6e307, float("nan"), 2.0**32]))
    return bytes(b)


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        print(__doc__)
        return 2
    name, target = sys.argv[1], TARGETS[sys.argv[1]]
    if "--plain" in sys.argv:
        n = int(sys.argv[sys.argv.index("--plain") + 1])
        rnd = random.Random(0)
        for i in range(n):
            data = _mutate(rnd, rnd.choice(SEEDS[name]))
            try:
                target(data)
            except Exception:
                print(f"finding after {i} inputs: {data!r}", file=sys.stderr)
                raise
        print(f"{name}: {n} mutated inputs, no finding")
        return 0
    import atheris

    atheris.instrument_all()
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
