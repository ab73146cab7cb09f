"""``fiml.market`` exports every public name of its modules, in sorted order."""

from __future__ import annotations

import importlib
import pkgutil

import fiml.market


def _isort_key(name: str) -> tuple[int, str]:
    # Ruff's order for __all__: CONSTANTS, then Classes, then functions.
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted() -> None:
    assert fiml.market.__all__ == sorted(fiml.market.__all__, key=_isort_key)


def test_all_is_complete_and_importable() -> None:
    submodule_names: set[str] = set()
    for info in pkgutil.iter_modules(fiml.market.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"fiml.market.{info.name}")
        submodule_names.update(getattr(module, "__all__", ()))

    assert set(fiml.market.__all__) == submodule_names
    for name in fiml.market.__all__:
        assert getattr(fiml.market, name) is not None
