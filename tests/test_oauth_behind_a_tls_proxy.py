"""The documented deployment: a real nginx, started here, terminates TLS in front of the relay
and says so in X-Forwarded-Proto/For/Host; the relay trusts it (RELAY_TRUSTED_PROXIES) and has
no RELAY_PUBLIC_URL, so the scheme and host come from the proxy alone. A member signs in,
the client exchanges, refreshes and revokes its tokens, all 2xx, the pages' cookies are
`Secure` and answers carry HSTS; then the member's key is rotated and its tokens stop working.

The relay's public name is `relay.test`: the clients connect to nginx on 127.0.0.1 and send
that Host (what DNS would do), so the relay cannot take the loopback exemption OAuth gives
plain http. Skipped without nginx, except under RELAY_REQUIRE_SERVICES=1 (CI), where it fails.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2
import openai
import pytest

from fakeupstream import FakeUpstream
from nginxserver import require_nginx, tls_nginx
from oauthclient import OAuthRelay, hidden_fields, oauth_relay, pkce_pair

CALLBACK = "https://chatgpt.com/connector_platform_oauth_redirect"
CONF = """
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name relay.test;
        ssl_certificate {tmp}/server.pem;
        ssl_certificate_key {tmp}/server.key;
        location / {{
            proxy_pass http://127.0.0.1:{relay_port};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;
        }}
    }}
}}
"""


@contextlib.contextmanager
def tls_proxy(relay_url: str, tmp: Path) -> Iterator[tuple[int, Path]]:
    """nginx terminating TLS for `relay.test` in front of the relay: its port and CA file."""
    relay_port = relay_url.rsplit(":", 1)[1]
    with tls_nginx(CONF, tmp, "relay.test", "127.0.0.1", relay_port=relay_port) as found:
        yield found


class Site:
    """The relay as the world sees it: https://relay.test:<port>, through nginx."""

    def __init__(self, gate: OAuthRelay, port: int, ca: Path) -> None:
        self.gate = gate
        self.host = f"relay.test:{port}"
        self.url = f"https://{self.host}"
        self.ca = ssl.create_default_context(cafile=str(ca))
        # Connects to nginx's address and names relay.test, as a browser does after DNS.
        self.browser = httpx2.Client(
            base_url=f"https://127.0.0.1:{port}", verify=self.ca, headers={"host": self.host}
        )

    def sdk(self, token: str) -> openai.OpenAI:
        http = httpx2.Client(verify=self.ca, headers={"host": self.host})
        base = self.browser.base_url.join("/v1")
        return openai.OpenAI(base_url=str(base), api_key=token, http_client=http, max_retries=0)

    def v1_works(self, token: str) -> bool:
        with self.sdk(token) as client:
            try:
                client.models.list()
            except openai.AuthenticationError:
                return False
        return True


@pytest.fixture(scope="module")
def site(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    require_nginx()
    with (
        oauth_relay(fake_upstream.base_url, RELAY_TRUSTED_PROXIES="127.0.0.1") as gate,
        tls_proxy(gate.url, tmp_path_factory.mktemp("nginx")) as (port, ca),
    ):
        site = Site(gate, port, ca)
        yield site
        site.browser.close()


def secure(response: httpx2.Response, cookie: str) -> bool:
    headers = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    mine = [value for value in headers if value.startswith(cookie + "=")]
    assert mine, headers
    return all("secure" in value.lower().split("; ") for value in mine)


def sign_in(site: Site, client_id: str, secret: str) -> dict[str, str]:
    """The member's browser through the sign-in page, then the client's code exchange."""
    site.browser.cookies.clear()  # a new browser session
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": CALLBACK,
        "scope": "api actions",
        "state": "st-9",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page = site.browser.get("/oauth/authorize", params=params)
    assert page.status_code == 200, page.text
    assert "insecure_transport" not in page.text
    assert secure(page, "teamrelay_csrf")
    assert page.headers["strict-transport-security"].startswith("max-age=")
    form = {**hidden_fields(page.text), "secret": secret, "decision": "allow"}
    answer = site.browser.post("/oauth/authorize", data=form)  # the Secure cookie goes back
    assert answer.status_code == 302, answer.text
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["iss"] == [site.url]
    exchanged = site.browser.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": CALLBACK,
            "client_id": client_id,
            "code_verifier": verifier,
        },
    )
    assert exchanged.status_code == 200, exchanged.text
    tokens: dict[str, str] = exchanged.json()
    return tokens


@pytest.mark.usefixtures("upstream")
def test_sign_in_token_refresh_and_revoke_behind_nginx_and_rotation_ends_them(
    site: Site,
) -> None:
    metadata = site.browser.get("/.well-known/oauth-authorization-server")
    assert metadata.json()["issuer"] == site.url
    registered = site.browser.post(
        "/oauth/register",
        json={"client_name": "Connector", "redirect_uris": [CALLBACK]}
        | {"token_endpoint_auth_method": "none"},
    )
    assert registered.status_code == 201, registered.text
    client_id = registered.json()["client_id"]
    _, secret = site.gate.create_key("ivan")

    tokens = sign_in(site, client_id, secret)
    assert site.v1_works(tokens["access_token"])
    refreshed = site.browser.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": client_id,
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    fresh = refreshed.json()
    assert site.v1_works(fresh["access_token"])
    revoked = site.browser.post(
        "/oauth/revoke", data={"token": fresh["access_token"], "client_id": client_id}
    )
    assert revoked.status_code == 200, revoked.text
    assert not site.v1_works(fresh["access_token"])

    again = sign_in(site, client_id, secret)
    assert site.v1_works(again["access_token"])
    site.gate.run(lambda relay: relay.keys.rotate("ivan"))
    deadline = time.monotonic() + 5  # the token lookup cache's bound
    while site.v1_works(again["access_token"]):
        assert time.monotonic() < deadline, "a rotated key's token still works"
        time.sleep(0.1)
    refused = site.browser.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": again["refresh_token"],
            "client_id": client_id,
        },
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"


def test_the_dashboards_cookies_are_secure_behind_nginx(site: Site) -> None:
    login = site.browser.get("/admin")
    assert login.status_code == 200
    assert secure(login, "teamrelay_admin_login")
    assert login.headers["strict-transport-security"].startswith("max-age=")
