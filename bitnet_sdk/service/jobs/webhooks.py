"""Job webhooks: Standard Webhooks signatures, delivery with retries, and an SSRF guard.

**What is sent.** When a job with a ``webhook_url`` ends, one delivery is queued (a
:class:`~bitnet_sdk.store.models.WebhookDelivery` row, in the job's final transaction): a
``POST`` of ``{"type": "job.succeeded" | "job.failed" | "job.cancelled", "timestamp": …,
"data": <Job>}`` signed as the Standard Webhooks specification says
(https://www.standardwebhooks.com/)::

    webhook-id: msg_<job id>                 (the same on every retry: deduplicate on it)
    webhook-timestamp: <unix seconds of this attempt>
    webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>

where ``key`` is the base64-decoded part of the job's secret ``whsec_<base64>``: the client's
``webhook_secret`` or, when it gave none, one the server generated and returned once in the
response that created the job.

**Retries.** Any answer but 2xx (or no answer) is retried on :data:`DEFAULT_RETRY_DELAYS_S`,
the Standard Webhooks schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts over
about 27 hours). ``410 Gone`` stops at once. Redirects are not followed (a redirect could lead
to an address the guard would refuse); they count as failures.

**SSRF guard.** Unless ``Settings.webhook_allow_private``, a URL is refused when its host
resolves to any loopback, private, link-local, reserved, multicast, unspecified or otherwise
non-global address (IPv4-mapped IPv6 addresses are checked as IPv4). The check runs when the
job is created (the API answers 422) *and* at every delivery, and the delivery connects to the
very address that was checked (the host name still goes in ``Host`` and TLS SNI/verification),
so a DNS answer that changes in between cannot redirect it.

**Who delivers.** :class:`WebhookDispatcher`, a background thread in every server and
``bitnet worker`` process; deliveries are claimed with a short lease (``next_attempt_at``
pushed forward) so several processes never send the same attempt twice.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from bitnet_sdk.service.jobs.views import job_view, utc_iso
from bitnet_sdk.store import WebhookDelivery, is_postgres, resolve, write_transaction
from bitnet_sdk.store.fields import utcnow
from bitnet_sdk.store.models import Job

__all__ = [
    "DEFAULT_RETRY_DELAYS_S",
    "SECRET_PREFIX",
    "UnsafeWebhookUrl",
    "WebhookDispatcher",
    "check_url",
    "enqueue",
    "generate_secret",
    "parse_secret",
    "sign",
]

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
#: Seconds to wait after each failed attempt (Standard Webhooks' recommended schedule).
DEFAULT_RETRY_DELAYS_S: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
_SECRET_BYTES = 32
_USER_AGENT = "bitnet-sdk-webhooks/1"


class UnsafeWebhookUrl(ValueError):
    """The URL is malformed, does not resolve, or points at a refused address.

    ``str(exc)`` is for the client and never says what the host resolves to;
    ``operator_detail`` does, for the delivery record and the log.
    """

    def __init__(self, message: str, operator_detail: str | None = None) -> None:
        super().__init__(message)
        self.operator_detail = operator_detail or message


# -- secrets and signatures ----------------------------------------------------------------


def generate_secret() -> str:
    """A fresh ``whsec_<base64 of 32 random bytes>`` secret."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode("ascii")


