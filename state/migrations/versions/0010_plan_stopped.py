"""A plan's stop ({code, reason, stage, title, by, at}; null: not stopped): set by a stage meshstep rolled back by
itself, cleared by `meshstep plan resume`.

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.add_column(sa.Column("stopped", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.drop_column("stopped")
