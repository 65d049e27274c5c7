"""Signed notifications: a webhook per URL in MESHSTEP_WEBHOOKS, told of stage transitions, gate failures, approvals
needed and rollbacks, as JSON (or, with `slack=1`, a Slack-compatible `{"text": …}`).

Each request carries `X-Meshstep-Timestamp` (Unix seconds) and `X-Meshstep-Signature: v1=<hex>`, the HMAC-SHA256
under the shared secret (MESHSTEP_WEBHOOK_SECRET) of `<timestamp>.<body>`: a receiver recomputes it, refuses a
timestamp outside its tolerance and a signature it has seen before (`Receiver`), so a captured request cannot be
replayed. Telling never waits for a receiver: each event is queued in the delivery log (one delivery per webhook,
with an id in `X-Meshstep-Delivery` and the body, for a receiver to drop one it has had) and delivered by the
process's background thread; a failed try is retried with exponential backoff; every delivery and attempt is a line
of the log, and what is pending is read from it, so what an ended command left is delivered by the next one or by
`meshstep notify deliver`. A delivery that fails in the end never fails the change it tells of (that is recorded
already); the log says so."""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import platformdirs

from cluster.errors import MeshstepError

HOOKS_ENV, SECRET_ENV, LOG_ENV = "MESHSTEP_WEBHOOKS", "MESHSTEP_WEBHOOK_SECRET", "MESHSTEP_DELIVERY_LOG"
TIMESTAMP, SIGNATURE, DELIVERY = "X-Meshstep-Timestamp", "X-Meshstep-Signature", "X-Meshstep-Delivery"
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
    delivery: str = ""  # the delivery's id (X-Meshstep-Delivery): a receiver drops one it has had

    @property
    def final(self) -> bool:
        """Whether no try comes after this one: it arrived, or was refused (a 4xx other than 408 and 429 will not
        get better by retrying)."""
        return self.ok or self.status is not None and 400 <= self.status < 500 and self.status not in (408, 429)


@dataclass(frozen=True)
class Delivery:
    """One event for one webhook, queued: its body is fixed when queued; each attempt signs it afresh."""

    id: str
    url: str
    event: str
    body: str
    at: float


@dataclass(frozen=True)
class Standing:
    """Where one delivery stands, from the log: delivered, failed (refused, or out of tries) or pending (`due`:
    when its next try may start)."""

    delivery: Delivery
    attempts: tuple[Attempt, ...]
    state: str  # delivered | failed | pending
    due: float | None = None


