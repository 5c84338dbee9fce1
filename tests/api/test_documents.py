"""Documents (issue #16): Anthropic ``document`` blocks (base64 PDF, plain text, citations
off) and Bedrock Converse ``document`` blocks, with the anthropic SDK and boto3. Native to
Anthropic, Bedrock and Gemini upstreams; text documents become text for the others (the
OpenAI-compatible fake, the bundled model); a PDF for an upstream that cannot read one is
a clear 400."""

from __future__ import annotations

import base64

import anthropic
import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from tests.conftest import UPSTREAM_KEY
from tests.fakes.bedrock_server import FakeBedrock
from tests.fakes.gemini_server import FakeGemini
from tests.harness import GatewayServer

AWS_KEY, AWS_SECRET, GEMINI_KEY = "AKIDDOCS", "docs-secret", "AIza-docs"
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
PDF_B64 = base64.b64encode(PDF).decode()
NOTES = "Meeting notes: ship on Friday."


@pytest.fixture(scope="module")
def fake_bedrock():
    server = FakeBedrock(access_key=AWS_KEY, secret_key=AWS_SECRET).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fake_gemini():
    server = FakeGemini(api_key=GEMINI_KEY).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(fake_openai, fake_anthropic, fake_bedrock, fake_gemini):
    server = GatewayServer({"models": {
        "claude-d": {"provider": "anthropic", "model": "claude-sonnet-4-5",
                     "base_url": fake_anthropic.base_url, "api_key": UPSTREAM_KEY},
        "gpt-d": {"provider": "openai", "model": "gpt-4o-mini",
                  "base_url": f"{fake_openai.base_url}/v1", "api_key": UPSTREAM_KEY},
        "nova-d": {"provider": "bedrock", "model": "us.amazon.nova-lite-v1:0",
                   "base_url": fake_bedrock.base_url,
                   "options": {"aws_access_key_id": AWS_KEY, "aws_secret_access_key": AWS_SECRET,
                               "region": "us-east-1"}},
        "gemini-d": {"provider": "gemini", "model": "gemini-2.5-flash",
                     "base_url": fake_gemini.base_url, "api_key": GEMINI_KEY},
    }}).start()
    yield server
    server.stop()


@pytest.fixture
def client(gateway, fakes, fake_bedrock, fake_gemini):
    fake_bedrock.received.clear()
    fake_gemini.received.clear()
    return anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0)


def _pdf_block(**extra) -> dict:
    return {"type": "document", "title": "Q3 report",
            "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_B64},
            **extra}


def _text_block(**extra) -> dict:
    return {"type": "document", "title": "notes.txt", "context": "From the team wiki.",
            "source": {"type": "text", "media_type": "text/plain", "data": NOTES}, **extra}


def _ask(client, model: str, *blocks: dict):
    return client.messages.create(model=model, max_tokens=20, messages=[{"role": "user", "content": [
        *blocks, {"type": "text", "text": "Summarise."}]}])


def test_anthropic_upstream_gets_the_documents_as_they_came(client, fake_anthropic):
    _ask(client, "claude-d", _pdf_block(citations={"enabled": False}), _text_block())
    content = fake_anthropic.received[-1].body["messages"][0]["content"]
    assert content[0] == _pdf_block()
    assert content[1] == _text_block()
    assert content[2] == {"type": "text", "text": "Summarise."}


def test_bedrock_upstream_gets_converse_documents(client, fake_bedrock):
    _ask(client, "nova-d", _pdf_block(), _text_block())
    content = fake_bedrock.received[-1].body["messages"][0]["content"]
    assert content[0] == {"document": {"format": "pdf", "name": "Q3 report",
                                       "source": {"bytes": PDF_B64}}}
    text = content[1]["document"]
    assert (text["format"], text["name"], text["context"]) == ("txt", "notes-txt",
                                                               "From the team wiki.")
    assert base64.b64decode(text["source"]["bytes"]).decode() == NOTES


def test_gemini_upstream_reads_the_pdf_inline(client, fake_gemini):
    _ask(client, "gemini-d", _pdf_block(), _text_block())
    parts = fake_gemini.received[-1].body["contents"][0]["parts"]
    assert parts[0] == {"inlineData": {"mimeType": "application/pdf", "data": PDF_B64}}
    assert parts[1] == {"text": f"Document: notes.txt\nFrom the team wiki.\n\n{NOTES}"}


def test_text_documents_become_text_for_openai_compatible_upstreams(client, fake_openai):
    _ask(client, "gpt-d", _text_block())
    content = fake_openai.received[-1].body["messages"][0]["content"]
    assert content == [{"type": "text",
                        "text": f"Document: notes.txt\nFrom the team wiki.\n\n{NOTES}"},
                       {"type": "text", "text": "Summarise."}]


