"""Many OS processes writing one session at once: a worker script and its launcher."""

from __future__ import annotations

import asyncio
import os
import sys
from uuid import UUID

from fiml.core.config import Settings

WORKER = """
import asyncio, sys
from fiml.core.config import Settings
from fiml.sessions import QueryRecord, SessionStore

async def main(mode, database_url, redis_url, session_id, writers, name):
    settings = Settings(database_url=database_url, redis_url=redis_url or None)
    async with SessionStore(settings) as store:
        async def append(i):
            q = QueryRecord(query_type=f"t{i % 2}", cache_hit=i % 3 == 0)
            await store.append_query(session_id, q)
        async def read_modify_write(i):
            session = await store.get_session(session_id)
            session.add_query(QueryRecord(query_type="price", cache_hit=i % 3 == 0))
            session.state.update_context(f"{name}-{i}", i)
            await store.update_session(session_id, session)
        work = append if mode == "append" else read_modify_write
        await asyncio.gather(*(work(i) for i in range(writers)))

mode, db, rd, sid, writers, name = sys.argv[1:]
asyncio.run(main(mode, db, rd, sid, int(writers), name))
"""
"""Arguments: append|update, database URL, Redis URL ('' for none), session id, writers,
and a name for the process's context keys."""


async def run_workers(
    settings: Settings, mode: str, session_id: UUID, processes: int, writers: int
) -> None:
    """``processes`` OS processes with ``writers`` concurrent writers each, all at once,
    on the settings' deployment (with their pool defaults, and on a Redis Cluster when
    the settings are); any failure fails the test."""
    env = {**os.environ, "FIML_REDIS_CLUSTER": "true" if settings.redis_cluster else "false"}
    args = [mode, settings.database_url, settings.redis_url or "", str(session_id), str(writers)]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WORKER, *args, f"p{p}", stderr=asyncio.subprocess.PIPE, env=env
        )
        for p in range(processes)
    ]
    for proc in procs:
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
