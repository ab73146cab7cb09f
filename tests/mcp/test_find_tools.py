"""search-sessions through the in-memory client: what a tracked search and a context
update leave behind finds the session; other users' sessions never; bad arguments are
refused naming them."""

from __future__ import annotations

import pytest

from tests.mcp.conftest import Connect, fails, new_session, ok


async def test_a_session_is_found_by_what_its_tools_recorded(connect: Connect) -> None:
    async with connect("alice") as alice, connect("bob") as bob:
        tracked = await new_session(alice, "MSFT", tags=["watch"], session_type="equity")
        await ok(alice, "search-by-symbol", symbol="NVDA", session_id=tracked)
        await ok(
            alice,
            "update-session-context",
            session_id=tracked,
            context={"finding": "Margins keep expanding"},
        )
        other = await new_session(alice, "BTC", session_type="crypto")
        await new_session(bob, "NVDA", tags=["watch"])

        def ids(reply: dict[str, object]) -> list[str]:
            sessions = reply["sessions"]
            assert isinstance(sessions, list)
            return [s["session_id"] for s in sessions]

        assert ids(await ok(alice, "search-sessions", asset="nvda")) == [tracked]
        assert ids(await ok(alice, "search-sessions", tag="watch")) == [tracked]
        assert ids(await ok(alice, "search-sessions", text="margins EXPANDING")) == [tracked]
        assert ids(await ok(alice, "search-sessions", session_type="crypto")) == [other]
        assert ids(await ok(alice, "search-sessions")) == [other, tracked]
        first = await ok(alice, "search-sessions", limit=1)
        assert ids(first) == [other]
        rest = await ok(alice, "search-sessions", limit=1, cursor=first["next_cursor"])
        assert ids(rest) == [tracked] and rest.get("next_cursor") is None
        assert ids(await ok(bob, "search-sessions", text="margins")) == []


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"session_type": "EQUITY"}, "session_type"),
        ({"since": "last week"}, "since"),
        ({"until": "2026-01-01T00:00:00"}, "until"),
        ({"text": "..."}, "text"),
        ({"asset": " "}, "asset"),
        ({"cursor": "forged"}, "cursor"),
        ({"limit": 0}, "limit"),
    ],
)
async def test_bad_arguments_are_refused_naming_them(
    connect: Connect, arguments: dict[str, object], field: str
) -> None:
    async with connect("alice") as alice:
        assert field in await fails(alice, "search-sessions", **arguments)
