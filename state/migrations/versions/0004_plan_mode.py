"""Plan mode and left-out steps: whether a plan walks the real cluster or rehearses on its overlay (set by its first
advance), and the template's steps the cluster could not have when the plan was made, with the reason.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.add_column(sa.Column("mode", sa.String, nullable=True))
        batch.add_column(sa.Column("left_out", sa.JSON, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.drop_column("left_out")
        batch.drop_column("mode")
