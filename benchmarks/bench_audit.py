"""``fastmask audit``'s ranking measured where the truth is known, against two baselines.

Data (``benchmarks/_audit_data.py``): generated street-like scenes (12 classes, 240x320)
and the real COCO samples of ``../shared/data/real`` (tinycoco rasterized + the panoptic
sample's classes, up to 640x480, COCO's class ids), each with a model prediction made
from the clean truth with realistic model errors (outline jitter, small false positives,
a systematic confusion of two classes, uncertain confusions, missed small objects) plus a
confidence map, and a copy of the truth with planted label errors of the four types
(``class_swap``, ``missing_label``, ``spurious_label``, ``boundary_offset``).

Scored rankings (a planted error is *found* by a region when at least half of the
region's pixels are that error's pixels and they are at least a tenth of the error; an
item is positive when it holds a planted error):

- ``fastmask``: ``audit --gt gt --pred pred --confidence conf``; regions by ``score``
  (``edge_noise`` left out), items by ``1 - label_quality``;
- ``1 - mIoU``: items by ``1 - miou`` of ``fastmask evaluate``'s ``items`` table;
- ``largest disagreement``: regions = 8-connected components of ``gt != pred``, by area
  (what one gets without any scoring);
- ``cleanlab``: ``cleanlab.segmentation.rank.get_label_quality_scores`` (items) and
  ``filter.find_label_issues`` (regions = its issue pixels' components, by their summed
  ``1 - pixel score``), fed with N x K x H x W probabilities consistent with the
  prediction (the predicted class gets the confidence, the other classes share the rest),
  on a subset of the generated scenes; fastmask runs on the same subset (1 worker) for
  its time and peak memory.

Figures: average precision (duplicates -- a second region of an already found error --
left out of the list), precision and recall of the top k (k = number of planted errors,
or of positive items), recall of the whole ranking. Memory: ``audit`` on 1k.. N items
(hard links to a pool of generated scenes, 1,000 per folder), peak RSS of the driver and
of each worker (psutil, every 0.5 s); throughput of ``audit`` vs ``evaluate`` on the
same pairs. ``python -m benchmarks audit [--quick]``; ``python -m benchmarks.bench_audit
--help`` for the sizes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from benchmarks import _audit_data as data
from benchmarks.bench_rle import REAL
from benchmarks.bench_scale import _Sampler

MIN_REGION_SHARE = 0.5  # of the region's pixels that are the error's
MIN_ERROR_SHARE = 0.1   # of the error's pixels that the region holds
GOALS = {"ap_vs_miou": 1.5, "ap_vs_cleanlab": 1.0, "memory_growth": 1.25, "throughput_vs_evaluate": 0.5}

FULL = {"scenes": 600, "real": None, "cleanlab": (40, 160), "memory": (1000, 10000, 100000)}
QUICK = {"scenes": 60, "real": 8, "cleanlab": (6, 12), "memory": (200, 800)}


# ---------------------------------------------------------------- scoring


def ranking_scores(rel: list[set], n_positives: int, k: int) -> dict:
    """AP, precision / recall of the top ``k`` and recall of a ranking.

    ``rel[i]``: the positives the i-th ranked entry finds (empty: a false alarm). An entry
    that finds only positives already found is a duplicate: right for precision@k, left out
    of the list for AP (a second region of one error is neither a hit nor a false alarm).

    >>> ranking_scores([{1}, set(), {2}], n_positives=2, k=2)["ap"]
    0.8333333333333334
    """
    top = rel[:k]
    found_k = set().union(*top) if top else set()
    found: set = set()
    hits = rank = 0
    ap = 0.0
    for r in rel:
        new = r - found
        if r and not new:
            continue  # duplicate
        rank += 1
        for _ in new:
            hits += 1
            ap += hits / rank
        found |= new
    n = max(n_positives, 1)
    return {"ap": ap / n, "precision_at_k": sum(1 for r in top if r) / max(len(top), 1),
            "recall_at_k": len(found_k) / n, "recall": len(found) / n, "k": k, "ranked": len(rel)}


def match_pixels(px: np.ndarray, truth: np.ndarray) -> set:
    """The planted errors (ids in ``truth``) that the region of pixels ``px`` finds."""
    area = int(px.sum())
    if area == 0:
        return set()
    ks, counts = np.unique(truth[px], return_counts=True)
    out = set()
    for k, c in zip(ks.tolist(), counts.tolist()):
        if k and c >= MIN_REGION_SHARE * area and c >= MIN_ERROR_SHARE * int((truth == k).sum()):
            out.add(int(k))
    return out


def region_pixels(row: dict, a: dict) -> np.ndarray:
    """A report region's pixels: inside its bbox, ground truth ``gt_class`` and prediction
    ``pred_class`` (the disagreement of that class pair there)."""
    px = np.zeros(a["gt"].shape, bool)
    x, y, w, h = (int(row[c]) for c in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"))
    sl = np.s_[y:y + h, x:x + w]
    px[sl] = (a["gt"][sl] == row["gt_class"]) & (a["pred"][sl] == row["pred_class"])
    return px


def match_region(row: dict, a: dict) -> set:
    """``match_pixels`` of a report region (see ``region_pixels``)."""
    return match_pixels(region_pixels(row, a), a["truth"])


class Truth:
    """The planted errors of a benchmark dataset, and its items' arrays on demand."""

    def __init__(self, root: Path):
        self.root = Path(root)
        meta = json.loads((self.root / "truth.json").read_text())
        self.items = meta["items"]
        self.num_classes = meta["num_classes"]
        self.errors = meta["errors"]
        self.by_item: dict[str, set] = {}
        for e in self.errors:
            self.by_item.setdefault(e["item_id"], set()).add(e["k"])
        self._cache: dict[str, dict] = {}

    def arrays(self, item_id: str) -> dict:
        if item_id not in self._cache:
            self._cache[item_id] = data.load_item(self.root, item_id)
        return self._cache[item_id]

    def subset(self, ids) -> "Truth":
        t = object.__new__(Truth)
        keep = set(ids)
        t.root, t.num_classes, t._cache = self.root, self.num_classes, self._cache
        t.items = [i for i in self.items if i in keep]
        t.errors = [e for e in self.errors if e["item_id"] in keep]
        t.by_item = {i: v for i, v in self.by_item.items() if i in keep}
        return t

    def item_scores(self, ranked_ids: list[str]) -> dict:
        """Scores of an item ranking (worst first); items it leaves out go last."""
        ranked = [i for i in ranked_ids if i in set(self.items)]
        ranked += [i for i in self.items if i not in set(ranked)]
        rel = [{i} if i in self.by_item else set() for i in ranked]
        return ranking_scores(rel, len(self.by_item), len(self.by_item))

    def region_scores(self, rel: list[set], item_of: list[str]) -> dict:
        """Scores of a region ranking: ``rel[i]`` = planted ``k``s of item ``item_of[i]``."""
        tagged = [{(it, k) for k in r} for r, it in zip(rel, item_of)]
        return ranking_scores(tagged, len(self.errors), len(self.errors))


