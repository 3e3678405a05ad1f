"""Per-member sign-in: the relay as an OAuth 2.1 authorization server for its own keys.

The package imports nothing on load, so `teamrelay.keys.store` can end a key's sign-ins
(`teamrelay.oauth.signins`) without importing the routes that import it.
"""
