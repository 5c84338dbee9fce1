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
