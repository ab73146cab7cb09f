"""Re-exports a package makes on first use (PEP 562), so that importing it stays cheap.

A package's ``__init__`` runs before any of its modules is imported: one that imports
its modules to re-export their names makes every command that needs a single module pay
for all of them (the store's SQLAlchemy, the server's MCP SDK). A package instead lists
where each re-exported name lives, imports them under ``TYPE_CHECKING`` for type checkers,
and sets ``__getattr__, __dir__ = lazy_exports(__name__, homes)`` outside ``TYPE_CHECKING``,
so that type checkers still refuse a name the package does not export.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, homes: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package``, whose names ``homes``
    maps to the module each is imported from when first looked up."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        setattr(sys.modules[package], name, value)  # found once: later lookups skip this
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *homes})

    return __getattr__, __dir__
