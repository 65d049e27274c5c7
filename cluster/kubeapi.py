"""Talking to a Kubernetes API server as kubectl and client-go do: the kubeconfig's credentials and connection pool
(the official client), what passes retried (a 5xx, a 429 after its Retry-After, a connection reset, an answer cut
short) with capped exponential backoff and jitter, all within one deadline, and what will not change (400, 401, 403,
404, 422 …) never retried. Errors are said in a Kubernetes user's words: the context and server, the resource, the
HTTP status and the server's own Status message; never a library's text."""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from cluster.errors import SourceError
from cluster.snapshot import FILE_LIMIT, Limit

# Every bound of a live read, each settable by its variable (the README lists them).
DEADLINE = Limit("MESHSTEP_READ_TIMEOUT", 300, "a live read may take in all", unit="seconds")
CONNECT_TIMEOUT = Limit("MESHSTEP_CONNECT_TIMEOUT", 5, "connecting to the API server may take", unit="seconds")
REQUEST_TIMEOUT = Limit("MESHSTEP_REQUEST_TIMEOUT", 60, "the API server may stay silent within one answer",
                        unit="seconds")
CONNECTIONS = 16  # to the API server at once, at most: a live read's lists and watches
ATTEMPTS = Limit("MESHSTEP_READ_ATTEMPTS", 8, "tries one request gets when what fails it passes", unit="tries")

# client-go's own backoff shape (wait.Backoff): each wait doubles from INITIAL up to CAP, and a random share of up
# to JITTER of it is added, so that many clients failed by one fault do not come back at the same instant.
BACKOFF_INITIAL, BACKOFF_CAP, BACKOFF_JITTER = 0.4, 10.0, 0.5
# Statuses that may pass: the server's own trouble (5xx, but 501 and 505 say it never will) and 429 (API Priority
# and Fairness shedding load, with a Retry-After). Every other 4xx is an answer: retrying cannot change it.
_NEVER_PASSES = {501, 505}

log = logging.getLogger("meshstep.kubeapi")


def kubeconfig_paths() -> str:
    """$KUBECONFIG (paths joined by os.pathsep, as kubectl takes them), else ~/.kube/config."""
    return os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")


def in_cluster(context: str | None) -> bool:
    """Whether a read without a named context uses the pod's service account, as kubectl in a pod does."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not context


def api_client(context: str | None) -> tuple[Any, str]:
    """The official client for a kubeconfig context (the current one when None), or in-cluster; and the user its
    credentials belong to, as a 401 names it."""
    from kubernetes import client, config

    cfg = client.Configuration()
    user = "the pod's service account"
    try:
        if in_cluster(context):
            config.load_incluster_config(client_configuration=cfg)
        else:
            # The client reads $KUBECONFIG once, at import; read it now, as kubectl would.
            path = kubeconfig_paths()
            config.load_kube_config(config_file=path, context=context, client_configuration=cfg,
                                    persist_config=False)
            contexts, current = config.list_kube_config_contexts(config_file=path)
            chosen = next((c for c in contexts if c.get("name") == context), current) if context else current
            user = f"kubeconfig user {((chosen or {}).get('context') or {}).get('user')!r}"
    except (config.ConfigException, OSError, ValueError) as e:
        raise SourceError(f"cannot load kubeconfig{f' context {context!r}' if context else ''}: {e}") from e
    # Retried here, above urllib3, where the deadline, the backoff and the messages are meshstep's; urllib3's own
    # errors come unwrapped.
    cfg.retries = False
    # A live read holds a connection for each list and each watch it runs at once (cluster.live: WORKERS and
    # WATCHES); the client's default of 5 per CPU would have urllib3 drop the extra ones, with a warning each.
    cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize, CONNECTIONS)
    return client.ApiClient(cfg), user


class ApiError(Exception):
    """A non-2xx answer, with the server's Status `reason` and `message` where it sent one."""

    def __init__(self, status: int, http_reason: str, reason: str, message: str, retry_after: str | None = None,
                 details: dict[str, Any] | None = None):
        super().__init__(status, message)
        self.status, self.http_reason, self.reason, self.message = status, http_reason, reason, message
        self.retry_after = retry_after  # the Retry-After header, as sent
        self.details = details or {}  # the Status' details: the object's name and kind, the causes of a conflict

    def __str__(self) -> str:
        said = f": {self.message}" if self.message else ""
        return f"HTTP {self.status} {self.http_reason}{said}"

    @property
    def passes(self) -> bool:
        return self.status == 429 or self.status >= 500 and self.status not in _NEVER_PASSES


class Failed(SourceError):
    """A request that failed for good: refused (an answer that will not change), or still failing when its tries
    or the read's time ran out. `why` is the short reason (the HTTP status and the server's message)."""

    def __init__(self, message: str, why: str, status: int | None = None):
        super().__init__(message)
        self.why, self.status = why, status


