"""``fiml.mcp`` exports its public names, in sorted order, all importable."""

from __future__ import annotations

import fiml.mcp


def _isort_key(name: str) -> tuple[int, str]:
    # Ruff's order for __all__: CONSTANTS, then Classes, then functions.
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted() -> None:
    assert fiml.mcp.__all__ == sorted(fiml.mcp.__all__, key=_isort_key)


def test_every_exported_name_is_importable() -> None:
    for name in fiml.mcp.__all__:
        assert getattr(fiml.mcp, name) is not None, name
