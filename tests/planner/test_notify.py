"""Signed webhooks (planner.notify) against a receiver on loopback that verifies every request with
notify.Receiver: signed deliveries arrive; a captured request sent again is refused as a replay, a forged body and
a stale timestamp too; a receiver that is down gets retries with backoff, each attempt in the delivery log; the plan
engine tells the webhooks of a stage's move and of a stage waiting for approval."""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import planner.plan
from app.cli import main
from cluster.errors import MeshstepError
from cluster.inventory import build_inventory
from cluster.sources import load_snapshot
from planner import approvals, moves, notify, stages
from planner.notify import DELIVERY, SIGNATURE, TIMESTAMP, DeliveryLog, Notifier, Receiver, Webhook
from state.store import Store

SECRET = b"0123456789abcdef-shared"


@pytest.fixture
def receiver() -> Iterator[tuple[str, list]]:
    """An HTTP receiver on loopback: 204 for a verified request, 401 with the reason otherwise."""
    check, got = Receiver(SECRET), []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            refused = check.check(dict(self.headers.items()), body)
            got.append((dict(self.headers.items()), body, refused))
            self.send_response(401 if refused else 204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", got
    finally:
        server.shutdown()
        server.server_close()


class Clock:
    """Time that passes only when slept: each wait is recorded, and a retry is due exactly when waited for."""

    def __init__(self, delays: list[float]) -> None:
        self.now, self.delays = time.time(), delays  # the receiver checks timestamps against its own clock

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.now += seconds


def _notifier(urls: list[str], log: DeliveryLog, delays: list[float]) -> Notifier:
    clock = Clock(delays)
    return Notifier(tuple(Webhook.parse(u) for u in urls), SECRET, log, retries=3, backoff=0.5, sleep=clock.sleep,
                    clock=clock)


def _post(url: str, headers: dict, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_a_signed_delivery_arrives_and_its_replay_is_refused(receiver, tmp_path: Path) -> None:
    url, got = receiver
    log, delays = DeliveryLog(str(tmp_path / "deliveries.jsonl")), []
    attempts = _notifier([url], log, delays).send("stage.transition", {"summary": "stage 2 ready", "stage": 2})
    assert [(a.ok, a.status, a.attempt) for a in attempts] == [(True, 204, 1)] and delays == []
    headers, body, refused = got[0]
    assert refused is None and b'"event":"stage.transition"' in body
    # The same request again, as an attacker who captured it would send it.
    sent = {TIMESTAMP: headers[TIMESTAMP], SIGNATURE: headers[SIGNATURE], "Content-Type": "application/json"}
    assert _post(url, sent, body) == 401 and got[-1][2] == "replayed"
    assert _post(url, sent, body.replace(b"stage 2", b"stage 9")) == 401 and got[-1][2] == "bad signature"
    old = Receiver(SECRET, clock=lambda: int(headers[TIMESTAMP]) + 301)
    assert old.check(headers, body) == "stale timestamp"
    assert Receiver(b"another secret, wrong").check(headers, body) == "bad signature"
    assert [(a.url, a.ok) for a in log.read()] == [(url, True)]


def test_a_receiver_that_is_down_gets_retries_with_backoff_and_the_log_says_so(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}/hook"  # nothing listens once the socket closes
    log, delays = DeliveryLog(str(tmp_path / "deliveries.jsonl")), []
    attempts = _notifier([down], log, delays).send("gate.failed", {"summary": "stage 3 blocked"})
    assert [a.attempt for a in attempts] == [1, 2, 3, 4] and not any(a.ok for a in attempts)
    assert delays == [0.5, 1.0, 2.0]
    logged = log.read()
    assert [(a.attempt, a.ok) for a in logged] == [(1, False), (2, False), (3, False), (4, False)]
    assert all("refused" in a.error.lower() for a in logged), logged[0].error


def test_a_refusing_receiver_is_not_retried_and_slack_gets_text(receiver, tmp_path: Path) -> None:
    url, got = receiver
    log, delays = DeliveryLog(str(tmp_path / "d.jsonl")), []
    clock = Clock(delays)
    wrong = Notifier((Webhook.parse(url + "?slack=1"),), b"not the receiver's secret", log, sleep=clock.sleep,
                     clock=clock)
    [attempt] = wrong.send("approval.needed", {"summary": "stage 4 needs 2 approvals"})
    assert (attempt.ok, attempt.status, delays) == (False, 401, [])
    assert got[-1][1] == b'{"text":"meshstep approval.needed: stage 4 needs 2 approvals"}'


def test_webhooks_need_a_secret(monkeypatch) -> None:
    monkeypatch.setenv("MESHSTEP_WEBHOOKS", "https://hooks.example.com/a")
    monkeypatch.delenv("MESHSTEP_WEBHOOK_SECRET", raising=False)
    with pytest.raises(MeshstepError, match="always signed"):
        Notifier.from_env(print)
    with pytest.raises(MeshstepError, match="not an http"):
        Webhook.parse("ftp://x")


def test_the_engine_tells_the_webhooks_of_a_move_and_of_a_stage_waiting_for_approval(receiver, tmp_path,
                                                                                     monkeypatch) -> None:
    url, got = receiver
    monkeypatch.setenv("MESHSTEP_WEBHOOKS", url)
    monkeypatch.setenv("MESHSTEP_WEBHOOK_SECRET", SECRET.decode())
    monkeypatch.setenv("MESHSTEP_DELIVERY_LOG", str(tmp_path / "deliveries.jsonl"))
    demo = build_inventory(load_snapshot("demo"))
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        approvals.set_policy(store, "prod", approvals.Policy.make(1, False, [], "UTC"), "ada", "four eyes")
        plan = stages.create(store, "prod", demo, "custom", None, "p", "alice")
        stages.add_stage(store, store.get_plan(plan.id), demo, "metrics", "",
                         [planner.plan.Step("metrics", "payments")], "alice")
        moves.advance(store, store.get_plan(plan.id), demo, "bob")
    finally:
        store.close()
    log = DeliveryLog(str(tmp_path / "deliveries.jsonl"))
    _until(lambda: _states(log) == ["delivered", "delivered"], "both deliveries")  # in the background
    sent = [json.loads(body) for _headers, body, refused in got if refused is None]
    assert len(sent) == len(got) == 2
    assert [(d["event"], d["stage"], d["status"]) for d in sent] == [("stage.transition", 1, "ready"),
                                                                   ("approval.needed", 1, "ready")]
    assert sent[1]["summary"].startswith("stage 1 (metrics) of plan p on prod waits for approval: stage 1 (metrics) "
                                         "cannot be applied: 0 of 1 approvals")
    assert [a.event for a in DeliveryLog(str(tmp_path / "deliveries.jsonl")).read()] == ["stage.transition",
                                                                                          "approval.needed"]


def _until(done, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def _webhooks(monkeypatch, url: str, log: Path) -> DeliveryLog:
    monkeypatch.setenv("MESHSTEP_WEBHOOKS", url)
    monkeypatch.setenv("MESHSTEP_WEBHOOK_SECRET", SECRET.decode())
    monkeypatch.setenv("MESHSTEP_DELIVERY_LOG", str(log))
    return DeliveryLog(str(log))


def _states(log: DeliveryLog) -> list[str]:
    return [s.state for s in log.standings(3, 0.5)]


def test_a_command_does_not_wait_for_a_receiver_that_hangs(monkeypatch, tmp_path: Path) -> None:
    """tell() returns while its request is still held by the receiver: the delivery is in the background."""
    arrived, release = threading.Event(), threading.Event()

    class Hanging(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            arrived.set()
            release.wait(20)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hanging)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        log = _webhooks(monkeypatch, f"http://127.0.0.1:{server.server_port}/hook", tmp_path / "d.jsonl")
        notify.tell("stage.transition", "stage 1 ready")
        assert _states(log) == ["pending"]  # queued, in the log, before anything was sent
        _until(arrived.is_set, "the request reaches the receiver")
        assert _states(log) == ["pending"] and not release.is_set()  # tell has returned; the request is in flight
        release.set()
        _until(lambda: _states(log) == ["delivered"], "the delivery is logged as delivered")
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_a_receiver_down_then_up_gets_the_delivery_and_the_log_says_so(monkeypatch, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there until the receiver comes up below
    log = _webhooks(monkeypatch, f"http://127.0.0.1:{port}/hook", tmp_path / "d.jsonl")
    notify.tell("gate.failed", "stage 3 blocked", stage=3)
    _until(lambda: log.read(), "the first try")
    assert [(a.attempt, a.ok) for a in log.read()] == [(1, False)] and "refused" in log.read()[0].error.lower()
    assert _states(log) == ["pending"]
    check, got = Receiver(SECRET), []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((dict(self.headers.items()), body, check.check(dict(self.headers.items()), body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _until(lambda: _states(log) == ["delivered"], "the retry after the receiver came up")
    finally:
        server.shutdown()
        server.server_close()
    tries = log.read()
    assert [a.ok for a in tries] == [False] * (len(tries) - 1) + [True] and len(tries) >= 2
    [(headers, body, refused)] = got
    assert refused is None and json.loads(body)["delivery"] == headers[DELIVERY] == tries[-1].delivery


def test_notify_deliver_delivers_what_an_ended_command_left(receiver, monkeypatch, tmp_path: Path) -> None:
    url, got = receiver
    log = _webhooks(monkeypatch, url, tmp_path / "d.jsonl")
    [left] = Notifier.from_env().queue("stage.rollback", {"summary": "stage 2 rolled back"})  # queued, never sent
    assert not got and _states(log) == ["pending"]
    assert main(["notify", "deliver"]) == 0
    assert _states(log) == ["delivered"] and [json.loads(b)["delivery"] for _, b, r in got if r is None] == [left.id]
    assert main(["notify", "deliver"]) == 0 and len(got) == 1  # delivered once, never again
