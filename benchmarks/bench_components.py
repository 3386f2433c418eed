"""Connected-component labeling: fastmask vs OpenCV, cc3d and scipy.ndimage.

Data (2048 x 1024, i.e. arrays of shape (1024, 2048); half of that with --quick):
  * blobs:  binary, Gaussian-blurred noise (sigma 10) thresholded at its median;
  * noise:  binary, i.i.d. pixels with p = 0.5 (worst case: ~1 run per 2 pixels);
  * classes: 19-class label map, argmax of 19 smooth random fields (Cityscapes-like
    blob regions; values 0..18, 0 is background as in cc3d).
Every anchor runs in this process on the same array, timed alternately with
fastmask call by call (medians of each), so background load hits both sides alike.
fastmask is single-threaded; OpenCV's default uses all its threads (rows for 1
thread are shown too).  ``np.count_nonzero`` on the same array is the memory floor
(one read pass, no output): its row's "speed-up" is floor/fastmask (< 1).
"""
from __future__ import annotations


import numpy as np

from benchmarks._timing import Table, paired_medians


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
    repeat = 7 if quick else 31
    rng = np.random.default_rng(2024)
    blobs = _blobs(rng, shape)
    noise = (rng.random(shape) < 0.5).astype(np.uint8)
    classes = _classes(rng, shape)
    threads = cv2.getNumThreads()

    def add(table, case, ours, theirs, anchor, note=""):
        o, t = paired_medians(ours, theirs, repeat, warmup=2)
        table.add(case, o, t, anchor, note)
        return o

    def cv_single(fn):
        def call():
            cv2.setNumThreads(1)
            try:
                return fn()
            finally:
                cv2.setNumThreads(threads)
        return call

    # warm the JIT (cache) for every signature used below
    for conn in (4, 8):
        fc.label(blobs, conn)
        fc.component_stats(blobs, conn)

    cross = ndi.generate_binary_structure(2, 1)
    full = np.ones((3, 3), bool)
    desc = f"{shape[1]}x{shape[0]}"

    for name, mask in (("blobs", blobs), ("noise", noise)):
        table = Table(f"binary labeling, {name} {desc} (uint8, {_runs(mask)} runs)")
        buf = np.empty(mask.shape, np.int32)
        for conn in (8, 4):
            n = fc.label(mask, conn)[1]
            ours = lambda: fc.label(mask, conn)  # noqa: E731
            o, floor = paired_medians(ours, lambda: np.count_nonzero(mask), repeat)
            table.add(f"label {conn}-conn", o, floor, "np.count_nonzero (memory floor)",
                      f"{n} comps; fastmask = {o / floor:.0f}x the floor")
            add(table, f"label {conn}-conn", ours, lambda: cv2.connectedComponents(mask, connectivity=conn),
                f"cv2.connectedComponents (default, {threads} threads)")
            add(table, f"label {conn}-conn", ours,
                cv_single(lambda: cv2.connectedComponents(mask, connectivity=conn)),
                "cv2.connectedComponents (1 thread)")
            add(table, f"label {conn}-conn, out= reused", lambda: fc.label(mask, conn, out=buf),
                lambda: cv2.connectedComponents(mask, connectivity=conn),
                "cv2.connectedComponents (default)", "no output allocation")
            add(table, f"label {conn}-conn", ours, lambda: cc3d.connected_components(mask, connectivity=conn), "cc3d")
            st = cross if conn == 4 else full
            add(table, f"label {conn}-conn", ours, lambda: ndi.label(mask, structure=st), "scipy.ndimage.label")
            add(table, f"component_stats {conn}-conn", lambda: fc.component_stats(mask, conn),
                lambda: cv2.connectedComponentsWithStats(mask, connectivity=conn),
                "cv2.connectedComponentsWithStats (default)")
        table.print()

    table = Table(f"multilabel labeling, 19 classes {desc} (uint8, {_runs(classes)} runs)")
    values = [v for v in np.unique(classes) if v != 0]

    def cv_loop(conn):
        for v in values:
            cv2.connectedComponents((classes == v).view(np.uint8), connectivity=conn)

    buf = np.empty(classes.shape, np.int32)
    for conn in (8, 4):
        n = fc.label(classes, conn)[1]
        ours = lambda: fc.label(classes, conn)  # noqa: E731
        o, floor = paired_medians(ours, lambda: np.count_nonzero(classes), repeat)
        table.add(f"label {conn}-conn", o, floor, "np.count_nonzero (memory floor)",
                  f"{n} comps; fastmask = {o / floor:.0f}x the floor")
        add(table, f"label {conn}-conn", ours, lambda: cc3d.connected_components(classes, connectivity=conn), "cc3d")
        add(table, f"label {conn}-conn, out= reused", lambda: fc.label(classes, conn, out=buf),
            lambda: cc3d.connected_components(classes, connectivity=conn), "cc3d", "no output allocation")
        add(table, f"label {conn}-conn", ours, lambda: cv_loop(conn), "cv2 loop over classes (default)")
        add(table, f"component_stats {conn}-conn", lambda: fc.component_stats(classes, conn),
            lambda: cc3d.statistics(cc3d.connected_components(classes, connectivity=conn)),
            "cc3d + cc3d.statistics")
        add(table, f"split_instances {conn}-conn", lambda: fc.split_instances(classes, conn, id_scheme=1000),
            lambda: cc3d.connected_components(classes, connectivity=conn), "cc3d labels only",
            "class*1000+k mask + table")
    table.print()
