"""PostgreSQL roles of the test database's own, for faults a superuser never meets.

The shared server's ``postgres`` superuser is exempt from connection limits, so a test
that needs PostgreSQL to refuse a connection, or to be read-only, logs in as a plain role
named after the test database (roles are cluster-wide; the name keeps each engineer's
apart). Roles are created once and kept; their table grants are renewed per test, since
every test starts from freshly created tables.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg
from sqlalchemy.engine import make_url


def admin_dsn(url: str) -> str:
    """The asyncpg DSN of a SQLAlchemy PostgreSQL URL (as its own superuser)."""
    return url.replace("+asyncpg", "")


async def plain_role(url: str, suffix: str, *settings: str) -> str:
    """``url`` logging in as the role ``<database>_<suffix>``, after ``ALTER ROLE ...
    <setting>`` for each setting and a grant of every FIML table."""
    database = urlsplit(admin_dsn(url)).path.lstrip("/")
    role = f"{database}_{suffix}"
    admin = await asyncpg.connect(admin_dsn(url))
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            await admin.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER')
        await admin.execute(f'ALTER ROLE "{role}" RESET ALL')
        await admin.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT -1')
        for setting in settings:
            await admin.execute(f'ALTER ROLE "{role}" {setting}')
        await admin.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"')
    finally:
        await admin.close()
    return make_url(url).set(username=role).render_as_string(hide_password=False)
