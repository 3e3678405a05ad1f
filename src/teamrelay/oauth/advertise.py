"""The OAuth flow as the GPT Actions schema advertises it (an OpenAPI `oauth2` scheme).

The GPT editor takes its OAuth settings from its own form (client id and secret, authorization
URL, token URL, scope, token exchange method; see docs/oauth-and-mcp.md); the scheme in the
schema states the same URLs, so the schema documents how to sign in, next to the relay-key
bearer scheme that stays valid for API-key GPTs and scripts.
"""

from __future__ import annotations

import copy
from typing import Any

from teamrelay.oauth.store import OAUTH_SCOPES

SCHEME = "relayOAuth"
_SCOPES = {
    "actions": "Use the GPT Actions operations as the signed-in member.",
    "api": "Use the OpenAI API through the relay as the signed-in member.",
}


def with_oauth(document: dict[str, Any], base_url: str) -> dict[str, Any]:
    served = copy.deepcopy(document)
    schemes = served.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[SCHEME] = {
        "type": "oauth2",
        "description": "Each member signs in with their own relay key.",
        "flows": {
            "authorizationCode": {
                "authorizationUrl": f"{base_url}/oauth/authorize",
                "tokenUrl": f"{base_url}/oauth/token",
                "refreshUrl": f"{base_url}/oauth/token",
                "scopes": {scope: _SCOPES[scope] for scope in OAUTH_SCOPES},
            }
        },
    }
    served["security"] = [*served.get("security", []), {SCHEME: ["actions"]}]
    return served
