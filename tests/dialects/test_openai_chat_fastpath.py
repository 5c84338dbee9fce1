"""The OpenAI stream decoder's fast path (``dialects/openai_chat/fastpath.py``) against the
plain decoder, on the chunks real servers send: OpenAI's (``service_tier``,
``system_fingerprint``, ``logprobs``, ``refusal`` in the first delta, ``usage: null`` and a
random ``obfuscation`` in every chunk), and those of vLLM, Ollama, Azure and a server
writing ``json.dumps``'s spaced JSON; then byte-level mutations of them. Whatever the
reads, the fast path must give exactly the plain decoder's events, and take most text
chunks."""

from __future__ import annotations

import json
import random
import string

import orjson
import pytest
from openai.types.chat import ChatCompletionChunk

from modelmart.core import errors as E
from modelmart.core.types import BlockStart, MessageEnd, MessageStart, TextDelta, Usage
from modelmart.dialects.openai_chat import StreamDecoder, StreamEncoder
from modelmart.dialects.openai_chat.fastpath import TextRun, derive, learn, literal_in
from modelmart.dialects.sse import SSEParser

TEXTS = ["Hi", "", " there", 'say "hi"', "back\\slash", "é✓", "\n\t", "\u2028", "a/b", "🙂",
         '"}', ',"obfuscation":"x"}', '"delta":{"content":"x"}', "\\u0000", "\x00"]
ALNUM = string.ascii_letters + string.digits
USAGE = {"prompt_tokens": 19, "completion_tokens": 9, "total_tokens": 28,
         "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
         "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                       "accepted_prediction_tokens": 0,
                                       "rejected_prediction_tokens": 0}}


class Shape:
    """How one kind of server writes its chunks."""

    def __init__(self, rng: random.Random, name: str) -> None:
        self.rng, self.name = rng, name
        self.id = "chatcmpl-" + "".join(rng.choice(ALNUM) for _ in range(29))

    def chunk(self, delta: dict, finish: str | None = None, usage=None, choices=True) -> bytes:
        name, rng = self.name, self.rng
        if name == "ollama" and choices and "content" in delta:
            delta = {"role": "assistant", **delta}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        if name == "ollama":
            del choice["logprobs"]
        if name == "azure":
            choice = {"content_filter_results": {"hate": {"filtered": False, "severity": "safe"}},
                      "delta": delta, "finish_reason": finish, "index": 0, "logprobs": None}
        c = {"id": self.id, "object": "chat.completion.chunk", "created": 1777421458,
             "model": "gpt-4o-mini-2024-07-18"}
        if name in ("openai", "openai-no-usage", "spaced"):
            c.update(service_tier="default", system_fingerprint="fp_d4636387fb")
        if name == "ollama":
            c.update(model="llama3.2", system_fingerprint="fp_ollama")
        c["choices"] = [choice] if choices else []
        if name in ("openai", "spaced", "azure") or usage is not None:
            c["usage"] = usage
        if name in ("openai", "openai-no-usage", "spaced", "azure"):
            c["obfuscation"] = "".join(rng.choice(ALNUM) for _ in range(rng.randint(1, 16)))
        if name == "spaced":
            return json.dumps(c, ensure_ascii=False).encode()
        return orjson.dumps(c)

    def first(self) -> bytes:
        if self.name == "azure":  # Azure opens with the prompt's filter results
            return orjson.dumps({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                                 "prompt_filter_results": [{"prompt_index": 0,
                                                            "content_filter_results": {}}]})
        return self.chunk({"role": "assistant", "content": "", "refusal": None})


SHAPES = ["openai", "openai-no-usage", "vllm", "ollama", "spaced", "azure"]


