"""Webhooks: Standard Webhooks signatures (published test vector and an independent check),
the address guard, and delivery to a real receiver with retries, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest

from bitnet_sdk.service.jobs import queue as jobs
from bitnet_sdk.service.jobs import webhooks
from bitnet_sdk.service.jobs.queue import JobSpec
from bitnet_sdk.service.jobs.webhooks import UnsafeWebhookUrl, WebhookDispatcher
from bitnet_sdk.store import User, WebhookDelivery
from bitnet_sdk.store.testing import DATABASE_KINDS, postgres_test_url, temporary_database
from tests.support.webhooks import Receiver, standard_webhooks_valid

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


# -- signatures -------------------------------------------------------------------------------


def test_signature_reproduces_the_published_standard_webhooks_vector() -> None:
    signature = webhooks.sign(VECTOR_SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                              b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_generated_secrets_are_fresh_and_verify_independently() -> None:
    first, second = webhooks.generate_secret(), webhooks.generate_secret()
    assert first != second and first.startswith("whsec_")
    assert len(webhooks.parse_secret(first)) == 32
    body = b'{"type":"job.succeeded"}'
    headers = {"webhook-id": "msg_1", "webhook-timestamp": "1700000000",
               "webhook-signature": webhooks.sign(first, "msg_1", 1700000000, body)}
    assert standard_webhooks_valid(first, headers, body)
    assert not standard_webhooks_valid(second, headers, body)
    assert not standard_webhooks_valid(first, headers, body + b" ")


@pytest.mark.parametrize("secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!",
                                    "whsec_c2hvcnQ=", "whsec_" + "QUFB" * 30])
def test_malformed_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValueError):
        webhooks.parse_secret(secret)


# -- the address guard ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/hook", "http://localhost:8080/hook", "http://10.1.2.3/",
    "http://192.168.0.10/", "http://172.16.5.4/", "http://169.254.169.254/latest/meta-data",
    "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[fe80::1]/", "http://[fd00::1]/",
    "http://0.0.0.0/", "http://224.0.0.1/", "http://100.64.0.1/", "http://240.0.0.1/",
])
def test_private_and_special_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeWebhookUrl, match="address"):
        webhooks.check_url(url, allow_private=False)


@pytest.mark.parametrize("url", ["ftp://example.com/", "http:///path", "http://host:99999/",
                                 "http://nonexistent.invalid/hook"])
def test_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeWebhookUrl):
        webhooks.check_url(url, allow_private=False)


def test_public_addresses_pass_and_private_ones_when_allowed() -> None:
    webhooks.check_url("https://93.184.216.34/hooks", allow_private=False)
    webhooks.check_url("http://[2606:4700::1111]:8443/x", allow_private=False)
    webhooks.check_url("http://127.0.0.1:1/hook", allow_private=True)
    webhooks.check_url("http://not-resolvable-yet.invalid/", allow_private=True)


# -- delivery ---------------------------------------------------------------------------------------


@pytest.fixture(params=DATABASE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[peewee.Database]:
    if request.param == "postgres" and postgres_test_url() is None:
        pytest.skip("BITNET_TEST_POSTGRES_URL not set (start one with scripts/start-postgres.sh)")
    with temporary_database(request.param, tmp_path) as database:
        yield database


def _finished_job(url: str, secret: str | None = VECTOR_SECRET) -> str:
    owner = User.create(email="hooks@example.com").id
    (job,), _ = jobs.create_jobs(
        owner, "quantize", [JobSpec(params={"model_id": "mdl_aaaaaaaaaaaa"}, webhook_url=url,
                                    webhook_secret=secret)],
        body_fingerprint="f", operation="quantizeModel")
    jobs.claim_next("w", kinds=["quantize"])
    jobs.finish(job.id, "w", "succeeded", result={"model_id": "mdl_bbbbbbbbbbbb"})
    return job.id


def _delivery() -> WebhookDelivery:
    (row,) = WebhookDelivery.select()
    return row


def test_a_finished_job_is_posted_signed(db: peewee.Database) -> None:
    with Receiver([204]) as receiver:
        job_id = _finished_job(receiver.url)
        assert WebhookDispatcher(allow_private=True).run_once() == 1
        (got,) = receiver.wait_for(1)
    assert got.path == "/hooks/bitnet"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["webhook-id"] == "msg_" + job_id.removeprefix("job_")
    assert standard_webhooks_valid(VECTOR_SECRET, got.headers, got.body)
    event = got.json()
    assert event["type"] == "job.succeeded" and event["data"]["id"] == job_id
    assert event["data"]["result"] == {"model_id": "mdl_bbbbbbbbbbbb"}
    row = _delivery()
    assert (row.status, row.attempt, row.response_code) == ("delivered", 1, 204)


def test_failed_attempts_are_retried_with_the_same_id(db: peewee.Database) -> None:
    dispatcher = WebhookDispatcher(allow_private=True, retry_delays_s=(0, 0))
    with Receiver([500, 503, 200]) as receiver:
        _finished_job(receiver.url)
        dispatcher.run_once()
        assert (_delivery().status, _delivery().response_code) == ("pending", 500)
        dispatcher.run_once()
        dispatcher.run_once()
        got = receiver.wait_for(3)
    assert len({r.headers["webhook-id"] for r in got}) == 1
    assert all(standard_webhooks_valid(VECTOR_SECRET, r.headers, r.body) for r in got)
    row = _delivery()
    assert (row.status, row.attempt, row.response_code) == ("delivered", 3, 200)


def test_back_off_delays_the_next_attempt(db: peewee.Database) -> None:
    dispatcher = WebhookDispatcher(allow_private=True, retry_delays_s=(300,))
    with Receiver([500]) as receiver:
        _finished_job(receiver.url)
        assert dispatcher.run_once() == 1
        assert dispatcher.run_once() == 0  # due in 5 minutes
    assert _delivery().status == "pending"


def test_gone_receivers_and_exhausted_retries_stop(db: peewee.Database) -> None:
    with Receiver([410]) as receiver:
        _finished_job(receiver.url)
        dispatcher = WebhookDispatcher(allow_private=True, retry_delays_s=(0,))
        dispatcher.run_once()
        assert dispatcher.run_once() == 0
    row = _delivery()
    assert (row.status, row.response_code, row.attempt) == ("failed", 410, 1)


def test_retries_end_after_the_schedule(db: peewee.Database) -> None:
    with Receiver([500]) as receiver:
        _finished_job(receiver.url)
        dispatcher = WebhookDispatcher(allow_private=True, retry_delays_s=(0,))
        for _ in range(3):
            dispatcher.run_once()
        assert len(receiver.wait_for(2)) == 2
    row = _delivery()
    assert (row.status, row.attempt, row.response_code) == ("failed", 2, 500)


def test_private_receivers_are_refused_at_delivery(db: peewee.Database) -> None:
    with Receiver([200]) as receiver:
        _finished_job(receiver.url)
        WebhookDispatcher(allow_private=False).run_once()
        assert receiver.requests == []
    row = _delivery()
    assert row.status == "failed" and "127.0.0.1" in row.last_error


def test_unreachable_receivers_are_retried(db: peewee.Database) -> None:
    with Receiver([200]) as receiver:
        url = receiver.url
    _finished_job(url)  # nobody listens there any more
    WebhookDispatcher(allow_private=True, retry_delays_s=(60,)).run_once()
    row = _delivery()
    assert row.status == "pending" and row.response_code is None and row.last_error


def test_the_dispatcher_thread_delivers_when_woken(db: peewee.Database) -> None:
    dispatcher = WebhookDispatcher(allow_private=True, poll_s=30)
    with Receiver([200]) as receiver:
        dispatcher.start()
        try:
            _finished_job(receiver.url, secret=None)
            dispatcher.wake()
            (got,) = receiver.wait_for(1)
        finally:
            dispatcher.stop()
    assert "webhook-signature" not in got.headers  # no secret, no signature
