"""Session metrics and their asset, tag and query-type side tables.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 15:04:46.891157
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import fiml.sessions.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "session_metrics",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=True),
        sa.Column("session_type", sa.String(length=32), nullable=False),
        sa.Column("created_at", fiml.sessions.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", fiml.sessions.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.Column("total_queries", sa.Integer(), nullable=False),
        sa.Column("cache_hits", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Boolean(), nullable=False),
        sa.Column("recorded_at", fiml.sessions.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_session_metrics")),
    )
    with op.batch_alter_table("session_metrics", schema=None) as batch_op:
        batch_op.create_index("ix_session_metrics_created", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_session_metrics_user_created", ["user_id", "created_at"], unique=False
        )

    op.create_table(
        "session_metric_assets",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("asset", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["session_metrics.session_id"],
            name=op.f("fk_session_metric_assets_session_id_session_metrics"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "asset", name=op.f("pk_session_metric_assets")),
    )
    with op.batch_alter_table("session_metric_assets", schema=None) as batch_op:
        batch_op.create_index("ix_session_metric_assets_asset", ["asset"], unique=False)

    op.create_table(
        "session_metric_query_types",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("query_type", sa.String(length=64), nullable=False),
        sa.Column("queries", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["session_metrics.session_id"],
            name=op.f("fk_session_metric_query_types_session_id_session_metrics"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "session_id", "query_type", name=op.f("pk_session_metric_query_types")
        ),
    )
    op.create_table(
        "session_metric_tags",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["session_metrics.session_id"],
            name=op.f("fk_session_metric_tags_session_id_session_metrics"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "tag", name=op.f("pk_session_metric_tags")),
    )
    with op.batch_alter_table("session_metric_tags", schema=None) as batch_op:
        batch_op.create_index("ix_session_metric_tags_tag", ["tag"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("session_metric_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_session_metric_tags_tag")

    op.drop_table("session_metric_tags")
    op.drop_table("session_metric_query_types")
    with op.batch_alter_table("session_metric_assets", schema=None) as batch_op:
        batch_op.drop_index("ix_session_metric_assets_asset")

    op.drop_table("session_metric_assets")
    with op.batch_alter_table("session_metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_session_metrics_user_created")
        batch_op.drop_index("ix_session_metrics_created")

    op.drop_table("session_metrics")
