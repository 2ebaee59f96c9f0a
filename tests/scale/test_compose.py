"""deploy/compose.yaml is valid YAML whose BITNET_* variables are settings the server reads."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import yaml

from bitnet_sdk.config import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"


def test_compose_services_and_settings() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"postgres", "redis", "minio", "buckets", "server", "worker", "balancer"} <= set(services)
    known = {f"BITNET_{f.name.upper()}" for f in fields(Settings)}
    for name in ("server", "worker"):
        env = services[name]["environment"]
        unknown = sorted(k for k in env if k.startswith("BITNET_") and k not in known)
        assert unknown == [], f"{name}: {unknown} are not settings"
        assert env["BITNET_STORAGE_URL"].startswith("s3://")
    assert services["server"]["command"][0] == "serve"
    assert services["worker"]["command"][0] == "worker"