def test_the_bundled_model_reads_a_text_document(client):
    reply = _ask(client, "smollm2-135m", _text_block())
    assert reply.content[0].text and reply.usage.input_tokens > 20


@pytest.mark.parametrize("model", ["gpt-d", "smollm2-135m"])
def test_a_pdf_for_an_upstream_that_cannot_read_it_is_a_400(client, fake_openai, model):
    with pytest.raises(anthropic.BadRequestError, match="does not support PDF documents"):
        _ask(client, model, _pdf_block())
    assert not fake_openai.received


@pytest.mark.parametrize("block, words", [
    (_pdf_block(citations={"enabled": True}), "citations are not supported"),
    ({"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
     "send the PDF as base64"),
    ({"type": "document", "source": {"type": "base64", "media_type": "image/png",
                                     "data": PDF_B64}}, "must be application/pdf"),
])
def test_documents_refused_clearly(client, block, words):
    with pytest.raises(anthropic.BadRequestError, match=words):
        _ask(client, "claude-d", block)


@pytest.fixture
def bedrock(gateway):
    akid, secret = gateway.new_aws_key()
    import time
    deadline = time.monotonic() + 5
    while gateway.app.keys.by_aws_access_key_id(akid) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return boto3.client("bedrock-runtime", endpoint_url=gateway.url, region_name="us-east-1",
                        aws_access_key_id=akid, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}))


def _converse(bedrock, model: str, *documents: dict):
    return bedrock.converse(modelId=model, messages=[{"role": "user", "content": [
        *({"document": d} for d in documents), {"text": "Summarise."}]}],
        inferenceConfig={"maxTokens": 20})


def test_converse_documents_reach_anthropic_and_openai(bedrock, fakes, fake_anthropic,
                                                       fake_openai):
    pdf = {"format": "pdf", "name": "Q3 report", "source": {"bytes": PDF}}
    notes = {"format": "md", "name": "notes", "source": {"bytes": b"# Notes\nship it"}}
    _converse(bedrock, "claude-d", pdf, notes)
    content = fake_anthropic.received[-1].body["messages"][0]["content"]
    assert content[0] == _pdf_block()
    assert content[1] == {"type": "document", "title": "notes", "source": {
        "type": "text", "media_type": "text/plain", "data": "# Notes\nship it"}}
    _converse(bedrock, "gpt-d", notes)
    assert fake_openai.received[-1].body["messages"][0]["content"][0] == {
        "type": "text", "text": "Document: notes\n\n# Notes\nship it"}
    with pytest.raises(botocore.exceptions.ClientError) as err:
        _converse(bedrock, "gpt-d", pdf)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert "PDF documents" in err.value.response["Error"]["Message"]


def test_converse_documents_to_bedrock_and_office_files(bedrock, fake_bedrock, fakes):
    docx = {"format": "docx", "name": "plan", "source": {"bytes": b"PK\x03\x04 not really"}}
    _converse(bedrock, "nova-d", docx)
    sent = fake_bedrock.received[-1].body["messages"][0]["content"][0]["document"]
    assert sent == {"format": "docx", "name": "plan",
                    "source": {"bytes": base64.b64encode(b"PK\x03\x04 not really").decode()}}
    with pytest.raises(botocore.exceptions.ClientError, match="application/vnd.openxml"):
        _converse(bedrock, "claude-d", docx)
    with pytest.raises(botocore.exceptions.ClientError, match="citations"):
        _converse(bedrock, "nova-d", {**docx, "citations": {"enabled": True}})


def test_a_gemini_client_sends_a_pdf_as_inline_data(gateway, fakes, fake_anthropic):
    import httpx
    body = {"contents": [{"role": "user", "parts": [
        {"inlineData": {"mimeType": "application/pdf",
                        "data": base64.urlsafe_b64encode(PDF).decode()}},
        {"inlineData": {"mimeType": "text/plain",
                        "data": base64.b64encode(NOTES.encode()).decode()}},
        {"text": "Summarise."}]}]}
    resp = httpx.post(f"{gateway.url}/v1beta/models/claude-d:generateContent", json=body,
                      headers={"x-goog-api-key": gateway.key})
    assert resp.status_code == 200, resp.text
    content = fake_anthropic.received[-1].body["messages"][0]["content"]
    assert content[0]["source"] == {"type": "base64", "media_type": "application/pdf",
                                    "data": PDF_B64}
    assert content[1]["source"] == {"type": "text", "media_type": "text/plain", "data": NOTES}
