"""The stream's fast path (a learnt event template, ``client._Template``) accounts every event
exactly as a full parse of it does (``client._handle_event``), whatever the server sends."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ixhpc.bench import client

SHAPES = [  # (head, tail) around a token's text, as engines send them
    (b'data: {"id":"cmpl-1","created":1764500000,"model":"m","object":"text_completion",'
     b'"choices":[{"index":0,"text":', b',"logprobs":null,"finish_reason":null}]}\n\n'),
    (b'data: {"id":"cmpl-2","object":"text_completion","created":1,"model":"m","choices":[{"index":0,'
     b'"text":', b',"logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":null}\n\n'),
    (b'data: {"id":"chat-1","choices":[{"index":0,"delta":{"content":', b'},"finish_reason":null}]}\n\n'),
    (b'data: {"id":"chat-2","choices":[{"index":0,"delta":{"content":null,"reasoning_content":',
     b'},"finish_reason":null}]}\n\n'),
    (b'data: {"id":"dup","choices":[{"index":0,"text":"first","text":', b'}]}\n\n'),
    (b'data: {"id":"nested","choices":[{"index":0,"logprobs":{"text":"x"},"text" : ', b'}]}\n\n'),
    (b'data: {"id":"usage","choices":[{"index":0,"text":',
     b'}],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'),
]

# what may stand where the text stood: JSON strings of any text, and bytes that are not one
texts = st.text(max_size=12)
middles = st.one_of(
    texts.map(lambda t: json.dumps(t).encode()),
    texts.map(lambda t: json.dumps(t, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.sampled_from([b'""', b'"a"b"', b'"\n"', b'"\\x"', b'"', b"1", b"null", b'"a" ', b'"\r"',
                     b'"x"}]}\n\ndata: {"id":"y","choices":[{"text":"z"',
                     b'x"', b'ab"', b'"\xff"', b'"a","error":"boom"', b'"a"}],"usage":{"completion_tokens":1}}\n\n']),
)
# an event: the stream's shape or another around a middle, sometimes with one byte changed
events = st.tuples(st.one_of(st.none(), st.integers(0, len(SHAPES) - 1)), middles,
                   st.one_of(st.just(-1), st.just(-1), st.integers(0, 400)), st.binary(min_size=1, max_size=1))


def _event(shape: int, middle: bytes, flip: int, byte: bytes) -> bytes:
    head, tail = SHAPES[shape]
    data = head + middle + tail
    if 0 <= flip < len(data):
        data = data[:flip] + byte + data[flip + 1:]
    return data


def _account(stream_events: list[bytes], fast: bool) -> tuple[dict[str, Any], str]:
    """The result fields after each event is read alone, and the error raised, if any."""
    result = client.RequestResult(input_len=1)
    outcome = ""
    try:
        if fast:
            sink = client._EventStream(result, max_stamps=64, max_line=1 << 20)
            for k, data in enumerate(stream_events):
                sink(data, float(k), float(k))
        else:
            for k, data in enumerate(stream_events):
                client._handle_event(data[:-2], float(k), result, 64)
    except client.StreamError as exc:
        outcome = str(exc)
    except Exception as exc:  # noqa: BLE001 - compared, not hidden
        outcome = f"{type(exc).__name__}: {exc}"
    fields = {k: getattr(result, k) for k in ("output_len", "usage_reported", "prompt_tokens",
                                               "multi_word_chunks", "text_chars", "response_id")}
    fields["token_times"] = list(result.token_times)
    return fields, outcome


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(SHAPES) - 1), st.lists(events, min_size=1, max_size=8))
def test_the_template_accounts_every_event_as_a_full_parse(
        shape: int, drawn: list[tuple[int | None, bytes, int, bytes]]) -> None:
    stream_events = [_event(shape if other is None else other, middle, flip, byte)
                     for other, middle, flip, byte in drawn]
    stream_events = [e for e in stream_events  # one whole event per read, as the fast path takes it
                     if b"\r" not in e and e.find(b"\n\n") == len(e) - 2]
    assert _account(stream_events, fast=True) == _account(stream_events, fast=False)


def test_a_stream_of_one_shape_takes_the_template() -> None:
    """After the first token event, the stream's events match the learnt template (no full
    parse), and the accounting is the full parse's."""
    head, tail = SHAPES[0]
    stream_events = [head + json.dumps(t).encode() + tail for t in ["a", " b", "c d", "é", '"q"', "\\"]]
    result = client.RequestResult(input_len=1)
    sink = client._EventStream(result, max_stamps=64)
    sink(stream_events[0], 0.0, 0.0)
    assert sink.template is not None and sink.template.head == head and sink.template.tail == tail
    for k, data in enumerate(stream_events[1:], 1):
        assert sink.template.text(data) is not None
        sink(data, float(k), float(k))
    assert (list(result.token_times), result.multi_word_chunks, result.text_chars) == \
        ([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 1, 1 + 2 + 3 + 1 + 3 + 1)
    assert _account(stream_events, fast=True) == _account(stream_events, fast=False)


def test_no_template_where_the_text_is_not_proven() -> None:
    """A text that also stands elsewhere under its key, inside a string, is not mistaken for it."""
    data = b'data: {"id":"x\\"text\\":\\"a","choices":[{"index":0,"text":"a"}]}\n\n'
    template = client._Template.learn(data, json.loads(data[6:-2]))
    assert template is not None and template.head.endswith(b'"index":0,"text":') and template.tail == b"}]}\n\n"
    assert client._Template.learn(b'data: {"choices":[]}\n\n', {"choices": []}) is None
