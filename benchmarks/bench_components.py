"""Connected-component labeling: fastmask vs OpenCV, cc3d and scipy.ndimage.

Data (2048 x 1024, i.e. arrays of shape (1024, 2048); half of that with --quick):
  * blobs:  binary, Gaussian-blurred noise (sigma 10) thresholded at its median;
  * noise:  binary, i.i.d. pixels with p = 0.5 (worst case: ~1 run per 2 pixels);
  * classes: 19-class label map, argmax of 19 smooth random fields (Cityscapes-like
    blob regions; values 0..18, 0 is background as in cc3d).
Every anchor runs in this process on the same array.  fastmask is single-threaded;
OpenCV's default uses all its threads (rows for 1 thread are shown too).  ``np.count_nonzero`` on the
same array is printed as a memory floor (one read pass, no output).
"""
from __future__ import annotations

import numpy as np

from benchmarks._timing import Table, fmt_time, median_seconds


def _blobs(rng: np.random.Generator, shape: tuple[int, int], sigma: float = 10.0) -> np.ndarray:
    import cv2

    field = cv2.GaussianBlur(rng.random(shape, dtype=np.float32), (0, 0), sigma)
    return (field > np.median(field)).astype(np.uint8)


def _classes(rng: np.random.Generator, shape: tuple[int, int], n_classes: int = 19, factor: int = 4,
             sigma: float = 40.0) -> np.ndarray:
    import cv2

    h, w = shape[0] // factor, shape[1] // factor
    fields = np.stack([cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0), sigma / factor)
                       for _ in range(n_classes)])
    small = fields.argmax(axis=0).astype(np.uint8)
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def _runs(a: np.ndarray) -> int:
    return int(np.count_nonzero(a[:, 1:] != a[:, :-1]) + a.shape[0])


def run(quick: bool = False) -> None:
    import cc3d
    import cv2
    import scipy.ndimage as ndi

    from fastmask import components as fc

    shape = (512, 1024) if quick else (1024, 2048)
    repeat = 5 if quick else 15
    rng = np.random.default_rng(2024)
    blobs = _blobs(rng, shape)
    noise = (rng.random(shape) < 0.5).astype(np.uint8)
    classes = _classes(rng, shape)

    def t(fn):
        return median_seconds(fn, repeat=repeat, warmup=2)

    # warm the JIT (cache) for every signature used below
    for conn in (4, 8):
        fc.label(blobs, conn)
        fc.component_stats(blobs, conn)

    cross = ndi.generate_binary_structure(2, 1)
    full = np.ones((3, 3), bool)
    desc = f"{shape[1]}x{shape[0]}"

    for name, mask in (("blobs", blobs), ("noise", noise)):
        table = Table(f"binary labeling, {name} {desc} (uint8, {_runs(mask)} runs)")
        floor = t(lambda: np.count_nonzero(mask))
        buf = np.empty(mask.shape, np.int32)
        for conn in (8, 4):
            n = fc.label(mask, conn)[1]
            ours = t(lambda: fc.label(mask, conn))
            note = f"{n} comps; {ours / floor:.0f}x count_nonzero floor ({fmt_time(floor)})"
            cv_default = t(lambda: cv2.connectedComponents(mask, connectivity=conn))
            table.add(f"label {conn}-conn", ours, cv_default,
                      f"cv2.connectedComponents ({cv2.getNumThreads()} threads)", note)
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                table.add(f"label {conn}-conn", ours, t(lambda: cv2.connectedComponents(mask, connectivity=conn)),
                          "cv2.connectedComponents (1 thread)")
            finally:
                cv2.setNumThreads(threads)
            table.add(f"label {conn}-conn, out= reused", t(lambda: fc.label(mask, conn, out=buf)), cv_default,
                      "cv2.connectedComponents (default)", "no output allocation")
            table.add(f"label {conn}-conn", ours, t(lambda: cc3d.connected_components(mask, connectivity=conn)),
                      "cc3d")
            st = cross if conn == 4 else full
            table.add(f"label {conn}-conn", ours, t(lambda: ndi.label(mask, structure=st)), "scipy.ndimage.label")
            stats = t(lambda: fc.component_stats(mask, conn))
            table.add(f"component_stats {conn}-conn", stats,
                      t(lambda: cv2.connectedComponentsWithStats(mask, connectivity=conn)),
                      "cv2.connectedComponentsWithStats")
        table.print()

    table = Table(f"multilabel labeling, 19 classes {desc} (uint8, {_runs(classes)} runs)")
    floor = t(lambda: np.count_nonzero(classes))
    values = [v for v in np.unique(classes) if v != 0]

    def cv_loop(conn):
        for v in values:
            cv2.connectedComponents((classes == v).view(np.uint8), connectivity=conn)

    buf = np.empty(classes.shape, np.int32)
    for conn in (8, 4):
        fc.label(classes, conn)
        n = fc.label(classes, conn)[1]
        ours = t(lambda: fc.label(classes, conn))
        note = f"{n} comps; {ours / floor:.0f}x count_nonzero floor ({fmt_time(floor)})"
        cc = t(lambda: cc3d.connected_components(classes, connectivity=conn))
        table.add(f"label {conn}-conn", ours, cc, "cc3d", note)
        table.add(f"label {conn}-conn, out= reused", t(lambda: fc.label(classes, conn, out=buf)), cc, "cc3d",
                  "no output allocation")
        table.add(f"label {conn}-conn", ours, t(lambda: cv_loop(conn)), "cv2 loop over classes")
        stats = t(lambda: fc.component_stats(classes, conn))
        table.add(f"component_stats {conn}-conn", stats,
                  t(lambda: cc3d.statistics(cc3d.connected_components(classes, connectivity=conn))),
                  "cc3d + cc3d.statistics")
        inst = t(lambda: fc.split_instances(classes, conn, id_scheme=1000))
        table.add(f"split_instances {conn}-conn", inst, None, "", "class*1000+k, table")
    table.print()
