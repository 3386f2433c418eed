#!/usr/bin/env bash
# Run fastmask on its built-in sample: creates ./.venv, installs fastmask, runs the demo.
. "$(dirname "$0")/_venv.sh" ""
exec "$ROOT/.venv/bin/fastmask" demo "$@"
