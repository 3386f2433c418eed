"""One schema convention across every command's report tables (walks real runs of each command).

- a box is four int64 columns bbox_x / bbox_y / bbox_w / bbox_h, never a list column;
- ``iscrowd`` is bool;
- per-class tables (``classes``, ``pq_classes``) are sorted numerically by ``class_id``, per-item
  class rows by class id within their item;
- no table without rows is written (a findings table may be empty: nothing was found);
- coverage's ``bin`` comes with its ``bin_label``; findings carry the ``path`` of their file.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastmask.cli import main
from fastmask.jobs import audit, convert, coverage, evaluate, instances, rasterize, scan, validate
from fastmask.jobs.coverage import BIN_LABELS
from fastmask.jobs.schema import BBOX_COLUMNS
from fastmask.sample import make_sample

CLASS_TABLES = ("classes", "pq_classes")
#: per item, one row per class
ITEM_CLASS_TABLES = ("class_stats", "class_coverage", "image_scores")


def _commands(info, root: Path) -> dict[str, list[str]]:
    voc, coco, pan = str(info.voc), str(info.coco), str(info.panoptic)
    return {
        "scan": ["scan", voc],
        "validate_voc": ["validate", voc],
        "validate_coco": ["validate", coco],
        "validate_panoptic": ["validate", pan],
        "coverage_voc": ["coverage", voc],
        "coverage_coco": ["coverage", coco],
        "evaluate": ["evaluate", "--gt", voc, "--pred", voc, "--allow-missing"],
        "evaluate_panoptic": ["evaluate", "--gt", pan, "--pred", pan],
        "instances": ["instances", voc],
        "convert_coco": ["convert", voc, "--to", "coco"],
        "convert_nucleus": ["convert", voc, "--to", "nucleus"],
        "convert_from_panoptic": ["convert", pan, "--to", "coco"],
        **{f"rasterize_{k}": ["rasterize", coco, "--kind", k] for k in ("semantic", "instance", "binary", "panoptic", "rle")},
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("conv")
    info = make_sample(root / "sample")
    out = {}
    for name, cmd in _commands(info, root).items():
        out[name] = root / name
        code = main([*cmd, "--out", str(out[name]), "--workers", "1", "--quiet"])
        assert code in (0, 1), (name, code)  # 1: the sample's planted defects
        assert json.loads((out[name] / "run.json").read_text())["status"] == "complete", name
    return out


def _tables(run: Path) -> dict[str, pa.Table]:
    """Every table folder of a report (a folder of part-*.parquet files)."""
    return {d.name: pq.read_table(d) for d in sorted(run.iterdir())
            if d.is_dir() and any(d.glob("part-*.parquet"))}


def _check_schema(where: str, schema: pa.Schema) -> None:
    names = schema.names
    assert "bbox" not in names, f"{where}: a list bbox column"
    present = [c for c in BBOX_COLUMNS if c in names]
    assert present in ([], list(BBOX_COLUMNS)), f"{where}: partial box columns {present}"
    for c in present:
        assert schema.field(c).type == pa.int64(), f"{where}: {c} is {schema.field(c).type}"
    if "iscrowd" in names:
        assert schema.field("iscrowd").type == pa.bool_(), f"{where}: iscrowd is {schema.field('iscrowd').type}"
    if "bin" in names:
        assert "bin_label" in names, f"{where}: bin without its label"


def test_declared_schemas_follow_the_convention():
    """The jobs' declared tables (class-level and per kind) before any run."""
    declared = {f"{job.name}.items": job.item_schema
                for job in (convert.ConvertJob, coverage.CoverageJob, evaluate.EvaluateJob, instances.InstancesJob,
                            rasterize.RasterizeJob, scan.ScanJob, validate.ValidateJob)}
    for job in (convert.ConvertJob, coverage.CoverageJob, instances.InstancesJob, validate.ValidateJob):
        declared.update({f"{job.name}.{k}": v for k, v in job.tables.items()})
    declared.update({f"evaluate.{k}": v for k, v in evaluate.EvaluateJob._TABLES.items()})
    declared.update({"rasterize.findings": rasterize._FINDINGS, "rasterize.instances": rasterize._INSTANCES,
                     "rasterize.segments": rasterize._SEGMENTS, "rasterize.rles": rasterize._RLES,
                     "evaluate.pq_classes": evaluate.PQ_CLASSES_SCHEMA})
    declared.update({"audit.items": audit.AuditJob.item_schema, "audit.classes": audit.CLASSES_SCHEMA,
                     **{f"audit.{k}": v for k, v in audit.AuditJob.tables.items()}})
    assert len(declared) >= 21
    for where, schema in declared.items():
        _check_schema(where, schema)


