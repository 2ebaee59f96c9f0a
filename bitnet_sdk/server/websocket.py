"""``/v1/inference/ws``: token streaming over one WebSocket (the spec's ``x-websockets``).

Tornado serves this route itself, before the ASGI catch-all, so Connexion never
sees it: this handler applies the same authentication (``resolve_credentials``:
JWT access token or API key, scope ``inference``), the same hourly rate limit
(every message after authentication counts one request; ``generate`` is metered
by the inference service, every other message gets its own usage record) and
the same inference service as ``POST /v1/inference/stream``.

Protocol (JSON text frames; schemas ``WsClientMessage`` / ``WsServerMessage``):

* Authenticate with ``Sec-WebSocket-Protocol: bearer, <token>`` (answered with
  the ``bearer`` subprotocol; browsers cannot set headers on the handshake) or
  a first ``{"type": "auth", "token": ...}`` within 10 s; the server answers
  ``ready``. A later ``auth`` message replaces the credential (renew a JWT
  without reconnecting). Credentials are checked again at every message and
  every ``Settings.ws_credential_recheck_s`` while the socket is open: a revoked
  API key, a disabled account or an expired token closes it (4401), so job
  progress stops too. One user may hold ``Settings.ws_max_connections_per_user``
  authenticated sockets across all server processes sharing the database
  (:class:`SocketRegistry`); one more is closed with 4429.
* ``generate`` starts a generation tagged with the client's ``request_id``;
  ``token`` messages follow as tokens are sampled, then ``done``. Up to
  :data:`MAX_GENERATIONS` run at once per connection.
* ``cancel`` stops one: it ends with ``done`` and ``finish_reason: cancelled``.
* ``subscribe`` to a job the credential may see (its owner's, or any for an
  administrator; ``quantize`` jobs need the ``quantize`` scope): a ``progress``
  message with the job now, then one per change until it is final (changes
  made by this process arrive at once, those of ``bitnet worker`` processes
  within :data:`JOB_POLL_S`). ``unsubscribe`` stops that.
* Problems with one message or generation are ``error`` messages carrying a
  problem (status 400 invalid message, 403 scope, 404/409/422 as over HTTP,
  429 rate limit or too many generations or subscriptions): the same body
  HTTP answers for the same :class:`~bitnet_sdk.service.errors.ApiError`
  (:func:`error_message`). An error that ends the connection closes it with
  :func:`close_code`: 1008 (not JSON, unknown type), 4401 (credentials), 4403
  (scope), 4429 (too many open connections for the user).
  Closing the connection cancels its generations and subscriptions.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import tornado.websocket
from tornado.ioloop import IOLoop

from bitnet_sdk.auth.credentials import resolve_credentials
from bitnet_sdk.auth.principal import Principal, token_scopes
from bitnet_sdk.server import json_body
from bitnet_sdk.server.asgi.refusals import ProblemErrors
from bitnet_sdk.server.context import AppContext, activated
from bitnet_sdk.server.json_body import request_validator
from bitnet_sdk.server.ratelimit_middleware import consume_request
from bitnet_sdk.server.spec import load_spec
from bitnet_sdk.service.accounting import live_sockets, usage
from bitnet_sdk.service.errors import ApiError, conflict, forbidden

__all__ = [
    "AUTH_TIMEOUT_S",
    "CLOSE_CODES",
    "JOB_POLL_S",
    "MAX_GENERATIONS",
    "MAX_SUBSCRIPTIONS",
    "WS_PATH",
    "InferenceSocket",
    "close_code",
    "error_message",
    "routes",
]

log = logging.getLogger(__name__)

WS_PATH = "/v1/inference/ws"
#: Seconds a connection without subprotocol credentials has to send ``auth``.
AUTH_TIMEOUT_S = 10.0
#: Generations one connection may run at once.
MAX_GENERATIONS = 4
#: Jobs one connection may follow at once.
MAX_SUBSCRIPTIONS = 32
#: Seconds between database reads for job changes made by other processes.
JOB_POLL_S = 1.0
_MESSAGE_SCHEMAS = {
    "auth": "WsAuthMessage",
    "generate": "WsGenerateMessage",
    "cancel": "WsCancelMessage",
    "subscribe": "WsSubscribeMessage",
    "unsubscribe": "WsUnsubscribeMessage",
}
#: ``WsRequestId``: an invalid id is not echoed back.
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_SCOPES = ("models:read", "models:write", "quantize", "inference", "account", "admin", "metrics")


def routes(ctx: AppContext) -> list[tuple[str, type, dict[str, Any]]]:
    """Tornado routes for ``bitnet_sdk.server.run.websocket_routes``."""
    return [(WS_PATH, InferenceSocket, {"ctx": ctx, "registry": SocketRegistry()})]


class SocketRegistry:
    """The authenticated sockets of one app, each holding a place in its user's connection cap.

    The places are rows in the database (:mod:`bitnet_sdk.service.accounting.live_sockets`),
    so the cap holds across every server process; this process renews its rows while the
    sockets live and frees a place when its socket closes.
    """

    def __init__(self) -> None:
        self._rows: dict[InferenceSocket, tuple[str, str]] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def add(self, user_id: str, socket: InferenceSocket, cap: int) -> bool:
        """Count ``socket`` for ``user_id`` (moving it if it held another user's place);
        False when the user already holds ``cap`` sockets on any process."""
        held = self._rows.get(socket)
        if held is not None and held[0] == user_id:
            return True
        row = await asyncio.to_thread(live_sockets.open_socket, user_id, cap)
        if row is None:
            return False
        if held is not None:
            await asyncio.to_thread(live_sockets.close, held[1])
        self._rows[socket] = (user_id, row)
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew())
        return True

    def remove(self, socket: InferenceSocket) -> None:
        """``socket`` closed: free its place (in the background)."""
        held = self._rows.pop(socket, None)
        if held is not None:
            task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(live_sockets.close, held[1]))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _renew(self) -> None:
        while self._rows:
            await asyncio.sleep(live_sockets.RENEW_S)
            try:
                await asyncio.to_thread(live_sockets.renew, [r for _, r in self._rows.values()])
            except Exception:  # the database is away: the rows expire, sockets live on
                log.exception("could not renew the WebSocket connection count")


@functools.lru_cache(maxsize=1)
def _validators() -> dict[str, Any]:
    """One validator per client message type, from the spec (OpenAPI 3.0 ``nullable`` aware)."""
    spec = load_spec()
    return {kind: request_validator(_resolve(spec, spec["components"]["schemas"][name]))
            for kind, name in _MESSAGE_SCHEMAS.items()}


def _resolve(spec: dict[str, Any], node: Any) -> Any:
    """``node`` with its local ``#/...`` references replaced by their targets."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = spec
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return _resolve(spec, target)
        return {k: _resolve(spec, v) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(spec, v) for v in node]
    return node


#: The close code for an error that ends the connection, by its status (else 1008).
CLOSE_CODES = {401: 4401, 403: 4403, 429: 4429}


def close_code(error: ApiError) -> int:
    """The WebSocket close code for ``error``: 4000 + its status for credentials, scope and
    connection caps, 1008 (policy violation) for anything else."""
    return CLOSE_CODES.get(error.status, 1008)


def error_message(request_id: str | None, error: ApiError,
                  inference_id: str | None = None) -> dict[str, Any]:
    """The ``error`` message for ``error``: its problem, tagged with the client's request id."""
    return {"type": "error", "request_id": request_id, "error": error.problem(inference_id)}


@dataclass
class _Generation:
    request_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    task: asyncio.Task[None] | None = None


class InferenceSocket(ProblemErrors, tornado.websocket.WebSocketHandler):
    """One client connection; see the module docstring for the protocol."""

    def initialize(self, ctx: AppContext, registry: SocketRegistry) -> None:
        self.ctx = ctx
        self._registry = registry
        self._token: str | None = None
        self._info: dict[str, Any] | None = None
        self._generations: dict[str, _Generation] = {}
        self._subscriptions: dict[str, asyncio.Task[None]] = {}
        self._auth_timer: object | None = None
        self._recheck: asyncio.Task[None] | None = None
        #: Status of the message being handled (its usage record's status code).
        self._status = 200

    def check_origin(self, origin: str) -> bool:
        # Credentials travel in the protocol, never in cookies: no cross-site request to forge.
        return True

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        if subprotocols and subprotocols[0] == "bearer":
            if len(subprotocols) > 1:
                self._token = subprotocols[1]
            return "bearer"
        return None

    async def open(self, *args: str, **kwargs: str) -> None:
        if self._token is not None:
            await self._authenticate(self._token)
        else:
            self._auth_timer = IOLoop.current().call_later(AUTH_TIMEOUT_S, self._auth_timeout)

    def on_close(self) -> None:
        self._stop_auth_timer()
        if self._recheck is not None:
            self._recheck.cancel()
        self._registry.remove(self)
        for generation in list(self._generations.values()):
            generation.cancel.set()
            if generation.task is not None:
                generation.task.cancel()
        for task in list(self._subscriptions.values()):
            task.cancel()

    async def on_message(self, message: str | bytes) -> None:
        try:
            msg = json_body.loads(message)
        except json_body.JSONRejected as exc:
            self._refuse(ApiError(400, "Bad Request", f"messages must be JSON text: {exc}"))
            return
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind not in _MESSAGE_SCHEMAS:
            self._refuse(ApiError(400, "Bad Request", "unknown message type"))
            return
        if self._info is None and kind != "auth":
            self._refuse(_unauthorized("authenticate first"))
            return
        errors = [f"{'/'.join(map(str, e.absolute_path)) or '(message)'}: {e.message}"
                  for e in _validators()[kind].iter_errors(msg)]
        if errors:
            rid = msg.get("request_id")
            rid = rid if isinstance(rid, str) and _REQUEST_ID.fullmatch(rid) else None
            self._error(rid, ApiError(400, "Bad Request", "The message does not match its "
                                      "schema.", slug="bad-request",
                                      errors=[{"field": "message", "message": e}
                                              for e in errors[:10]]))
            return
        if self._info is None:
            await self._on_auth(msg)
            return
        await self._metered(kind, msg)

    async def _metered(self, kind: str, msg: dict[str, Any]) -> None:
        """Handle one message of an authenticated client: credential, budget, usage."""
        if kind != "auth" and not await self._authenticate_again():
            return
        if not await self._consume_rate_limit(msg.get("request_id")):
            return
        self._status = 200
        await getattr(self, f"_on_{kind}")(msg)
        if kind != "generate" and self._info is not None:  # the inference service meters those
            await asyncio.to_thread(usage.record_usage, str(self._info["sub"]),
                                    _OPERATIONS[kind], status_code=self._status)

    # -- authentication ---------------------------------------------------------------

    async def _on_auth(self, msg: dict[str, Any]) -> None:
        await self._authenticate(msg["token"])

    async def _authenticate(self, token: str) -> bool:
        info = await self._credentials(token)
        if info is None:
            self._refuse(_unauthorized("missing, invalid or expired credentials"))
            return False
        scopes = token_scopes(info)
        if "inference" not in scopes:
            self._refuse(forbidden("the credential lacks the inference scope"))
            return False
        if not await self._register(str(info["sub"])):
            return False
        self._stop_auth_timer()
        self._token, self._info = token, info
        if self._recheck is None:
            self._recheck = asyncio.get_running_loop().create_task(self._recheck_loop())
        self._send({"type": "ready", "user_id": info["sub"],
                    "scopes": [s for s in scopes if s in _SCOPES]})
        return True

    async def _register(self, user_id: str) -> bool:
        """Count this socket against ``user_id``'s cap (moving it when ``auth`` changes user)."""
        cap = self.ctx.settings.ws_max_connections_per_user
        if not await self._registry.add(user_id, self, cap):
            self._refuse(ApiError(429, "Too Many Requests",
                                  f"at most {cap} open connections per user"))
            return False
        return True

    async def _recheck_loop(self) -> None:
        """Close the socket once its credential stops being valid, even when it is silent."""
        while self._info is not None:
            await asyncio.sleep(max(0.1, self.ctx.settings.ws_credential_recheck_s))
            if not await self._authenticate_again():
                return

    async def _credentials(self, token: str) -> dict[str, Any] | None:
        def resolve() -> dict[str, Any] | None:
            with activated(self.ctx):
                return resolve_credentials(token, self.ctx.settings)

        return await asyncio.to_thread(resolve)

    def _auth_timeout(self) -> None:
        self._auth_timer = None
        if self._info is None:
            self._refuse(_unauthorized("no credentials within 10 seconds"))

    def _stop_auth_timer(self) -> None:
        if self._auth_timer is not None:
            IOLoop.current().remove_timeout(self._auth_timer)
            self._auth_timer = None

    # -- generations ------------------------------------------------------------------

    async def _on_generate(self, msg: dict[str, Any]) -> None:
        rid = msg["request_id"]
        if rid in self._generations:
            self._error(rid, conflict(f"Generation {rid!r} is running."))
            return
        if len(self._generations) >= MAX_GENERATIONS:
            self._error(rid, ApiError(429, "Too Many Requests", f"At most {MAX_GENERATIONS} "
                                      "generations run at once per connection.",
                                      slug="rate-limited"))
            return
        assert self._info is not None
        generation = _Generation(rid)
        self._generations[rid] = generation
        generation.task = asyncio.get_running_loop().create_task(
            self._generate(generation, Principal.from_token_info(self._info), msg["request"]))

    async def _authenticate_again(self) -> bool:
        """Credentials can expire or be revoked while the connection lives."""
        if self._token is None or self.ws_connection is None or self.ws_connection.is_closing():
            return False
        info = await self._credentials(self._token)
        if info is None or "inference" not in token_scopes(info):
            refused = _unauthorized if info is None else forbidden
            self._refuse(refused("credentials no longer valid"))
            return False
        self._info = info
        return True

    async def _consume_rate_limit(self, rid: Any) -> bool:
        """Count the message against the hourly budget, as the HTTP middleware does."""
        assert self._info is not None
        decision = await consume_request(self.ctx.settings, str(self._info["sub"]),
                                         str(self._info.get("tier") or ""))
        if decision.allowed:
            return True
        rid = rid if isinstance(rid, str) and _REQUEST_ID.fullmatch(rid) else None
        self._error(rid, ApiError(429, "Too Many Requests", "Hourly request budget spent; "
                                  f"retry in {decision.retry_after_s} seconds.",
                                  slug="rate-limited", retry_after=decision.retry_after_s))
        return False

    async def _generate(self, generation: _Generation, caller: Principal,
                        request: dict[str, Any]) -> None:
        rid = generation.request_id
        inference_id = f"req_{uuid.uuid4().hex[:24]}"
        try:
            service = self.ctx.inference
            if service is None:
                raise ApiError(503, "Service Unavailable",
                               "Inference is not running on this server.", slug="unavailable")
            async for kind, data in service.stream(caller, request, request_id=inference_id,
                                                   cancel=generation.cancel):
                self._send({"type": kind, "request_id": rid, **data})
        except ApiError as exc:
            self._error(rid, exc, inference_id)
        except Exception:
            log.exception("WebSocket generation failed", extra={"request_id": inference_id})
            self._error(rid, ApiError(500, "Internal Server Error", "The generation failed.",
                                      slug="internal"), inference_id)
        finally:
            self._generations.pop(rid, None)

    async def _on_cancel(self, msg: dict[str, Any]) -> None:
        generation = self._generations.get(msg["request_id"])
        if generation is None:
            self._error(msg["request_id"], ApiError(
                404, "Not Found", f"No generation {msg['request_id']!r} is running.",
                slug="not-found"))
            return
        generation.cancel.set()

    # -- job progress -----------------------------------------------------------------

    async def _on_subscribe(self, msg: dict[str, Any]) -> None:
        job_id = msg["job_id"]
        if job_id in self._subscriptions:
            return
        if len(self._subscriptions) >= MAX_SUBSCRIPTIONS:
            self._error(None, ApiError(429, "Too Many Requests", f"At most {MAX_SUBSCRIPTIONS} "
                                       "jobs can be followed per connection.",
                                       slug="rate-limited", job_id=job_id))
            return
        assert self._info is not None
        scopes = token_scopes(self._info)
        owner = None if "admin" in scopes else str(self._info["sub"])
        first = await asyncio.to_thread(_job_now, job_id, owner)
        if first is None:
            self._error(None, ApiError(404, "Not Found", f"Job {job_id!r} does not exist.",
                                       slug="not-found", job_id=job_id))
            return
        view, after_id = first
        needed = "quantize" if view["kind"] == "quantize" else "inference"
        if needed not in scopes:
            self._error(None, ApiError(403, "Forbidden", f"Following {view['kind']} jobs needs "
                                       f"the {needed} scope.", slug="forbidden", job_id=job_id))
            return
        self._send({"type": "progress", "job": view})
        if view["status"] in _FINAL:
            return
        task = asyncio.get_running_loop().create_task(self._follow(job_id, owner, after_id))
        self._subscriptions[job_id] = task
        task.add_done_callback(lambda _t: self._subscriptions.pop(job_id, None))

    async def _on_unsubscribe(self, msg: dict[str, Any]) -> None:
        task = self._subscriptions.pop(msg["job_id"], None)
        if task is not None:
            task.cancel()

    async def _follow(self, job_id: str, owner: str | None, after_id: int) -> None:
        """Send the job after each batch of its events, until it is final."""
        from bitnet_sdk.service.jobs.events import wait_for_events

        try:
            while True:
                events = await wait_for_events(job_id, after_id, timeout_s=60.0,
                                               poll_s=JOB_POLL_S)
                if not events:
                    continue
                after_id = events[-1]["id"]
                now = await asyncio.to_thread(_job_now, job_id, owner)
                if now is None:  # deleted meanwhile
                    return
                view, _ = now
                self._send({"type": "progress", "job": view})
                if view["status"] in _FINAL:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("following job %s failed", job_id)
            self._error(None, ApiError(500, "Internal Server Error",
                                       "Following the job failed.", slug="internal",
                                       job_id=job_id))

    # -- sending ----------------------------------------------------------------------

    def _error(self, rid: str | None, error: ApiError, inference_id: str | None = None) -> None:
        """Report ``error`` about one message or generation; the connection stays open."""
        self._status = error.status
        self._send(error_message(rid, error, inference_id))

    def _refuse(self, error: ApiError) -> None:
        """End the connection for ``error`` (its detail is the close reason, at most 120
        characters: a reason must fit 123 bytes)."""
        self.close(close_code(error), (error.detail or error.title)[:120])

    def _send(self, message: dict[str, Any]) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        try:
            self.write_message(json.dumps(message))
        except tornado.websocket.WebSocketClosedError:
            pass


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, "Unauthorized", detail, slug="unauthorized")


_FINAL = ("succeeded", "failed", "cancelled")
#: The usage record's operation for each metered message that is not ``generate``.
_OPERATIONS = {"auth": "wsAuth", "cancel": "wsCancel", "subscribe": "wsSubscribe",
               "unsubscribe": "wsUnsubscribe"}


def _job_now(job_id: str, owner: str | None) -> tuple[dict[str, Any], int] | None:
    """The job's API view and its latest event id, or None when the caller cannot see it."""
    import peewee

    from bitnet_sdk.service.jobs import queue as jobs
    from bitnet_sdk.service.jobs.views import job_view, latest_messages
    from bitnet_sdk.store.models import JobEvent

    # The event id first: a change landing in between is then sent again, never missed.
    last = JobEvent.select(peewee.fn.MAX(JobEvent.id)).where(JobEvent.job == job_id).scalar()
    try:
        job = jobs.get_job(job_id, owner_id=owner)
    except jobs.JobNotFound:
        return None
    return job_view(job, latest_messages([job_id])[job_id]), int(last or 0)
