"""A served FIML (in-memory clients and HTTP with bearer tokens) for the security tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz.harness import Harness, fuzz_settings, harness_for
from tests.mcp.conftest import connect, market, mcp_settings, session_store

__all__ = ["connect", "harness", "market", "mcp_settings", "session_store"]
"""The in-memory clients of ``tests/mcp`` (``connect``) serve these tests too."""


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """FIML on a SQLite store, shared by the tests of a module."""
    with harness_for(fuzz_settings(tmp_path_factory.mktemp("security"))) as served:
        yield served
