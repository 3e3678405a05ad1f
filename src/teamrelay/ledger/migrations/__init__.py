"""Alembic environment and revisions, shipped in the package and run by `teamrelay.ledger.db`."""
