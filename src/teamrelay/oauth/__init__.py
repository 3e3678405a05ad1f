"""Per-member sign-in: the relay as an OAuth 2.1 authorization server for its own keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter

from teamrelay.oauth.routes import oauth_router, resource_metadata_url
from teamrelay.oauth.tokens import OAuthTokens

if TYPE_CHECKING:
    from teamrelay.gateway import Relay

__all__ = [
    "OAuthTokens",
    "oauth_routes",
    "resource_metadata_url",
]


def oauth_routes(relay: Relay) -> APIRouter:
    """The authorization server's routes and metadata, for `app.local_app`."""
    return oauth_router(relay.settings, relay.keys, relay.tokens)
