"""``fiml sessions list|search|show|extend|close|archive|delete|quarantined``: every user's
sessions, as admin.

Unlike the MCP tools, which only ever show callers their own sessions, these commands
act on any session: whoever runs ``fiml`` on the machine administers the store.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fiml.cli.failures import EXIT_BAD_INPUT, EXIT_FAILED, fail
from fiml.cli.runtime import confirm, open_store, out_console, print_json, progress_bar, run
from fiml.core.errors import (
    CorruptRecordError,
    InvalidInputError,
    SessionError,
    SessionNotFoundError,
)

if TYPE_CHECKING:  # the rest loads with the store, inside the commands (see runtime)
    from uuid import UUID

    from fiml.core.config import Settings
    from fiml.sessions.models import Session
    from fiml.sessions.quarantine import QuarantinedSession
    from fiml.sessions.store import SessionPage, SessionStore

__all__ = ["ArchiveOutcome", "sessions_app"]

sessions_app = typer.Typer(
    name="sessions",
    help="See and manage every user's analysis sessions (the CLI acts as admin).",
    no_args_is_help=True,
)

SessionIdArg = Annotated[str, typer.Argument(metavar="SESSION_ID", help="The session's id.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
OwnerOption = Annotated[
    str | None,
    typer.Option(
        "--user", help="Whose sessions (default: FIML_USER or the OS user, as over stdio)."
    ),
]
PageSizeOption = Annotated[int, typer.Option("--limit", help="Sessions per page (1-1000).")]
CursorOption = Annotated[
    str | None,
    typer.Option("--cursor", help="Continue after a previous page (its next cursor)."),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do it without asking.")]


def _local_user(settings: Settings) -> str:
    from fiml.mcp.auth import local_identity  # the MCP SDK loads only when it is needed

    return local_identity(settings).user_id


def _summary_json(session: Session) -> dict[str, Any]:
    from fiml.sessions.models import SessionSummary

    return SessionSummary.from_session(session).model_dump(mode="json")


@sessions_app.command("list")
def list_sessions(
    user: OwnerOption = None,
    include_archived: Annotated[
        bool, typer.Option("--include-archived", help="List archived sessions too.")
    ] = False,
    limit: PageSizeOption = 20,
    cursor: CursorOption = None,
    as_json: JsonOption = False,
) -> None:
    """A user's sessions, newest first, one page at a time."""

    async def work(settings: Settings) -> tuple[str, SessionPage]:
        owner = user if user is not None else _local_user(settings)
        async with open_store(settings) as store:
            page = await store.list_user_sessions_page(
                owner, include_archived=include_archived, limit=limit, cursor=cursor
            )
        return owner, page

    owner, page = run(work)
    from fiml.cli.render import sessions_table

    if as_json:
        print_json({"user_id": owner, **page.model_dump(mode="json")})
        return
    console = out_console()
    which = "" if include_archived else " (archived ones hidden; --include-archived shows them)"
    console.print(sessions_table(page.sessions, title=f"Sessions of {owner}{which}"))
    if not page.sessions:
        typer.echo("no sessions")
    if page.next_cursor:
        more = f"fiml sessions list --user {shlex.quote(owner)} --cursor {page.next_cursor}"
        if include_archived:
            more += " --include-archived"
        typer.echo(f"more: {more}")


