"""The operator's HTTP surface (admin-scope keys only)."""