class TooLarge(SourceError):
    """An answer larger than an answer may be (FILE_LIMIT: MESHSTEP_MAX_FILE_MB)."""


class _Cut(Exception):
    """The connection failed mid-request in a way that may pass (reset, aborted, an answer cut short)."""


class ApiServer:
    """One API server as one read reaches it: GETs through the client, retried within the read's deadline."""

    def __init__(self, client: Any, where: str, user: str = "", progress: Callable[[], None] | None = None):
        self.client, self.where, self.user = client, where, user
        self.server = client.configuration.host
        self.started = time.monotonic()
        self.deadline = self.started + DEADLINE.value
        self.progress = progress or (lambda: None)
        self.retries = self.requests = self.bytes = 0
        self.lock = threading.Lock()

    @property
    def at(self) -> str:
        return f"{self.server} ({self.where})"

    def get(self, path: str, query: list[tuple[str, Any]], what: str, accept: str = "application/json") -> bytes:
        """The body of one GET, retried while what fails it may pass; `what` names the request in messages
        ("listing pods"). Raises Failed for an answer that will not change, and once the tries or the read's
        deadline are spent."""
        return self.request("GET", path, query, what, accept=accept)

    def request(self, method: str, path: str, query: list[tuple[str, Any]], what: str, body: Any = None,
                content_type: str | None = None, accept: str = "application/json",
                refuse: Callable[[ApiError, str], Exception] | None = None) -> bytes:
        """The body of one request that may be sent again (a GET, a server-side apply, a DELETE or PUT with its
        preconditions: each idempotent), retried as `get` is; `body` is sent as JSON (which is YAML too). An
        answer that will not change (409, 403, 422 …) raises `refuse(error, what)` (default: Failed)."""
        attempt = 1
        while True:
            try:
                return self._once(path, query, accept, what, method, body, content_type)
            except ApiError as e:
                if not e.passes:
                    raise (refuse or self.refused)(e, what) from None
                failure, wait = e, _retry_after(e)
            except _Cut as e:
                failure, wait = e, None
            status = failure.status if isinstance(failure, ApiError) else None
            if attempt >= ATTEMPTS.value:
                raise Failed(f"{what} on {self.at}: {failure}; still failing after {attempt} tries (raise "
                             f"{ATTEMPTS.env} to try longer)", str(failure), status) from None
            wait = wait if wait is not None else _backoff(attempt)
            if wait >= self.left():
                raise Failed(f"{what} on {self.at}: {failure}; no time left to try again within the read's "
                             f"{DEADLINE.value} s (allow more with {DEADLINE.env}=SECONDS)", str(failure),
                             status) from None
            with self.lock:
                self.retries += 1
            log.info("%s on %s: %s; try %d of %d in %.1f s", what, self.at, failure, attempt + 1, ATTEMPTS.value,
                     wait)
            self.progress()
            time.sleep(wait)
            attempt += 1

    def get_once(self, path: str, what: str) -> bytes:
        """The body of one GET, tried once (a caller with a way around an endpoint that does not answer: the pod
        proxy's debug endpoints). Raises Failed, for an answer that may pass too."""
        try:
            return self._once(path, [], "application/json", what)
        except ApiError as e:
            raise self.refused(e, what) from None
        except _Cut as e:
            raise Failed(f"{what} on {self.at}: {e}", str(e)) from None

    def refused(self, e: ApiError, what: str) -> Failed:
        """The error for an answer that will not change; a 401 says whose credentials failed."""
        if e.status == 401:
            return Failed(f"{what} on {self.at}: {e}: the credentials of {self.user or 'this client'} have expired "
                          "or are invalid: log in again (or renew the token) and retry", str(e), e.status)
        return Failed(f"{what} on {self.at}: {e}", str(e), e.status)

    def left(self) -> float:
        """Seconds left before the read's deadline; past it, the error that says so."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise SourceError(f"reading the cluster at {self.at} took longer than {DEADLINE.value} s "
                              f"({self.requests} answers, {self.bytes >> 20} MiB read so far): retry, or allow more "
                              f"with {DEADLINE.env}=SECONDS")
        return left

    def _once(self, path: str, query: list[tuple[str, Any]], accept: str, what: str = "", verb: str = "GET",
              body: Any = None, content_type: str | None = None) -> bytes:
        import http.client  # here, not at start-up: a command reading a snapshot or the cache never connects

        import urllib3

        sent = {"Accept": accept} | ({"Content-Type": content_type} if content_type else {})
        method, url, headers, _body, _post = self.client.param_serialize(
            verb, path, query_params=query, header_params=sent, auth_settings=["BearerToken"])
        left = self.left()
        try:
            resp = self.client.call_api(method, url, header_params=headers, body=body, _request_timeout=(
                min(CONNECT_TIMEOUT.value, left), min(REQUEST_TIMEOUT.value, left)))
            body = self._body(resp.response, what or path)
        except (urllib3.exceptions.ProtocolError, http.client.IncompleteRead, ConnectionResetError,
                BrokenPipeError) as e:
            raise _Cut(_cut_reason(e)) from None
        except urllib3.exceptions.ConnectTimeoutError:
            raise SourceError(f"cannot reach the Kubernetes API server at {self.at}: no connection within "
                              f"{CONNECT_TIMEOUT.value} s ({CONNECT_TIMEOUT.env})") from None
        except urllib3.exceptions.ReadTimeoutError:
            if self.deadline - time.monotonic() <= 0.05:
                self.left()
            raise SourceError(f"{what or path} on {self.at}: the server sent nothing for {REQUEST_TIMEOUT.value} s "
                              f"({REQUEST_TIMEOUT.env})") from None
        except urllib3.exceptions.SSLError as e:
            raise SourceError(f"cannot reach the Kubernetes API server at {self.at}: TLS failed: "
                              f"{_first_line(e.args[-1] if e.args else e)}") from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise SourceError(f"cannot reach the Kubernetes API server at {self.at}: {_network_reason(e)}") from None
        if not 200 <= resp.status < 300:
            raise _api_error(resp.status, resp.reason, body, resp.response.headers)
        with self.lock:
            self.requests += 1
        return body

    def _body(self, response: Any, what: str) -> bytes:
        """Read as it arrives (read1: whatever the socket has), against the deadline and the size limit (the error
        names `what` the answer is to: a list's page, a watch from a resourceVersion); an answer shorter than its
        Content-Length is cut."""
        body, size = [], 0
        while chunk := response.read1(1 << 16):
            body.append(chunk)
            size += len(chunk)
            if size > FILE_LIMIT.bytes:
                raise TooLarge(f"{what} on {self.at}: the answer is larger than the {FILE_LIMIT.value:,} "
                               f"{FILE_LIMIT.unit} one answer may be (raise it with {FILE_LIMIT.env}=N)")
            self.left()
            with self.lock:
                self.bytes += len(chunk)
            self.progress()
        expected = response.headers.get("Content-Length")
        if expected and expected.isdigit() and size < int(expected):
            raise _Cut(f"the answer was cut short ({size:,} of {int(expected):,} bytes)")
        response.release_conn()
        return b"".join(body)


def _api_error(status: int, http_reason: str | None, body: bytes, headers: Any) -> ApiError:
    """The server's Status (reason, message) from an error answer, else the first line of what it sent."""
    reason = message = ""
    details: dict[str, Any] = {}
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and doc.get("kind") == "Status":
        reason, message = str(doc.get("reason") or ""), str(doc.get("message") or "")
        details = doc.get("details") if isinstance(doc.get("details"), dict) else {}
    elif body.strip():
        message = _first_line(body.decode("utf-8", "replace"))
    return ApiError(status, http_reason or "", reason, message, headers.get("Retry-After"), details)


def _retry_after(e: ApiError) -> float | None:
    """The seconds a Retry-After asks for (client-go reads the seconds form, as API servers send it)."""
    raw = e.retry_after
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None


def _backoff(attempt: int) -> float:
    wait = min(BACKOFF_CAP, BACKOFF_INITIAL * 2 ** (attempt - 1))
    return wait * (1 + BACKOFF_JITTER * random.random())


def _first_line(text: Any) -> str:
    line = next((s.strip() for s in str(text).splitlines() if s.strip()), "")
    return "".join(c if c.isprintable() else " " for c in line)[:300]


def _cut_reason(e: BaseException) -> str:
    """A dropped connection in a person's words: urllib3 wraps the OS's reason in tuples and reprs."""
    import http.client

    import urllib3

    inner: BaseException | None = e
    while isinstance(inner, urllib3.exceptions.ProtocolError) and len(inner.args) > 1 and \
            isinstance(inner.args[1], BaseException):
        inner = inner.args[1]
    if isinstance(inner, (http.client.IncompleteRead, urllib3.exceptions.IncompleteRead)) or \
            "IncompleteRead" in str(e):
        return "the answer was cut short (the connection closed mid-answer)"
    if isinstance(inner, (ConnectionResetError, BrokenPipeError)):
        return "the connection was reset"
    if isinstance(inner, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    return "the connection was aborted"


def _network_reason(e: BaseException) -> str:
    """Why a connection could not be made, without urllib3's pool and object reprs."""
    text = str(getattr(e, "reason", None) or e)
    for known in ("Connection refused", "Name or service not known", "No route to host", "Network is unreachable",
                  "Temporary failure in name resolution", "nodename nor servname provided"):
        if known in text:
            return known.lower() if known != "Connection refused" else "connection refused"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return _first_line(text.split(": ", 1)[-1]) or type(e).__name__
