"""``bitnet user``: create, list, decide upgrade requests against a SQLite data dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bitnet_sdk.auth import authenticate, request_upgrade
from bitnet_sdk.cli.main import main
from bitnet_sdk.config import Settings
from bitnet_sdk.store import User, connect


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_prints_generated_password_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "user", "create", "--email", "Ann@Example.com", "--tier", "team",
                        "--data-dir", str(tmp_path))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("created usr_") and "ann@example.com tier=team" in lines[0]
    password = lines[1].removeprefix("password: ")
    assert (tmp_path / "bitnet.db").exists()
    connect(f"sqlite:///{tmp_path / 'bitnet.db'}")
    assert authenticate("ann@example.com", password).tier == "team"
    assert password not in User.get().password_hash

    code, _, err = _run(capsys, "user", "create", "--email", "ann@example.com", "--data-dir", str(tmp_path))
    assert code == 1 and "already exists" in err


def test_create_admin_with_given_password_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    code, out, _ = _run(capsys, "user", "create", "--email", "root@example.com", "--admin",
                        "--password", "a-long-password", "--db", url)
    assert code == 0 and "admin" in out and "password:" not in out
    _run(capsys, "user", "create", "--email", "b@example.com", "--db", url)
    code, out, _ = _run(capsys, "user", "list", "--json", "--db", url)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["email"], r["is_admin"]) for r in rows] == [("root@example.com", True), ("b@example.com", False)]
    assert "admin" in rows[0]["scopes"]
    code, out, _ = _run(capsys, "user", "list", "--db", url)
    assert code == 0 and len(out.splitlines()) == 2


def test_bad_tier_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "user", "create", "--email", "x@example.com", "--tier", "gold",
                        "--data-dir", str(tmp_path))
    assert code == 1 and "unknown tier" in err


def test_approve_and_reject_upgrades(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'bitnet.db'}"
    _run(capsys, "user", "create", "--email", "c@example.com", "--db", url)
    _run(capsys, "user", "create", "--email", "d@example.com", "--db", url)
    connect(url)
    settings = Settings(data_dir=tmp_path)
    req_c = request_upgrade(User.get(User.email == "c@example.com"), "team", settings)
    req_d = request_upgrade(User.get(User.email == "d@example.com"), "enterprise", settings)

    code, out, _ = _run(capsys, "user", "upgrades", "--db", url)
    assert code == 0 and req_c.id in out and req_d.id in out

    code, out, _ = _run(capsys, "user", "approve-upgrade", req_c.id, "--db", url)
    assert code == 0 and "approved" in out
    code, out, _ = _run(capsys, "user", "reject-upgrade", req_d.id, "--db", url)
    assert code == 0 and "rejected" in out
    assert User.get(User.email == "c@example.com").tier == "team"
    assert User.get(User.email == "d@example.com").tier == "developer"

    code, _, err = _run(capsys, "user", "approve-upgrade", req_c.id, "--db", url)
    assert code == 1 and "already approved" in err
    code, _, err = _run(capsys, "user", "reject-upgrade", "upg_missing", "--db", url)
    assert code == 1 and "no upgrade request" in err
    code, out, _ = _run(capsys, "user", "upgrades", "--db", url)
    assert out == ""
    code, out, _ = _run(capsys, "user", "upgrades", "--status", "all", "--db", url)
    assert len(out.splitlines()) == 2