# ---------------------------------------------------------------- running fastmask


def _fastmask(args: list[str], out: Path, workers: int) -> dict:
    """Run ``python -m fastmask ARGS --out OUT`` as a child; wall time and peak RSS."""
    cmd = [sys.executable, "-m", "fastmask", *args, "--out", str(out), "--workers", str(workers),
           "--quiet", "--overwrite"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = _Sampler(proc.pid, interval=0.2)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.stop()
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{stderr[-3000:]}")
    run = json.loads((out / "run.json").read_text())
    peaks = [r["peak_rss"] for r in sampler.peak.values() if "resource_tracker" not in r["cmd"]]
    driver = sampler.peak.get(proc.pid, {"peak_rss": 0})["peak_rss"]
    workers_peak = max((r["peak_rss"] for p, r in sampler.peak.items()
                        if p != proc.pid and "resource_tracker" not in r["cmd"]), default=0)
    return {"wall": wall, "engine_wall": run.get("timing", {}).get("wall_seconds"), "exit": proc.returncode,
            "driver_peak_mb": driver / 2**20, "peak_mb": max(peaks, default=0) / 2**20,
            "worker_peak_mb": workers_peak / 2**20,
            "sum_peak_mb": sampler.total_peak / 2**20, "run": run, "stdout": stdout}


def _read(out: Path, table: str, columns=None) -> list[dict]:
    import pyarrow.parquet as pq

    folder = out / table
    if not folder.is_dir():
        return []
    return pq.read_table(folder, columns=columns).to_pylist()


def audit_args(root: Path, num_classes: int, confidence: bool = True) -> list[str]:
    conf = ["--confidence", str(root / "conf")] if confidence else []
    return ["audit", "--gt", str(root / "gt"), "--pred", str(root / "pred"), *conf, "--num-classes", str(num_classes)]


def evaluate_args(root: Path, num_classes: int) -> list[str]:
    return ["evaluate", "--gt", str(root / "gt"), "--pred", str(root / "pred"), "--num-classes", str(num_classes)]


def score_fastmask(truth: Truth, out: Path) -> dict:
    """Region and item scores of an audit report."""
    ids = set(truth.items)
    regions = [r for r in _read(out, "regions") if r.get("type") != "edge_noise" and r["item_id"] in ids]
    regions.sort(key=lambda r: -(r["score"] if r["score"] is not None else -1.0))
    rel = [match_region(r, truth.arrays(r["item_id"])) for r in regions]
    items = _read(out, "items")
    items = [r for r in items if r.get("label_quality") is not None]
    items.sort(key=lambda r: r["label_quality"])
    res = {"regions": truth.region_scores(rel, [r["item_id"] for r in regions]),
           "items": truth.item_scores([r["item_id"] for r in items])}
    res["by_type"] = _per_type(truth, regions, rel)
    return res


def _per_type(truth: Truth, regions: list[dict], rel: list[set]) -> dict:
    """Per planted type: found by any region / in the top k, and the type audit gave it."""
    k = len(truth.errors)
    first: dict[tuple, tuple[int, str]] = {}
    for rank, (r, hit) in enumerate(zip(regions, rel)):
        for e in hit:
            first.setdefault((r["item_id"], e), (rank, r.get("type")))
    out = {}
    for t in data.ERROR_TYPES:
        errs = [(e["item_id"], e["k"]) for e in truth.errors if e["type"] == t]
        got = [first[x] for x in errs if x in first]
        out[t] = {"planted": len(errs), "found": len(got), "in_top_k": sum(1 for r, _ in got if r < k),
                  "typed_right": sum(1 for _, ty in got if ty == t)}
    # the false alarms of the top k, by type given (which model errors rank high)
    fa: dict[str, int] = {}
    for r, hit in zip(regions[:k], rel[:k]):
        if not hit:
            fa[str(r.get("type"))] = fa.get(str(r.get("type")), 0) + 1
    out["false_alarms_top_k_by_type"] = fa
    return out


def score_miou(truth: Truth, out: Path) -> dict:
    items = [r for r in _read(out, "items", ["item_id", "miou"]) if r["miou"] is not None]
    items.sort(key=lambda r: r["miou"])
    return {"items": truth.item_scores([r["item_id"] for r in items])}


def score_disagreement(truth: Truth) -> dict:
    """Regions = 8-connected components of gt != pred (ignore excluded), largest first."""
    cands = []
    for item_id in truth.items:
        a = truth.arrays(item_id)
        lab, n = ndimage.label((a["gt"] != a["pred"]) & (a["gt"] != data.IGNORE), structure=np.ones((3, 3), bool))
        for i, sl in enumerate(ndimage.find_objects(lab), start=1):
            px = np.zeros(lab.shape, bool)
            px[sl] = lab[sl] == i
            cands.append((int(px[sl].sum()), item_id, match_pixels(px, a["truth"])))
    cands.sort(key=lambda c: -c[0])
    return {"regions": truth.region_scores([c[2] for c in cands], [c[1] for c in cands])}


# ---------------------------------------------------------------- cleanlab


def cleanlab_child(root: str, ids_file: str, out: str) -> None:
    """Runs in a child process: cleanlab on the listed items; writes scores and issue masks."""
    import resource

    ids = json.loads(Path(ids_file).read_text())
    meta = json.loads((Path(root) / "truth.json").read_text())
    k = meta["num_classes"]
    labels = np.stack([data.load(Path(root) / "gt" / f"{i}.png") for i in ids]).astype(np.int64)
    n, h, w = labels.shape
    t_build = time.perf_counter()
    pred_probs = np.empty((n, k, h, w), np.float32)
    for j, i in enumerate(ids):
        pred = data.load(Path(root) / "pred" / f"{i}.png")
        p = data.load(Path(root) / "conf" / f"{i}.png").astype(np.float32) / 255.0
        p = np.maximum(p, 1.0 / k + 1e-3)  # the predicted class stays the arg-max
        pred_probs[j] = ((1.0 - p) / (k - 1))[None]
        np.put_along_axis(pred_probs[j], pred[None].astype(np.int64), p[None], axis=0)
    t_build = time.perf_counter() - t_build
    rss_inputs = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    from cleanlab.segmentation.filter import find_label_issues
    from cleanlab.segmentation.rank import get_label_quality_scores

    t0 = time.perf_counter()
    image_scores, pixel_scores = get_label_quality_scores(labels, pred_probs, verbose=False)
    t1 = time.perf_counter()
    issues = find_label_issues(labels, pred_probs, verbose=False, n_jobs=1)
    t2 = time.perf_counter()
    np.savez_compressed(out + ".npz", issues=issues, pixel_scores=pixel_scores.astype(np.float32))
    Path(out).write_text(json.dumps({
        "ids": ids, "image_scores": [float(s) for s in image_scores], "seconds_scores": t1 - t0,
        "seconds_issues": t2 - t1, "seconds_build_probs": t_build, "probs_mb": pred_probs.nbytes / 2**20,
        "rss_inputs_mb": rss_inputs / 2**20,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_cleanlab(truth: Truth, ids: list[str], work: Path) -> dict:
    (work / "cleanlab_ids.json").write_text(json.dumps(ids))
    out = work / "cleanlab.json"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchmarks.bench_audit", "cleanlab-child", str(truth.root),
                    str(work / "cleanlab_ids.json"), str(out)], check=True, cwd=Path(__file__).resolve().parents[1])
    wall = time.perf_counter() - t0
    res = json.loads(out.read_text())
    arrs = np.load(str(out) + ".npz")
    issues, pixel_scores = arrs["issues"], arrs["pixel_scores"]
    sub = truth.subset(ids)
    order = np.argsort(res["image_scores"], kind="stable")
    scores = {"items": sub.item_scores([ids[j] for j in order])}
    cands = []
    for j, item_id in enumerate(ids):
        lab, n = ndimage.label(issues[j], structure=np.ones((3, 3), bool))
        if not n:
            continue
        mass = ndimage.sum_labels(1.0 - pixel_scores[j], lab, index=np.arange(1, n + 1))
        for c in range(n):
            cands.append((float(mass[c]), j, c + 1, lab))
    cands.sort(key=lambda c: -c[0])
    rel = [match_pixels(lab == c, sub.arrays(ids[j])["truth"]) for _, j, c, lab in cands]
    scores["regions"] = sub.region_scores(rel, [ids[j] for _, j, _, _ in cands])
    scores.update(wall=wall, seconds=res["seconds_scores"] + res["seconds_issues"],
                  peak_mb=res["peak_rss_mb"], probs_mb=res["probs_mb"], detail=res)
    return scores


# ---------------------------------------------------------------- memory and throughput


def link_dataset(pool: Path, pool_ids: list[str], root: Path, n: int) -> Path:
    """``n`` items (``0000/0000000``...) hard-linked to the pool's gt, pred and conf files."""
    done = root / "linked.json"
    if done.is_file() and json.loads(done.read_text()).get("n") == n:
        return root
    for d in ("gt", "pred", "conf"):
        for i in range(n):
            if i % 1000 == 0:
                (root / d / f"{i // 1000:04d}").mkdir(parents=True, exist_ok=True)
            dst = root / d / f"{i // 1000:04d}" / f"{i:07d}.png"
            if not dst.exists():
                os.link(pool / d / f"{pool_ids[i % len(pool_ids)]}.png", dst)
    done.write_text(json.dumps({"n": n}))
    return root


# ---------------------------------------------------------------- the run


def _fmt(v):
    if v is None:
        return "–"
    return f"{v:.3f}"


def quality(root: Path, work: Path, label: str, workers: int) -> dict:
    truth = Truth(root)
    out = {"label": label, "items": len(truth.items), "errors": len(truth.errors),
           "positive_items": len(truth.by_item)}
    a = _fastmask(audit_args(root, truth.num_classes), work / f"audit-{label}", workers)
    out["fastmask"] = score_fastmask(truth, work / f"audit-{label}")
    out["fastmask"].update(wall=a["wall"], peak_mb=a["peak_mb"], sum_peak_mb=a["sum_peak_mb"])
    _fastmask(audit_args(root, truth.num_classes, False), work / f"audit-noconf-{label}", workers)
    out["fastmask_noconf"] = score_fastmask(truth, work / f"audit-noconf-{label}")
    _fastmask(evaluate_args(root, truth.num_classes), work / f"evaluate-{label}", workers)
    out["miou"] = score_miou(truth, work / f"evaluate-{label}")
    out["disagreement"] = score_disagreement(truth)
    return out


def cleanlab_compare(root: Path, work: Path, sizes) -> dict:
    """cleanlab and fastmask (1 worker) on the first ``max(sizes)`` scenes (scores), and
    cleanlab's time and memory on each size (its memory grows with N)."""
    truth = Truth(root)
    growth = []
    for n in sizes[:-1]:
        c = run_cleanlab(truth, truth.items[:n], work)
        growth.append({"items": n, "seconds": c["seconds"], "peak_mb": c["peak_mb"], "probs_mb": c["probs_mb"]})
    n = sizes[-1]
    ids = truth.items[:n]
    sub_root = work / "subset"
    for d in ("gt", "pred", "conf"):
        (sub_root / d).mkdir(parents=True, exist_ok=True)
        for i in ids:
            dst = sub_root / d / f"{i}.png"
            if not dst.exists():
                os.link(root / d / f"{i}.png", dst)
    sub = truth.subset(ids)
    res = {"items": len(ids), "errors": len(sub.errors), "positive_items": len(sub.by_item)}
    res["cleanlab"] = run_cleanlab(truth, ids, work)
    res["cleanlab_growth"] = growth + [{"items": n, "seconds": res["cleanlab"]["seconds"],
                                         "peak_mb": res["cleanlab"]["peak_mb"], "probs_mb": res["cleanlab"]["probs_mb"]}]
    a = _fastmask(audit_args(sub_root, truth.num_classes), work / "audit-subset", 1)
    res["fastmask"] = score_fastmask(sub, work / "audit-subset")
    res["fastmask"].update(wall=a["wall"], peak_mb=a["peak_mb"], sum_peak_mb=a["sum_peak_mb"],
                           engine_wall=a["engine_wall"])
    _fastmask(audit_args(sub_root, truth.num_classes, False), work / "audit-noconf-subset", 1)
    res["fastmask_noconf"] = score_fastmask(sub, work / "audit-noconf-subset")
    _fastmask(evaluate_args(sub_root, truth.num_classes), work / "evaluate-subset", 1)
    res["miou"] = score_miou(sub, work / "evaluate-subset")
    res["disagreement"] = score_disagreement(sub)
    return res


def scaling(pool: Path, work: Path, sizes, workers: int) -> dict:
    """``audit`` then ``evaluate`` on the same N linked pairs, for each N: wall, peak RSS."""
    truth = Truth(pool)
    res = {"memory": [], "workers": workers}
    for n in sizes:
        root = link_dataset(pool, truth.items, work / f"linked-{n}", n)
        row = {"items": n}
        for name, args in (("audit", audit_args(root, truth.num_classes)),
                           ("evaluate", evaluate_args(root, truth.num_classes))):
            a = _fastmask(args, work / f"{name}-{n}", workers)
            row[name] = {"wall": a["wall"], "engine_wall": a["engine_wall"], "driver_peak_mb": a["driver_peak_mb"],
                         "peak_mb": a["peak_mb"], "worker_peak_mb": a["worker_peak_mb"], "sum_peak_mb": a["sum_peak_mb"], "items_per_s": n / a["wall"]}
            shutil.rmtree(work / f"{name}-{n}", ignore_errors=True)
        res["memory"].append(row)
    return res


def print_tables(results: dict) -> None:
    print("\n## audit: finding planted label errors\n")
    print("| data | items (with errors) | planted | method | items AP | items P@k | regions AP | "
          "regions P@k | regions R@k | regions recall |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for q in results["quality"]:
        for key, name in (("fastmask", "fastmask audit"), ("fastmask_noconf", "fastmask audit, no --confidence"),
                          ("miou", "1 - mIoU"), ("disagreement", "largest disagreement"), ("cleanlab", "cleanlab")):
            if key not in q:
                continue
            it, rg = q[key].get("items", {}), q[key].get("regions", {})
            print(f"| {q['label']} | {q['items']} ({q['positive_items']}) | {q['errors']} | {name} | "
                  f"{_fmt(it.get('ap'))} | {_fmt(it.get('precision_at_k'))} | {_fmt(rg.get('ap'))} | "
                  f"{_fmt(rg.get('precision_at_k'))} | {_fmt(rg.get('recall_at_k'))} | {_fmt(rg.get('recall'))} |")
    for q in results["quality"]:
        bt = q["fastmask"]["by_type"]
        print(f"\nfastmask, {q['label']}: per planted type (found by any region / in top k / typed right): "
              + ", ".join(f"{t} {bt[t]['found']}/{bt[t]['in_top_k']}/{bt[t]['typed_right']} of {bt[t]['planted']}"
                          for t in data.ERROR_TYPES)
              + f"; false alarms in top k by type: {bt['false_alarms_top_k_by_type']}")
    c = results.get("cleanlab")
    if c:
        print(f"\n## audit vs cleanlab on the first scenes (1 process each)\n")
        print("| items | method | seconds | peak RSS | input held in memory |")
        print("|---:|---|---:|---:|---|")
        for g in c["cleanlab_growth"]:
            print(f"| {g['items']} | cleanlab get_label_quality_scores + find_label_issues | {g['seconds']:.1f} | "
                  f"{g['peak_mb']:.0f} MB | probabilities {g['probs_mb']:.0f} MB (N x K x H x W float32) |")
        print(f"| {c['items']} | fastmask audit (1 worker; CLI wall incl. start-up / engine) | "
              f"{c['fastmask']['wall']:.1f} / {c['fastmask']['engine_wall']:.1f} | "
              f"{c['fastmask']['sum_peak_mb']:.0f} MB | one item at a time |")
    s = results.get("scaling")
    if s:
        print(f"\n## audit memory and throughput ({s['workers']} workers, CLI wall)\n")
        print("| items | audit wall | audit items/s | evaluate items/s | audit / evaluate | audit driver peak RSS | "
              "audit largest worker | evaluate driver peak RSS |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for m in s["memory"]:
            a, e = m["audit"], m["evaluate"]
            print(f"| {m['items']:,} | {a['wall']:.1f} s | {a['items_per_s']:.0f} | {e['items_per_s']:.0f} | "
                  f"{a['items_per_s'] / e['items_per_s']:.2f} | {a['driver_peak_mb']:.0f} MB | "
                  f"{a['worker_peak_mb']:.0f} MB | {e['driver_peak_mb']:.0f} MB |")
    print("\n## goals\n")
    print("| goal | measured | target | met |")
    print("|---|---:|---:|---|")
    for name, value, target, higher in goal_rows(results):
        met = "–" if value is None else ("yes" if (value >= target if higher else value <= target) else "no")
        print(f"| {name} | {'–' if value is None else f'{value:.2f}'} | {'>=' if higher else '<='} {target} | {met} |")


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def goal_rows(results: dict) -> list:
    rows = []
    for q in results["quality"]:
        rows.append((f"items AP / 1-mIoU's ({q['label']})",
                     _ratio(q["fastmask"]["items"]["ap"], q["miou"]["items"]["ap"]), GOALS["ap_vs_miou"], True))
    c = results.get("cleanlab")
    if c:
        rows.append(("items AP / cleanlab's (subset)", _ratio(c["fastmask"]["items"]["ap"], c["cleanlab"]["items"]["ap"]),
                     GOALS["ap_vs_cleanlab"], True))
        rows.append(("regions AP / cleanlab's (subset)",
                     _ratio(c["fastmask"]["regions"]["ap"], c["cleanlab"]["regions"]["ap"]), GOALS["ap_vs_cleanlab"], True))
    s = results.get("scaling")
    if s:
        m = s["memory"]
        span = f"{m[-1]['items']:,} / {m[0]['items']:,} items"
        rows.append((f"audit driver peak RSS {span}", _ratio(m[-1]["audit"]["driver_peak_mb"], m[0]["audit"]["driver_peak_mb"]),
                     GOALS["memory_growth"], False))
        rows.append((f"audit largest process peak RSS {span}", _ratio(m[-1]["audit"]["peak_mb"], m[0]["audit"]["peak_mb"]),
                     GOALS["memory_growth"], False))
        rows.append((f"throughput audit / evaluate ({m[-1]['items']:,} items)",
                     _ratio(m[-1]["audit"]["items_per_s"], m[-1]["evaluate"]["items_per_s"]),
                     GOALS["throughput_vs_evaluate"], True))
    return rows


def run(quick: bool = False, *, work: str | None = None, sizes: dict | None = None, workers: int = 2,
        parts=("quality", "cleanlab", "scaling")) -> dict:
    """Generate (or reuse) the data in ``work``, run everything, print the tables."""
    sizes = {**(QUICK if quick else FULL), **(sizes or {})}
    work = Path(work or tempfile.mkdtemp(prefix="fastmask-bench-audit-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    scenes, real = work / f"scenes-{sizes['scenes']}", work / f"real-{sizes['real']}"
    if not (scenes / "truth.json").is_file():
        data.generate_scenes(scenes, sizes["scenes"], seed=0)
    if not (real / "truth.json").is_file() and REAL.is_dir():
        data.generate_real(real, REAL, seed=0, limit=sizes["real"])
    print(f"data in {work} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    results: dict = {"sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()}, "quality": []}
    if "quality" in parts:
        results["quality"].append(quality(scenes, work, "generated", workers))
        if (real / "truth.json").is_file():
            results["quality"].append(quality(real, work, "real COCO", workers))
    if "cleanlab" in parts:
        results["cleanlab"] = cleanlab_compare(scenes, work, tuple(sizes["cleanlab"]))
        c = results["cleanlab"]
        results["quality"].append({"label": "generated subset", **{k: c[k] for k in (
            "items", "errors", "positive_items", "fastmask", "fastmask_noconf", "miou", "disagreement", "cleanlab")}})
    if "scaling" in parts:
        results["scaling"] = scaling(scenes, work, sizes["memory"], workers)
    (work / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print_tables(results)
    print(f"\nresults: {work / 'results.json'}", file=sys.stderr)
    return results


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "cleanlab-child":
        cleanlab_child(*argv[1:4])
        return 0
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_audit")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--work", help="data and reports folder (kept; reused when sizes match)")
    ap.add_argument("--scenes", type=int)
    counts = lambda s: tuple(int(x) for x in s.split(","))  # noqa: E731
    ap.add_argument("--cleanlab", type=counts, help="cleanlab subset sizes, the last one scored, e.g. 40,160")
    ap.add_argument("--memory", type=counts, help="item counts of the memory / throughput runs, e.g. 1000,10000,100000")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--parts", default="quality,cleanlab,scaling")
    args = ap.parse_args(argv)
    sizes = {k: getattr(args, k) for k in ("scenes", "cleanlab", "memory") if getattr(args, k)}
    run(args.quick, work=args.work, sizes=sizes, workers=args.workers, parts=tuple(args.parts.split(",")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
