"""Helpers for job tests against a live server: float source models and polling a job."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bitnet_sdk.config import Settings

__all__ = ["FINAL", "Workers", "poll", "register_source", "wait_job"]

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


class Workers:
    """Start ``bitnet worker`` processes on the test server's data directory."""

    def __init__(self, settings: Settings, log_dir: Path, *, lease_s: float,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.lease_s = lease_s
        self.extra_args = extra_args
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *, step_delay_s: float = 0.0) -> subprocess.Popen[bytes]:
        """One more worker; ``step_delay_s`` pauses it at every checkpoint of a job."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("BITNET_")}
        env["BITNET_JOB_STEP_DELAY_S"] = str(step_delay_s)
        with open(self.log_dir / f"worker-{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bitnet_sdk.cli", "worker", "--data-dir",
                 str(self.settings.data_dir), "--lease-s", str(self.lease_s), "--poll-s", "0.2",
                 *self.extra_args],
                env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # pragma: no cover - a hung worker
                proc.kill()
                proc.wait()
