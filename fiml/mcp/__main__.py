"""``python -m fiml.mcp``: ``fiml serve``, the MCP server, under the module's name.

It runs the ``serve`` command of the ``fiml`` typer app, so options, help and defaults are
those of ``fiml serve``::

    python -m fiml.mcp                    # stdio, as FIML_USER or the OS user
    python -m fiml.mcp --http --stateless --host 0.0.0.0 --port 8000 --tokens tokens.json

Bearer tokens are added with ``fiml tokens add USER [--role admin] --tokens tokens.json``.
"""

from __future__ import annotations

import sys

from fiml.cli.app import run_serve

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run ``fiml serve`` with ``argv`` (default: this process's arguments); the exit code."""
    return run_serve(argv, prog_name="python -m fiml.mcp")


if __name__ == "__main__":
    sys.exit(main())
