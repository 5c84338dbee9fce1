"""SigV4 verification against signatures made by botocore itself: a real boto3
``bedrock-runtime`` client over loopback, and requests signed with ``SigV4Auth``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import unquote, urlsplit

import boto3
import botocore.auth as auth_module
import orjson
import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from modelmart.api.sigv4 import canonical_path, verify_sigv4
from modelmart.core.errors import AuthenticationFailed, GatewayError, PermissionDenied
from modelmart.core.types import (
    BlockStart, MessageEnd, MessageStart, Response, TextBlock, TextDelta, Usage,
)
from modelmart.dialects import bedrock_converse as bc
from tests.fakes.script import FakeServer

AKID, SECRET = "AKIDGATEWAY", "gateway/secret+key"
SECRETS = {AKID: SECRET}


# ---- a tiny Converse surface over loopback ----------------------------------------------


class SignedSurface(FakeServer):
    """Verifies each request with verify_sigv4, then answers in the Bedrock dialect."""

    def __init__(self) -> None:
        super().__init__()
        self.callers: list[str] = []
        self.requests = []

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        path, _, query = request.raw_path.partition("?")
        try:
            self.callers.append(verify_sigv4(request.method, path.encode(), query.encode(),
                                             request.raw_headers, body, SECRETS.get))
            model_id = _model_id(path)
            req = bc.decode_request(orjson.loads(body), model_id,
                                    stream=path.endswith("/converse-stream"))
        except GatewayError as err:
            status, payload = bc.encode_error(err)
            return web.json_response(payload, status=status, headers=bc.error_headers(err))
        self.requests.append(req)
        if req.stream:
            return await self._stream(request, req)
        resp = Response("msg_1", req.model, [TextBlock(f"hello from {req.model}")],
                        usage=Usage(input_tokens=3, output_tokens=4))
        return web.json_response(bc.encode_response(resp, req.model, latency_ms=5))

    async def _stream(self, request: web.Request, req) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": bc.MEDIA_TYPE_STREAM})
        await resp.prepare(request)
        encoder = bc.StreamEncoder(req.model)
        for event in (MessageStart("m", req.model), BlockStart(0, TextBlock("")),
                      TextDelta(0, "streamed"), MessageEnd("end_turn", Usage(1, 2))):
            await resp.write(encoder.event(event))
        await resp.write_eof()
        return resp


def _model_id(path: str) -> str:
    return unquote(path.split("/")[2])


@pytest.fixture(scope="module")
def surface():
    server = SignedSurface().start()
    yield server
    server.stop()


def client(surface, secret: str = SECRET, akid: str = AKID, token: str | None = None):
    return boto3.client("bedrock-runtime", region_name="eu-central-1",
                        endpoint_url=surface.base_url, aws_access_key_id=akid,
                        aws_secret_access_key=secret, aws_session_token=token,
                        config=Config(retries={"total_max_attempts": 1}))


USER = [{"role": "user", "content": [{"text": "hi"}]}]


@pytest.mark.parametrize("model_id", [
    "us.amazon.nova-lite-v1:0",
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude:0",
    "plain-model",
])
def test_boto3_converse_is_verified(surface, model_id):
    resp = client(surface).converse(modelId=model_id, messages=USER)
    assert resp["output"]["message"]["content"] == [{"text": f"hello from {model_id}"}]
    assert resp["usage"]["totalTokens"] == 7 and resp["metrics"] == {"latencyMs": 5}
    assert surface.callers[-1] == AKID


def test_boto3_converse_stream_is_verified_and_parsed(surface):
    resp = client(surface, token="session-token").converse_stream(
        modelId="us.amazon.nova-lite-v1:0", messages=USER,
        inferenceConfig={"maxTokens": 10})
    events = list(resp["stream"])
    assert [next(iter(e)) for e in events] == [
        "messageStart", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata"]
    assert events[1]["contentBlockDelta"]["delta"] == {"text": "streamed"}
    assert surface.requests[-1].stream is True and surface.requests[-1].max_tokens == 10


def test_boto3_with_the_wrong_secret_is_refused(surface):
    with pytest.raises(ClientError) as info:
        client(surface, secret="not-the-secret").converse(modelId="m", messages=USER)
    error = info.value.response["Error"]
    assert error["Code"] == "InvalidSignatureException"
    assert error["Message"].startswith("The request signature we calculated does not match")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_boto3_with_an_unknown_key_is_refused(surface):
    with pytest.raises(ClientError) as info:
        client(surface, akid="AKIDUNKNOWN").converse(modelId="m", messages=USER)
    assert info.value.response["Error"] == {
        "Code": "UnrecognizedClientException",
        "Message": "The security token included in the request is invalid."}
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401


def test_boto3_validation_error_after_a_good_signature(surface):
    c = client(surface)
    # botocore checks minimums only; the maximum is ours to enforce.
    with pytest.raises(c.exceptions.ValidationException, match="inferenceConfig.topP"):
        c.converse(modelId="m", messages=USER, inferenceConfig={"topP": 1.5})
    assert surface.callers[-1] == AKID


# ---- requests signed with SigV4Auth directly --------------------------------------------

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def signed(url: str = "https://gw.example.com/model/us.amazon.nova-lite-v1%3A0/converse",
           body: bytes = b'{"messages": []}', headers: dict | None = None, params=None,
           secret: str = SECRET, service: str = "bedrock", when: datetime = NOW,
           akid: str = AKID) -> dict:
    """The parts of a request botocore signed, as an ASGI server would see them."""
    request = AWSRequest(method="POST", url=url, data=body, params=params or {},
                         headers={"content-type": "application/json", **(headers or {})})
    signer = SigV4Auth(Credentials(akid, secret), service, "us-west-2")
    # Sign at a fixed instant so clock-skew checks are exact.
    original = auth_module.get_current_datetime
    auth_module.get_current_datetime = lambda: when.replace(tzinfo=None)
    try:
        signer.add_auth(request)
    finally:
        auth_module.get_current_datetime = original
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    raw_headers = [(b"host", parts.netloc.encode())] + [
        (k.lower().encode(), v.encode() if isinstance(v, str) else v)
        for k, v in prepared.headers.items()]
    return {"method": "POST", "raw_path": parts.path.encode(), "query": parts.query.encode(),
            "headers": raw_headers, "body": prepared.body or b""}


def verify(parts: dict, now: datetime = NOW, **kw) -> str:
    return verify_sigv4(parts["method"], parts["raw_path"], parts["query"], parts["headers"],
                        parts["body"], SECRETS.get, now=now, **kw)


def replace_header(parts: dict, name: bytes, value: bytes | None) -> dict:
    headers = [(k, v) for k, v in parts["headers"] if k != name]
    if value is not None:
        headers.append((name, value))
    return {**parts, "headers": headers}


def test_signed_request_is_verified():
    assert verify(signed()) == AKID


def test_query_parameters_are_canonicalized_like_botocore():
    parts = signed(params={"b": "x y/z", "a": "1", "~t": "é"})
    assert parts["query"]
    assert verify(parts) == AKID


@pytest.mark.parametrize("url", [
    "https://gw.example.com/model/a%2Fb%3Ac/converse",
    "https://gw.example.com/model//x/./y/../converse/",
    "https://gw.example.com",
])
def test_paths_are_normalized_and_double_encoded_like_botocore(url):
    assert verify(signed(url=url)) == AKID


def test_canonical_path_double_encodes():
    assert canonical_path(b"/model/us.amazon.nova-lite-v1%3A0/converse") == \
        "/model/us.amazon.nova-lite-v1%253A0/converse"
    assert canonical_path(b"") == "/"


def test_date_header_instead_of_x_amz_date():
    parts = signed(headers={"Date": "Sat, 01 Mar 2025 12:00:00 GMT"})
    assert not any(k == b"x-amz-date" for k, _ in parts["headers"])
    assert verify(parts) == AKID


def test_declared_payload_hash_is_used_and_checked():
    import hashlib

    body = b'{"messages": [1]}'
    digest = hashlib.sha256(body).hexdigest()
    parts = signed(body=body, headers={"X-Amz-Content-SHA256": digest})
    assert verify(parts) == AKID
    with pytest.raises(PermissionDenied, match="x-amz-content-sha256"):
        verify({**parts, "body": b'{"messages": [2]}'})


def expect(exc_type, code: str, fragment: str, parts: dict, **kw):
    with pytest.raises(exc_type) as info:
        verify(parts, **kw)
    assert fragment in info.value.message
    assert bc.error_headers(info.value) == {"x-amzn-errortype": code}
    return info.value


def test_wrong_secret():
    err = expect(PermissionDenied, "InvalidSignatureException",
                 "The request signature we calculated does not match the signature you "
                 "provided", signed(secret="wrong"))
    assert err.status == 403


def test_tampered_body():
    expect(PermissionDenied, "InvalidSignatureException", "signature we calculated",
           {**signed(), "body": b'{"messages": [], "x": 1}'})


def test_tampered_path_query_and_header():
    parts = signed()
    expect(PermissionDenied, "InvalidSignatureException", "signature we calculated",
           {**parts, "raw_path": b"/model/other/converse"})
    expect(PermissionDenied, "InvalidSignatureException", "signature we calculated",
           {**parts, "query": b"a=1"})
    expect(PermissionDenied, "InvalidSignatureException", "signature we calculated",
           replace_header(parts, b"content-type", b"text/plain"))
    expect(PermissionDenied, "InvalidSignatureException", "signature we calculated",
           {**parts, "method": "PUT"})


def test_missing_signed_header():
    expect(PermissionDenied, "InvalidSignatureException", "'content-type' is missing",
           replace_header(signed(), b"content-type", None))


def test_unknown_access_key():
    err = expect(AuthenticationFailed, "UnrecognizedClientException",
                 "The security token included in the request is invalid.",
                 signed(akid="AKIDOTHER"))
    assert err.status == 401


def test_clock_skew():
    parts = signed()
    assert verify(parts, now=NOW + timedelta(minutes=14)) == AKID
    expect(PermissionDenied, "InvalidSignatureException", "Signature expired: 20250301T120000Z",
           parts, now=NOW + timedelta(minutes=16))
    expect(PermissionDenied, "InvalidSignatureException", "Signature not yet current",
           parts, now=NOW - timedelta(minutes=16))


def _auth(parts: dict) -> str:
    return dict(parts["headers"])[b"authorization"].decode()


@pytest.mark.parametrize("mangle,code,fragment", [
    (lambda a: None, "MissingAuthenticationTokenException", "Missing Authentication Token"),
    (lambda a: "Bearer abc", "IncompleteSignatureException", "Unsupported authorization type"),
    (lambda a: a.split(", Signature=")[0], "IncompleteSignatureException", "Signature"),
    (lambda a: a.replace("/aws4_request", "/aws5_request"), "IncompleteSignatureException",
     "Credential must have the form"),
    (lambda a: a.replace("SignedHeaders=content-type;host;", "SignedHeaders=content-type;"),
     "IncompleteSignatureException", "'host' must be signed"),
    (lambda a: a.replace("20250301", "20250302", 1), "IncompleteSignatureException",
     "Date in Credential scope does not match"),
])
def test_malformed_authorization(mangle, code, fragment):
    parts = signed()
    value = mangle(_auth(parts))
    parts = replace_header(parts, b"authorization", None if value is None else value.encode())
    expect(AuthenticationFailed, code, fragment, parts)


def test_other_service_scope_is_refused():
    expect(AuthenticationFailed, "IncompleteSignatureException",
           "scoped to correct service: 'bedrock'", signed(service="s3"))


def test_missing_date():
    parts = replace_header(signed(), b"x-amz-date", None)
    expect(AuthenticationFailed, "IncompleteSignatureException", "'X-Amz-Date'", parts)


def test_unsigned_payload_is_refused():
    parts = signed(headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    expect(AuthenticationFailed, "IncompleteSignatureException", "UNSIGNED-PAYLOAD", parts)
