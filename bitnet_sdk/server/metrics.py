"""Prometheus metrics of one app instance (its own registry, so tests can run many).

Request counts and latencies are labelled by the *operation* (the spec's path
template), never the raw path, so cardinality stays bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_TYPE_LATEST", "BatchMetrics", "Metrics", "MetricsMiddleware", "RouteRecorder"]

#: Scope key of a per-request dict shared by the two middlewares below (Connexion
#: copies the scope at routing, shallowly, so the dict itself is shared).
_SLOT = "bitnet.metrics"


class Metrics:
    """The collectors the server updates; ``render()`` gives the text exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "bitnet_http_requests_total", "HTTP requests answered",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "bitnet_http_request_duration_seconds", "Time to the end of the response",
            ["method", "route"], registry=self.registry,
        )
        self.in_flight = Gauge(
            "bitnet_http_requests_in_flight", "Requests being handled", registry=self.registry,
        )
        self.tokens = Counter(
            "bitnet_generated_tokens_total", "Tokens generated", ["model"], registry=self.registry,
        )
        self.jobs = Counter(
            "bitnet_jobs_total", "Jobs finished", ["kind", "status"], registry=self.registry,
        )
        self.loaded_models = Gauge(
            "bitnet_loaded_models", "Models held in the model cache", registry=self.registry,
        )

        self.batching = BatchMetrics(self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class BatchMetrics:
    """The batching schedulers' families (``service.inference.batching.BatchObserver``).

    Occupancy gauges are read from the model cache when scraped
    (:meth:`watch`); step sizes and token latencies are observed as they happen.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.active = Gauge(
            "bitnet_sequences_active", "Generations decoding in a batch, all models",
            registry=registry)
        self.queued = Gauge(
            "bitnet_requests_queued",
            "Requests waiting for a model: in its queue, or admitted and waiting for KV memory",
            registry=registry)
        self.batch_size = Histogram(
            "bitnet_batch_size", "Sequences in one batched forward step",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=registry)
        self.batch_tokens = Histogram(
            "bitnet_batch_tokens", "Tokens (decode and prompt chunks) in one batched step",
            buckets=(1, 4, 16, 64, 128, 256, 512, 1024), registry=registry)
        self.ttft = Histogram(
            "bitnet_time_to_first_token_seconds",
            "From a generation joining its model's scheduler to its first token",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30), registry=registry)
        self.inter_token_latency = Histogram(
            "bitnet_inter_token_latency_seconds", "Between two tokens of one generation",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2), registry=registry)

    def watch(self, batch_stats: Callable[[], dict[str, int]],
              cache_stats: Callable[[], dict[str, int]]) -> None:
        """Read the occupancy gauges from the model cache at every scrape."""
        self.active.set_function(lambda: batch_stats()["active"])
        self.queued.set_function(lambda: batch_stats()["waiting"] + cache_stats()["queued"])

    def step(self, sequences: int, tokens: int) -> None:
        self.batch_size.observe(sequences)
        self.batch_tokens.observe(tokens)

    def first_token(self, seconds: float) -> None:
        self.ttft.observe(seconds)

    def inter_token(self, seconds: float) -> None:
        self.inter_token_latency.observe(seconds)


class MetricsMiddleware:
    """Count and time every HTTP request, labelled by its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        slot: dict[str, str] = {}
        scope[_SLOT] = slot
        self.metrics.in_flight.inc()

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            self.metrics.in_flight.dec()
            route = slot.get("route", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(
                time.perf_counter() - start
            )


class RouteRecorder:
    """Placed after Connexion's routing: note the matched operationId for the metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        slot = scope.get(_SLOT)
        if slot is not None:
            routing = (scope.get("extensions") or {}).get("connexion_routing") or {}
            slot["route"] = routing.get("operation_id") or "unmatched"
        await self.app(scope, receive, send)
