"""Session shares (read-only readers of a session) and users' session templates.

Revision ID: 0007
Revises: 0003
Create Date: 2026-12-02 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import fiml.sessions.db

revision: str = "0007"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "session_shares",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("reader_id", sa.String(length=255), nullable=False),
        sa.Column("owner_id", sa.String(length=255), nullable=False),
        sa.Column("shared_at", fiml.sessions.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "reader_id", name=op.f("pk_session_shares")),
    )
    op.create_index(
        "ix_session_shares_reader",
        "session_shares",
        ["reader_id", "shared_at", "session_id"],
        unique=False,
    )
    op.create_table(
        "session_templates",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("session_type", sa.String(length=32), nullable=False),
        sa.Column("assets", _JSON, nullable=False),
        sa.Column("tags", _JSON, nullable=False),
        sa.Column("ttl_hours", sa.Float(), nullable=True),
        sa.Column("preferences", _JSON, nullable=False),
        sa.Column("updated_at", fiml.sessions.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "name", name=op.f("pk_session_templates")),
    )


def downgrade() -> None:
    op.drop_table("session_templates")
    op.drop_index("ix_session_shares_reader", table_name="session_shares")
    op.drop_table("session_shares")
