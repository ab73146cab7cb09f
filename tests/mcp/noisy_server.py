"""``python -m tests.mcp.noisy_server``: a stdio MCP server whose tool writes to stdout.

The ``shout`` tool writes its text every way a tool could reach stdout: ``print()``,
``sys.stdout`` unflushed, a raw write to descriptor 1, and a child process that inherits
the descriptors. It also reads stdin, and has a child read it, as a careless tool might.
None of this may reach (or take from) the protocol stream of the SDK's stdio transport
as ``python -m fiml.mcp`` serves it (:func:`fiml.mcp.server.serve_stdio`).
"""

from __future__ import annotations

import os
import subprocess
import sys

import anyio
from mcp.server.mcpserver import MCPServer

from fiml.mcp.server import serve_stdio

server = MCPServer(name="noisy")


@server.tool()
async def shout(text: str) -> str:
    """Write ``text`` to stdout in four ways; return what stdin gave (should be nothing)."""
    print(f"print {text}")
    sys.stdout.write(f"buffered {text}\n")
    os.write(1, f"fd1 {text}\n".encode())
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; text = sys.argv[1]; print('child', text);"
            "print('child stdin', text, repr(sys.stdin.read()), file=sys.stderr)",
            text,
        ],
        check=True,
    )
    assert child.returncode == 0
    return repr(sys.stdin.read())


if __name__ == "__main__":
    anyio.run(serve_stdio, server)
