#!/usr/bin/env bash
# Install the LOWEST version of every dependency that pyproject.toml allows (the `all` and `test`
# extras), then run the contract suite and one test module per other dependency on it, so a
# floor that lies fails CI. The environment lives in .venv-lowest, rebuilt on every run.
# Extra arguments go to pytest, e.g. `bash scripts/test-lowest.sh -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

# uv resolves "lowest" for the direct dependencies only (--resolution lowest-direct): their
# floors are the promises pyproject makes; what they pull in comes as the resolver finds it.
# The interpreter is the machine's python3, the one .venv is made with; uv must not fetch one.
export UV_PYTHON_DOWNLOADS=never
tools=.venv-lowest/tools
env=.venv-lowest/env
[ -x "$tools/bin/uv" ] || {
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet "uv>=0.5"
}
uv="$tools/bin/uv"

rm -rf "$env"
"$uv" venv --quiet --python "$(command -v python3)" "$env"
"$uv" pip compile --quiet pyproject.toml --extra all --extra test \
  --resolution lowest-direct --python "$env/bin/python" --no-header \
  -o .venv-lowest/requirements.txt
"$uv" pip install --quiet --python "$env/bin/python" -r .venv-lowest/requirements.txt
"$uv" pip install --quiet --python "$env/bin/python" --no-deps -e .

echo "lowest versions:"
"$env/bin/python" - <<'EOF'
import re
import tomllib
from importlib.metadata import version

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
installed = [r for name, extra in extras.items() if name != "dev" for r in extra]
wanted = {re.match(r"[A-Za-z0-9_.-]+", r).group() for r in project["dependencies"] + installed}
print("  " + ", ".join(f"{n} {version(n)}" for n in sorted(wanted - {project["name"]})))
EOF

# The contract suite on every deployment (SQLAlchemy, aiosqlite, asyncpg, redis-py, pydantic,
# Alembic), then a module or a test each for the MCP SDK, the CLI (Typer, Rich), the market
# clients (httpx, respx), the Celery worker (Celery, kombu), the HTTP server (uvicorn), the
# OAuth resource server (PyJWT, cryptography), the dashboard's login (Starlette, which the MCP
# SDK brings) and the traces (the OpenTelemetry SDK and its OTLP exporter).
"$env/bin/pytest" -p no:cacheprovider -q \
  tests/sessions/test_store_contract.py \
  tests/mcp/test_session_tools.py \
  tests/cli/test_sessions.py \
  tests/market/test_service.py \
  tests/jobs/test_celery_worker.py \
  "tests/mcp/test_http.py::test_the_whole_workflow_over_http[stateful]" \
  tests/security/test_oauth.py \
  tests/dashboard/test_login.py \
  tests/ops/test_tracing.py \
  "$@"
