"""The scale-out set-up for real: two API servers and two job workers, each its own
process, on one PostgreSQL, one Redis and one S3-compatible bucket (s3proxy).

One cluster serves every phase (start-up is the expensive part): the rate limit holds
exactly across the servers; a job submitted to one server is watched live over the
other's WebSocket while a worker runs it; ``kill -9`` of the worker holding a job loses
the job to no one (the other worker finishes it, one output, one usage record); ``kill
-9`` of a server during streams leaves the other server's streams and records whole, and
the streams cut on the killed server keep their usage records (written at admission,
kept up to date while they ran, finalised by the surviving server).
Each server has its own data directory (as on separate hosts): model files reach them
only through the bucket.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from bitnet_sdk.config import DEFAULT_TIERS, Settings, TierLimits
from bitnet_sdk.service.accounting.usage import OP_QUANTIZE
from bitnet_sdk.service.jobs.events import events_since
from bitnet_sdk.store import ModelRecord, UsageRecord
from bitnet_sdk.store.models import QuotaReservation
from bitnet_sdk.store.testing import postgres_test_url, temporary_database_url
from bitnet_sdk.testing.synthetic import build_model
from tests.conftest import Account, make_account
from tests.support.inference import ModelFiles
from tests.support.jobs import Workers, wait_job
from tests.support.redis import redis_test_url
from tests.support.s3 import S3Bucket, s3_test_bucket
from tests.support.servers import Server

LIMIT = 20
TIERS = {**DEFAULT_TIERS, "tiny": TierLimits(LIMIT, 5, 10_000, 1_000)}
SECRET = "multi-process-test-secret-" + "x" * 32
OCTETS = {"Content-Type": "application/octet-stream"}

@dataclass
class Cluster:
    settings: Settings
    bucket: S3Bucket
    servers: list[Server]
    workers: Workers
    owner: Account


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if postgres_test_url() is None:
        pytest.skip("BITNET_TEST_POSTGRES_URL not set (start one with scripts/start-postgres.sh)")
    from bitnet_sdk.server.lifecycle import open_store

    tmp = tmp_path_factory.mktemp("cluster")
    with pytest.MonkeyPatch.context() as mp, temporary_database_url("postgres", tmp) as db_url:
        bucket = s3_test_bucket(mp)
        settings = Settings(data_dir=tmp / "test", database_url=db_url, redis_url=redis_test_url(),
                            storage_url=bucket.storage_url(), s3_endpoint_url=bucket.endpoint,
                            jwt_secret=SECRET, tiers=TIERS, demo_model=False,
                            usage_checkpoint_s=0.5)
        db = open_store(db_url)  # migrated here, before the servers start
        servers: list[Server] = []
        workers = Workers(settings.with_(data_dir=tmp / "workers"), tmp, lease_s=2.0,
                          extra_args=("--db", db_url, "--redis", settings.redis_url,
                                      "--storage", settings.storage_url,
                                      "--s3-endpoint", bucket.endpoint))
        try:
            for name in ("a", "b"):  # all four processes start in parallel
                servers.append(Server(settings.with_(data_dir=tmp / name, workers=0,
                                                     backend="numpy"), wait=False))
            workers.start(step_delay_s=0.15)
            workers.start(step_delay_s=0.15)
            for server in servers:
                server.wait_ready()
            owner = make_account(settings, "owner@example.com")
            yield Cluster(settings, bucket, servers, workers, owner)
        finally:
            workers.stop_all()
            for server in servers:
                server.begin_close()
            for server in servers:
                server.finish_close()
            db.close()


def _upload(server: Server, who: Account, name: str, data: bytes) -> str:
    r = httpx.post(server.url + "/v1/models", json={"name": name}, headers=who.headers)
    assert r.status_code == 201, r.text
    model_id = str(r.json()["id"])
    r = httpx.put(server.url + f"/v1/models/{model_id}/file", content=data,
                  headers={**who.headers, **OCTETS}, timeout=60)
    assert r.status_code == 200, r.text
    return model_id


def _quantize(server: Server, who: Account, model_id: str) -> str:
    r = httpx.post(server.url + "/v1/quantize", headers=who.headers,
                   json={"model_id": model_id, "qtype": "tq2_0", "mode": "async"})
    assert r.status_code == 202, r.text
    return str(r.headers["location"])


def _records(request_ids: list[str]) -> list[UsageRecord]:
    return list(UsageRecord.select().where(UsageRecord.request_id.in_(request_ids)))


def _wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def test_the_rate_limit_holds_exactly_across_servers(cluster: Cluster) -> None:
    tiny = make_account(cluster.settings, "tiny@example.com", tier="tiny")
    statuses: list[int] = []

    def spend(url: str) -> None:
        with httpx.Client(headers=tiny.headers) as client:
            for _ in range(18):
                statuses.append(client.get(url + "/v1/auth/me").status_code)

    threads = [threading.Thread(target=spend, args=(s.url,)) for s in cluster.servers * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * LIMIT + [429] * (72 - LIMIT)


def test_a_job_submitted_to_one_server_is_watched_live_on_the_other(
        cluster: Cluster, tmp_path: Path) -> None:
    a, b = cluster.servers
    source = build_model(tmp_path / "src.gguf", qtype="f32", n_layers=2).read_bytes()
    model_id = _upload(a, cluster.owner, "watched", source)
    location = _quantize(a, cluster.owner, model_id)
    job_id = location.rsplit("/", 1)[-1]
    seen = []
    with connect(b.ws_url("/v1/inference/ws"),
                 subprotocols=["bearer", cluster.owner.token]) as ws:  # type: ignore[list-item]
        ws.send(json.dumps({"type": "subscribe", "job_id": job_id}))
        while True:
            message = json.loads(ws.recv(timeout=60))
            if message["type"] == "ready":  # the session greeting
                continue
            assert message["type"] == "progress", message
            seen.append(message["job"])
            if message["job"]["status"] in ("succeeded", "failed", "cancelled"):
                break
    assert seen[-1]["status"] == "succeeded", seen[-1]
    assert any(j["status"] == "running" and 0 < j["progress"] < 1 for j in seen)  # live
    output = seen[-1]["result"]["model_id"]
    assert f"models-store/models/{output}.gguf" in cluster.bucket.keys()


def test_a_worker_killed_mid_job_loses_nothing(cluster: Cluster, tmp_path: Path) -> None:
    a, b = cluster.servers
    source = build_model(tmp_path / "src.gguf", qtype="f32", n_layers=2).read_bytes()
    model_id = _upload(b, cluster.owner, "doomed", source)
    location = _quantize(b, cluster.owner, model_id)
    job = wait_job(a.url, location, cluster.owner.headers, timeout=60,
                   until=lambda j: j["status"] == "running" and j["progress"] > 0)
    started = [e["data"]["worker"] for e in events_since(job["id"]) if e["type"] == "started"]
    pid = int(started[-1].split(":")[1])  # worker names are host:pid:…
    victim = next(p for p in cluster.workers.procs if p.pid == pid)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    done = wait_job(a.url, location, cluster.owner.headers, timeout=60)
    assert (done["status"], done["attempts"]) == ("succeeded", 2), cluster.workers.logs()
    outputs = list(ModelRecord.select().where(ModelRecord.source_model == model_id))
    assert [m.id for m in outputs] == [done["result"]["model_id"]]
    records = UsageRecord.select().where(UsageRecord.operation == OP_QUANTIZE,
                                         UsageRecord.request_id == done["id"])
    assert records.count() == 1
    cluster.workers.start(step_delay_s=0.15)  # two workers again for later phases


def test_a_server_killed_during_streams_leaves_the_others_whole(
        cluster: Cluster, tmp_path: Path) -> None:
    a, b = cluster.servers
    files = ModelFiles(tmp_path / "files")
    model_id = _upload(a, cluster.owner, "endless", files.endless().read_bytes())
    body = {"model": model_id, "prompt": "hello", "max_tokens": 64}
    # B's streams cannot finish before the kill, whenever it comes; A's end after 64 tokens.
    tokens = {"a": 64, "b": 8000}
    first_token = threading.Barrier(7)
    outcomes: dict[str, list[Any]] = {"a": [], "b": []}
    cut: dict[str, list[str]] = {"a": [], "b": []}

    def stream(server: Server, name: str) -> None:
        request = {**body, "max_tokens": tokens[name]}
        try:
            with httpx.Client(headers=cluster.owner.headers, timeout=60) as client, \
                    client.stream("POST", server.url + "/v1/inference/stream",
                                  json=request) as r:
                rid = r.headers["x-request-id"]
                lines = r.iter_lines()
                for line in lines:
                    if line.startswith("data:"):
                        break
                cut[name].append(rid)
                first_token.wait(timeout=60)
                rest = list(lines)  # to the end: the server records usage before its last chunk
                done = any('"finish_reason"' in line for line in rest)
                outcomes[name].append((r.headers["x-request-id"], done))
        except (httpx.HTTPError, threading.BrokenBarrierError) as exc:
            outcomes[name].append(exc)

    threads = [threading.Thread(target=stream, args=(server, name))
               for server, name in ((a, "a"), (b, "b")) for _ in range(3)]
    for thread in threads:
        thread.start()
    first_token.wait(timeout=60)  # all six streams are running
    _wait_for(lambda: all(r.open_owner is not None and r.tokens_out > 0
                          for r in _records(cut["b"])))  # B brought them up to date once
    held = QuotaReservation.select().where(QuotaReservation.request_id.in_(cut["b"]))
    assert held.count() == 3  # B's streams hold their quota
    b.kill()
    for thread in threads:
        thread.join(timeout=90)
    assert all(isinstance(o, tuple) and o[1] for o in outcomes["a"]), outcomes
    assert all(isinstance(o, Exception) for o in outcomes["b"]), outcomes
    answered = [rid for rid, _ in outcomes["a"]]
    recorded = UsageRecord.select(UsageRecord.request_id, UsageRecord.status_code,
                                  UsageRecord.tokens_out).where(
        UsageRecord.request_id.in_(answered))
    assert sorted((r.request_id, r.status_code) for r in recorded) == \
        sorted((rid, 200) for rid in answered)
    assert all(r.tokens_out > 0 for r in recorded)
    # The killed server's streams: one record each, finalised by A once B's went stale.
    _wait_for(lambda: all(r.open_owner is None for r in _records(cut["b"])))
    killed = _records(cut["b"])
    assert sorted(r.request_id for r in killed) == sorted(cut["b"])
    assert all((r.status_code, r.tokens_in > 0, r.tokens_out > 0) == (500, True, True)
               for r in killed), [(r.status_code, r.tokens_out) for r in killed]
    assert held.count() == 0  # the records count instead of the dead server's holds
    r = httpx.post(a.url + "/v1/inference", headers=cluster.owner.headers, timeout=60,
                   json={**body, "max_tokens": 2})
    assert r.status_code == 200, r.text  # the survivor keeps serving
