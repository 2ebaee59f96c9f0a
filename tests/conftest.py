"""Fixtures shared by the whole suite: settings on a temp data dir, a live server
on a loopback port (the real app behind the real Tornado bridge), and accounts
with credentials for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bitnet_sdk.config import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", demo_model=False, webhook_allow_private=True)


@pytest.fixture
def live_server(settings: Settings) -> Iterator[object]:
    """The API on ``127.0.0.1:<free port>``; ``.url``, ``.ws_url()``, ``.app``, ``.settings``."""
    from bitnet_sdk.server.app import create_app
    from bitnet_sdk.server.asgi.testing import ServerThread
    from bitnet_sdk.server.run import websocket_routes

    app = create_app(settings)
    with ServerThread(app, websocket_routes=websocket_routes(app)) as server:
        server.app = app
        server.settings = settings
        yield server


@dataclass
class Account:
    """A user of the live server with a bearer token and headers ready to use."""

    user_id: str
    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_account(settings: Settings, email: str, *, admin: bool = False,
                 tier: str = "developer") -> Account:
    """Create a user in the (already bound) store and issue it an access token."""
    from bitnet_sdk import auth

    password = "correct horse battery staple 42"
    user = auth.create_user(email, password, tier=tier, is_admin=admin, settings=settings)
    token, _ = auth.issue_access_token(user, user.scopes, settings)
    return Account(user.id, email, password, token)


@pytest.fixture
def admin(live_server) -> Account:
    return make_account(live_server.settings, "root@example.com", admin=True, tier="enterprise")


@pytest.fixture
def customer(live_server) -> Account:
    return make_account(live_server.settings, "dev@example.com")
