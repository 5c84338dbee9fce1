"""Sending fuzzed bodies to the gateway over loopback, and judging each answer.

An answer is wrong when it is a 5xx, when its body shows a traceback, a path of this
machine or an upstream's secret (unless the request itself carried that text, which an
error message may quote), or when a refusal is not in the caller's own dialect.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

LEAK_MARKERS = ("Traceback", 'File "', "/work/", "site-packages", '.py"', "/usr/lib/python")


@dataclass
class Problem:
    surface: str
    what: str
    request: bytes
    status: int
    answer: bytes


@dataclass
class Tally:
    """Inputs tried, answers by status, and the problems found, per surface."""

    secrets: tuple[str, ...]
    tried: Counter = field(default_factory=Counter)
    statuses: dict[str, Counter] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    seconds: Counter = field(default_factory=Counter)
    refusals: dict[str, Counter] = field(default_factory=dict)  # the commonest, by surface
    reconnects: Counter = field(default_factory=Counter)  # by the status answered before
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, surface: str, status: int) -> None:
        with self.lock:
            self.tried[surface] += 1
            self.statuses.setdefault(surface, Counter())[status] += 1

    def five_xx(self, surface: str | None = None) -> int:
        return sum(n for s, counts in self.statuses.items() if surface in (None, s)
                   for status, n in counts.items() if status >= 500)

    def of(self, surface: str) -> list[Problem]:
        return [p for p in self.problems if p.surface == surface]

    def summary(self) -> dict:
        return {
            "inputs": sum(self.tried.values()),
            "5xx": self.five_xx(),
            "problems": len(self.problems),
            "reconnects_after_status": dict(self.reconnects),
            "surfaces": {s: {"inputs": n, "5xx": self.five_xx(s), "problems": len(self.of(s)),
                             "seconds": round(self.seconds[s], 1),
                             "statuses": dict(sorted(self.statuses.get(s, {}).items())),
                             "top_refusals": dict(self.refusals.get(s, Counter()).most_common(8))}
                         for s, n in sorted(self.tried.items())},
        }

    def judge(self, surface: str, dialect: str, request: bytes,
              resp: httpx.Response) -> None:
        self.count(surface, resp.status_code)
        sent = request.decode("utf-8", "replace")
        shown = resp.content.decode("utf-8", "replace")
        found = []
        if resp.status_code >= 500:
            found.append(f"status {resp.status_code}")
        for marker in (*LEAK_MARKERS, *self.secrets):
            if marker in shown and marker not in sent:
                found.append(f"answer shows {marker!r}")
        if resp.status_code >= 400:
            shape = _dialect_problem(dialect, resp)
            if shape:
                found.append(shape)
            with self.lock:
                self.refusals.setdefault(surface, Counter())[_gist(shown)] += 1
        for what in found:
            self.problems.append(Problem(surface, what, request[:2000], resp.status_code,
                                          resp.content[:2000]))


def _gist(answer: str) -> str:
    """What a refusal is about, without the values it quotes."""
    try:
        body = orjson.loads(answer)
        message = body.get("message") or body["error"]["message"]
    except Exception:
        return answer[:60]
    return re.sub(r"'.*?'|\d+", "_", message)[:70]


def _dialect_problem(dialect: str, resp: httpx.Response) -> str | None:
    """Whether a refusal is shaped as the caller's API shapes its errors."""
    try:
        body = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return "error body is not JSON"
    if not isinstance(body, dict):
        return "error body is not an object"
    if dialect == "openai":
        err = body.get("error")
        ok = isinstance(err, dict) and isinstance(err.get("message"), str) and "type" in err
    elif dialect == "anthropic":
        err = body.get("error")
        ok = body.get("type") == "error" and isinstance(err, dict) and "type" in err
    else:  # bedrock
        ok = (isinstance(body.get("message"), str) and "__type" in body
              and "x-amzn-errortype" in resp.headers)
    return None if ok else f"error not in the {dialect} shape"


class Sender:
    """One keep-alive connection to the gateway; Bedrock requests SigV4-signed."""

    def __init__(self, base_url: str, *, key: str | None = None,
                 aws: tuple[str, str] | None = None) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=60)
        self.key = key
        self.signer = SigV4Auth(Credentials(*aws), "bedrock", "us-east-1") if aws else None
        self.last_status = 0
        self.reconnects: list[int] = []  # the status answered before each

    def post(self, path: str, body: bytes, headers: dict | None = None) -> httpx.Response:
        headers = {"content-type": "application/json",
                   **({"authorization": f"Bearer {self.key}"} if self.key else {}),
                   **(headers or {})}
        return self._send("POST", path, body, headers)

    def converse(self, model_id: str, action: str, body: bytes) -> httpx.Response:
        path = f"/model/{quote(model_id, safe='')}/{action}"
        request = AWSRequest(method="POST", url=self.base_url + path, data=body,
                             headers={"content-type": "application/json"})
        self.signer.add_auth(request)
        return self._send("POST", path, body, dict(request.headers.items()))

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> httpx.Response:
        return self._send(method, path, body, headers)

    def _send(self, method: str, path: str, body: bytes | None,
              headers: dict | None) -> httpx.Response:
        """One request; once more on a new connection if the server closed the kept-alive
        one as this one went out. The server closes a connection after a reply it sent
        before reading the whole body (a 413), without saying ``connection: close``, so a
        client that reuses it at once can race the close; counted in ``reconnects``."""
        try:
            resp = self.http.request(method, path, content=body, headers=headers)
        except httpx.RemoteProtocolError:
            self.reconnects.append(self.last_status)
            resp = self.http.request(method, path, content=body, headers=headers)
        self.last_status = resp.status_code
        return resp

    def alive(self) -> bool:
        try:
            return self.http.get("/health", timeout=10).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self.http.close()


class Clock:
    def __init__(self, tally: Tally, surface: str) -> None:
        self.tally, self.surface = tally, surface

    def __enter__(self) -> "Clock":
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self.tally.seconds[self.surface] += time.monotonic() - self.t0
