"""FIML Sessions: persistent, context-aware analysis sessions for an MCP market-data server."""

__version__ = "0.1.0"
