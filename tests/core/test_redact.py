"""``core/redact.py``: credentials scrubbed from upstream text, exact values and shapes."""

from __future__ import annotations

import pytest

from modelmart.core.redact import REDACTED, Redactor, redact, strip_userinfo, url_secrets

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize("text,secret", [
    ("Incorrect API key provided: sk-proj-abcdefghijklmnop1234.", "sk-proj-abcdefghijklmnop1234"),
    ('{"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"}', "eyJhbGciOiJIUzI1NiJ9.e30.sig"),
    ("x-api-key: sk-ant-api03-AAAAbbbbCCCC", "sk-ant-api03-AAAAbbbbCCCC"),
    ("headers={'api-key': 'azure0123456789'}", "azure0123456789"),
    ('{\\"x-goog-api-key\\": \\"some-google-key\\"}', "some-google-key"),
    ("key=AIzaSyA1234567890abcdefghijklmnopqrstuv", "AIzaSyA1234567890abcdefghijklmnopqrstuv"),
    ("Credential=AKIAIOSFODNN7EXAMPLE/20250101/us-east-1/bedrock", "AKIAIOSFODNN7EXAMPLE"),
    ("X-Amz-Security-Token: FQoGZXIvYXdzEJr//////////wEaDHello=", "FQoGZXIvYXdzEJr"),
    ("proxy-authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ("could not reach http://admin:hunter2hunter2@10.0.0.5:8000/v1", "hunter2hunter2"),
])
def test_credential_shapes_are_scrubbed(text, secret):
    out = redact(text)
    assert secret not in out and REDACTED in out


def test_exact_secrets_go_whatever_their_shape():
    scrub = Redactor(["plainsecret42", AWS_SECRET, "abc", None])
    out = scrub(f"you sent plainsecret42 and {AWS_SECRET}; abc stays")
    assert "plainsecret42" not in out and AWS_SECRET not in out
    assert out.endswith("abc stays")  # too short to be scrubbed as a value


def test_ordinary_text_is_left_alone():
    text = ("This model's maximum context length is 8192 tokens; max_tokens: 100. "
            "Authorization failed. See https://platform.openai.com/docs for details.")
    assert redact(text) == text
    assert redact("") == ""


def test_urls():
    assert url_secrets("http://user:p%40ss@host/x") == ["user", "user", "p%40ss", "p@ss"]
    assert url_secrets("https://host/x") == []
    assert strip_userinfo("https://u:p@h:1/a@b") == "https://h:1/a@b"
    assert strip_userinfo("https://h/x") == "https://h/x"
