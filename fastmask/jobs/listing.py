"""What a dataset listing met, for every job's ``run.json`` summary and the CLI's stdout.

A folder that cannot be listed (``unlisted_path``) or several zip entries with one name
(``duplicate_entry``) means a run saw less than the dataset holds: each job adds
:func:`listing_summary` to its summary, and each command prints it with
:func:`print_listing` (exit code 1 when there was a problem). Report folders of fastmask
inside the dataset are skipped on purpose: a note, not a problem.
"""
from __future__ import annotations

import json

from ..formats.layouts import LISTING_KEY

__all__ = ["listing_summary", "print_listing", "PRINT_LIMIT", "store_listings", "reuse_listings"]

#: problems printed one per line on stdout; the rest are counted (all are in run.json)
PRINT_LIMIT = 5


def listing_summary(*datasets) -> dict:
    """``{"listing_problems": [{code, path, message}], "skipped_reports": [folder]}`` of the datasets.

    >>> import tempfile
    >>> from fastmask.formats import open_dataset
    >>> listing_summary(open_dataset(tempfile.mkdtemp(), layout="masks"))
    {'listing_problems': [], 'skipped_reports': []}
    """
    problems, skipped = [], []
    for ds in datasets:
        problems += [{"code": p["kind"], "path": p["path"], "message": p["message"]}
                     for p in (ds.problems() if hasattr(ds, "problems") else ())]
        skipped += ds.skipped_reports() if hasattr(ds, "skipped_reports") else []
    return {"listing_problems": problems, "skipped_reports": sorted(set(skipped))}


def store_listings(table, datasets: dict):
    """``table`` (a job's manifest built from several datasets) with their listing facts in its
    schema metadata: ``{"objects": total, "datasets": {role: dataset.listing()}}``, so that a
    resumed run gives them back (:func:`reuse_listings`) instead of listing the datasets again.

    >>> import tempfile, pyarrow as pa
    >>> from fastmask.formats import open_dataset
    >>> t = store_listings(pa.table({"item_id": ["a"]}), {"gt": open_dataset(tempfile.mkdtemp(), layout="masks")})
    >>> json.loads(t.schema.metadata[LISTING_KEY])["datasets"]["gt"]["problems"]
    []
    """
    facts = {role: ds.listing() for role, ds in datasets.items() if ds is not None}
    doc = {"objects": sum(f["objects"] for f in facts.values()), "datasets": facts}
    meta = dict(table.schema.metadata or {})
    meta[LISTING_KEY] = json.dumps(doc, sort_keys=True).encode("utf-8")
    return table.replace_schema_metadata(meta)


def reuse_listings(table, datasets: dict) -> None:
    """Give each dataset of ``datasets`` (role -> dataset) the listing facts that
    :func:`store_listings` saved in ``table`` (a resumed run's saved manifest): none is listed.

    >>> import tempfile, pyarrow as pa
    >>> from fastmask.formats import open_dataset
    >>> d = tempfile.mkdtemp(); t = store_listings(pa.table({"item_id": ["a"]}), {"gt": open_dataset(d, layout="masks")})
    >>> again = open_dataset(d, layout="masks"); reuse_listings(t, {"gt": again}); again.listing()["objects"]
    0
    """
    raw = (table.schema.metadata or {}).get(LISTING_KEY)
    saved = (json.loads(raw) if raw else {}).get("datasets") or {}
    for role, ds in datasets.items():
        if ds is not None and role in saved:
            ds.reuse_listing(saved[role])


def print_listing(summary: dict, *, problems: bool = True, limit: int = PRINT_LIMIT) -> int:
    """Print a run summary's listing problems (``problems``; at most ``limit`` lines, then a
    count) and a note on skipped report folders; 1 when there were problems, else 0.

    >>> print_listing({"listing_problems": [{"code": "unlisted_path", "path": "/d/x",
    ...                "message": "/d/x: cannot list this folder"}], "skipped_reports": ["/d/report"]})
    listing: 1 problem, the run did not read everything the dataset holds (exit code 1):
      unlisted_path: /d/x: cannot list this folder
    note: skipped 1 fastmask report folder inside the dataset: /d/report
    1
    """
    found = summary.get("listing_problems") or []
    if found and problems:
        print(f"listing: {len(found)} problem{'s' if len(found) != 1 else ''}, "
              "the run did not read everything the dataset holds (exit code 1):")
        for p in found[:limit]:
            print(f"  {p['code']}: {p['message']}")
        if len(found) > limit:
            print(f"  ... {len(found) - limit} more (run.json: summary.listing_problems)")
    skipped = summary.get("skipped_reports") or []
    if skipped:
        shown = ", ".join(skipped[:limit]) + (f" and {len(skipped) - limit} more" if len(skipped) > limit else "")
        print(f"note: skipped {len(skipped)} fastmask report folder{'s' if len(skipped) != 1 else ''} "
              f"inside the dataset: {shown}")
    return 1 if found else 0
