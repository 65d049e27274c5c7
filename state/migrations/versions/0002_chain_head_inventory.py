"""Audit chain head (so removing the newest events is detected) and inventory history.

The head is backfilled from the newest event already in the database, so an upgraded trail keeps verifying and
new events chain onto the old ones.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64  # frozen here: a migration must not change when the models do


def upgrade() -> None:
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String, nullable=False),
    )
    last = op.get_bind().execute(sa.text("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")).first()
    op.bulk_insert(head, [{"id": 1, "seq": last.seq if last else 0, "hash": last.hash if last else GENESIS_HASH}])
    op.create_table(
        "inventory_snapshots",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("cluster", sa.String, sa.ForeignKey("clusters.name"), nullable=False, index=True),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("namespaces_in_mesh", sa.Integer, nullable=False),
        sa.Column("namespaces_total", sa.Integer, nullable=False),
        sa.Column("pods_in_mesh", sa.Integer, nullable=False),
        sa.Column("pods_total", sa.Integer, nullable=False),
        sa.Column("features_observed", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("inventory_snapshots")
    op.drop_table("audit_head")
