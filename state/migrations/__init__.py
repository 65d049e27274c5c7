"""Alembic migrations of the state database; `state.store.migrate` runs them (no alembic.ini needed)."""
