"""Each generated SDK against a live server: the example program of each language
(``examples/sdk/<lang>/``) logs in, creates an API key, uploads a model (multipart and raw
stream), lists with pagination, quantizes as a job and waits, runs and streams inference,
reads usage, and meets a 404, a 429 and an expired token. Every step prints one JSON line;
this test checks them all, so an operation that fails (a 501 included) fails the test.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest

from bitnet_sdk.config import DEFAULT_TIERS, Settings, TierLimits
from bitnet_sdk.testing.synthetic import build_model
from tests.conftest import make_account

from ._toolchain import EXAMPLES, go, go_env, node_modules, run, tsc

STEPS = ("login", "api_key", "upload_multipart", "upload_raw", "upload_resumable", "list", "quantize", "inference", "stream",
         "websocket", "usage", "not_found", "rate_limited", "connection_error", "refresh")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The shared settings plus a tier whose hourly budget a test can spend."""
    tiers = {**DEFAULT_TIERS, "tiny": TierLimits(3, 10, 100_000, 100_000)}
    return Settings(data_dir=tmp_path / "data", demo_model=False, webhook_allow_private=True, tiers=tiers)


@pytest.fixture
def scenario_env(live_server, tmp_path: Path) -> dict[str, str]:
    admin = make_account(live_server.settings, "root@example.com", admin=True, tier="enterprise")
    limited = make_account(live_server.settings, "small@example.com", tier="tiny")
    model = build_model(tmp_path / "model-f32.gguf", qtype="f32")
    return {"BITNET_URL": live_server.url, "BITNET_EMAIL": admin.email, "BITNET_PASSWORD": admin.password,
            "BITNET_LIMITED_TOKEN": limited.token, "BITNET_MODEL_FILE": str(model)}


def check(output: str, model_file: Path) -> None:
    try:
        check_steps(output, model_file)
    except (AssertionError, KeyError) as exc:
        raise AssertionError(f"{exc!r}\n--- scenario output ---\n{output}") from None


def check_steps(output: str, model_file: Path) -> None:
    steps = {}
    for line in output.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            steps[record.pop("step")] = record
    missing = [s for s in STEPS if s not in steps]
    assert not missing, f"steps missing {missing}; output:\n{output}"
    assert steps["login"] == {"email": "root@example.com", "credential": "access_token"}
    assert steps["api_key"]["credential"] == "api_key"
    assert steps["upload_multipart"]["status"] == "ready"
    assert steps["upload_raw"]["status"] == "ready"
    assert steps["upload_raw"]["size"] == model_file.stat().st_size
    data = model_file.read_bytes()
    resumed = steps["upload_resumable"]  # resumed from the server's offset, in 64 KiB pieces
    assert resumed["status"] == "ready" and resumed["held"] == len(data) // 2
    assert resumed["first_sent"] == resumed["held"] + min(65536, len(data) - resumed["held"])
    assert resumed["size"] == len(data) and resumed["sha256"] == hashlib.sha256(data).hexdigest()
    quantized = steps["quantize"]
    assert quantized["status"] == "succeeded" and str(quantized["model_id"]).startswith("mdl_")
    assert steps["list"]["names"] == ["tour-f32", "tour-multipart"]  # one model per page, two pages
    assert steps["inference"]["tokens"] >= 1
    stream = steps["stream"]
    assert stream["tokens"] >= 1
    assert stream["joined"] == stream["done_text"] == steps["inference"]["text"]  # greedy: same text
    assert steps["websocket"]["joined"] == steps["inference"]["text"]  # the same generation over WebSocket
    assert steps["websocket"]["last"] == "done" and steps["websocket"]["user"].startswith("usr_")
    assert steps["usage"]["requests"] > 0 and "runInference" in steps["usage"]["operations"]
    assert steps["not_found"]["status"] == 404 and steps["not_found"]["request_id"]
    assert steps["not_found"]["kind"] == "NotFoundError"  # the typed subclass (Go: errors.Is)
    assert steps["api_key"].get("raw_status", 200) == 200  # TypeScript and Go: the raw response
    limited = steps["rate_limited"]
    assert limited["status"] == 429 and limited["calls"] == 4 and limited["retry_after"] > 0
    assert limited["kind"] == "RateLimitError"
    assert steps["connection_error"]["kind"] == "ConnectionError" and steps["connection_error"]["cause"]
    assert steps["refresh"] == {"email": "root@example.com", "refreshed": 1}


@pytest.mark.slow
def test_python_sdk_scenario(sdk_dir, scenario_env: dict[str, str]) -> None:
    sdk = sdk_dir("python")
    output = run([sys.executable, str(EXAMPLES / "python" / "scenario.py")], EXAMPLES / "python",
                 env={**scenario_env, "PYTHONPATH": str(sdk)}, timeout=600)
    check(output, Path(scenario_env["BITNET_MODEL_FILE"]))
    steps = {r.pop("step"): r for r in (json.loads(line) for line in output.splitlines() if line.startswith("{"))}
    websocket = steps["websocket"]  # the asyncio WebSocket client gives the same generation
    assert steps["websocket_async"] == {"joined": websocket["joined"], "last": "done"}


@pytest.mark.slow
def test_typescript_sdk_scenario(sdk_dir, scenario_env: dict[str, str], tmp_path: Path) -> None:
    example = tmp_path / "example"
    shutil.copytree(EXAMPLES / "typescript", example, ignore=shutil.ignore_patterns("node_modules", "dist", "sdk"))
    shutil.copytree(sdk_dir("typescript"), example / "sdk")
    run([tsc(), "-p", "sdk/tsconfig.json"], example)
    modules = example / "node_modules"
    (modules / "@types").mkdir(parents=True)
    (modules / "bitnet-client").symlink_to(example / "sdk")
    (modules / "@types" / "node").symlink_to(node_modules() / "@types" / "node")
    (modules / "undici-types").symlink_to(node_modules() / "undici-types")
    run([tsc(), "-p", "tsconfig.json"], example)
    # WebSocket is global from Node 22; Node 20 and 21 have it behind this flag.
    flags = ["--experimental-websocket"] if int(run(["node", "-p", "process.versions.node.split('.')[0]"],
                                                     example).strip()) < 22 else []
    output = run(["node", *flags, "dist/scenario.js"], example, env=scenario_env, timeout=600)
    check(output, Path(scenario_env["BITNET_MODEL_FILE"]))


@pytest.mark.slow
def test_go_sdk_scenario(sdk_dir, scenario_env: dict[str, str], tmp_path: Path) -> None:
    example = tmp_path / "example"
    shutil.copytree(EXAMPLES / "go", example, ignore=shutil.ignore_patterns("sdk"))
    shutil.copytree(sdk_dir("go"), example / "sdk")
    env = {**go_env(), **scenario_env}
    run([go(), "build", "-o", "scenario", "."], example, env=env)
    output = run([str(example / "scenario")], example, env=env, timeout=600)
    check(output, Path(scenario_env["BITNET_MODEL_FILE"]))
