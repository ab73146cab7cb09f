"""What must hold of every session left in Redis, whatever happened to the server.

Read straight from the keyspace (a test may scan it; the product never does), so a session
in a half-state shows up even where the store's own reads would paper over it.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import cast

import redis.asyncio as redis

from fiml.sessions.backends import redis_keys as rk

KEYS = rk.RedisKeyspace()
"""The keys of the tests' deployment (the default key prefix)."""

REQUIRED_META = ("type", "assets", "created_at", "expires_at", "last_accessed_at", "version")


def _tag(key: str) -> str:
    return key.split("{", 1)[1].split("}", 1)[0]


async def session_violations(raw: redis.Redis) -> list[str]:
    """Every broken invariant among the sessions in ``raw``'s database (empty: none).

    For each session whose keys exist: its meta hash exists and is complete; it is in the
    expiry index no later than its expiry and, if it has a user, in the user's index at its
    creation time; its counters match its history (total = queries = distinct ids, cache
    hits and per-type counts recounted from the queries); and no key of it has a TTL
    (nothing may delete a session that is not in the archive). Index entries whose session
    is gone are allowed: the design drops them where they are met.
    """
    keys = [str(k) async for k in raw.scan_iter(match="fiml:s:*", count=1000)]
    by_session: dict[str, set[str]] = {}
    for key in keys:
        by_session.setdefault(_tag(key), set()).add(key)
    expiry_index: dict[str, float] = {}
    for shard in KEYS.expiry_shards():
        entries = await raw.zrange(shard, 0, -1, withscores=True)
        expiry_index.update(cast(list[tuple[str, float]], entries))
    problems: list[str] = []
    for sid, present in sorted(by_session.items()):
        problems += [f"{sid}: {p}" for p in await _one_session(raw, sid, present, expiry_index)]
    return problems


async def _one_session(
    raw: redis.Redis, sid: str, present: set[str], expiry_index: dict[str, float]
) -> list[str]:
    keys = KEYS.session_keys(sid)
    if keys.meta not in present:
        return [f"keys {sorted(present)} without a meta hash"]
    meta = cast(dict[str, str], await raw.hgetall(keys.meta))
    missing = [f for f in REQUIRED_META if f not in meta]
    if missing:
        return [f"meta lacks {missing}"]
    problems = []
    expires_us = int(meta["expires_at"])
    score = expiry_index.get(sid)
    if score is None or score > expires_us:
        problems.append(f"expiry index entry {score} is missing or later than {expires_us}")
    user = meta.get("user_id")
    if user is not None:
        created = await raw.zscore(KEYS.user_index(user, sid), sid)
        if created != int(meta["created_at"]):
            problems.append(f"user index entry {created} != created_at {meta['created_at']}")
    problems += await _history_problems(raw, keys, meta)
    for key in sorted(present):
        at = await raw.pexpiretime(key)
        if at != -1:  # -1: no TTL
            problems.append(f"{key} has a TTL (expires at {at})")
    return problems


async def _history_problems(
    raw: redis.Redis, keys: rk.SessionKeys, meta: dict[str, str]
) -> list[str]:
    queries = [json.loads(q) for q in await raw.lrange(keys.queries, 0, -1)]
    ids = [q["id"] for q in queries]
    qids = await raw.smembers(keys.qids)
    total = int(meta.get("total_queries", 0))
    problems = []
    if not total == len(queries) == len(set(ids)) == len(qids) or set(ids) != qids:
        problems.append(
            f"total_queries {total}, {len(queries)} queries, {len(set(ids))} distinct ids, "
            f"{len(qids)} ids in the id set"
        )
    hits = sum(bool(q["cache_hit"]) for q in queries)
    if int(meta.get("cache_hits", 0)) != hits:
        problems.append(f"cache_hits {meta.get('cache_hits')} but {hits} hits in the history")
    counted = {
        field.removeprefix(rk.QUERY_TYPE_PREFIX): int(value)
        for field, value in meta.items()
        if field.startswith(rk.QUERY_TYPE_PREFIX)
    }
    if counted != Counter(q["query_type"] for q in queries):
        problems.append(f"per-type counts {counted} do not match the history")
    return problems
