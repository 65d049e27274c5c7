"""Alembic environment: `state.store.migrate` hands over a connection already in a (locked) transaction."""
from alembic import context

from state.models import SQLModel

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=SQLModel.metadata,  # lets `alembic revision --autogenerate` draft the next revision
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table instead
)
with context.begin_transaction():
    context.run_migrations()
