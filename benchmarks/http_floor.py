"""The floor of ``load_http.py``: a minimal Starlette JSON-RPC echo behind FIML's uvicorn.

One POST route that parses the JSON-RPC request and answers it with a tool-result-shaped
reply echoing the arguments; no MCP, no auth, no store. It is served the way
:func:`fiml.mcp.server.serve_http` serves MCP (same uvicorn configuration, uvloop when
installed, as :func:`fiml.mcp.server.run_server` chooses it), so the CPU it costs per
call is what any Python JSON-over-HTTP endpoint costs on this machine: the part of a
tracked search that no change to FIML can remove.

    python benchmarks/http_floor.py --port 8100
"""

from __future__ import annotations

import argparse
import importlib.util
import json

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

PATH = "/mcp"


async def echo(request: Request) -> Response:
    """The JSON-RPC reply to the posted request, its arguments as the structured result."""
    message = json.loads(await request.body())
    arguments = message.get("params", {}).get("arguments", {})
    result = {
        "content": [{"type": "text", "text": json.dumps(arguments)}],
        "structuredContent": arguments,
        "isError": False,
    }
    body = json.dumps({"jsonrpc": "2.0", "id": message.get("id"), "result": result})
    return Response(body, media_type="application/json")


def app() -> Starlette:
    """The echo application."""
    return Starlette(routes=[Route(PATH, echo, methods=["POST"])])


async def serve(host: str, port: int) -> None:
    """Serve the echo with the uvicorn configuration of ``fiml serve --http``."""
    config = uvicorn.Config(
        app(), host=host, port=port, log_level="info", access_log=False, lifespan="on"
    )
    await uvicorn.Server(config).serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop = importlib.util.find_spec("uvloop") is not None
    anyio.run(serve, args.host, args.port, backend_options={"use_uvloop": uvloop})


if __name__ == "__main__":
    main()
