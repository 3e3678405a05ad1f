"""Relay keys held in the database: hashes only, looked up through a short-lived cache."""