@sessions_app.command("search")
def search_sessions(
    user: OwnerOption = None,
    asset: Annotated[
        str | None, typer.Option(help="Sessions that hold or held it, or queried it.")
    ] = None,
    tag: Annotated[str | None, typer.Option(help="Sessions carrying this tag.")] = None,
    session_type: Annotated[
        str | None, typer.Option("--type", help="Sessions of this type.")
    ] = None,
    text: Annotated[
        str | None,
        typer.Option(help="Words that the context or one query's result summary holds."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Created at or after this ISO 8601 time (with offset).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Created before this ISO 8601 time (with offset).")
    ] = None,
    include_archived: Annotated[
        bool, typer.Option("--include-archived/--active-only", help="Search archived ones too.")
    ] = True,
    limit: PageSizeOption = 20,
    cursor: CursorOption = None,
    as_json: JsonOption = False,
) -> None:
    """A user's sessions matching every criterion given, newest first, a page at a time."""

    async def work(settings: Settings) -> tuple[str, SessionPage]:
        owner = user if user is not None else _local_user(settings)
        async with open_store(settings) as store:
            page = await store.search_user_sessions(
                owner,
                asset=asset,
                tag=tag,
                session_type=session_type,
                text=text,
                since=since,
                until=until,
                include_archived=include_archived,
                limit=limit,
                cursor=cursor,
            )
        return owner, page

    owner, page = run(work)
    from fiml.cli.render import sessions_table

    if as_json:
        print_json({"user_id": owner, **page.model_dump(mode="json")})
        return
    out_console().print(sessions_table(page.sessions, title=f"Sessions of {owner} found"))
    if not page.sessions:
        typer.echo("no sessions")
    if page.next_cursor:
        typer.echo(f"more: pass --cursor {page.next_cursor} with the same criteria")


@sessions_app.command("show")
def show(
    session_id: SessionIdArg,
    queries: Annotated[int, typer.Option(help="How many recent queries to show.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """One session: lifecycle, counters, context, and its recent queries."""
    if queries < 0:
        raise fail(f"invalid queries {queries}: must be 0 or more", EXIT_BAD_INPUT)

    async def work(settings: Settings) -> Session:
        async with open_store(settings) as store:
            session = await store.get_session(session_id, history_limit=queries)
        if session is None:
            raise SessionNotFoundError(session_id)
        return session

    session = run(work)
    if as_json:
        print_json({**session.to_dict(), "status": session.status.value})
    else:
        from fiml.cli.render import session_details

        out_console().print(session_details(session))


def _changed(session: Session, as_json: bool, message: str) -> None:
    if as_json:
        print_json(_summary_json(session))
    else:
        typer.echo(message)


@sessions_app.command("extend")
def extend(
    session_id: SessionIdArg,
    hours: Annotated[float, typer.Option(help="How many hours to add to its expiry.")] = 24,
    as_json: JsonOption = False,
) -> None:
    """Push a session's expiry later (up to the maximum TTL from now)."""

    async def work(settings: Settings) -> Session:
        async with open_store(settings) as store:
            return await store.extend_session(session_id, hours)

    session = run(work)
    from fiml.cli.render import span, when

    remaining = span(session.time_remaining)
    _changed(session, as_json, f"{session.id} expires {when(session.expires_at)} (in {remaining})")


@sessions_app.command("close")
def close(session_id: SessionIdArg, as_json: JsonOption = False) -> None:
    """Close a session: it becomes read-only and the next cleanup archives it."""

    async def work(settings: Settings) -> Session:
        async with open_store(settings) as store:
            return await store.close_session(session_id)

    session = run(work)
    _changed(session, as_json, f"{session.id} is {session.status.value}")


@dataclass(frozen=True, slots=True)
class ArchiveOutcome:
    """What archiving one session did: archived now, archived before, or an error."""

    session_id: str
    archived: bool
    error: str | None = None


async def _unarchived_ids(store: SessionStore, user_id: str) -> list[UUID]:
    from fiml.sessions.store import MAX_PAGE

    ids: list[UUID] = []
    cursor: str | None = None
    while True:
        page = await store.list_user_sessions_page(user_id, limit=MAX_PAGE, cursor=cursor)
        ids += [s.id for s in page.sessions if not s.is_archived]
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


async def _archive_all(
    store: SessionStore, ids: list[UUID], *, show_progress: bool
) -> list[ArchiveOutcome]:
    outcomes: list[ArchiveOutcome] = []
    with progress_bar(enabled=show_progress) as bar:
        task = bar.add_task("archiving sessions", total=len(ids))
        for sid in ids:
            try:
                archived = await store.archive_session(sid)
                outcomes.append(ArchiveOutcome(session_id=str(sid), archived=archived))
            except SessionError as exc:
                outcomes.append(ArchiveOutcome(session_id=str(sid), archived=False, error=str(exc)))
            bar.advance(task)
    return outcomes


def _print_outcomes(outcomes: list[ArchiveOutcome], as_json: bool) -> None:
    if as_json:
        print_json([asdict(o) for o in outcomes])
        return
    for o in outcomes:
        result = o.error or ("archived" if o.archived else "was already archived")
        typer.echo(f"{o.session_id}: {result}")
    if not outcomes:
        typer.echo("nothing to archive")


@sessions_app.command("archive")
def archive(
    session_ids: Annotated[
        list[str] | None, typer.Argument(metavar="[SESSION_ID]...", help="Sessions to archive.")
    ] = None,
    user: Annotated[
        str | None, typer.Option(help="Archive every unarchived session of this user.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Archive sessions now (running ones are ended first); archives are read-only."""
    if not session_ids and user is None:
        raise fail("name the sessions to archive, or pass --user USER", EXIT_BAD_INPUT)

    async def work(settings: Settings) -> list[ArchiveOutcome]:
        from fiml.sessions.store import parse_session_id

        ids = [parse_session_id(s) for s in session_ids or []]  # all checked before any change
        async with open_store(settings) as store:
            if user is not None:
                ids += await _unarchived_ids(store, user)
            return await _archive_all(store, list(dict.fromkeys(ids)), show_progress=not as_json)

    outcomes = run(work)
    failed = [o for o in outcomes if o.error]
    if len(outcomes) == 1 and failed and not as_json:
        raise fail(failed[0].error or "not archived")
    _print_outcomes(outcomes, as_json)
    if failed:
        raise fail(f"{len(failed)} of {len(outcomes)} sessions were not archived", EXIT_FAILED)


@sessions_app.command("delete")
def delete(session_id: SessionIdArg, yes: YesOption = False, as_json: JsonOption = False) -> None:
    """Delete a session and its whole history, active or archived. Cannot be undone."""
    sid = _session_id(session_id)
    if not yes:

        async def describe(settings: Settings) -> str:
            async with open_store(settings) as store:
                try:
                    session = await store.get_session(sid, history_limit=0)
                except CorruptRecordError as exc:  # what an operator deletes a quarantine for
                    return f"Delete session {sid}, whose record is corrupt ({exc.reason})?"
            if session is None:
                raise SessionNotFoundError(sid)
            return (
                f"Delete session {sid} of {session.user_id or 'no user'} "
                f"({session.state.history.total_queries} queries, {session.status.value})?"
            )

        question = run(describe)
        if not confirm(question):
            raise fail("nothing deleted (confirm, or pass --yes)")

    async def work(settings: Settings) -> None:
        async with open_store(settings) as store:
            if not await store.delete_session(sid):
                raise SessionNotFoundError(sid)

    run(work)
    if as_json:
        print_json({"session_id": str(sid), "deleted": True})
    else:
        typer.echo(f"{sid} deleted")


@sessions_app.command("quarantined")
def quarantined(
    user: Annotated[str | None, typer.Option(help="Only this user's sessions.")] = None,
    limit: Annotated[int, typer.Option(help="How many to show (1-1000).")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Sessions archival could not move, with why: each stays where it is, is retried by
    every cleanup, and is kept past retention until you delete it (fiml sessions delete)."""

    async def work(settings: Settings) -> list[QuarantinedSession]:
        async with open_store(settings) as store:
            return await store.list_quarantined(limit=limit, user_id=user)

    found = run(work)
    if as_json:
        print_json([{**asdict(q), "session_id": str(q.session_id)} for q in found])
        return
    if not found:
        typer.echo("no quarantined sessions")
        return
    from fiml.cli.render import quarantine_table

    out_console().print(quarantine_table(found))


def _session_id(value: str) -> UUID:
    from fiml.sessions.store import parse_session_id

    try:
        return parse_session_id(value)
    except InvalidInputError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None
