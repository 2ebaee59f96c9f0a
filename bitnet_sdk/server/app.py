"""The Connexion application: spec in, routes, validation, security and problems out.

``create_app()`` is the one way to build the API, for ``bitnet serve``, for the
tests and for embedding. It returns the ASGI app; ``bitnet_sdk.server.run``
serves it on Tornado together with the WebSocket routes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import connexion
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from starlette.middleware.cors import CORSMiddleware

from bitnet_sdk.config import Settings
from bitnet_sdk.server.access_log import AccessNoter
from bitnet_sdk.server.asgi.security_headers import SecurityHeadersMiddleware
from bitnet_sdk.server.client_address import trusted_networks
from bitnet_sdk.server.context import AppContext, ContextMiddleware, request_id
from bitnet_sdk.server.cors import cors_options
from bitnet_sdk.server.lifecycle import shutdown, startup
from bitnet_sdk.server.limits import json_body_limit
from bitnet_sdk.server.method_guard import UndeclaredMethodGuard
from bitnet_sdk.server.methods import install_method_not_allowed
from bitnet_sdk.server.metrics import Metrics, MetricsMiddleware, RouteRecorder
from bitnet_sdk.server.multipart import BodyLimitMiddleware
from bitnet_sdk.server.portal import PortalMiddleware
from bitnet_sdk.server.problems import (
    PROBLEM_MEDIA_TYPE,
    ProblemRenderer,
    install_error_handlers,
    with_field_errors,
)
from bitnet_sdk.server.ratelimit_middleware import RateLimitMiddleware
from bitnet_sdk.server.resolver import ControllerResolver
from bitnet_sdk.server.server_error import middlewares
from bitnet_sdk.server.spec import (
    load_spec,
    operation_scopes,
    request_media_types,
    spec_dir,
    spec_path,
)
from bitnet_sdk.server.validation import VALIDATOR_MAP
from bitnet_sdk.service.inference.openai_compat import error_from_problem
from bitnet_sdk.service.registry.uploads import multipart_limit

__all__ = ["API_BASE_PATH", "OPENAI_BASE_PATH", "create_app"]

log = logging.getLogger(__name__)

API_BASE_PATH = "/v1"
#: The OpenAI-compatible API (``openapi/openai.yaml``); its errors are OpenAI error objects.
OPENAI_BASE_PATH = "/openai/v1"
OPENAI_SPEC = "openai.yaml"
#: Responses under these paths carry tokens or API keys: never stored by caches.
CREDENTIAL_PATHS = (API_BASE_PATH + "/auth/", API_BASE_PATH + "/api-keys")


def create_app(settings: Settings | None = None) -> connexion.AsyncApp:
    """Build the API app for ``settings`` (default: from the environment).

    The returned app carries its ``AppContext`` as ``app.bitnet`` (the WebSocket
    routes and tests use it). Database, workers and caches are opened by the
    ASGI lifespan, so building the app has no side effects.
    """
    settings = settings or Settings.from_env()
    trusted_networks(settings.trusted_proxies)  # a bad setting fails here, not on a login
    ctx = AppContext(settings=settings, metrics=Metrics())

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        await startup(ctx)
        try:
            yield
        finally:
            await shutdown(ctx)

    app = connexion.AsyncApp(
        __name__,
        specification_dir=str(spec_dir()),
        lifespan=lifespan,
        strict_validation=True,
        # Query parameters such as `from` reach handlers as `from_`.
        pythonic_params=True,
        validate_responses=True,
        swagger_ui_options=SwaggerUIOptions(swagger_ui_path="/docs"),
        middlewares=middlewares(),
    )
    resolver = ControllerResolver()
    app.add_api(spec_path().name, resolver=resolver, base_path=API_BASE_PATH,
                validator_map=VALIDATOR_MAP)
    ctx.not_implemented = resolver.not_implemented
    # Its own resolver: the 501 list is the native spec's.
    app.add_api(spec_path(OPENAI_SPEC).name, resolver=ControllerResolver(),
                base_path=OPENAI_BASE_PATH, validator_map=VALIDATOR_MAP)
    ctx.operation_scopes = {**operation_scopes(load_spec()), **operation_scopes(load_spec(OPENAI_SPEC))}
    accepts = {**request_media_types(load_spec()), **request_media_types(load_spec(OPENAI_SPEC))}
    # Outermost of ours: every response, problems included, carries the security headers.
    app.add_middleware(SecurityHeadersMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION,
                       no_store_prefixes=CREDENTIAL_PATHS)
    if settings.cors_origins:  # next: preflights skip everything below
        app.add_middleware(CORSMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION,
                           **cors_options(settings.cors_origins))
    app.add_middleware(MetricsMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION,
                       metrics=ctx.metrics)
    app.add_middleware(ContextMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION, ctx=ctx)
    # Every problem on an OpenAI path, whoever raised it, as an OpenAI error object.
    app.add_middleware(ProblemRenderer, position=MiddlewarePosition.BEFORE_EXCEPTION,
                       prefix="/openai/", render=error_from_problem)
    # Every native problem carries the request id (clients quote it in support requests).
    app.add_middleware(ProblemRenderer, position=MiddlewarePosition.BEFORE_EXCEPTION,
                       prefix=API_BASE_PATH + "/", render=_with_request_id,
                       media_type=PROBLEM_MEDIA_TYPE)
    app.add_middleware(RouteRecorder, position=MiddlewarePosition.BEFORE_SECURITY)
    # Connexion buffers multipart bodies whole before the handler: bound them before that.
    app.add_middleware(BodyLimitMiddleware, position=MiddlewarePosition.BEFORE_VALIDATION,
                       media_types=("multipart/form-data",),
                       limit=lambda _scope: multipart_limit(ctx.settings), accepts=accepts,
                       hint="Send large model files with PUT /v1/models/{model_id}/file.")
    # Connexion validates JSON bodies value by value (~20 µs per number): bound them first.
    app.add_middleware(BodyLimitMiddleware, position=MiddlewarePosition.BEFORE_VALIDATION,
                       media_types=("application/json",), limit=json_body_limit, accepts=accepts)
    # After security: the verified user's id on the access line and every log line.
    app.add_middleware(AccessNoter, position=MiddlewarePosition.BEFORE_VALIDATION)
    # After security (needs the verified credential), before validation (invalid requests count).
    app.add_middleware(RateLimitMiddleware, position=MiddlewarePosition.BEFORE_VALIDATION)
    install_error_handlers(app)
    # The developer portal at / (its own files only; every other path is the API's).
    app.add_middleware(PortalMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)
    install_method_not_allowed(app, load_spec(), API_BASE_PATH)
    # GET /quantize/batch is a 405, not GET /quantize/{job_id} with a job id "batch".
    app.add_middleware(UndeclaredMethodGuard, position=MiddlewarePosition.BEFORE_ROUTING,
                       spec=load_spec(), base_path=API_BASE_PATH)
    app.bitnet = ctx
    return app


def _with_request_id(status: int, problem: dict[str, Any]) -> dict[str, Any]:
    problem = with_field_errors(status, problem)
    return {**problem, "request_id": problem.get("request_id") or request_id()}