@dataclass
class Notifier:
    """Queues each event for every webhook in the delivery log and delivers what is due, signed, retrying with
    backoff; the command that tells never waits for a receiver (`tell`)."""

    hooks: tuple[Webhook, ...]
    secret: bytes = field(repr=False)
    log: DeliveryLog
    retries: int = 3
    backoff: float = 0.5  # seconds before the first retry, doubled each time
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time

    @classmethod
    def from_env(cls, log: DeliveryLog | None = None) -> Notifier | None:
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

    def queue(self, event: str, payload: Mapping[str, Any]) -> list[Delivery]:
        """Note `event` in the delivery log for every webhook, to be delivered; nothing is sent here."""
        queued = []
        for hook in self.hooks:
            id_ = uuid.uuid4().hex
            body = hook.body(event, payload if hook.slack else {**payload, "delivery": id_})
            queued.append(Delivery(id_, hook.url, event, body.decode(), self.clock()))
            self.log.write({"type": "queued", **queued[-1].__dict__})
        return queued

    def send(self, event: str, payload: Mapping[str, Any]) -> list[Attempt]:
        """Queue `event` and deliver it now, retries and backoff included (`meshstep notify deliver`'s way); the
        attempts made."""
        ids = {d.id for d in self.queue(event, payload)}
        return [a for a in self.drain() if a.delivery in ids]

    def drain(self, stop: threading.Event | None = None) -> list[Attempt]:
        """Deliver every pending delivery, waiting out each backoff, until none is pending (or `stop` is set); the
        attempts made."""
        made: list[Attempt] = []
        while not (stop and stop.is_set()):
            tried = self.deliver_due()
            made += tried or []
            due = [s.due for s in self.pending()]
            if not due:
                break
            wait = self.backoff if tried is None else min(due) - self.clock()  # None: another process delivers
            if wait > 0:
                self.sleep(wait)
        return made

    def pending(self) -> list[Standing]:
        return [s for s in self.log.standings(self.retries, self.backoff) if s.state == "pending"]

    def deliver_due(self) -> list[Attempt] | None:
        """One try at each delivery that is due; None when another process is delivering from this log now (it
        delivers them: two never send one delivery at once)."""
        with self.log.delivering() as mine:
            if not mine:
                return None
            now = self.clock()
            return [self._try(s.delivery, len(s.attempts) + 1) for s in self.pending() if s.due <= now]

    def _try(self, d: Delivery, n: int) -> Attempt:
        body, ts = d.body.encode(), int(self.clock())
        request = urllib.request.Request(d.url, data=body, method="POST", headers={
            "Content-Type": "application/json", TIMESTAMP: str(ts), SIGNATURE: signature(self.secret, ts, body),
            DELIVERY: d.id})
        status, error = None, ""
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as r:
                status = r.status
        except urllib.error.HTTPError as e:
            status, error = e.code, f"HTTP {e.code} {e.reason}"
        except (OSError, ValueError) as e:
            error = str(getattr(e, "reason", None) or e)
        attempt = Attempt(d.url, d.event, n, status is not None and 200 <= status < 300, status, error, self.clock(),
                          d.id)
        self.log.write({"type": "attempt", **attempt.__dict__})
        return attempt


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
    """The deliveries and every attempt at them, one JSON line each appended to a file (MESHSTEP_DELIVERY_LOG, else
    deliveries.jsonl in the state directory): what was queued for where, each try and how it ended. What is still
    to deliver is read from it, so a delivery queued by a command that has ended is delivered by the next one."""

    path: str

    @classmethod
    def default(cls) -> DeliveryLog:
        path = os.environ.get(LOG_ENV) or str(platformdirs.user_state_path("meshstep", appauthor=False)
                                              / "deliveries.jsonl")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return cls(path)

    def write(self, record: Mapping[str, Any]) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def _records(self) -> list[dict[str, Any]]:
        try:
            with open(self.path) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def read(self) -> list[Attempt]:
        """Every attempt, in the order made."""
        return [Attempt(**{k: v for k, v in r.items() if k != "type"}) for r in self._records()
                if r.get("type", "attempt") == "attempt"]

    def standings(self, retries: int, backoff: float) -> list[Standing]:
        """Where each queued delivery stands, in the order queued: delivered or failed once an attempt was final
        or its `retries` are spent, else pending, due `backoff` × 2^(tries − 1) after its last try."""
        queued: dict[str, Delivery] = {}
        tries: dict[str, list[Attempt]] = {}
        for r in self._records():
            if r.get("type") == "queued":
                queued[r["id"]] = Delivery(**{k: v for k, v in r.items() if k != "type"})
            elif r.get("delivery"):
                tries.setdefault(r["delivery"], []).append(Attempt(**{k: v for k, v in r.items() if k != "type"}))
        out = []
        for id_, d in queued.items():
            made = tuple(tries.get(id_, ()))
            if made and made[-1].final or len(made) > retries:
                out.append(Standing(d, made, "delivered" if made[-1].ok else "failed"))
            else:
                out.append(Standing(d, made, "pending", made[-1].at + backoff * 2 ** (len(made) - 1) if made
                                    else d.at))
        return out

    @contextlib.contextmanager
    def delivering(self) -> Iterator[bool]:
        """Whether this process may deliver from the log now: an exclusive lock beside it, not waited for."""
        fd = os.open(self.path + ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)


# One background deliverer per process: the app's runs as long as there is something to deliver, retrying with
# backoff; a command's gets a moment at exit to end the try in flight, and what is left is delivered by the next
# command or `meshstep notify deliver`.
_deliverer: threading.Thread | None = None
_started, _wake, _stop = threading.Lock(), threading.Event(), threading.Event()
EXIT_GRACE = 1.0  # seconds a command's exit waits for a try in flight


def tell(event: str, summary: str, **facts: Any) -> None:
    """Queue `event` for the configured webhooks, if any, and have them delivered in the background: the change
    it tells of never waits for a receiver."""
    notifier = Notifier.from_env()
    if notifier is not None:
        notifier.queue(event, {"summary": summary, **facts})
        deliver_in_background(notifier)


def deliver_in_background(notifier: Notifier) -> threading.Thread:
    """The process's deliverer, started if none is running (else woken: something new is due)."""
    global _deliverer
    with _started:
        _wake.set()
        if _deliverer is None:
            notifier.sleep = _nap
            _deliverer = threading.Thread(target=_deliver, args=(notifier,), name="meshstep-webhooks", daemon=True)
            _deliverer.start()
        return _deliverer


def _nap(seconds: float) -> None:
    _wake.wait(seconds)
    _wake.clear()


def _deliver(notifier: Notifier) -> None:
    """Drain the log; end only when nothing is pending (checked under the lock `tell` starts a deliverer under, so
    that a delivery queued meanwhile is never left to no one)."""
    global _deliverer
    while True:
        _wake.clear()
        notifier.drain(_stop)
        with _started:
            if _stop.is_set() or not notifier.pending():
                _deliverer = None
                return


@atexit.register
def _at_exit() -> None:
    _stop.set()
    _wake.set()
    deliverer = _deliverer
    if deliverer is not None:
        deliverer.join(EXIT_GRACE)
