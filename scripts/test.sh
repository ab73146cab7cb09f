#!/usr/bin/env bash
# Set up .venv with the project and its development tools, then lint, type-check and test,
# measuring the line coverage of fiml/ (its floor is [tool.coverage.report] in pyproject.toml).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k contract`; the coverage of a run
# they narrow is reported, but held to the floor only when the whole suite runs.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
if [ $# -eq 0 ]; then floor=(); else floor=(--cov-fail-under=0); fi
.venv/bin/pytest --cov "${floor[@]}" "$@"
