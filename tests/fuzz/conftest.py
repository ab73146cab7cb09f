"""The served FIML every fuzz test drives (see ``harness.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz.harness import Harness, fuzz_settings, harness_for


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """FIML on a SQLite store, shared by every example of every test of a module.

    Each check compares the store before and after one call, so what earlier examples
    left behind only makes later ones more varied.
    """
    with harness_for(fuzz_settings(tmp_path_factory.mktemp("fuzz"))) as served:
        yield served
