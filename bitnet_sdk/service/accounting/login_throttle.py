"""The failed-login throttle: slows password guessing without locking victims out.

A throttle keyed on the account alone lets anyone lock a victim out (fail ten
times, from anywhere); one keyed on the address alone locks out everybody
behind a proxy or NAT when one of them misbehaves. So three counters, each
doing one job, all stored in the shared rate-limit tables (every server
process sees the same counts):

* **Per (account, address) pair, exponential back-off.** :attr:`free_failures`
  wrong passwords, then each further attempt from that address on that
  account must wait ``base_delay_s * 2**(n - free_failures)`` seconds after
  the last failure (``n`` failures in :attr:`pair_window_s`), at most
  :attr:`max_delay_s`. This is what slows a guesser; it touches no one else.
  Attempts are counted when allowed, atomically with the check, and a right
  password takes its attempt back: concurrent guesses get no extra tries.
* **Per address, a much larger budget** (:attr:`address_budget` failures per
  :attr:`window_s`) against one address spraying many accounts.
* **Per account, across addresses** (:attr:`account_budget` per
  :attr:`window_s`) against guessing one account from many addresses.

The address and account budgets do not apply to a *known-good* pair: an
address from which the account logged in successfully within
:attr:`known_good_s`. So the owner, from where they usually log in, is never
blocked by failures elsewhere, and a user behind a shared address is not
blocked by a neighbour's failures on other accounts once they have logged in
from it. Every refusal is decided before the password is checked (a throttled
attempt learns nothing) and answered ``429`` with ``Retry-After``.

Accounts are keyed by the normalised email whether or not it exists, so the
throttle does not reveal which emails have accounts.

Every check also deletes a bounded batch of keys idle for longer than their
window (:func:`~bitnet_sdk.service.accounting.ratelimit.prune_prefix`): an
attacker cycling through addresses or emails adds keys that are never used
again, and they must not pile up.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from bitnet_sdk.service.accounting.ratelimit import (
    check_and_consume,
    hits_in_window,
    peek,
    prune_prefix,
    reset,
)
from bitnet_sdk.store import advisory_lock, write_transaction

__all__ = ["LoginDecision", "LoginThrottle"]

#: A budget no counter reaches: :func:`check_and_consume` as a plain "record one".
_RECORD_ONLY = 1 << 30


@dataclass(frozen=True)
class LoginDecision:
    """May this attempt go ahead; if not, which limit refused it and for how long."""

    allowed: bool
    retry_after_s: int = 0
    reason: str = ""


@dataclass(frozen=True)
class LoginThrottle:
    """See the module docstring. Blocking (database): call from worker threads."""

    free_failures: int = 5
    base_delay_s: float = 2.0
    max_delay_s: float = 15 * 60
    pair_window_s: int = 3600
    address_budget: int = 100
    account_budget: int = 20
    window_s: int = 15 * 60
    known_good_s: int = 30 * 24 * 3600

    @staticmethod
    def _account(email: str) -> str:
        return email.strip().lower()

    def _keys(self, email: str, address: str | None) -> tuple[str, str, str, str]:
        account, where = self._account(email), address or "unknown"
        return (f"login-pair:{account}|{where}", f"login-address:{where}",
                f"login-account:{account}", f"login-known:{account}|{where}")

    def check(self, email: str, address: str | None, now: float | None = None) -> LoginDecision:
        """Whether an attempt for ``email`` from ``address`` may check its password now.

        An allowed attempt is counted against its pair at once, atomically with
        the check (serialised per pair), so concurrent guesses cannot all slip
        in before the first failure is recorded; :meth:`succeeded` takes it back.
        """
        at = time.time() if now is None else now
        pair, by_address, by_account, known = self._keys(email, address)
        with write_transaction():
            advisory_lock(pair)
            decision = self._decide(pair, by_address, by_account, known, at)
            if decision.allowed:
                check_and_consume(pair, _RECORD_ONLY, self.pair_window_s, at)
        self.prune(at)
        return decision

    def prune(self, now: float | None = None) -> int:
        """Delete a bounded batch of idle keys of every kind; the number deleted."""
        at = time.time() if now is None else now
        return sum(prune_prefix(prefix, window, at) for prefix, window in (
            ("login-pair:", self.pair_window_s), ("login-address:", self.window_s),
            ("login-account:", self.window_s), ("login-known:", self.known_good_s)))

    def _decide(self, pair: str, by_address: str, by_account: str, known: str,
                at: float) -> LoginDecision:
        wait = self._backoff(pair, at)
        if wait > 0:
            return LoginDecision(False, wait, "too many failed logins for this account "
                                              "from this address")
        if hits_in_window(known, self.known_good_s, at)[0]:
            return LoginDecision(True)  # logged in from here before: budgets do not apply
        for key, budget, what in ((by_address, self.address_budget, "from this address"),
                                  (by_account, self.account_budget, "for this account")):
            decision = peek(key, budget, self.window_s, at)
            if not decision.allowed:
                return LoginDecision(False, decision.retry_after_s,
                                     f"too many failed logins {what}")
        return LoginDecision(True)

    def _backoff(self, pair: str, at: float) -> int:
        """Seconds the pair must still wait (0: it may try now)."""
        count, last = hits_in_window(pair, self.pair_window_s, at)
        if count < self.free_failures or last is None:
            return 0
        delay = min(self.max_delay_s, self.base_delay_s * 2 ** min(64, count - self.free_failures))
        remaining = last + delay - at
        return max(1, math.ceil(remaining)) if remaining > 0 else 0

    def record_failure(self, email: str, address: str | None, now: float | None = None) -> None:
        """Count one wrong password against the address and the account (the pair counted
        the attempt in :meth:`check`)."""
        at = time.time() if now is None else now
        _, by_address, by_account, _ = self._keys(email, address)
        check_and_consume(by_address, _RECORD_ONLY, self.window_s, at)
        check_and_consume(by_account, _RECORD_ONLY, self.window_s, at)

    def succeeded(self, email: str, address: str | None, now: float | None = None) -> None:
        """A right password: clear the pair's back-off and remember the address as known-good.

        The address and account counts stay: one address cannot cycle through
        accounts by logging into one of its own now and then.
        """
        at = time.time() if now is None else now
        pair, _, _, known = self._keys(email, address)
        reset(pair)
        reset(known)
        check_and_consume(known, _RECORD_ONLY, self.known_good_s, at)
