#!/usr/bin/env bash
# Build the documentation site (docs/ + mkdocs.yml) with the docs extras in ./.venv.
#   bash scripts/docs.sh            strict build into ./site (a broken link or API reference fails)
#   bash scripts/docs.sh serve      live preview on http://127.0.0.1:8000
. "$(dirname "$0")/_venv.sh" docs
export NO_MKDOCS_2_WARNING=1
if [ "${1:-}" = "serve" ]; then
  shift
  exec "$VPY" -m mkdocs serve "$@"
fi
exec "$VPY" -m mkdocs build --strict "$@"
