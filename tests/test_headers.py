from __future__ import annotations

import pytest

from teamrelay.headers import UpstreamHeaders, merge_beta, response_headers


def test_beta_values_are_merged_and_deduplicated() -> None:
    assert merge_beta(["assistants=v2"], ["realtime=v1, assistants=v2", "x"]) == (
        "assistants=v2,realtime=v1,x"
    )


def test_client_credentials_and_hop_by_hop_headers_are_not_sent_upstream() -> None:
    builder = UpstreamHeaders("sk-up", organization="org-1", project=None, beta=["b1"])
    sent = builder.build(
        [
            (b"host", b"relay.example"),
            (b"authorization", b"Bearer tr-secret"),
            (b"x-relay-key", b"tr-secret"),
            (b"connection", b"keep-alive"),
            (b"transfer-encoding", b"chunked"),
            (b"openai-organization", b"org-client"),
            (b"openai-beta", b"b2"),
            (b"content-type", b"application/json"),
            (b"x-stainless-lang", b"python"),
            (b"content-length", b"12"),
        ],
        keep_length=False,
    )
    assert sent == [
        (b"content-type", b"application/json"),
        (b"x-stainless-lang", b"python"),
        (b"authorization", b"Bearer sk-up"),
        (b"openai-organization", b"org-1"),
        (b"openai-beta", b"b1,b2"),
    ]


def test_response_headers_keep_openai_headers_and_add_the_relay_id() -> None:
    upstream = [
        (b"Content-Type", b"application/json"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Connection", b"keep-alive"),
        (b"x-request-id", b"req_1"),
        (b"x-ratelimit-remaining-requests", b"99"),
    ]
    assert response_headers(upstream, b"rid") == [
        (b"Content-Type", b"application/json"),
        (b"x-request-id", b"req_1"),
        (b"x-ratelimit-remaining-requests", b"99"),
        (b"x-relay-request-id", b"rid"),
    ]


@pytest.mark.parametrize(
    ("sent", "forwarded"),
    [
        (b"gzip, deflate", b"gzip, deflate"),
        (b"gzip, deflate, br, zstd, compress;q=0.5", b"gzip, deflate, br, zstd"),
        (b"BR;q=0.2, xz", b"BR;q=0.2"),
        (b"*", b""),
        (b"identity", b"identity"),
    ],
)
def test_only_codings_the_tap_can_read_are_asked_for(sent: bytes, forwarded: bytes) -> None:
    headers = UpstreamHeaders("sk-x", organization=None, project=None, beta=())
    built = headers.build([(b"accept-encoding", sent)], keep_length=False)
    assert [v for n, v in built if n == b"accept-encoding"] == ([forwarded] if forwarded else [])


def test_headers_the_clients_connection_header_names_are_hop_by_hop_and_dropped() -> None:
    builder = UpstreamHeaders("sk-up", organization=None, project=None, beta=[])
    sent = builder.build(
        [
            (b"connection", b"keep-alive, X-Debug-Token , upgrade"),
            (b"connection", b"close, x-other"),
            (b"x-debug-token", b"hop"),
            (b"x-other", b"hop"),
            (b"x-kept", b"end-to-end"),
        ],
        keep_length=False,
    )
    assert sent == [(b"x-kept", b"end-to-end"), (b"authorization", b"Bearer sk-up")]
