"""The package's layers, read from its import statements: core <- sessions <- market,
dashboard <- mcp <- cli, each importing only the layers below it (market none of sessions,
the dashboard no market), and no session
backend reaching into another backend's implementation.

Every ``import`` counts, those inside functions and under ``TYPE_CHECKING`` too: a lazy
import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fiml"
BACKENDS = "fiml.sessions.backends"

ALLOWED = {
    "fiml.core": {"fiml.core"},
    "fiml.sessions": {"fiml.core", "fiml.sessions"},
    "fiml.market": {"fiml.core", "fiml.market"},
    "fiml.dashboard": {"fiml.core", "fiml.sessions", "fiml.dashboard"},
    "fiml.mcp": {"fiml.core", "fiml.sessions", "fiml.market", "fiml.dashboard", "fiml.mcp"},
    "fiml.cli": {
        "fiml.core",
        "fiml.sessions",
        "fiml.market",
        "fiml.dashboard",
        "fiml.mcp",
        "fiml.cli",
    },
}
"""Which layers each layer may import (``fiml`` itself, the version, is open to all)."""

BACKEND_FAMILIES = {
    "sql": (
        "sql",
        "sql_archive",
        "sql_by_id",
        "sql_events",
        "sql_faults",
        "sql_metrics",
        "sql_partitions",
        "sql_rows",
        "sql_search",
        "sql_sharing",
    ),
    "redis": (
        "redis",
        "redis_apply",
        "redis_codec",
        "redis_commands",
        "redis_export",
        "redis_indexes",
        "redis_keys",
        "redis_persistence",
        "redis_reads",
        "redis_search",
    ),
}
"""The implementation modules of each backend under ``fiml/sessions/backends``; ``base``
(the Protocols), what both tiers share (``fields``, ``rules``, ``summaries``) and the
package (which picks a deployment) belong to none."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[str]:
    """Every fiml module ``path`` imports, relative imports resolved."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from fiml.x import y`` may name a module y: count both.
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _is_root(name: str) -> bool:
    """``fiml`` or a name defined in ``fiml/__init__.py`` (``__version__``), not a module."""
    parts = name.split(".")
    return len(parts) == 1 or (
        len(parts) == 2
        and not (PACKAGE / parts[1]).is_dir()
        and not (PACKAGE / f"{parts[1]}.py").exists()
    )


def _fiml_imports(path: Path) -> set[str]:
    """The fiml modules (and names in them) ``path`` imports; the package root left out."""
    return {
        name
        for name in _imports(path)
        if (name == "fiml" or name.startswith("fiml.")) and not _is_root(name)
    }


def _layer(module: str) -> str | None:
    return next(
        (layer for layer in ALLOWED if module == layer or module.startswith(f"{layer}.")), None
    )


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _layer_of(path: Path) -> str | None:
    """A module's layer; ``python -m`` entry points (``__main__``) run the command line, the
    top layer, wherever they sit (``python -m fiml.mcp`` is ``fiml serve``)."""
    return "fiml.cli" if path.stem == "__main__" else _layer(_module_name(path))


def _modules_of(layer: str) -> list[Path]:
    return [path for path in _modules() if _layer_of(path) == layer]


def test_every_module_belongs_to_a_layer() -> None:
    strays = [_module_name(p) for p in _modules() if p != PACKAGE / "__init__.py"]
    assert [m for m in strays if _layer(m) is None] == []


def test_the_package_root_imports_no_layer() -> None:
    assert _fiml_imports(PACKAGE / "__init__.py") == set()


def test_the_reading_finds_lazy_imports_and_leaves_out_the_root() -> None:
    names = _fiml_imports(PACKAGE / "cli" / "app.py")
    assert "fiml.cli.demo" in names  # imported inside the demo command
    assert "fiml.__version__" not in names and "fiml.cli.runtime" in names


@pytest.mark.parametrize("layer", list(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(layer: str) -> None:
    assert _modules_of(layer), f"no modules found for {layer}"
    crossings = {
        f"{_module_name(path)} -> {target}"
        for path in _modules_of(layer)
        for target in _fiml_imports(path)
        if target != "fiml" and _layer(target) not in ALLOWED[layer]
    }
    assert crossings == set()


def _family(module: str) -> str | None:
    if not module.startswith(f"{BACKENDS}."):
        return None
    name = module.removeprefix(f"{BACKENDS}.").split(".")[0]
    return next((f for f, names in BACKEND_FAMILIES.items() if name in names), None)


def _backend_crossings() -> set[str]:
    crossings = set()
    for path in (PACKAGE / "sessions" / "backends").glob("*.py"):
        own = _family(_module_name(path))
        if own is None:
            continue
        crossings |= {
            f"{_module_name(path)} -> {target}"
            for target in _fiml_imports(path)
            if (other := _family(target)) is not None and other != own
        }
    return crossings


def test_every_backend_module_is_known() -> None:
    names = {p.stem for p in (PACKAGE / "sessions" / "backends").glob("*.py")}
    shared = {"__init__", "base", "fields", "rules", "summaries"}
    known = {n for family in BACKEND_FAMILIES.values() for n in family} | shared
    assert names <= known, f"add {sorted(names - known)} to BACKEND_FAMILIES"


def test_no_backend_imports_another_backends_implementation() -> None:
    assert _backend_crossings() == set()
