#!/usr/bin/env bash
# Scale run (issue 8): generate N small masks (default 1,000,000 of 256x256, 1,000 per folder,
# planted defects in 0.5%), validate them with 2 workers, record wall time, masks/s, peak RSS of
# the driver and of every worker, report size; check one items row per file, every planted
# defect found and nothing else; the same for a comparison run (default 100,000) first.
#
#   bash scripts/scale_run.sh [N] [N_COMPARE]         e.g. bash scripts/scale_run.sh 20000 2000
#
# Data goes to $FASTMASK_SCALE_DATA (default /tmp/fastmask-scale; ~4 KB of disk per mask:
# about 4.5 GB for 1M); datasets are kept and reused by later runs with the same N.
# Results: <data>/report-<N>.json (one JSON per run) and a Markdown table on stdout.
. "$(dirname "$0")/_venv.sh" test
N="${1:-1000000}"
N_COMPARE="${2:-100000}"
WORKERS="${WORKERS:-2}"
DATA="${FASTMASK_SCALE_DATA:-/tmp/fastmask-scale}"
mkdir -p "$DATA"
for n in "$N_COMPARE" "$N"; do
  [ "$n" -gt 0 ] || continue
  echo "== $n masks: generate" >&2
  "$VPY" -m benchmarks.bench_scale generate "$DATA/data-$n" --n "$n" >&2
  echo "== $n masks: validate with $WORKERS workers" >&2
  "$VPY" -m benchmarks.bench_scale measure "$DATA/data-$n" "$DATA/report-$n" --workers "$WORKERS" > "$DATA/measure-$n.log"
done
"$VPY" - "$DATA" "$N_COMPARE" "$N" <<'EOF'
import json, sys
from pathlib import Path
data = Path(sys.argv[1])
print("| masks | wall (CLI) | engine | masks/s (CLI / engine) | listing | driver peak RSS | worker peak RSS | report | rows ok | planted found | clean flagged |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
for n in sys.argv[2:]:
    p = data / f"report-{n}.json"
    if int(n) <= 0 or not p.is_file():
        continue
    r = json.loads(p.read_text())
    c = r["check"]
    found = sum(c["found"].values()); planted = sum(c["planted"].values())
    print(f"| {r['masks']:,} | {r['wall_seconds_cli']:,.0f} s | {r['wall_seconds_engine']:,.0f} s "
          f"| {r['masks_per_second_cli']:,.0f} / {r['masks_per_second_engine']:,.0f} | {r['listing_seconds']:,.0f} s "
          f"| {r['driver_peak_rss_mb']:,.0f} MB | {', '.join(f'{v:,.0f}' for v in r['worker_peak_rss_mb'])} MB "
          f"| {r['report_mb']:,.1f} MB | {'yes' if c['items_rows'] == r['masks'] == c['distinct_item_ids'] and not c['missing_ids'] else 'NO'} "
          f"| {found:,} / {planted:,} | {c['clean_items_with_findings']} |")
ok = all(json.loads((data / f"report-{n}.json").read_text())["check"]["ok"]
         for n in sys.argv[2:] if int(n) > 0 and (data / f"report-{n}.json").is_file())
sys.exit(0 if ok else 1)
EOF
