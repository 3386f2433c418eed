# Sourced by the scripts: make ./.venv (Python 3.11 preferred) and install the project into it.
# Usage: . scripts/_venv.sh EXTRAS   (e.g. "test" or "test,bench")
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if command -v python3.11 >/dev/null 2>&1; then PY=python3.11; else PY=python3; fi
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY="$ROOT/.venv/bin/python"
EXTRAS="${1:-}"
STAMP=".venv/.installed-${EXTRAS:-none}"
# Reinstall only when the project metadata changed (editable install: code changes need nothing).
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  "$VPY" -m pip install --quiet --upgrade pip
  if [ -n "$EXTRAS" ]; then
    "$VPY" -m pip install --quiet -e ".[${EXTRAS}]"
  else
    "$VPY" -m pip install --quiet -e .
  fi
  touch "$STAMP"
fi
