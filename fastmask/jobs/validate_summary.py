"""The short summary ``fastmask validate`` prints: the label map in use, findings per rule and severity,
worst files, report path."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from .._text import plural, run_speed
from ..engine.sink import list_parts, read_part
from .validate_rules import SEVERITIES, severity_rank


def print_summary(result, layout: str, dataset_found: list, classes: pa.Table, fail_on: str, *, worst: int = 5) -> bool:
    """Print the summary of a finished validate run; return True when a finding reaches ``fail_on``."""
    counts: dict[tuple[str, str], int] = {}
    for key, n in result.summary.get("findings", {}).items():
        rule, _, sev = key.partition(":")
        counts[(rule, sev)] = counts.get((rule, sev), 0) + n
    for _, f in dataset_found:
        counts[(f.rule, f.severity)] = counts.get((f.rule, f.severity), 0) + 1
    n_err = result.counts.get("error", 0)
    print(f"validated {plural(result.n_items, 'item', '')} ({layout} layout) in {result.wall_seconds:.2f} s, "
          f"{run_speed(result)}; {n_err} could not be read")
    # what the values were checked against, first: a run without a label map checked much less
    lm = result.summary.get("labelmap") or {}
    print(f"label map: {lm.get('text') or 'none'}")
    for _, f in dataset_found:
        if f.rule == "no_labelmap":
            print(f"  {f.severity}: {f.message}")
    if counts:
        print("findings:")
        order = sorted(counts, key=lambda k: (-severity_rank(k[1]), k[0]))
        for rule, sev in order:
            print(f"  {sev:<7} {rule:<24} {counts[(rule, sev)]}")
    else:
        print("findings: none")
    def worst_first(r):
        return (-severity_rank(r["worst_severity"]) if r["worst_severity"] else 0, -r["n_findings"], str(r["item_id"]))

    # part by part, keeping the worst few: memory bounded by a shard, not the dataset
    rows: list[dict] = []
    for part in list_parts(result.out_dir, "items"):
        items = read_part(part, ["item_id", "n_findings", "worst_severity"])
        items = items.filter(pc.fill_null(pc.greater(items["n_findings"], 0), False))
        rows = sorted(rows + items.to_pylist(), key=worst_first)[:worst]
    if rows:
        print("worst items:")
        for r in rows[:worst]:
            print(f"  {r['item_id']}: {plural(r['n_findings'], 'finding', '')}, worst {r['worst_severity']}")
    print(f"classes seen: {classes.num_rows}")
    print(f"report: {result.out_dir}")
    if fail_on == "never":
        return False
    level = severity_rank(fail_on)
    return any(severity_rank(sev) >= level for (_, sev) in counts) if level <= max(
        (severity_rank(s) for s in SEVERITIES), default=0) else False
