"""Empty a test PostgreSQL database at the newest schema, cheaply when the schema is intact.

Dropping FIML's tables and running every migration again takes a fifth of a second or more,
and hundreds of tests start that way. Most of them leave the schema as they found it and
only add rows, so :func:`reset_postgres` deletes the rows instead, when the schema is
exactly the one the last full reset left: the same relations with the same columns, types,
defaults, constraints, indexes, triggers, policies, rules, grants, owners and tablespaces,
and the same migration revision. A test that changed any of that (moved a table, revoked a
grant, dropped a column, stamped another revision) is followed by the full reset, which
empties the database's ``public`` schema whole: a database left by another version of FIML
(a later revision's table holding a foreign key to ``sessions``, its functions) must not stop
the tests of this one, and FIML's own ``drop_schema`` drops only the tables it knows.
FIML's keys are UUIDs and per-session numbers, so no sequence needs restarting.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy.engine import make_url

from fiml.sessions.db import create_engine, metadata
from fiml.sessions.schema import upgrade_schema

# Everything in the current schema that a migration or a test could change, as one digest.
# Dropped columns stay in pg_attribute (attisdropped), so a test that drops one is noticed.
_FINGERPRINT = """
    WITH rel AS (
        SELECT c.oid, c.relname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_schema()
    ), parts AS (
        SELECT concat_ws(':', 'rel', c.relname, c.relkind, c.relpersistence, c.reltablespace,
                         c.relowner::regrole::text, c.relacl::text, c.reloptions::text,
                         c.relrowsecurity, c.relforcerowsecurity, c.relreplident) AS part
        FROM pg_class c JOIN rel USING (oid)
        UNION ALL
        SELECT concat_ws(':', 'col', rel.relname, a.attnum, a.attname, a.atttypid::regtype,
                         a.atttypmod, a.attnotnull, a.attisdropped, a.attidentity,
                         a.attgenerated, a.attcollation, a.attacl::text,
                         pg_get_expr(d.adbin, d.adrelid))
        FROM pg_attribute a JOIN rel ON rel.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attnum > 0
        UNION ALL
        SELECT concat_ws(':', 'con', rel.relname, o.conname, pg_get_constraintdef(o.oid))
        FROM pg_constraint o JOIN rel ON rel.oid = o.conrelid
        UNION ALL
        SELECT concat_ws(':', 'idx', pg_get_indexdef(i.indexrelid), i.indisvalid)
        FROM pg_index i JOIN rel ON rel.oid = i.indrelid
        UNION ALL
        SELECT concat_ws(':', 'trg', pg_get_triggerdef(t.oid), t.tgenabled)
        FROM pg_trigger t JOIN rel ON rel.oid = t.tgrelid
        UNION ALL
        SELECT concat_ws(':', 'pol', rel.relname, p.polname, p.polcmd, p.polpermissive,
                         p.polroles::text, pg_get_expr(p.polqual, p.polrelid),
                         pg_get_expr(p.polwithcheck, p.polrelid))
        FROM pg_policy p JOIN rel ON rel.oid = p.polrelid
        UNION ALL
        SELECT concat_ws(':', 'rule', rel.relname, r.rulename, r.ev_enabled,
                         pg_get_ruledef(r.oid))
        FROM pg_rewrite r JOIN rel ON rel.oid = r.ev_class
    )
    SELECT md5(string_agg(part, E'\\n' ORDER BY part)) FROM parts
"""
_HAS_VERSION_TABLE = "SELECT to_regclass('alembic_version') IS NOT NULL"
_REVISIONS = "SELECT string_agg(version_num, ',' ORDER BY version_num) FROM alembic_version"
# Children before parents, in one round trip. DELETE, not TRUNCATE: on tables this small it
# takes a millisecond, where TRUNCATE gives every table a new file and costs a tenth of a
# second. A test database need not wait for its WAL to be flushed to disk.
_EMPTY = "SET LOCAL synchronous_commit = off; " + "; ".join(
    f'DELETE FROM "{table.name}"' for table in reversed(metadata.sorted_tables)
)

_clean_state: dict[str, str] = {}
"""Per database URL: the fingerprint its schema had right after the last full reset."""


async def _fingerprint(conn: asyncpg.Connection) -> str:
    schema = await conn.fetchval(_FINGERPRINT)
    revisions = None
    if await conn.fetchval(_HAS_VERSION_TABLE):
        revisions = await conn.fetchval(_REVISIONS)
    return f"{schema}/{revisions}"


async def _connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))


async def _empty_if_intact(url: str) -> bool:
    """Empty the tables if the schema is the clean one; False (changing nothing) if not."""
    known = _clean_state.get(url)
    if known is None:
        return False
    conn = await _connect(url)
    try:
        async with conn.transaction():
            if await _fingerprint(conn) != known:
                return False
            await conn.execute(_EMPTY)
        return True
    finally:
        await conn.close()


_EMPTY_SCHEMA = """
DROP SCHEMA public CASCADE;
CREATE SCHEMA public AUTHORIZATION pg_database_owner;
GRANT USAGE ON SCHEMA public TO PUBLIC;
"""
"""The ``public`` schema as PostgreSQL 15 creates it in a new database: owned by the
database's owner, usable by every role."""


async def reset_postgres(url: str) -> None:
    """Leave FIML's tables empty at the newest schema, as after dropping and migrating them."""
    if await _empty_if_intact(url):
        return
    _clean_state.pop(url, None)
    conn = await _connect(url)
    try:
        await conn.execute(_EMPTY_SCHEMA)
    finally:
        await conn.close()
    engine = create_engine(url)
    try:
        await upgrade_schema(engine)
    finally:
        await engine.dispose()
    conn = await _connect(url)
    try:
        _clean_state[url] = await _fingerprint(conn)
    finally:
        await conn.close()
