"""Settings, read from the environment (prefix ``FIML_``) and an optional ``.env`` file.

Nothing here is read at import time: build a :class:`Settings` where you need it and
pass it down (``SessionStore(settings=...)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from platformdirs import user_data_dir
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "CLUSTER_REDIS_INDEX_SHARDS",
    "DEFAULT_DATABASE_MAX_OVERFLOW",
    "DEFAULT_DATABASE_POOL_SIZE",
    "DEFAULT_REDIS_INDEX_SHARDS",
    "DEFAULT_REDIS_KEY_PREFIX",
    "DEFAULT_REDIS_TIMEOUT_SECONDS",
    "Settings",
    "default_data_dir",
    "default_database_url",
]

DEFAULT_DATABASE_POOL_SIZE = 5
DEFAULT_DATABASE_MAX_OVERFLOW = 5
"""At most 10 PostgreSQL connections a process, so nine processes fit under PostgreSQL's
default ``max_connections`` of 100 with room left for psql, migrations and monitoring."""
DEFAULT_REDIS_KEY_PREFIX = "fiml"
DEFAULT_REDIS_TIMEOUT_SECONDS = 5.0
DEFAULT_REDIS_INDEX_SHARDS = 1
"""Index shards on a single Redis: one is cheapest there (a listing reads every shard)."""
CLUSTER_REDIS_INDEX_SHARDS = 16
"""Index shards on a Redis Cluster, enough to spread the indexes over its masters."""


def default_data_dir() -> Path:
    """The per-user data directory where the embedded SQLite database lives."""
    return Path(user_data_dir("fiml", appauthor=False))


def default_database_url() -> str:
    """``sqlite+aiosqlite:///<user data dir>/sessions.db``: the embedded default."""
    return f"sqlite+aiosqlite:///{default_data_dir() / 'sessions.db'}"


