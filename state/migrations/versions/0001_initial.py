"""Initial tables: clusters, flags, plans, stages, audit events.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "clusters",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String, nullable=False, unique=True),
        sa.Column("source", sa.String, nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
    )
    op.create_table(
        "flags",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("cluster", sa.String, sa.ForeignKey("clusters.name"), nullable=False, index=True),
        sa.Column("feature", sa.String, nullable=False),
        sa.Column("scope", sa.String, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("changed_by", sa.String, nullable=False),
        sa.Column("changed_at", UTC_TIME, nullable=False),
        sa.Column("reason", sa.String, nullable=False),
        sa.UniqueConstraint("cluster", "feature", "scope"),
    )
    op.create_table(
        "plans",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("cluster", sa.String, sa.ForeignKey("clusters.name"), nullable=False, index=True),
        sa.Column("template", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_by", sa.String, nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.UniqueConstraint("cluster", "name"),
    )
    op.create_table(
        "stages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("plan_id", sa.Integer, sa.ForeignKey("plans.id"), nullable=False, index=True),
        sa.Column("order", sa.Integer, nullable=False),
        sa.Column("title", sa.String, nullable=False),
        sa.Column("goal", sa.String, nullable=False),
        sa.Column("features", sa.JSON, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("override_reason", sa.String, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_by", sa.String, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.UniqueConstraint("plan_id", "order"),
    )
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("actor", sa.String, nullable=False),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("action", sa.String, nullable=False),
        sa.Column("target", sa.String, nullable=False, index=True),
        sa.Column("before", sa.JSON, nullable=True),
        sa.Column("after", sa.JSON, nullable=True),
        sa.Column("reason", sa.String, nullable=False),
        sa.Column("prev_hash", sa.String, nullable=False),
        sa.Column("hash", sa.String, nullable=False),
    )


def downgrade() -> None:
    for table in ("audit_events", "stages", "plans", "flags", "clusters"):
        op.drop_table(table)
