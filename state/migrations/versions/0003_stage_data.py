"""Stage data: what a stage keeps between its transitions (gate results, the YAML taken when its gate passed,
the analysis errors already there, the flags before it), so that it can be verified and rolled back later.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stages") as batch:
        batch.add_column(sa.Column("data", sa.JSON, nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("stages") as batch:
        batch.drop_column("data")