def parse_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; ``ValueError`` unless it holds 24 to 64 bytes."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a webhook secret is whsec_ followed by standard base64") from exc
    if not 24 <= len(key) <= 64:
        raise ValueError("a webhook secret's key must be 24 to 64 bytes long")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256>`` of ``id.timestamp.body``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(parse_secret(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


# -- the address guard ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


#: The refusal of a URL whose host does not resolve to public addresses only.
_NOT_ALLOWED = ("the webhook URL is not allowed: its host must resolve, and only to public "
                "addresses")


def _refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _refused(ip.ipv4_mapped)
    return (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_reserved
            or ip.is_multicast or ip.is_unspecified or not ip.is_global)


def _target(url: str, allow_private: bool, *, resolve_host: bool) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeWebhookUrl(f"invalid webhook URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeWebhookUrl("a webhook URL is http:// or https:// with a host")
    port = port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not resolve_host:
        return _Target(parts.scheme, parts.hostname, port, path, ())
    # One message for every refusal that depends on DNS: naming what a host resolves to (or
    # that it does not resolve) would make this guard an oracle for the server's network.
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UnsafeWebhookUrl(_NOT_ALLOWED, f"{parts.hostname!r} does not resolve") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
    if not allow_private:
        bad = [a for a in addresses if _refused(ipaddress.ip_address(a))]
        if bad:
            raise UnsafeWebhookUrl(_NOT_ALLOWED, f"{parts.hostname!r} resolves to the "
                                                 f"non-public address {bad[0]}")
    if not addresses:
        raise UnsafeWebhookUrl(_NOT_ALLOWED, f"{parts.hostname!r} has no address")
    return _Target(parts.scheme, parts.hostname, port, path, addresses)


def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse (:class:`UnsafeWebhookUrl`) a URL webhooks must not go to. Blocking (DNS).

    With ``allow_private`` only the form is checked: the host need not resolve yet.
    """
    _target(url, allow_private, resolve_host=not allow_private)


# -- queueing --------------------------------------------------------------------------------


def enqueue(job: Job, event_type: str, at: datetime) -> WebhookDelivery:
    """Queue the delivery of ``job``'s final state (call in the transaction that ends it)."""
    payload = {"type": event_type, "timestamp": utc_iso(at), "data": job_view(job, "finished")}
    return WebhookDelivery.create(job=job.id, url=job.webhook_url, event=event_type,
                                  payload=payload, next_attempt_at=at)


# -- delivering ------------------------------------------------------------------------------


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to a checked address, with the URL's host name in ``Host``."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a checked address; the certificate is verified against the host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def post(url: str, body: bytes, headers: dict[str, str], *, allow_private: bool,
         timeout_s: float = 10.0) -> int:
    """POST ``body`` to ``url`` (guard checked now, address pinned); returns the status code.

    Raises :class:`UnsafeWebhookUrl` for a refused URL and ``OSError`` /
    ``http.client.HTTPException`` when no answer came.
    """
    target = _target(url, allow_private, resolve_host=True)
    last: Exception | None = None
    for address in target.addresses:
        conn_type = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
        conn = conn_type(target.host, target.port, address, timeout_s)
        try:
            conn.request("POST", target.path, body=body, headers=headers)
            response = conn.getresponse()
            response.read(64 * 1024)  # a little of the body, then close: we only need the status
            return int(response.status)
        except OSError as exc:  # this address is unreachable: try the next one
            last = exc
        finally:
            conn.close()
    assert last is not None
    raise last


def _headers(delivery: WebhookDelivery, secret: str | None, body: bytes) -> dict[str, str]:
    msg_id = f"msg_{delivery.job_id.removeprefix('job_')}"
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT,
               "webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if secret:
        headers["webhook-signature"] = sign(secret, msg_id, timestamp, body)
    return headers


class WebhookDispatcher:
    """Background thread delivering due webhooks; see the module docstring.

    ``retry_delays_s`` may be changed while it runs (it is read at every failure).
    :meth:`run_once` delivers what is due now and is usable without the thread.
    """

    def __init__(self, *, allow_private: bool, retry_delays_s: Sequence[float] = DEFAULT_RETRY_DELAYS_S,
                 timeout_s: float = 10.0, poll_s: float = 2.0, batch: int = 10) -> None:
        self.allow_private = allow_private
        self.retry_delays_s = tuple(retry_delays_s)
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.batch = batch
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="bitnet-webhooks", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    sent = self.run_once()
                except Exception:
                    log.exception("webhook dispatch failed")
                    sent = 0
                if not sent:
                    self._wake.wait(self.poll_s)
                    self._wake.clear()
        finally:
            resolve().close()  # this thread's connection

    def run_once(self, now: float | None = None) -> int:
        """Attempt every delivery due at ``now``; returns how many were attempted. Blocking."""
        claimed = self._claim(now)
        for delivery in claimed:
            self._attempt(delivery)
        return len(claimed)

    def _claim(self, now: float | None) -> list[WebhookDelivery]:
        at = utcnow(now)
        # Held while being sent; if this process dies meanwhile, it is due again after that.
        hold = timedelta(seconds=max(60.0, 4 * self.timeout_s))
        with write_transaction():
            query = (WebhookDelivery.select()
                     .where(WebhookDelivery.status == "pending",
                            WebhookDelivery.next_attempt_at <= at)
                     .order_by(WebhookDelivery.next_attempt_at).limit(self.batch))
            if is_postgres():
                query = query.for_update("FOR UPDATE SKIP LOCKED")
            rows = list(query)
            for row in rows:
                row.attempt += 1
                row.next_attempt_at = at + hold
                row.save()
        return rows

    def _attempt(self, delivery: WebhookDelivery) -> None:
        job = Job.get_or_none(Job.id == delivery.job_id)
        secret = (job.params or {}).get("webhook_secret") if job is not None else None
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        code: int | None = None
        error: str | None = None
        try:
            code = post(delivery.url, body, _headers(delivery, secret, body),
                        allow_private=self.allow_private, timeout_s=self.timeout_s)
        except UnsafeWebhookUrl as exc:
            self._record(delivery, "failed", None, exc.operator_detail)
            return
        except (OSError, http.client.HTTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
        if code is not None and 200 <= code < 300:
            self._record(delivery, "delivered", code, None)
        elif code == 410:
            self._record(delivery, "failed", code, "the receiver answered 410 Gone")
        else:
            self._retry(delivery, code, error or f"the receiver answered {code}")

    def _retry(self, delivery: WebhookDelivery, code: int | None, error: str) -> None:
        delays = self.retry_delays_s
        if delivery.attempt > len(delays):
            self._record(delivery, "failed", code, error)
            return
        delivery.next_attempt_at = utcnow() + timedelta(seconds=delays[delivery.attempt - 1])
        self._record(delivery, "pending", code, error)

    @staticmethod
    def _record(delivery: WebhookDelivery, status: str, code: int | None, error: str | None) -> None:
        delivery.status, delivery.response_code, delivery.last_error = status, code, error
        if status == "delivered":
            delivery.delivered_at = utcnow()
        delivery.save()
        level = logging.INFO if status != "pending" else logging.WARNING
        log.log(level, "webhook %s for job %s: %s (attempt %d, %s)", delivery.event,
                delivery.job_id, status, delivery.attempt, code or error,
                extra={"job_id": delivery.job_id, "attempt": delivery.attempt})

