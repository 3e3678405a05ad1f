"""The usage ledger: one row per request, written behind the response path."""
