"""Analytics exports stay inside their directory, whatever path they are given.

``tests/analytics/test_export.py`` covers ``..``, an absolute path elsewhere and a
symlinked directory; here: a symlinked or dangling final file, ``~``, NUL bytes and other
unusable names, the directory itself, and hypothesis-generated paths, each written for real.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fiml.core.config import Settings
from fiml.core.errors import InvalidInputError
from fiml.sessions.analytics import SessionAnalytics
from fiml.sessions.analytics_export import resolve_export_path, write_export
from fiml.sessions.store import SessionStore
from tests.analytics.test_stats import known_sessions
from tests.conftest import sqlite_url
from tests.fuzz.strategies import FUZZ


@pytest.fixture
async def recorded(tmp_path: Path) -> AsyncIterator[SessionAnalytics]:
    """Analytics with three recorded sessions, on SQLite (paths do not depend on the store)."""
    settings = Settings(database_url=sqlite_url(tmp_path / "db"), redis_url=None)
    async with SessionStore(settings) as store:
        analytics = SessionAnalytics(store)
        for session in known_sessions():
            await analytics.record_session_metrics(session)
        yield analytics


@pytest.fixture
def rooms(tmp_path: Path) -> tuple[Path, Path]:
    """An export directory, and a directory outside it that must stay untouched."""
    inside, outside = tmp_path / "exports", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    (outside / "victim.csv").write_text("precious\n", encoding="utf-8")
    return inside, outside


def untouched(outside: Path) -> bool:
    return [p.name for p in outside.iterdir()] == ["victim.csv"] and (
        outside / "victim.csv"
    ).read_text(encoding="utf-8") == "precious\n"


async def test_a_file_symlink_pointing_out_is_refused(
    recorded: SessionAnalytics, rooms: tuple[Path, Path]
) -> None:
    inside, outside = rooms
    (inside / "metrics.csv").symlink_to(outside / "victim.csv")

    with pytest.raises(InvalidInputError) as refused:
        await recorded.export_session_metrics("csv", path="metrics.csv", directory=inside)

    assert refused.value.field == "path"
    assert untouched(outside)


async def test_a_dangling_symlink_pointing_out_is_refused(
    recorded: SessionAnalytics, rooms: tuple[Path, Path]
) -> None:
    inside, outside = rooms
    (inside / "new.csv").symlink_to(outside / "created-by-export.csv")

    with pytest.raises(InvalidInputError):
        await recorded.export_session_metrics("csv", path="new.csv", directory=inside)

    assert untouched(outside)


async def test_a_symlink_loop_is_refused_by_name(
    recorded: SessionAnalytics, rooms: tuple[Path, Path]
) -> None:
    inside, outside = rooms
    (inside / "loop").symlink_to(inside / "loop")

    with pytest.raises(InvalidInputError, match="not a usable file path"):
        await recorded.export_session_metrics("csv", path="loop/x.csv", directory=inside)

    assert untouched(outside)


@pytest.mark.parametrize(
    "path",
    [
        "~/metrics.csv",
        "~root/metrics.csv",
        ".",
        "./",
        "sub/..",
        "/",
        "a\x00b.csv",
        "\ud800.csv",
        "../exports",
        "../elsewhere/victim.csv",
        "sub/../../elsewhere/victim.csv",
    ],
)
async def test_paths_that_are_not_a_file_inside_are_refused_by_name(
    recorded: SessionAnalytics, rooms: tuple[Path, Path], path: str
) -> None:
    inside, outside = rooms

    with pytest.raises(InvalidInputError) as refused:
        await recorded.export_session_metrics("json", path=path, directory=inside)

    assert refused.value.field == "path"
    assert list(inside.iterdir()) == []
    assert untouched(outside)


async def test_an_absolute_path_inside_the_directory_is_allowed(
    recorded: SessionAnalytics, rooms: tuple[Path, Path]
) -> None:
    inside, outside = rooms

    document = await recorded.export_session_metrics(
        "csv", path=str(inside / "deep" / "m.csv"), directory=inside
    )

    assert (inside / "deep" / "m.csv").read_bytes() == document.encode()
    assert untouched(outside)


@pytest.fixture(scope="module")
def playground(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """An export directory with symlinks in and out, and a directory beside it."""
    root = tmp_path_factory.mktemp("paths")
    inside, outside = root / "exports", root / "elsewhere"
    (inside / "sub").mkdir(parents=True)
    outside.mkdir()
    (inside / "out").symlink_to(outside)
    (inside / "in").symlink_to(inside / "sub")
    (inside / "escape.csv").symlink_to(outside / "e.csv")
    yield inside, outside


segments = st.sampled_from(
    ["..", ".", "", "sub", "out", "in", "escape.csv", "m.csv", "~", "elsewhere", "exports", "\\.."]
)
paths = st.one_of(
    st.lists(segments, min_size=1, max_size=6).map("/".join),
    st.lists(segments, min_size=1, max_size=6).map(lambda parts: "/" + "/".join(parts)),
    st.text(max_size=12),
)


@FUZZ
@given(path=paths)
def test_any_path_resolves_inside_the_directory_or_is_refused(
    playground: tuple[Path, Path], path: str
) -> None:
    inside, outside = playground
    try:
        target = resolve_export_path(path, inside)
    except InvalidInputError as refused:
        assert refused.field == "path"
        return

    assert target.is_relative_to(inside.resolve()) and target != inside.resolve()
    # Earlier examples leave files and folders behind, so a write may clash with one of
    # them (refused as a path that cannot be a file); wherever it lands, it is inside.
    with contextlib.suppress(InvalidInputError):
        anyio.run(write_export, target, "x\n")
        assert target.read_text(encoding="utf-8") == "x\n"
    assert list(outside.iterdir()) == []
