"""Storage only: the SQLModel tables, the store (the only writer), the audit hash chain, migrations, drift and
reports. It decides nothing about a plan: the planner does, and records through the store."""
