"""What the team decided: flags, plans, the audit chain and inventory history (`state.store` writes it)."""
