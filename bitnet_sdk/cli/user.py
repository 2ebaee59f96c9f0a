"""``bitnet user``: manage accounts and tier upgrade requests from the operator's shell.

Works on the same database as the server (``--db`` / ``--data-dir`` or the
``BITNET_*`` variables) and migrates it first, so it also works before the
server ever ran.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", dest="database_url", metavar="URL",
                        help="database URL (default sqlite:///<data-dir>/bitnet.db)")
    common.add_argument("--data-dir", help="server data folder (default ./data or $BITNET_DATA_DIR)")

    p = sub.add_parser("user", help="manage accounts and upgrade requests",
                       description="Create and list accounts; decide tier upgrade requests.")
    actions = p.add_subparsers(dest="user_command", metavar="ACTION", required=True)

    create = actions.add_parser("create", parents=[common], help="create an account")
    create.add_argument("--email", required=True)
    create.add_argument("--tier", default="developer", help="tier (default developer)")
    create.add_argument("--admin", action="store_true", help="grant administrator scopes")
    create.add_argument("--password", help="password (default: generate one and print it once)")
    create.set_defaults(func=_create)

    listing = actions.add_parser("list", parents=[common], help="list accounts")
    listing.add_argument("--json", action="store_true", help="print JSON lines")
    listing.set_defaults(func=_list)

    upgrades = actions.add_parser("upgrades", parents=[common], help="list upgrade requests")
    upgrades.add_argument("--status", choices=["pending", "approved", "rejected", "all"],
                          default="pending", help="which requests (default pending)")
    upgrades.set_defaults(func=_upgrades)

    for name, verb in (("approve-upgrade", "approve"), ("reject-upgrade", "reject")):
        decide = actions.add_parser(name, parents=[common], help=f"{verb} an upgrade request")
        decide.add_argument("request_id", metavar="REQUEST_ID")
        decide.set_defaults(func=_decide, verb=verb)


def _open(args: argparse.Namespace) -> Any:
    from bitnet_sdk.config import Settings
    from bitnet_sdk.store import connect, migrate

    settings = Settings.from_env(database_url=args.database_url, data_dir=args.data_dir)
    migrate(connect(settings.db_url))
    return settings


def _fail(message: str) -> int:
    print(f"bitnet user: {message}", file=sys.stderr)
    return 1


def _create(args: argparse.Namespace) -> int:
    from bitnet_sdk.auth import AuthError, create_user
    from bitnet_sdk.auth.passwords import generate_password

    settings = _open(args)
    password = args.password or generate_password()
    try:
        user = create_user(args.email, password, tier=args.tier, is_admin=args.admin,
                           settings=settings)
    except (AuthError, ValueError) as exc:
        return _fail(str(exc))
    print(f"created {user.id} {user.email} tier={user.tier}{' admin' if user.is_admin else ''}")
    if not args.password:
        print(f"password: {password}")
        print("(shown once; it is stored only as a hash)")
    return 0


def _list(args: argparse.Namespace) -> int:
    from bitnet_sdk.auth import list_users

    _open(args)
    offset = 0
    while batch := list_users(limit=500, offset=offset):
        for u in batch:
            if args.json:
                print(json.dumps({"id": u.id, "email": u.email, "tier": u.tier,
                                  "is_admin": u.is_admin, "disabled": u.disabled,
                                  "scopes": u.scopes, "created_at": u.created_at.isoformat()}))
            else:
                flags = " ".join(f for f, on in (("admin", u.is_admin), ("disabled", u.disabled)) if on)
                print(f"{u.id}  {u.email:<32} {u.tier:<11} {u.created_at:%Y-%m-%d} {flags}".rstrip())
        offset += len(batch)
    return 0


def _upgrades(args: argparse.Namespace) -> int:
    from bitnet_sdk.auth import list_upgrade_requests
    from bitnet_sdk.store import User

    _open(args)
    status = None if args.status == "all" else args.status
    for r in list_upgrade_requests(status=status, limit=10_000):
        email = User.get_by_id(r.user_id).email
        print(f"{r.id}  {email:<32} {r.from_tier} -> {r.to_tier}  {r.status}  "
              f"{r.created_at:%Y-%m-%d %H:%M}  {r.reason}".rstrip())
    return 0


def _decide(args: argparse.Namespace) -> int:
    from bitnet_sdk.auth import AuthError, approve_upgrade, reject_upgrade

    settings = _open(args)
    try:
        if args.verb == "approve":
            request = approve_upgrade(args.request_id, settings=settings)
        else:
            request = reject_upgrade(args.request_id)
    except AuthError as exc:
        return _fail(str(exc))
    print(f"{request.id} {request.status}: {request.from_tier} -> {request.to_tier}")
    return 0
