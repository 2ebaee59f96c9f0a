"""Argon2 hashing, verification and rehash detection."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from bitnet_sdk.auth.errors import WeakPassword
from bitnet_sdk.auth.passwords import (
    MAX_PASSWORD_LENGTH,
    check_password_policy,
    dummy_verify,
    generate_password,
    hash_password,
    verify_password,
)


def test_hash_verify_round_trip(hasher: PasswordHasher) -> None:
    stored = hash_password("correct horse battery", hasher)
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert verify_password(stored, "correct horse battery", hasher) == (True, False)
    assert verify_password(stored, "correct horse batterY", hasher) == (False, False)


def test_same_password_hashes_differently(hasher: PasswordHasher) -> None:
    assert hash_password("same password", hasher) != hash_password("same password", hasher)


def test_malformed_hash_is_a_mismatch_not_an_error(hasher: PasswordHasher) -> None:
    assert verify_password("not-a-hash", "whatever1", hasher) == (False, False)
    assert verify_password("", "whatever1", hasher) == (False, False)


def test_changed_parameters_request_rehash(hasher: PasswordHasher) -> None:
    stored = hash_password("rehash me please", hasher)
    stronger = PasswordHasher(
        time_cost=hasher.time_cost + 1, memory_cost=hasher.memory_cost, parallelism=1
    )
    assert verify_password(stored, "rehash me please", stronger) == (True, True)


@pytest.mark.parametrize("password", ["", "short", "x" * 7, "y" * (MAX_PASSWORD_LENGTH + 1)])
def test_policy_refuses(password: str) -> None:
    with pytest.raises(WeakPassword):
        check_password_policy(password)


def test_policy_accepts_bounds() -> None:
    check_password_policy("x" * 8)
    check_password_policy("x" * MAX_PASSWORD_LENGTH)


def test_generated_passwords_pass_policy_and_differ() -> None:
    generated = {generate_password() for _ in range(50)}
    assert len(generated) == 50
    for password in generated:
        check_password_policy(password)


def test_dummy_verify_runs_without_error(hasher: PasswordHasher) -> None:
    dummy_verify("anything at all", hasher)
    dummy_verify("anything at all", hasher)  # cached dummy hash path
