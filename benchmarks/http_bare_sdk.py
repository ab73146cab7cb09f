"""The SDK reference of ``load_http.py``: bare ``MCPServer`` tools served the way FIML is.

Two tools named as FIML's search tools, each answering with its arguments as a dict, on an
``MCPServer`` with FIML's bearer-token check (the same token file), served by
:func:`fiml.mcp.server.serve_http` (stateless, JSON responses, the same uvicorn and event
loop). What this costs per call is the MCP SDK's part of a tracked search, auth included;
what a FIML server costs beyond it is FIML's own: the tool's work and the store's.

    python benchmarks/http_bare_sdk.py --port 8200 --tokens tokens.json
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
from pathlib import Path
from typing import Any

import anyio
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

from fiml.mcp.auth import HashedTokenVerifier, TokenFile
from fiml.mcp.server import serve_http

TOOLS = ("search-by-symbol", "search-by-coin")
"""The names of the tools ``load_http.py``'s agents call."""


async def echo(symbol: str, session_id: str | None = None) -> dict[str, Any]:
    """The arguments, as the tool's structured result."""
    return {"symbol": symbol, "session_id": session_id}


def bare_server(tokens: Path, public_url: str) -> MCPServer:
    """An ``MCPServer`` with the echo tool under each name in :data:`TOOLS`."""
    server: MCPServer = MCPServer(
        name="bare",
        token_verifier=HashedTokenVerifier(TokenFile.load(tokens)),
        auth=AuthSettings(issuer_url=public_url, resource_server_url=None),
    )
    for name in TOOLS:
        server.add_tool(echo, name=name)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=Path, required=True)
    args = parser.parse_args()
    server = bare_server(args.tokens, f"http://{args.host}:{args.port}")
    serve = functools.partial(serve_http, server, host=args.host, port=args.port, stateless=True)
    uvloop = importlib.util.find_spec("uvloop") is not None
    anyio.run(serve, backend_options={"use_uvloop": uvloop})


if __name__ == "__main__":
    main()
