"""include_usage added upstream and removed on the way back, byte for byte."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teamrelay.tap import Tap, Usage, inject_include_usage
from teamrelay.tap.streamopts import drop_usage_null

# ---- the request side ----------------------------------------------------------------------


def test_option_is_inserted_after_the_opening_brace_keeping_every_other_byte() -> None:
    body = b'{"model":"gpt-5","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    result = inject_include_usage(body)
    assert result == b'{"stream_options":{"include_usage":true},' + body[1:]


def test_whitespace_and_a_bom_before_the_object_are_kept() -> None:
    body = b'\xef\xbb\xbf \n{ "stream": true }'
    result = inject_include_usage(body)
    assert result == b'\xef\xbb\xbf \n{"stream_options":{"include_usage":true}, "stream": true }'
    assert json.loads(result) == {"stream": True, "stream_options": {"include_usage": True}}


def test_existing_stream_options_get_the_member_added() -> None:
    body = b'{"stream": true, "stream_options": {"include_obfuscation": false}}'
    assert inject_include_usage(body) == (
        b'{"stream": true, "stream_options": {"include_usage":true,"include_obfuscation": false}}'
    )


def test_empty_stream_options_get_the_member_without_a_comma() -> None:
    body = b'{"stream":true,"stream_options":{ }}'
    assert inject_include_usage(body) == b'{"stream":true,"stream_options":{"include_usage":true }}'


def test_include_usage_false_is_replaced_by_true() -> None:
    body = b'{"stream":true,"stream_options":{"include_usage" : false, "x":1}}'
    assert inject_include_usage(body) == (
        b'{"stream":true,"stream_options":{"include_usage" : true, "x":1}}'
    )


def test_null_stream_options_become_the_option() -> None:
    body = b'{"stream":true,"stream_options":null}'
    assert inject_include_usage(body) == b'{"stream":true,"stream_options":{"include_usage":true}}'


def test_a_duplicated_key_is_edited_where_json_reads_it() -> None:
    body = b'{"stream_options":{"include_usage":true},"stream":true,"stream_options":{}}'
    result = inject_include_usage(body)
    assert result is not None
    assert json.loads(result)["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    "body",
    [
        b'{"stream":true,"stream_options":{"include_usage":true}}',
        b'{"stream":false}',
        b'{"model":"gpt-5"}',
        b'{"stream":"true"}',
        b'{"stream":true,"stream_options":"yes"}',
        b"[1,2]",
        b"not json",
        b"",
        '{"stream":true}'.encode("utf-16"),
    ],
)
def test_no_change_when_not_needed_or_not_a_streamed_object(body: bytes) -> None:
    assert inject_include_usage(body) is None


def test_a_body_already_parsed_by_the_caller_is_not_parsed_again() -> None:
    body = b'{"stream":true}'
    assert inject_include_usage(body, {"stream": False}) is None
    assert inject_include_usage(body, {"stream": True}) == (
        b'{"stream_options":{"include_usage":true},"stream":true}'
    )


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_options = st.one_of(
    st.just("absent"),
    st.none(),
    st.dictionaries(st.sampled_from(["include_obfuscation", "x"]), _json_values, max_size=2),
    st.fixed_dictionaries(
        {"include_usage": st.sampled_from([False, None, 0, True])},
        optional={"include_obfuscation": st.booleans()},
    ),
)
_dump_styles = st.sampled_from(
    [
        {"separators": (",", ":")},
        {},
        {"indent": 2},
        {"indent": "\t", "ensure_ascii": False},
        {"separators": (" , ", " : "), "ensure_ascii": False},
    ]
)


def _removed_span(short: bytes, long: bytes) -> bool:
    """True when `long` is `short` with one contiguous run of bytes inserted."""
    extra = len(long) - len(short)
    return any(long[:i] + long[i + extra :] == short for i in range(len(long) - extra + 1))


@settings(max_examples=300, deadline=None)
@given(
    others=st.dictionaries(
        st.text(max_size=6).filter(lambda k: k not in ("stream", "stream_options")),
        _json_values,
        max_size=5,
    ),
    options=_options,
    style=_dump_styles,
    stream_first=st.booleans(),
)
def test_injection_gives_the_original_object_with_the_option(
    others: dict[str, Any], options: Any, style: dict[str, Any], stream_first: bool
) -> None:
    original: dict[str, Any] = {"stream": True, **others} if stream_first else {**others}
    original["stream"] = True
    if options != "absent":
        original["stream_options"] = options
    body = json.dumps(original, **style).encode()
    result = inject_include_usage(body)
    if isinstance(options, dict) and options.get("include_usage") is True:
        assert result is None
        return
    assert result is not None
    base = options if isinstance(options, dict) else {}
    wanted = dict(original, stream_options={**base, "include_usage": True})
    assert json.loads(result) == wanted
    if options is None:
        assert _replaced(body, result, b"null", b'{"include_usage":true}')
    elif isinstance(options, dict) and "include_usage" in options:
        assert _replaced(body, result, json.dumps(options["include_usage"]).encode(), b"true")
    else:
        assert _removed_span(body, result)


def _replaced(body: bytes, result: bytes, old: bytes, new: bytes) -> bool:
    """True when `result` is `body` with one occurrence of `old` replaced by `new`."""
    return any(
        body[i : i + len(old)] == old and body[:i] + new + body[i + len(old) :] == result
        for i in range(len(body))
    )


# ---- the response side ---------------------------------------------------------------------

USAGE = {
    "prompt_tokens": 19,
    "completion_tokens": 10,
    "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 3, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 4, "audio_tokens": 0},
}


def chat_stream(deltas: list[str], include_usage: bool, choices: int = 1) -> bytes:
    """A chat completion stream as OpenAI writes it: compact JSON, `data: ...\\n\\n`."""

    def chunk(choice_list: list[dict[str, Any]], usage: Any = "absent") -> bytes:
        obj: dict[str, Any] = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-5",
            "service_tier": "default",
            "system_fingerprint": None,
            "choices": choice_list,
        }
        if usage != "absent":
            obj["usage"] = usage
        obj["obfuscation"] = "AbC"
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
        return b"data: " + text.encode() + b"\n\n"

    null = None if include_usage else "absent"
    out = [
        chunk(
            [
                {
                    "index": i,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
                for i in range(choices)
            ],
            null,
        )
    ]
    for delta in deltas:
        for i in range(choices):
            choice = {
                "index": i,
                "delta": {"content": delta},
                "logprobs": None,
                "finish_reason": None,
            }
            out.append(chunk([choice], null))
    for i in range(choices):
        out.append(
            chunk([{"index": i, "delta": {}, "logprobs": None, "finish_reason": "stop"}], null)
        )
    if include_usage:
        out.append(chunk([], USAGE))
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def run(tap: Tap, stream: bytes, cuts: list[int]) -> bytes:
    out = []
    start = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        out.append(tap.feed(stream[start:cut]))
        start = cut
    out.append(tap.finish())
    return b"".join(out)


def test_stripping_gives_the_stream_without_the_option_and_records_usage() -> None:
    tap = Tap.for_response("text/event-stream; charset=utf-8", None, strip_usage=True)
    assert tap.strips
    output = run(tap, chat_stream(["Hel", "lo"], include_usage=True), [])
    assert output == chat_stream(["Hel", "lo"], include_usage=False)
    assert tap.usage == Usage(19, 10, 3, 4)
    assert (tap.model, tap.object_id) == ("gpt-5", "chatcmpl-1")


def test_stripping_works_on_crlf_separated_streams() -> None:
    with_option = chat_stream(["a", "b"], True).replace(b"\n\n", b"\r\n\r\n")
    tap = Tap.for_response("text/event-stream", None, strip_usage=True)
    output = run(tap, with_option, [5, 90, 91, 92, 400])
    assert output == chat_stream(["a", "b"], False).replace(b"\n\n", b"\r\n\r\n")
    assert tap.usage == Usage(19, 10, 3, 4)


def test_stripping_several_choices_removes_only_the_usage_chunk() -> None:
    tap = Tap.for_response("text/event-stream", None, strip_usage=True)
    assert run(tap, chat_stream(["a", "b"], True, choices=3), [7, 300]) == chat_stream(
        ["a", "b"], False, choices=3
    )
    assert tap.usage == Usage(19, 10, 3, 4)


@settings(max_examples=200, deadline=None)
@given(
    deltas=st.lists(
        st.one_of(
            st.text(max_size=12),
            st.sampled_from(
                ['"usage":null', ',"usage":null}', '{"usage": null,', "\\", "data: x\n\n"]
            ),
        ),
        max_size=8,
    ),
    data=st.data(),
)
def test_any_chunking_of_a_stripped_stream_reaches_the_client_unchanged(
    deltas: list[str], data: st.DataObject
) -> None:
    with_option = chat_stream(deltas, include_usage=True)
    cuts = data.draw(st.lists(st.integers(0, len(with_option)), max_size=15))
    tap = Tap.for_response("text/event-stream", None, strip_usage=True)
    assert run(tap, with_option, cuts) == chat_stream(deltas, include_usage=False)
    assert tap.usage == Usage(19, 10, 3, 4)


def test_a_stream_cut_inside_the_usage_chunk_keeps_what_it_had() -> None:
    stream = chat_stream(["a"], include_usage=True)
    half = stream[: stream.index(b'"choices":[]') + 20]
    tap = Tap.for_response("text/event-stream", None, strip_usage=True)
    output = tap.feed(half) + tap.finish()
    assert output == chat_stream(["a"], include_usage=False)[: -len(b"data: [DONE]\n\n")]
    assert tap.usage is None
    assert (tap.model, tap.object_id) == ("gpt-5", "chatcmpl-1")


def test_an_unfinished_last_event_still_reaches_the_client() -> None:
    stream = chat_stream(["a", "b"], include_usage=True)
    cut = stream.index(b'"content":"b"')
    tap = Tap.for_response("text/event-stream", None, strip_usage=True)
    output = tap.feed(stream[:cut]) + tap.finish()
    assert output == chat_stream(["a", "b"], include_usage=False)[: len(output)]
    assert output.endswith(b'"delta":{')


def test_each_event_is_sent_on_as_soon_as_it_is_complete() -> None:
    with_option = chat_stream(["x", "y"], include_usage=True).split(b"\n\n")[:-1]
    without = chat_stream(["x", "y"], include_usage=False).split(b"\n\n")[:-1]
    tap = Tap.for_response("text/event-stream", None, strip_usage=True)
    sent = [tap.feed(event + b"\n\n") for event in with_option]
    assert [piece for piece in sent if piece] == [event + b"\n\n" for event in without]
    assert tap.finish() == b""


def test_a_compressed_stream_cannot_be_stripped_and_passes_untouched() -> None:
    tap = Tap.for_response("text/event-stream", "gzip", strip_usage=True)
    assert not tap.strips
    chunk = b"\x1f\x8b\x08\x00compressed"
    assert tap.feed(chunk) is chunk
    assert tap.usage is None


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b'data: {"a":1,"usage":null}\n\n', b'data: {"a":1}\n\n'),
        (b'data: {"a":1,"usage":null,"b":2}\n\n', b'data: {"a":1,"b":2}\n\n'),
        (b'data: {"usage":null,"a":1}\n\n', b'data: {"a":1}\n\n'),
        (b'data: {"a": 1, "usage": null, "b": 2}\n\n', b'data: {"a": 1, "b": 2}\n\n'),
        (b'data: { "usage" : null , "a": 1 }\n\n', b'data: { "a": 1 }\n\n'),
        (b'data: {"usage":null}\n\n', b"data: {}\n\n"),
        (b'data: {"a":"\\"usage\\":null"}\n\n', b'data: {"a":"\\"usage\\":null"}\n\n'),
        (
            b'data: {"x":{"usage":null},"a":1,"usage":null}\n\n',
            b'data: {"x":{"usage":null},"a":1}\n\n',
        ),
    ],
)
def test_usage_null_member_is_cut_out(before: bytes, after: bytes) -> None:
    assert drop_usage_null(before) == after
