"""Signed notifications: a webhook per URL in MESHSTEP_WEBHOOKS, told of stage transitions, gate failures, approvals
needed and rollbacks, as JSON (or, with `slack=1`, a Slack-compatible `{"text": …}`).

Each request carries `X-Meshstep-Timestamp` (Unix seconds) and `X-Meshstep-Signature: v1=<hex>`, the HMAC-SHA256
under the shared secret (MESHSTEP_WEBHOOK_SECRET) of `<timestamp>.<body>`: a receiver recomputes it, refuses a
timestamp outside its tolerance and a signature it has seen before (`Receiver`), so a captured request cannot be
replayed. A failed delivery is retried with exponential backoff; every attempt goes to the delivery log. A delivery
that fails in the end never fails the change it tells of (that is recorded already); the log says so."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import platformdirs

from cluster.errors import MeshstepError

HOOKS_ENV, SECRET_ENV, LOG_ENV = "MESHSTEP_WEBHOOKS", "MESHSTEP_WEBHOOK_SECRET", "MESHSTEP_DELIVERY_LOG"
TIMESTAMP, SIGNATURE = "X-Meshstep-Timestamp", "X-Meshstep-Signature"
EVENTS = ("stage.transition", "gate.failed", "approval.needed", "stage.rollback")
TIMEOUT = 5.0


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    return "v1=" + hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Webhook:
    url: str
    slack: bool = False

    @classmethod
    def parse(cls, text: str) -> Webhook:
        """A URL; `?slack=1` (removed from the URL) asks for Slack's payload."""
        parts = urlsplit(text.strip())
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise MeshstepError(f"{HOOKS_ENV}: {text!r} is not an http(s) URL")
        slack = parse_qs(parts.query).get("slack") == ["1"]
        query = "&".join(q for q in parts.query.split("&") if q and q != "slack=1")
        return cls(parts._replace(query=query).geturl(), slack)

    def body(self, event: str, payload: Mapping[str, Any]) -> bytes:
        doc = ({"text": f"meshstep {event}: {payload.get('summary', '')}"} if self.slack
               else {"event": event, **payload})
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Attempt:
    """One try at one delivery, as the delivery log keeps it."""

    url: str
    event: str
    attempt: int
    ok: bool
    status: int | None
    error: str
    at: float


@dataclass
class Notifier:
    """Sends each event to every webhook, signed, retrying with backoff; `log` receives every attempt."""

    hooks: tuple[Webhook, ...]
    secret: bytes = field(repr=False)
    log: Callable[[Attempt], None]
    retries: int = 3
    backoff: float = 0.5  # seconds before the first retry, doubled each time
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time

    @classmethod
    def from_env(cls, log: Callable[[Attempt], None] | None = None) -> Notifier | None:
        """The webhooks MESHSTEP_WEBHOOKS names (comma-separated), with MESHSTEP_WEBHOOK_SECRET, logging to `log`
        (default: the DeliveryLog); None without webhooks."""
        hooks = tuple(Webhook.parse(u) for u in os.environ.get(HOOKS_ENV, "").split(",") if u.strip())
        if not hooks:
            return None
        secret = os.environ.get(SECRET_ENV, "")
        if len(secret) < 16:
            raise MeshstepError(f"{HOOKS_ENV} is set but {SECRET_ENV} is missing or shorter than 16 characters: "
                                "webhooks are always signed")
        return cls(hooks, secret.encode(), log or DeliveryLog.default())

    def send(self, event: str, payload: Mapping[str, Any]) -> list[Attempt]:
        """Deliver `event` to every webhook; the attempts made (the last of each says whether it arrived)."""
        attempts = []
        for hook in self.hooks:
            attempts += self._deliver(hook, event, hook.body(event, payload))
        return attempts

    def _deliver(self, hook: Webhook, event: str, body: bytes) -> list[Attempt]:
        made = []
        for n in range(1, self.retries + 2):
            ts = int(self.clock())
            request = urllib.request.Request(hook.url, data=body, method="POST", headers={
                "Content-Type": "application/json", TIMESTAMP: str(ts), SIGNATURE: signature(self.secret, ts, body)})
            status, error = None, ""
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT) as r:
                    status = r.status
            except urllib.error.HTTPError as e:
                status, error = e.code, f"HTTP {e.code} {e.reason}"
            except (OSError, ValueError) as e:
                error = str(getattr(e, "reason", None) or e)
            ok = status is not None and 200 <= status < 300
            made.append(Attempt(hook.url, event, n, ok, status, error, ts))
            self.log(made[-1])
            # A 4xx other than 408/429 will not get better by retrying.
            if ok or status is not None and 400 <= status < 500 and status not in (408, 429):
                break
            if n <= self.retries:
                self.sleep(self.backoff * 2 ** (n - 1))
        return made


@dataclass
class Receiver:
    """What a webhook's receiver does with a request: verify its signature, refuse a stale timestamp and a
    signature seen before (a replay). Returns None when accepted, else why it is refused."""

    secret: bytes = field(repr=False)
    tolerance: float = 300.0
    clock: Callable[[], float] = time.time
    seen: set[str] = field(default_factory=set)

    def check(self, headers: Mapping[str, str], body: bytes) -> str | None:
        ts_text, sig = headers.get(TIMESTAMP, ""), headers.get(SIGNATURE, "")
        if not ts_text.isdigit() or not sig:
            return "unsigned"
        if not hmac.compare_digest(signature(self.secret, int(ts_text), body), sig):
            return "bad signature"
        if abs(self.clock() - int(ts_text)) > self.tolerance:
            return "stale timestamp"
        if sig in self.seen:
            return "replayed"
        self.seen.add(sig)
        return None


@dataclass(frozen=True)
class DeliveryLog:
    """Every attempt as one JSON line appended to a file (MESHSTEP_DELIVERY_LOG, else deliveries.jsonl in the
    state directory): what was sent where, when, and how it ended."""

    path: str

    @classmethod
    def default(cls) -> DeliveryLog:
        path = os.environ.get(LOG_ENV) or str(platformdirs.user_state_path("meshstep", appauthor=False)
                                              / "deliveries.jsonl")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return cls(path)

    def __call__(self, attempt: Attempt) -> None:
        line = json.dumps(attempt.__dict__, sort_keys=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(line + "\n")

    def read(self) -> list[Attempt]:
        try:
            with open(self.path) as f:
                return [Attempt(**json.loads(line)) for line in f if line.strip()]
        except FileNotFoundError:
            return []


def tell(event: str, summary: str, **facts: Any) -> None:
    """Send `event` to the configured webhooks, if any."""
    notifier = Notifier.from_env()
    if notifier is not None:
        notifier.send(event, {"summary": summary, **facts})
