#!/bin/sh
# Install certwatch with its test tools into .venv, then run the formatter
# check, the linter, strict mypy and the whole pytest suite.
set -eu
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'

.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/pytest "$@"
