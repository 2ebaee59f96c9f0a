"""What the services report as it happens, for whoever watches (the server's metrics).

The services never import the server: they call a :class:`Telemetry` they were given
(the server passes its Prometheus metrics; a ``bitnet worker`` process or a test passes
nothing and :data:`NO_TELEMETRY` swallows the calls). Calls are made in the thread where
the event happened and must return at once; a failing observer never fails the work.
"""

from __future__ import annotations

import logging
from typing import Protocol

__all__ = ["NO_TELEMETRY", "Telemetry", "report"]

log = logging.getLogger(__name__)


class Telemetry(Protocol):
    """Events the inference and job services report."""

    def generation_finished(self, model: str, prompt_tokens: int, completion_tokens: int,
                            ttft_s: float | None, tokens_per_s: float | None) -> None:
        """A language-model generation ended (any way): its tokens, the time from the
        request's arrival to its first token, and its decode speed (None when unknown)."""

    def job_finished(self, kind: str, status: str) -> None:
        """A job's outcome was recorded by this process: ``succeeded``, ``failed`` or ``cancelled``."""


class _NoTelemetry:
    def generation_finished(self, model: str, prompt_tokens: int, completion_tokens: int,
                            ttft_s: float | None, tokens_per_s: float | None) -> None:
        return None

    def job_finished(self, kind: str, status: str) -> None:
        return None


#: The observer of services nobody watches.
NO_TELEMETRY: Telemetry = _NoTelemetry()


def report(telemetry: Telemetry, event: str, *args: object) -> None:
    """Call ``telemetry.<event>(*args)``, logging (never raising) what it raises."""
    try:
        getattr(telemetry, event)(*args)
    except Exception:
        log.exception("telemetry observer failed on %s", event)
