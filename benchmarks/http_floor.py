"""The floor of ``load_http.py``: a minimal Starlette JSON-RPC echo behind FIML's uvicorn.

One POST route that parses the JSON-RPC request and answers it with a tool-result-shaped
reply echoing the arguments; no MCP, no auth, no store. It is served the way
:func:`fiml.mcp.server.serve_http` serves MCP (same uvicorn configuration, uvloop when
installed, as :func:`fiml.mcp.server.run_server` chooses it), so the CPU it costs per
call is what any Python JSON-over-HTTP endpoint costs on this machine: the part of a
tracked search that no change to FIML can remove.

    python benchmarks/http_floor.py --port 8100 [--header-timeout 10]
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


async def serve(host: str, port: int, header_timeout: float = 0) -> None:
    """Serve the echo with the uvicorn configuration of ``fiml serve --http``; with
    ``header_timeout``, behind its head deadline's front (bench_head_front.py)."""

    def config(
        *,
        host: str = host,
        port: int = port,
        uds: str | None = None,
        forwarded_allow_ips: str | None = None,
    ) -> uvicorn.Config:
        return uvicorn.Config(
            app(),
            host=host,
            port=port,
            uds=uds,
            forwarded_allow_ips=forwarded_allow_ips,
            log_level="info",
            access_log=False,
            lifespan="on",
        )

    if not header_timeout:
        await uvicorn.Server(config()).serve()
        return
    from fiml.mcp.head_deadline import HeadDeadline

    await HeadDeadline(header_timeout, 1000).serve(config, host=host, port=port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--header-timeout", type=float, default=0, help="0: no front")
    args = parser.parse_args()
    uvloop = importlib.util.find_spec("uvloop") is not None
    anyio.run(
        serve, args.host, args.port, args.header_timeout, backend_options={"use_uvloop": uvloop}
    )


if __name__ == "__main__":
    main()