def mutations(shape: Shape, text: str) -> list:
    """Chunks that look like text chunks but are not (or not only), byte by byte."""
    plain = shape.chunk({"content": text})
    return [
        plain.replace(b'"obfuscation":"', b'"obfuscation":"-'),  # not letters and digits
        plain.replace(b'"obfuscation":"', b'"obfuscation":"\\"'),
        plain[:plain.rfind(b'"obfuscation":"') + 15] + b'"}' if b"obfuscation" in plain else plain,
        plain[:-1] + b',"extra":1}',
        plain[:-1] + b',"error":{"message":"boom"}}',
        plain[:-1] + b',"usage":{"prompt_tokens":1,"completion_tokens":2}}',
        plain[:-1] + b',"choices":[]}',
        plain[:-1] + b',"obfuscation":"ab"}',
        plain[:-2] + b'","error":{"message":"boom"},"x":"y"}',  # members inside the padding
        plain[:-2] + b'\x01"}',  # a raw control character in the padding
        plain.replace(b'"finish_reason":null', b'"finish_reason":"stop"'),
        plain.replace(b'"delta":{', b'"delta":{"content":"dup",'),
        plain.replace(b'"delta":{', b'"delta":{"reasoning_content":"hm",'),
        plain.replace(b'"delta":{', b'"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{}"}}],'),
        plain.replace(b'"content":', b'"content":"x","content":'),
        plain.replace("é".encode(), b"\\u00e9").replace(b'"a/b"', b'"a\\/b"'),  # other escapes
        plain.replace(b'"content":"', b'"content":"\x01'),  # a raw control character
        plain.replace(b'"content":"', b'"content":"\\x'),  # an invalid escape
        plain.replace(b'"content":"', b'"content":1,"c":"'),
        plain[:len(plain) // 2],
        plain + b" ",
        b" " + plain,
        shape.chunk({"content": None}),
        shape.chunk({"content": text}, usage={"prompt_tokens": 3}),
        shape.chunk({}, "length"),
        shape.chunk({}, "length").replace(b'"finish_reason":"length"', b'"finish_reason":7'),
        shape.chunk({}, "stop").replace(b'"delta":{}', b'"delta":{"content":"late"}'),
        shape.chunk({}, "stop")[:-1] + b',"error":{"message":"boom"}}',
        shape.chunk({}, "stop").replace(b'"obfuscation":"', b'"obfuscation":"-'),
        shape.chunk({}, "stop").replace(b'"stop"', b'"st\\u006fp"'),
        shape.chunk({}, usage=USAGE, choices=False),
        b"[DONE]",
    ]


def first_chunks(shape: Shape) -> list[bytes]:
    """Opening chunks that prove less than they seem to."""
    first = shape.first()
    return [
        first[:-1] + b',"x":{"finish_reason":null}}',
        first[:-1] + b',"delta":1}',
        first[:-1] + b',"usage":{"prompt_tokens":1}}',
        first.replace(b'"finish_reason":null', b'"finish_reason":"stop"'),
        first.replace(b'"role":"assistant"', b'"role":"a}"'),
        first.replace(b'"id":"', b'"id":"\\u0063'),
        first.replace(b'"content":""', b'"content":"Hi"'),
        first.replace(b'"delta":{', b'"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":""}}],'),
    ]


def random_stream(rng: random.Random, shape_name: str | None = None, mutate: float = 0.15) -> list[bytes]:
    shape = Shape(rng, shape_name or rng.choice(SHAPES))
    datas = [rng.choice(first_chunks(shape)) if rng.random() < mutate else shape.first()]
    for _ in range(rng.randint(0, 14)):
        text = rng.choice(TEXTS)
        datas.append(rng.choice(mutations(shape, text)) if rng.random() < mutate
                     else shape.chunk({"content": text}))
    if rng.random() < 0.85:
        datas.append(shape.chunk({}, rng.choice(["stop", "length"])))
        if shape.name != "openai-no-usage":
            datas.append(shape.chunk({}, usage=USAGE, choices=False))
        datas.append(b"[DONE]")
    return datas


def decode_by_feed(datas: list[bytes]) -> list:
    dec, out = StreamDecoder(), []
    try:
        for data in datas:
            out += dec.feed(None, data)
        out += dec.close()
    except E.GatewayError as err:
        out.append(type(err))
    return out


def decode_in_reads(datas: list[bytes], rng: random.Random, runs: bool) -> list[list]:
    """The events of each read of 1 to 5 chunks; a failure ends with its error's class."""
    dec, batches, i = StreamDecoder(runs), [], 0
    try:
        while i < len(datas):
            n = rng.randint(1, 5)
            batch: list = []
            try:
                dec.feed_datas(datas[i:i + n], batch)
            finally:
                batches.append(batch)
            i += n
        batches.append(dec.close())
    except E.GatewayError as err:
        batches.append([type(err)])
    return batches


def expand(batches: list[list]) -> tuple[list, int]:
    """The events with each TextRun as the TextDeltas it stands for; and how many chunks
    took the fast path."""
    out, hits = [], 0
    for batch in batches:
        for ev in batch:
            if type(ev) is TextRun:
                texts = [orjson.loads(lit) for lit in ev.literals]
                assert all(texts) and ev.text == "".join(texts)
                hits += len(texts)
                out += [TextDelta(ev.index, t) for t in texts]
            else:
                out.append(ev)
    return out, hits


def text_chunks(datas: list[bytes]) -> int:
    return sum(1 for d in datas if b'"content":"' in d and b'"content":""' not in d)


def test_fast_path_gives_the_plain_decoders_events_on_real_shapes():
    rng = random.Random(11)
    hits = texts = 0
    for _ in range(3000):
        datas = random_stream(rng)
        seed = rng.random()
        plain = decode_by_feed(datas)
        without_runs, _ = expand(decode_in_reads(datas, random.Random(seed), runs=False))
        with_runs, n = expand(decode_in_reads(datas, random.Random(seed), runs=True))
        assert without_runs == plain, datas
        assert with_runs == plain, datas
        hits, texts = hits + n, texts + text_chunks(datas)
    assert hits > 0.6 * texts  # most text chunks (mutated ones included) took the fast path


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_takes_the_fast_path(shape):
    rng = random.Random(shape)
    hits = texts = 0
    for _ in range(200):
        datas = random_stream(rng, shape, mutate=0)
        with_runs, n = expand(decode_in_reads(datas, random.Random(1), runs=True))
        assert with_runs == decode_by_feed(datas)
        hits, texts = hits + n, texts + text_chunks(datas)
    # Only the first text chunk of a shape whose opening chunk says nothing of the rest
    # (Ollama's, Azure's) is read the plain way.
    assert hits >= 0.8 * texts, (hits, texts)


def test_openai_templates_come_from_the_first_chunk():
    shape = Shape(random.Random(2), "openai")
    first = shape.first()
    assert b'"refusal":null' in first and b'"obfuscation":"' in first
    text, finishing = derive(first, orjson.loads(first))
    assert literal_in(text, shape.chunk({"content": "x"})) == b'"x"'
    assert literal_in(finishing, shape.chunk({}, "length")) == b'"length"'
    dec, out = StreamDecoder(True), []
    dec.feed_datas([first, shape.chunk({"content": 'a "b" \\ é'}), shape.chunk({"content": "!"})], out)
    assert type(out[-1]) is TextRun and out[-1].text == 'a "b" \\ é!'
    assert [type(e) for e in out[:-1]] == [MessageStart, BlockStart]


@pytest.mark.parametrize("first", [
    b'{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":{"prompt_tokens":1}}',
    b'{"id":"c\\u00e9","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}',
    b'{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop"}]}',
    b'{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"error":{"m":1}}',
    b'{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[]},"finish_reason":null}]}',
    b'{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null,"delta":{}}]}',
    b'{"id":"c","choices":[{"index":0,"delta":{"role":"a}","content":""},"finish_reason":null}]}',
    b'{"id":"c","choices":[]}',
    b'{"x":{"delta":{"role":"assistant","content":""}},"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}',
])
def test_no_template_from_a_first_chunk_that_proves_nothing(first):
    assert derive(first, orjson.loads(first)) == (None, None)


def test_no_finish_template_when_another_finish_reason_comes_first():
    first = (b'{"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
             b'"x":{"finish_reason":null},"finish_reason":null}]}')
    text, finishing = derive(first, orjson.loads(first))
    assert text is not None and finishing is None


@pytest.mark.parametrize("data", [
    b'{"choices":[{"delta":{"content":"x"},"finish_reason":"stop"}]}',
    b'{"choices":[{"delta":{"content":"x\\"y"},"finish_reason":null}],"id":"a\\u00e9"}',
    b'{"choices":[{"delta":{"content":"x","content":"y"}}]}',
    b'{"choices":[{"delta":{"content":"x","content":"\\u0000"}}]}',  # the probe's own text
    b'{"choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":1}}',
    b'{"choices":[{"delta":{"content":"x","reasoning":"r"}}]}',
    b'{"choices":[{"delta":{"content":"x"}}],"obfuscation":"a-b"}',
])
def test_no_template_learned_from_a_chunk_that_is_more_than_text(data):
    tpl = learn(data)
    if tpl is not None:  # only the padding could be split off wrongly: it must not be
        assert b"obfuscation" in data and tpl[4] is False


def _client_chunks(sse: bytes) -> list:
    return [orjson.loads(data) for name, data in SSEParser().feed(sse) if data != b"[DONE]"]


def test_text_runs_encode_as_the_chunks_of_their_deltas():
    rng = random.Random(8)
    for include_usage in (False, True):
        for _ in range(500):
            datas = random_stream(rng)
            seed = rng.random()
            out = {}
            for runs in (False, True):
                enc = StreamEncoder("alias", include_usage=include_usage)
                enc.id, enc.created = "chatcmpl-x", 7  # Azure's first chunk has no id
                frames = b""
                for batch in decode_in_reads(datas, random.Random(seed), runs):
                    frames += b"".join(enc.event(ev) for ev in batch if not isinstance(ev, type))
                out[runs] = frames
            assert _client_chunks(out[True]) == _client_chunks(out[False]), datas
            for c in _client_chunks(out[True]):  # and the OpenAI SDK reads every one
                ChatCompletionChunk.model_validate(c)


def test_every_chunk_padded_differently_still_takes_the_fast_path():
    shape = Shape(random.Random(4), "openai")
    datas = [shape.first()] + [shape.chunk({"content": f"t{i}"}) for i in range(10)]
    datas += [shape.chunk({}, "stop"), shape.chunk({}, usage=USAGE, choices=False), b"[DONE]"]
    assert len({d[d.rfind(b'"obfuscation"'):] for d in datas[1:11]}) > 1
    out: list = []
    StreamDecoder(True).feed_datas(datas, out)
    runs = [e for e in out if type(e) is TextRun]
    assert len(runs) == 1 and len(runs[0].literals) == 10
    assert runs[0].text == "".join(f"t{i}" for i in range(10))
    assert out[-1] == MessageEnd("end_turn", Usage(input_tokens=19, output_tokens=9))
