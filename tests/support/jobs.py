"""Helpers for job tests against a live server: float source models and polling a job."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bitnet_sdk.config import Settings

__all__ = ["FINAL", "poll", "register_source", "wait_job"]

FINAL = ("succeeded", "failed", "cancelled")


def register_source(settings: Settings, model_file: Path, owner_id: str | None, name: str,
                    *, public: bool = False) -> str:
    """Register a copy of ``model_file`` as a ready model (through the registry); its id."""
    from bitnet_sdk.service.registry import models as registry

    settings.models_dir.mkdir(parents=True, exist_ok=True)
    staged = settings.data_dir / f"staged-{name}.gguf"
    shutil.copyfile(model_file, staged)
    return registry.register_file(settings, staged, owner_id=owner_id, name=name,
                                  public=public).id


def poll(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05) -> Any:
    """The first truthy value of ``predicate()``; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(interval)


def wait_job(base_url: str, path: str, headers: dict[str, str], *,
             until: Callable[[dict[str, Any]], bool] = lambda j: j["status"] in FINAL,
             timeout: float = 60.0) -> dict[str, Any]:
    """GET ``path`` (``/v1/quantize/job_…``) until ``until(job)``; the job."""
    def check() -> dict[str, Any] | None:
        response = httpx.get(base_url + path, headers=headers)
        assert response.status_code == 200, response.text
        job = response.json()
        return job if until(job) else None

    return poll(check, timeout)