def test_every_report_table_follows_the_convention(runs):
    seen: set[str] = set()
    for name, run in runs.items():
        doc = json.loads((run / "run.json").read_text())
        tables = _tables(run)
        # every table the run declares is there, and nothing the job did not fill
        assert set(doc["tables"]) <= set(tables), (name, doc["tables"], sorted(tables))
        for tname, t in tables.items():
            where = f"{name}/{tname}"
            seen.add(tname)
            _check_schema(where, t.schema)
            if not tname.endswith("findings"):
                assert t.num_rows > 0, f"{where}: an empty table"
            if tname in CLASS_TABLES:
                ids = t.column("class_id").to_pylist()
                assert ids == sorted(ids) and len(set(ids)) == len(ids), f"{where}: not sorted by class id: {ids[:12]}"
            elif tname in ITEM_CLASS_TABLES:
                rows = list(zip(t.column("item_id").to_pylist(), t.column("class_id").to_pylist()))
                for (a, ca), (b, cb) in zip(rows, rows[1:]):
                    assert a != b or ca is None or cb is None or ca <= cb, f"{where}: item {a} classes out of order"
            if "bin" in t.column_names:
                assert t.column("bin_label").to_pylist() == [BIN_LABELS[b] for b in t.column("bin").to_pylist()]
            if tname in ("findings", "dataset_findings") and name.startswith("validate"):
                assert t.schema.field("path").type == pa.string(), where
    # the walk met every kind of table the commands write
    assert {"items", "findings", "dataset_findings", "class_stats", "classes", "class_coverage", "confusion",
            "image_scores", "pq_counts", "pq_classes", "instances", "segments", "rles", "records"} <= seen


def test_panoptic_evaluate_writes_only_its_tables(runs):
    tables = set(_tables(runs["evaluate_panoptic"]))
    assert tables == {"items", "pq_counts", "pq_classes"}
    assert {"confusion", "image_scores", "classes"} <= set(_tables(runs["evaluate"]))
    assert "pq_counts" not in _tables(runs["evaluate"])


def test_findings_name_their_file(runs):
    t = pq.read_table(runs["validate_voc"] / "findings").to_pylist()
    assert t and all(r["path"] for r in t if r["rule"] not in ("missing_mask",)), \
        [r for r in t if not r["path"]][:3]
    # a per-item finding about a mask names that mask file, which exists
    masks = [r for r in t if r["rule"] in ("unexpected_value", "tiny_island", "antialias_suspect")]
    assert masks and all(Path(r["path"]).is_file() and r["item_id"] in Path(r["path"]).stem for r in masks)
    # an unreadable file's finding names the unreadable file
    for r in t:
        if r["rule"] == "unreadable" and r["extra"] and "path" in json.loads(r["extra"]):
            assert r["path"] == json.loads(r["extra"])["path"]


def test_coverage_classes_sorted_by_number_not_text(runs):
    ids = pq.read_table(runs["coverage_coco"] / "classes").column("class_id").to_pylist()
    assert len(ids) > 2 and ids == sorted(ids)
    # run.json keeps its keys as text: the table is what is sorted numerically
    keys = list(json.loads((runs["coverage_coco"] / "run.json").read_text())["summary"]["classes"])
    assert sorted(int(k) for k in keys) == ids