class Settings(BaseSettings):
    """FIML's settings; every field can be set as ``FIML_<FIELD_NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="FIML_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = Field(
        default_factory=default_database_url,
        description="SQLAlchemy URL of the session database (SQLite or PostgreSQL).",
    )
    database_auto_migrate: bool = Field(
        default=False,
        description="Let every process start migrate a PostgreSQL database to this FIML's "
        "schema (serialized by an advisory lock). Off: production databases are migrated on "
        "purpose with `fiml db upgrade`, and a process refuses a schema that is behind. The "
        "embedded SQLite file always migrates itself.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL; when set, active sessions live in Redis and archives in the "
        "database.",
    )
    celery_broker_url: str | None = Field(
        default=None,
        description="Celery broker (and result backend) URL; when set, background jobs run on "
        "Celery beat and workers, otherwise in-process. Workers fall back to redis_url.",
    )

    session_default_ttl_hours: float = Field(default=24, gt=0)
    session_max_ttl_hours: float = Field(default=168, gt=0)
    session_cleanup_interval_minutes: float = Field(default=60, gt=0)
    session_retention_days: float = Field(default=30, gt=0)
    session_max_queries_per_session: int = Field(default=1000, gt=0)
    session_enable_analytics: bool = True
    session_sliding_ttl: bool = Field(
        default=False,
        description="Each write to a session pushes its expiry back by the time since its "
        "last write, so that a session written at least once per TTL keeps its TTL ahead of "
        "it; never past session_max_ttl_hours from its creation.",
    )

    session_recent_queries: int = Field(
        default=20,
        ge=0,
        description="How many recent queries a plain get_session loads with the session.",
    )
    session_archive_grace_hours: float = Field(
        default=24,
        gt=0,
        description="Redis never deletes a session by itself (no TTL: nothing leaves Redis "
        "before it is in the archive); cleanup re-checks an extended session's expiry index "
        "entry at most half of this after it was due.",
    )
    redis_key_prefix: str = Field(
        default=DEFAULT_REDIS_KEY_PREFIX,
        min_length=1,
        pattern=r"^[^\s{}]+$",
        description="First part of every Redis key FIML writes (sessions, their indexes, the "
        "quote cache, job locks, the layout marker), so deployments sharing one Redis database "
        "keep apart. No braces: a session's keys share the hash tag {<session id>}.",
    )
    redis_max_connections: int = Field(
        default=64,
        gt=0,
        description="Connections in the process's one Redis pool; a call that finds them all "
        "busy waits for one (60 s at most).",
    )
    redis_timeout_seconds: float = Field(
        default=DEFAULT_REDIS_TIMEOUT_SECONDS,
        gt=0,
        description="How long one Redis exchange (connect, send, all replies) may take before "
        "the call fails with a storage error.",
    )
    redis_retries: int = Field(
        default=0,
        ge=0,
        description="How often redis-py retries a command after a connection error or "
        "timeout (its Retry, exponential backoff). Off by default: a command whose reply was "
        "lost may have run, and a write run twice is not harmless (an extension applied twice).",
    )
    redis_health_check_interval_seconds: float = Field(
        default=0,
        ge=0,
        description="redis-py's health check: PING a pooled connection idle this long before "
        "using it (0: off; the pool already replaces connections the server closed).",
    )
    redis_cluster: bool = Field(
        default=False,
        description="Talk to redis_url as a Redis Cluster (redis-py's RedisCluster): the URL "
        "names any one node, the client finds the others. A cluster has database 0 only.",
    )
    redis_index_shards: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="How many shards the per-user and expiry indexes are split into, by a "
        "hash of the session id, each shard under its own hash tag so that a cluster spreads "
        "them over its masters. A listing reads every shard of its user in one round trip. "
        "0 (the default): 16 on a Redis Cluster, 1 on a single Redis, where one is cheapest. "
        "Changing it re-shards the indexes when the next process starts.",
    )
    redis_wait_replicas: int = Field(
        default=0,
        ge=0,
        description="After each session write, wait (Redis WAIT) until this many replicas "
        "hold it before acknowledging it; 0: acknowledge at once (a failover may lose the "
        "latest writes). A write that reaches fewer in time fails with a storage error.",
    )
    redis_wait_timeout_seconds: float = Field(
        default=1,
        gt=0,
        description="How long a write waits for redis_wait_replicas replicas.",
    )
    database_pool_size: int = Field(
        default=DEFAULT_DATABASE_POOL_SIZE,
        gt=0,
        description="PostgreSQL connections each process keeps open. Every process may hold "
        "database_pool_size + database_max_overflow connections: keep processes x (pool + "
        "overflow) plus some headroom at or below the server's max_connections.",
    )
    database_timeout_seconds: float = Field(
        default=30,
        gt=0,
        description="How long one database statement (or connecting, or waiting for a free "
        "connection in the pool, or for a slot on a full PostgreSQL, or for SQLite's write "
        "lock) may take before the call fails with a storage error.",
    )
    database_max_overflow: int = Field(
        default=DEFAULT_DATABASE_MAX_OVERFLOW,
        ge=0,
        description="PostgreSQL connections a process may open beyond database_pool_size "
        "under load (closed again when returned).",
    )

    user: str | None = Field(
        default=None,
        description="Who the caller is over the stdio MCP transport (FIML_USER); default: the "
        "OS user.",
    )
    mcp_tokens_file: Path | None = Field(
        default=None,
        description="JSON file of SHA-256 hashes of the MCP server's bearer tokens, each mapped "
        "to a user and a role; required for the HTTP transport.",
    )
    oauth_issuer: str | None = Field(
        default=None,
        description="OAuth 2.1 authorization server (the team's identity provider) whose JWT "
        "access tokens the HTTP transport accepts, besides the token file; its `iss`.",
    )
    oauth_audience: str | None = Field(
        default=None,
        description="The `aud` an access token must carry for this server (required with "
        "oauth_issuer); usually the resource URL or an API identifier the provider gives.",
    )
    oauth_jwks_url: str | None = Field(
        default=None,
        description="Where the provider publishes its signing keys (JWKS); fetched when a "
        "token names a key not seen yet, at most once per oauth_jwks_refresh_seconds.",
    )
    oauth_jwks_file: Path | None = Field(
        default=None,
        description="A JWKS file instead of oauth_jwks_url (offline deployments, tests); "
        "re-read when it changes.",
    )
    oauth_jwks_refresh_seconds: float = Field(
        default=60,
        gt=0,
        description="Least time between two fetches of oauth_jwks_url, so tokens naming "
        "unknown keys cannot make the server hammer the provider.",
    )
    oauth_scopes: list[str] = Field(
        default=["fiml"],
        description="Scopes every access token must hold (403 insufficient_scope otherwise); "
        "published in the protected-resource metadata.",
    )
    oauth_user_claim: str = Field(
        default="sub",
        min_length=1,
        description="The access-token claim that names the user.",
    )
    oauth_admin_claim: str = Field(
        default="roles",
        min_length=1,
        description="The claim (a list, or a space-separated string) whose values give roles.",
    )
    oauth_admin_value: str = Field(
        default="fiml-admin",
        min_length=1,
        description="The value of oauth_admin_claim that makes the caller an admin.",
    )
    oauth_algorithms: list[str] = Field(
        default=["RS256", "ES256"],
        description="Signature algorithms accepted (never `none`, never an HMAC with a public "
        "key).",
    )
    oauth_resource_url: str | None = Field(
        default=None,
        description="This server's public MCP URL, the resource of RFC 9728's metadata "
        "(default: http://HOST:PORT/mcp of `fiml serve --http`).",
    )
    resource_poll_seconds: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="How often the server reads the version of each session a client is "
        "subscribed to (resources/subscribe, subscriptions/listen), to tell the subscriber "
        "of writes made by any process sharing the store.",
    )
    max_subscriptions_per_connection: int = Field(
        default=100,
        gt=0,
        le=10_000,
        description="Sessions one connection (or one subscriptions/listen stream) may be "
        "subscribed to at a time; past it a subscription is refused naming the field.",
    )
    http_max_sessions: int = Field(
        default=10_000,
        gt=0,
        description="Open MCP transport sessions (stateful HTTP) the whole server holds, all "
        "users together; past it the SDK answers 503. Each user gets a share of it "
        "(http_sessions_per_user), at most a tenth.",
    )
    http_sessions_per_user: int = Field(
        default=100,
        gt=0,
        description="Open MCP transport sessions (stateful HTTP) one user may hold; past it an "
        "initialize gets 429 with Retry-After. A session closes on DELETE or after "
        "http_session_idle_seconds without a request.",
    )
    http_session_idle_seconds: float = Field(
        default=1800,
        gt=0,
        description="A transport session with no request for this long is closed (the SDK's "
        "session_idle_timeout) and no longer counts to its user.",
    )
    http_in_flight_per_user: int = Field(
        default=32,
        gt=0,
        description="Requests one user may have in flight at once over HTTP (server-sent event "
        "streams of GET not counted); past it 429 with Retry-After.",
    )
    http_requests_per_minute_per_user: int = Field(
        default=1200,
        gt=0,
        description="Requests one user may make a minute over HTTP: a burst of this many, then "
        "an even rate; past it 429 with Retry-After.",
    )
    http_header_timeout_seconds: float = Field(
        default=10,
        ge=0,
        allow_inf_nan=False,
        description="Time a request's line and headers must arrive in, from the connection's "
        "arrival (a later request on a kept-alive connection: from its first byte); past it "
        "408 (later requests: no answer) and the connection is closed. 0 turns the front "
        "that enforces it off, and uvicorn listens on the port itself, with no header timeout.",
    )
    http_body_timeout_seconds: float = Field(
        default=30,
        gt=0,
        description="Time a request's whole body must arrive in, from its headers; past it "
        "408 and the connection is closed.",
    )
    http_keep_alive_seconds: int = Field(
        default=5,
        gt=0,
        description="An idle connection between two requests is closed after this long "
        "(uvicorn's timeout_keep_alive).",
    )
    http_max_connections: int = Field(
        default=1000,
        gt=0,
        description="Open connections the HTTP server holds at once, slow ones included; one "
        "more gets 503 and is closed (with http_header_timeout_seconds 0: uvicorn's "
        "limit_concurrency, which counts connections and tasks and answers 503 to a request). "
        "Keep it below a third of the process's open file limit: behind the front each "
        "connection holds three descriptors (the client's, and both ends of uvicorn's).",
    )
    market_provider: Literal["live", "offline"] = Field(
        default="live",
        description="Where quotes come from: live providers, or synthetic offline quotes for "
        "demos and tests.",
    )

    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Serve /metrics, /healthz and /readyz on this port (of metrics_host) beside a "
        "stdio MCP server, and /metrics on it in a Celery worker (`fiml serve --http` serves "
        "them on its own port anyway).",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="The address the metrics port listens on.",
    )
    log_tool_calls: bool = Field(
        default=True,
        description="Write one INFO record per tool call (`tool.call`, `tool.refused`); off "
        "leaves the records of storage failures, which are errors, and spares each call the "
        "cost of formatting and writing a line (benchmarks/RESULTS.md, metrics-overhead).",
    )
    audit_log_file: Path | None = Field(
        default=None,
        description="Write the audit trail (logger fiml.audit: lifecycle actions and refusals) "
        "to this file as JSON lines, apart from the operational log; unset, its records go "
        "wherever the process's log goes.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="How `fiml serve` and the workers write their log: readable lines, or one "
        "JSON object per record (FIML_LOG_FORMAT=json).",
    )

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("database_url must be a sqlite or postgresql SQLAlchemy URL")
        return value

    @model_validator(mode="after")
    def _index_shards_for_the_redis_in_use(self) -> Settings:
        if self.redis_index_shards == 0:
            shards = (
                CLUSTER_REDIS_INDEX_SHARDS if self.redis_cluster else DEFAULT_REDIS_INDEX_SHARDS
            )
            self.redis_index_shards = shards
        return self

    @model_validator(mode="after")
    def _a_cluster_has_database_zero_only(self) -> Settings:
        if self.redis_cluster and self.redis_url:
            database = urlsplit(self.redis_url).path.strip("/")
            if database not in {"", "0"}:
                raise ValueError(
                    f"redis_url names database {database}, but a Redis Cluster (redis_cluster) "
                    "has database 0 only"
                )
        return self

    @model_validator(mode="after")
    def _a_user_cannot_fill_the_server(self) -> Settings:
        if self.http_sessions_per_user * 10 > self.http_max_sessions:
            raise ValueError(
                "http_sessions_per_user must be at most a tenth of http_max_sessions, so no "
                "single user can fill the sessions all users share"
            )
        return self
