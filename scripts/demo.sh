#!/usr/bin/env bash
# Set up .venv with the project, then run the session demo on the embedded default (SQLite).
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
.venv/bin/python examples/session_demo.py "$@"
