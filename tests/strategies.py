"""Hypothesis strategies: `/v1/proxy` envelopes built from dangerous pieces, JSON bodies in
every encoding RFC 8259 names, and multipart forms with ambiguous part heads."""

from __future__ import annotations

import json
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


# Bodies for the readers that must read JSON exactly or refuse it (`teamrelay.body`).
_ID_TEXT = st.sampled_from(["file-a1", "vs_2", "resp_x3", "batch_4", "cntr_5", "file-é"])
_JSON_STRINGS = st.one_of(st.text(max_size=8), _ID_TEXT)
json_documents = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        _JSON_STRINGS,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_JSON_STRINGS, inner, max_size=3)
    ),
    max_leaves=10,
)
JSON_ENCODINGS = (
    "utf-8",
    "utf-8-sig",
    "utf-16",
    "utf-16-le",
    "utf-16-be",
    "utf-32",
    "utf-32-le",
    "utf-32-be",
)


@st.composite
def encoded_json(draw: st.DrawFn) -> tuple[str, bytes]:
    """(encoding, body): a JSON document in one of the encodings RFC 8259 §8.1 names."""
    text = json.dumps(draw(json_documents), ensure_ascii=draw(st.booleans()))
    encoding = draw(st.sampled_from(JSON_ENCODINGS))
    return encoding, text.encode(encoding)


# Multipart forms whose part heads mix quoted, token, repeated and malformed parameters.
FORM_BOUNDARY = "b0undary"
_NAMES = st.sampled_from(["name", "name", "name", "NAME", "Name"])
_FILENAMES = st.sampled_from(["filename", "filename", "Filename"])
_ODD_NAMES = st.sampled_from(["name*", "filename*", "x", "name", "filename"])
_TOKENS = st.sampled_from(["model", "purpose", "file", "file_id", "a.txt", "x-y", "", "mo del"])
_QUOTED_TEXT = st.text(alphabet='ab"\\; =\té\r', max_size=6)
_SOMETIMES = st.integers(0, 5).map(lambda n: n == 5)


@st.composite
def _parameter_value(draw: st.DrawFn) -> str:
    form = draw(st.sampled_from(["token", "quoted", "quoted", "escaped", "raw"]))
    if form == "token":
        return draw(_TOKENS)
    text = draw(st.one_of(_TOKENS, _TOKENS, _QUOTED_TEXT))
    if form == "escaped":
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    elif form == "quoted":
        text = text.replace('"', '\\"')
    return f'"{text}"'


@st.composite
def _part_head(draw: st.DrawFn) -> str:
    kind = "form-data"
    if draw(_SOMETIMES):
        kind = draw(st.sampled_from(["Form-Data", "attachment", ""]))
    parameters = [(draw(_NAMES), draw(_parameter_value()))]
    if draw(st.booleans()):
        parameters.append((draw(_FILENAMES), draw(_parameter_value())))
    while draw(_SOMETIMES):
        parameters.insert(
            draw(st.integers(0, len(parameters))), (draw(_ODD_NAMES), draw(_parameter_value()))
        )
    separators = st.sampled_from(["; ", "; ", ";", " ; ", ";\t", ", ", " "])
    equals = st.sampled_from(["=", "=", "=", " = "])
    disposition = kind + "".join(
        draw(separators) + name + draw(equals) + value for name, value in parameters
    )
    lines = [f"Content-Disposition: {disposition}"]
    extra = st.sampled_from(
        [
            "Content-Type: text/plain",
            "Content-Transfer-Encoding: binary",
            "Content-Transfer-Encoding: base64",
            'Content-Disposition: form-data; name="model"',
            "X-Note: name=model",
            "bad header line",
        ]
    )
    while draw(_SOMETIMES):
        lines.insert(draw(st.integers(0, len(lines))), draw(extra))
    return "\r\n".join(lines)


@st.composite
def multipart_forms(draw: st.DrawFn) -> bytes:
    """A whole form of 1-4 parts; some heads are malformed, some parameters repeated."""
    values = st.sampled_from([b"gpt-5", b"batch", b"file-a1", b"", b"aGk=", b"x\r\ny"])
    out = b""
    for _ in range(draw(st.integers(1, 4))):
        head = draw(_part_head()).encode("latin-1")
        out += b"--" + FORM_BOUNDARY.encode() + b"\r\n" + head + b"\r\n\r\n"
        out += draw(values) + b"\r\n"
    return out + b"--" + FORM_BOUNDARY.encode() + b"--\r\n"
