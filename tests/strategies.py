"""Hypothesis strategies for `/v1/proxy` envelopes built from dangerous pieces."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import strategies as st

from teamrelay.catalog.catalog import load_catalog
from teamrelay.catalog.policy import load_policy

CATALOG = load_catalog()
POLICY = load_policy(CATALOG, env={})

_PIECES = st.sampled_from(
    [
        "/",
        "//",
        "v1",
        "/v1",
        "/v1/",
        "..",
        ".",
        "%2e",
        "%2E",
        "%2f",
        "%",
        "//host",
        "http:",
        "https://evil.example",
        "\\",
        "@",
        "?",
        "#",
        " ",
        "\t",
        "\n",
        "\x00",
        "é",
        "\u202e",
        "proxy",
        "/proxy",
        "models",
        "/models",
        "gpt-5",
        "ft:gpt-4o:org::1",
        "responses",
        "resp_1",
        "files",
        "file-1",
        "embeddings",
        "vector_stores",
        "vs_1",
        "search",
        "evals",
        "fine_tuning",
        "jobs",
        "organization",
        "users",
        "conversations",
        "items",
        "batches",
        "x" * 600,
        "{id}",
        ":",
    ]
)
_PATHS = st.one_of(st.lists(_PIECES, max_size=8).map("".join), st.text(max_size=40))
_METHODS = st.one_of(
    st.sampled_from(["GET", "POST", "DELETE", "get", "post", "PUT", "PATCH", "HEAD", "OPTIONS"]),
    st.text(max_size=8),
    st.none(),
    st.integers(),
)
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_QUERY = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["limit", "after", "order", "stream", "include", "", "a b"]),
        st.one_of(_SCALARS, st.lists(_SCALARS, max_size=3), _JSON),
        max_size=3,
    ),
    _JSON,
)
_BODY = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["model", "input", "stream", "query", "name"]), _JSON, max_size=3
    ),
    _JSON,
)


_TEMPLATES = sorted({(op.method, op.path) for op in CATALOG.operations})
_PROXIED = sorted({(op.method, op.path) for op in POLICY.proxy_operations})
_PARAM_VALUES = st.sampled_from(["x_1", "file-1", "gpt-5", "ft:gpt-4o:org::1"]) | st.sampled_from(
    ["..", ".", "%2e", "a@b", "a b", "é", "{id}", "", "a/b", "a?b"]
)


@st.composite
def _catalog_paths(draw: st.DrawFn) -> tuple[str, str]:
    """A method and a path shaped like a catalog operation, so many envelopes are accepted."""
    method, template = draw(st.sampled_from(_PROXIED) | st.sampled_from(_TEMPLATES))
    path = re.sub(r"\{[^}]+\}", lambda _: draw(_PARAM_VALUES), template)
    prefix = draw(st.sampled_from(["", "/v1", "/v1", "v1", "/v1/v1", "//v1"]))
    suffix = draw(st.sampled_from(["", "", "", "", "", "/", "?x=1", "#", "/..", "%2e"]))
    return method, (prefix + path + suffix).lstrip(
        "/"
    ) if prefix == "v1" else prefix + path + suffix


_RARELY = st.integers(0, 9).map(lambda n: n == 7)


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    envelope: dict[str, Any] = {}
    method, path = draw(_catalog_paths())
    if draw(st.integers(0, 2).map(lambda n: n == 1)):
        method, path = draw(_METHODS), draw(_PATHS)
    elif draw(_RARELY):
        method = draw(_METHODS)
    if not draw(_RARELY):
        envelope["method"] = method
    if not draw(_RARELY):
        envelope["path"] = path
    if draw(st.booleans()):
        query_key = draw(st.sampled_from(["query", "params", "query_params"]))
        envelope[query_key] = draw(_QUERY)
    if draw(st.booleans()):
        body_key = draw(st.sampled_from(["body", "json", "json_body"]))
        envelope[body_key] = draw(_BODY)
    if draw(_RARELY):
        envelope[draw(st.text(max_size=5))] = draw(_JSON)
    return envelope
