#!/usr/bin/env bash
# Run the test suite: creates ./.venv, installs fastmask with its test extras, runs pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k rle, scripts/test.sh -m slow).
. "$(dirname "$0")/_venv.sh" test
exec "$VPY" -m pytest -q "$@"
