"""``python -m fiml.mcp``: run the MCP server, or add a bearer token to a token file.

python -m fiml.mcp                                  # stdio, as FIML_USER or the OS user
python -m fiml.mcp --http --tokens tokens.json      # streamable HTTP on 127.0.0.1:8000
python -m fiml.mcp --http --stateless --host 0.0.0.0 --port 8000 --tokens tokens.json
python -m fiml.mcp --tokens tokens.json --add-token alice [--role admin]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fiml.core.config import Settings
from fiml.core.errors import FimlError
from fiml.mcp.auth import TokenFile
from fiml.mcp.server import run_server

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fiml.mcp", description=__doc__.split("\n")[0])
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP, not stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    parser.add_argument(
        "--stateless",
        action="store_true",
        help="stateless HTTP: no MCP session in the process, for several processes behind a "
        "load balancer",
    )
    parser.add_argument(
        "--tokens", type=Path, help="token file (default: FIML_MCP_TOKENS_FILE); needed for HTTP"
    )
    parser.add_argument(
        "--add-token",
        metavar="USER",
        help="create a token for USER in the token file, print it once, and exit",
    )
    parser.add_argument("--role", choices=["user", "admin"], default="user", help="for --add-token")
    return parser


def _add_token(path: Path | None, user: str, role: str) -> None:
    if path is None:
        raise SystemExit("--add-token needs --tokens FILE (or FIML_MCP_TOKENS_FILE)")
    tokens = TokenFile.load_or_empty(path)
    token = tokens.add_token(user, "admin" if role == "admin" else "user")
    tokens.save(path)
    print(token)
    print(f"token for {user} ({role}) added to {path}; it is not stored, keep it", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and run; a configuration error is one line on stderr, exit 2."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
        tokens_file = args.tokens or settings.mcp_tokens_file
        if args.add_token is not None:
            _add_token(tokens_file, args.add_token, args.role)
            return 0
        run_server(
            settings,
            transport="http" if args.http else "stdio",
            host=args.host,
            port=args.port,
            stateless=args.stateless,
            tokens_file=tokens_file,
        )
    except FimlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
