"""Promotion: the plan a plan was promoted from ({plan_id, cluster, name}), and how long each source stage must have
been done before the promoted stage may start (seconds).

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.add_column(sa.Column("promoted_from", sa.JSON, nullable=True))
        batch.add_column(sa.Column("promotion_after", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.drop_column("promotion_after")
        batch.drop_column("promoted_from")
