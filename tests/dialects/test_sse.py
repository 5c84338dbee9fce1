"""SSE framing: the one-step path for plain ``data:`` events gives what the general parser
gives, however the bytes are split."""

from __future__ import annotations

import random

from modelmart.dialects.sse import SSEParser

PIECES = [b'data: {"a":1}\n\n', b"data: [DONE]\n\n", b"event: x\ndata: y\n\n", b": comment\n\n",
          b"data: a\ndata: b\n\n", b"data:nospace\n\n", b"data: \n\n", b"data: q\r\n\r\n", b"\n",
          b"data: z\n\n\n", b'data: {"t":"\\n\\ndata: "}\n\n', b"id: 7\ndata: i\n\n"]


def _split(stream: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randint(0, 3))))
    return [stream[i:j] for i, j in zip([0] + cuts, cuts + [len(stream)])]


def test_feed_data_agrees_with_feed_on_any_stream_and_split():
    rng = random.Random(7)
    fast_taken = 0
    for _ in range(5000):
        stream = b"".join(rng.choice(PIECES) for _ in range(rng.randint(1, 6)))
        general, fast = SSEParser(), SSEParser()
        want, got = [], []
        for part in _split(stream, rng):
            want += general.feed(part)
            datas = fast.feed_data(part)
            if datas is None:
                got += fast.feed(part)
            else:
                fast_taken += 1
                got += [(None, d) for d in datas]
        want += general.close()
        got += fast.close()
        assert got == want, (stream,)
    assert fast_taken > 1000  # the fuzz exercised the fast path, not only the fallback


def test_feed_data_keeps_a_partial_event_for_the_next_read():
    parser = SSEParser()
    assert parser.feed_data(b"data: 1\n\ndata: 2") == [b"1"]
    assert parser.feed_data(b"2\n\n") == [b"22"]
    assert parser.feed_data(b"event: e\ndata: 3\n\n") is None
    assert parser.feed(b"event: e\ndata: 3\n\n") == [("e", b"3")]


def test_a_long_event_in_many_reads_costs_linear_time():
    # 20 MB in 64 KB reads: the old parser re-joined its whole buffer on each read
    # (quadratic: a 100 MB line took 8.3 s of CPU); this one keeps the pieces.
    import time

    parser, piece = SSEParser(), b"x" * 65536  # under the default bound (24 MiB)
    started = time.process_time()
    assert parser.feed(b"data: ") == []
    for _ in range(320):
        assert parser.feed_data(piece) is None and parser.feed(piece) == []
    (name, data), = parser.feed(b"\n\n")
    assert name is None and len(data) == 320 * 65536
    assert time.process_time() - started < 1.0


def test_an_event_over_the_bound_is_refused_as_it_grows():
    import pytest

    from modelmart.core.errors import UpstreamError
    from modelmart.dialects.sse import EventTooLarge

    parser = SSEParser(max_event=1000)
    parser.feed(b"data: " + b"x" * 600)
    with pytest.raises(EventTooLarge) as info:
        parser.feed(b"x" * 600)  # no blank line yet: refused before the event ends
    assert isinstance(info.value, UpstreamError) and info.value.limit == 1000
    with pytest.raises(EventTooLarge):  # a whole event in one read is bounded too
        SSEParser(max_event=1000).feed(b"event: e\ndata: " + b"y" * 2000 + b"\n\n")
    fine = SSEParser(max_event=1000)
    assert fine.feed_data(b"data: " + b"z" * 900 + b"\n\n") == [b"z" * 900]
