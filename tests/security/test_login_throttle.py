"""The failed-login throttle slows guessers without locking victims out.

Attacks against a live server, from several loopback addresses (``127.0.0.x`` as the
connection's source): failures from other addresses must not lock the owner out of an
account, a shared address (a NAT) must not lock out everyone behind it, a guesser must be
slowed (``429`` with ``Retry-After``, also for the right password), and ``X-Forwarded-For``
counts only when it comes from a trusted proxy (here ``127.0.0.1``).
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from argon2 import PasswordHasher

from bitnet_sdk.auth import passwords
from tests.conftest import Account, make_account

PROBLEM = "application/problem+json"
PROXY = "127.0.0.1"


@pytest.fixture
def settings(settings):
    return settings.with_(trusted_proxies=f"{PROXY}/32")


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch):
    """Argon2id with small parameters: the same code path, ~100x faster than production's."""
    monkeypatch.setattr(passwords, "_default", PasswordHasher(time_cost=1, memory_cost=256))


def _from(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address))


def _login(server, client: httpx.Client, email: str, password: str,
           forwarded: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return client.post(server.url + "/v1/auth/login", headers=headers,
                       json={"email": email, "password": password})


def _throttled(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"] == PROBLEM and int(r.headers["retry-after"]) >= 1


def _user(server, who: str) -> Account:
    return make_account(server.settings, f"{who}-{uuid.uuid4().hex[:6]}@example.com")


def test_failures_from_other_addresses_do_not_lock_the_owner_out(live_server):
    owner = _user(live_server, "owner")
    with _from("127.0.0.2") as home:
        assert _login(live_server, home, owner.email, owner.password).status_code == 200
    # One attacker hammering from one address, and a botnet from thirty more.
    with _from("127.0.0.3") as attacker:
        statuses = {_login(live_server, attacker, owner.email, f"guess {i}").status_code
                    for i in range(15)}
    assert statuses == {401, 429}
    for host in range(10, 40):
        with _from(f"127.0.0.{host}") as bot:
            _login(live_server, bot, owner.email, "guess")
    with _from("127.0.0.2") as home:  # the owner, from where they log in
        r = _login(live_server, home, owner.email, owner.password)
        assert r.status_code == 200, r.text
    with _from("127.0.0.50") as unknown:  # a new address meets the account's budget
        _throttled(_login(live_server, unknown, owner.email, owner.password))


def test_a_guesser_is_slowed_even_when_the_guess_is_right(live_server):
    victim = _user(live_server, "victim")
    with _from("127.0.0.4") as attacker:
        for i in range(5):
            assert _login(live_server, attacker, victim.email, f"guess {i}").status_code == 401
        _throttled(_login(live_server, attacker, victim.email, victim.password))
        _throttled(_login(live_server, attacker, victim.email, "guess 6"))
    with _from("127.0.0.5") as elsewhere:  # the pair is slowed, not the account
        assert _login(live_server, elsewhere, victim.email, victim.password).status_code == 200


def test_a_shared_address_does_not_lock_out_its_known_users(live_server):
    regular, newcomer = _user(live_server, "regular"), _user(live_server, "newcomer")
    with _from("127.0.0.6") as nat:
        assert _login(live_server, nat, regular.email, regular.password).status_code == 200
        for i in range(100):  # a neighbour sprays 100 accounts, one guess each
            assert _login(live_server, nat, f"spray{i}@example.com", "guess").status_code == 401
        _throttled(_login(live_server, nat, "spray-more@example.com", "guess"))
        _throttled(_login(live_server, nat, newcomer.email, newcomer.password))
        assert _login(live_server, nat, regular.email, regular.password).status_code == 200
    with _from("127.0.0.7") as other:
        assert _login(live_server, other, newcomer.email, newcomer.password).status_code == 200


def test_forwarded_for_counts_only_from_a_trusted_proxy(live_server):
    victim = _user(live_server, "proxied")
    with _from(PROXY) as proxy:
        for i in range(5):  # the client's own entries left of the proxy's are not believed
            r = _login(live_server, proxy, victim.email, "guess",
                       forwarded=f"10.9.9.{i}, 203.0.113.9")
            assert r.status_code == 401
        _throttled(_login(live_server, proxy, victim.email, victim.password,
                          forwarded="203.0.113.9"))
        # Another client behind the same proxy is another address.
        r = _login(live_server, proxy, victim.email, victim.password, forwarded="198.51.100.7")
        assert r.status_code == 200, r.text
    with _from("127.0.0.8") as direct:  # not a proxy: its header is ignored
        for _ in range(5):
            assert _login(live_server, direct, victim.email, "guess",
                          forwarded="198.51.100.7").status_code == 401
    with _from(PROXY) as proxy:  # so 198.51.100.7 was not slowed by those
        r = _login(live_server, proxy, victim.email, victim.password, forwarded="198.51.100.7")
        assert r.status_code == 200, r.text


def test_concurrent_guesses_get_no_extra_tries(live_server):
    """Twelve guesses at once from one address: the free five, not twelve, reach the password
    check (a sixth or seventh may, if the burst outlasts the first back-off of 2 s, then 4 s)."""
    victim = _user(live_server, "burst")
    start = threading.Barrier(12)

    def guess(i: int) -> int:
        with _from("127.0.0.9") as attacker:
            start.wait()
            return _login(live_server, attacker, victim.email, f"guess {i}").status_code

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(guess, range(12)))
    assert set(statuses) == {401, 429}
    assert 5 <= statuses.count(401) <= 7, statuses


def test_throttle_rows_of_addresses_never_seen_again_are_pruned(live_server):
    """An attacker cycling through addresses adds throttle keys nobody uses again; once
    their windows have passed, the next logins delete them (bounded work each), so the
    tables do not grow without bound."""
    from bitnet_sdk.store.models import RateLimitCounter, RateLimitHit

    def login_keys() -> int:
        return RateLimitCounter.select().where(RateLimitCounter.key.startswith("login-")).count()

    victim = _user(live_server, "sprayed")
    with _from(PROXY) as proxy:
        for i in range(150):
            _login(live_server, proxy, f"nobody-{i}@example.com", "guess",
                   forwarded=f"10.9.{i // 200}.{i % 200}")
        grown = login_keys()
        assert grown >= 300  # an address key and a pair key per attempt, at least
        # Time passes beyond every window (the longest: the known-good memory).
        age = 31 * 24 * 3600
        RateLimitCounter.update(updated_at=RateLimitCounter.updated_at - age).execute()
        RateLimitHit.update(ts=RateLimitHit.ts - age).execute()
        for _ in range(5):
            _login(live_server, proxy, victim.email, victim.password, forwarded="10.8.0.1")
    assert login_keys() <= 10  # the victim's own few keys
    assert RateLimitHit.select().where(RateLimitHit.key.startswith("login-")).count() <= 10
