"""The AWS event-stream framing, checked against botocore's own parser and against the fake
Bedrock's independent framer."""

from __future__ import annotations

import struct
import uuid
import zlib

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from modelmart.core.errors import UpstreamError
from modelmart.dialects.eventstream import (
    CONTENT_TYPE, EventStreamDecoder, EventStreamError, Message, encode_message, event_message,
    exception_message,
)
from tests.fakes.bedrock_server import event_frame, exception_frame, frame


def botocore_parse(data: bytes) -> list:
    buf = EventStreamBuffer()
    buf.add_data(data)
    return list(buf)


def test_content_type():
    assert CONTENT_TYPE == "application/vnd.amazon.eventstream"


def test_event_message_parsed_by_botocore():
    data = event_message("contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"text":"hi"}}')
    [msg] = botocore_parse(data)
    assert msg.headers == {":event-type": "contentBlockDelta",
                           ":content-type": "application/json", ":message-type": "event"}
    assert msg.payload == b'{"contentBlockIndex":0,"delta":{"text":"hi"}}'
    assert msg.prelude.total_length == len(data)
    assert msg.to_response_dict()["status_code"] == 200


def test_exception_message_is_an_error_to_botocore():
    [msg] = botocore_parse(exception_message("throttlingException", b'{"message":"slow"}'))
    assert msg.headers[":message-type"] == "exception"
    assert msg.headers[":exception-type"] == "throttlingException"
    assert msg.to_response_dict()["status_code"] == 400


def test_every_header_type_botocore_reads():
    some_uuid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    headers = {"s": "text é", "b": b"\x00\x01raw", "t": True, "f": False, "i": -7,
               "u": some_uuid}
    [msg] = botocore_parse(encode_message(headers, b""))
    assert msg.headers == {"s": "text é", "b": b"\x00\x01raw", "t": True, "f": False,
                           "i": -7, "u": some_uuid.bytes}
    assert msg.payload == b""


def test_several_messages_in_one_buffer_for_botocore():
    data = b"".join(event_message(f"e{i}", b"x" * i) for i in range(5))
    assert [(m.headers[":event-type"], m.payload) for m in botocore_parse(data)] == [
        (f"e{i}", b"x" * i) for i in range(5)]


def test_decoder_round_trip_fed_byte_by_byte():
    headers = {":event-type": "metadata", "n": 42, "flag": False, "raw": b"\xff"}
    data = encode_message(headers, b'{"usage":{}}') + event_message("messageStop", b"{}")
    decoder, out = EventStreamDecoder(), []
    for i in range(len(data)):
        out += decoder.feed(data[i:i + 1])
    decoder.close()
    assert out == [Message(headers, b'{"usage":{}}'),
                   Message({":event-type": "messageStop", ":content-type": "application/json",
                            ":message-type": "event"}, b"{}")]
    assert out[1].name == "messageStop" and out[1].message_type == "event"


def test_decoder_reads_the_fakes_independent_framing():
    data = event_frame("messageStart", {"role": "assistant"}) + exception_frame(
        "validationException", "bad input")
    first, second = EventStreamDecoder().feed(data)
    assert first.name == "messageStart" and first.payload.startswith(b'{"role": "assistant"')
    assert second.message_type == "exception" and second.name == "validationException"
    assert second.payload == b'{"message": "bad input"}'


def test_decoder_reads_the_header_types_botocore_knows():
    # byte (2), short (3), long (5), timestamp (8): we never write them, AWS may.
    head = (b"\x01a\x02\xfe" + b"\x01b\x03" + struct.pack(">h", -300)
            + b"\x01c\x05" + struct.pack(">q", 2**40) + b"\x01d\x08" + struct.pack(">q", 99))
    data = frame({}, b"")  # a valid empty frame, then one built by hand
    total = 12 + len(head) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + head
    data += body + struct.pack(">I", zlib.crc32(body))
    empty, msg = EventStreamDecoder().feed(data)
    assert empty == Message({}, b"")
    assert msg.headers == {"a": -2, "b": -300, "c": 2**40, "d": 99}
    assert botocore_parse(data)[1].headers == msg.headers


def test_message_name_for_error_messages():
    msg = Message({":message-type": "error", ":error-code": "InternalFailure"})
    assert msg.name == "InternalFailure"


def test_corrupt_payload_fails_the_message_crc():
    data = bytearray(event_message("x", b"hello world"))
    data[-6] ^= 0x01
    with pytest.raises(ChecksumMismatch):
        botocore_parse(bytes(data))  # botocore agrees that it is corrupt
    with pytest.raises(EventStreamError, match="message checksum mismatch"):
        EventStreamDecoder().feed(bytes(data))


def test_corrupt_prelude_is_caught_before_its_lengths_are_trusted():
    data = bytearray(event_message("x", b"hello"))
    data[2] ^= 0x40  # the total length now claims megabytes
    decoder = EventStreamDecoder()
    with pytest.raises(EventStreamError, match="prelude checksum mismatch") as info:
        decoder.feed(bytes(data[:12]))
    assert isinstance(info.value, UpstreamError) and info.value.status == 502


@pytest.mark.parametrize("total,head_len", [(15, 0), (20, 10), (2**31, 0)])
def test_impossible_lengths(total, head_len):
    prelude = struct.pack(">II", total, head_len)
    prelude += struct.pack(">I", zlib.crc32(prelude))
    with pytest.raises(EventStreamError, match="impossible lengths|too large"):
        EventStreamDecoder().feed(prelude)


def test_malformed_headers():
    head = b"\x05ab"  # a name longer than the headers section
    total = 12 + len(head) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + head
    with pytest.raises(EventStreamError, match="malformed headers"):
        EventStreamDecoder().feed(body + struct.pack(">I", zlib.crc32(body)))


def test_stream_cut_inside_a_message():
    data = event_message("messageStart", b'{"role":"assistant"}')
    decoder = EventStreamDecoder()
    assert decoder.feed(data[:-5]) == []
    with pytest.raises(EventStreamError, match="ended inside a message"):
        decoder.close()


def test_close_after_whole_messages_is_quiet():
    decoder = EventStreamDecoder()
    assert len(decoder.feed(event_message("a", b"{}"))) == 1
    decoder.close()


def test_a_declared_length_over_the_bound_is_refused_from_the_prelude():
    from modelmart.dialects.eventstream import MessageTooLarge

    data = event_message("x", b"a" * 2000)
    decoder = EventStreamDecoder(max_payload=1000)
    with pytest.raises(MessageTooLarge) as info:
        decoder.feed(data[:12])  # only the prelude: nothing waited for
    assert info.value.limit == 1000 and isinstance(info.value, EventStreamError)
    assert len(EventStreamDecoder(max_payload=4096).feed(data)) == 1
