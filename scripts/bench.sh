#!/usr/bin/env bash
# Run the benchmarks against the anchor libraries; prints medians and ratios.
. "$(dirname "$0")/_venv.sh" test,bench
exec "$VPY" -m benchmarks "$@"
