"""The developer portal in a real headless Chromium against a live server on loopback."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bitnet_sdk.service.registry.demo import ensure_demo_model
from bitnet_sdk.testing.synthetic import build_model
from tests.conftest import make_account
from tests.support.inference import cache_stats, register_model, wait_until


def test_root_serves_the_portal_and_the_api_is_unchanged(live_server) -> None:
    page = httpx.get(live_server.url + "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/portal/app.js">' in page.text
    script = httpx.get(live_server.url + "/portal/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert httpx.head(live_server.url + "/").headers["content-length"] == str(len(page.content))
    # Only the built files are served; other paths are the API's (problem+json 404).
    missing = httpx.get(live_server.url + "/portal/../pyproject.toml")
    assert missing.status_code == 404
    assert httpx.get(live_server.url + "/v1/health").status_code == 200


def test_sign_in_and_out(portal, customer) -> None:
    portal.open()
    portal.type("#signin-email", customer.email)
    portal.type("#signin-password", "not the password")
    portal.find("#signin-submit").click()
    assert "password" in portal.filled("#signin-error")  # the API's refusal is shown
    portal.sign_in(customer.email, customer.password)
    portal.find("#keys-list")
    portal.screenshot("keys")
    # The tab keeps its session across a reload (sessionStorage), and loses it on sign-out.
    portal.driver.refresh()
    portal.text_in("#who-email", customer.email)
    portal.sign_out()
    portal.driver.refresh()
    portal.find("#signin-email")
    portal.screenshot("sign-in")


def test_expired_session_signs_in_again_keeping_typed_text(portal, customer, live_server) -> None:
    portal.sign_in(customer.email, customer.password, route="account")
    portal.type("#upgrade-reason", "we need more tokens")
    # Both tokens stop working (as when the refresh token expires): the next call must sign in again.
    portal.driver.execute_script("sessionStorage.clear()")
    httpx.post(live_server.url + "/v1/auth/logout", json={"all_sessions": True},
               headers=customer.headers)
    wait_until(lambda: httpx.get(live_server.url + "/v1/auth/me",
                                 headers=customer.headers).status_code == 401)
    portal.find("#upgrade-submit").click()
    portal.type("#resignin-email", customer.email)
    portal.type("#resignin-password", customer.password)
    portal.find("#resignin-submit").click()
    portal.gone("#resignin")
    assert portal.find("#upgrade-reason").get_attribute("value") == "we need more tokens"
    portal.text_in("#upgrade-result", "Requested")


def test_create_and_revoke_a_key(portal, customer, live_server) -> None:
    portal.sign_in(customer.email, customer.password)
    portal.type("#key-name", "ci")
    for box in portal.driver.find_elements("css selector", "input[name=scope]"):
        if box.get_attribute("value") != "models:read":
            box.click()
    portal.find("#key-create").click()
    key = portal.find("#new-key").get_attribute("value")
    portal.find("#copy-key")
    portal.screenshot("key-created")
    me = httpx.get(live_server.url + "/v1/auth/me", headers={"X-API-Key": key})
    assert me.status_code == 200 and me.json()["scopes"] == ["models:read"]
    row = portal.text_in("#keys-list", "ci")
    assert key not in row.text  # only the prefix is listed
    portal.find("#keys-list button.danger").click()
    portal.find("#confirm-no").click()  # cancel keeps it
    assert httpx.get(live_server.url + "/v1/auth/me", headers={"X-API-Key": key}).status_code == 200
    portal.find("#keys-list button.danger").click()
    portal.find("#confirm-yes").click()
    portal.text_in("#keys-list", "No keys yet.")
    assert httpx.get(live_server.url + "/v1/auth/me", headers={"X-API-Key": key}).status_code == 401


def test_stream_a_generation_and_stop_it(portal, customer, live_server, model_files) -> None:
    register_model(live_server.settings, model_files.endless(), owner_id=customer.user_id,
                   name="endless")
    portal.sign_in(customer.email, customer.password, route="playground")
    portal.type("#pg-max-tokens", "8000")
    portal.type("#pg-seed", "7")
    assert '"max_tokens":8000' in portal.find("#pg-snippet").text.replace(" ", "")
    portal.find("#pg-run").click()
    portal.filled("#pg-output")
    portal.text_in("#pg-ttft", " ms")
    portal.find("#pg-stop").click()
    portal.text_in("#pg-state", "stopped")
    # Closing the stream cancelled the generation on the server.
    wait_until(lambda: cache_stats(live_server)["running"] == 0, what="generation cancelled")
    for lang in ("Python", "TypeScript", "Go", "curl"):
        portal.driver.find_element("xpath", f"//button[@role='tab' and text()='{lang}']").click()
        assert live_server.url in portal.find("#pg-snippet").text
    portal.screenshot("playground")


def test_upload_a_model_with_progress(portal, customer, live_server, tmp_path) -> None:
    path = tmp_path / "upload.gguf"
    build_model(path, n_layers=2, d_model=256, n_heads=4, n_kv_heads=2, d_ff=512, seed=5)
    portal.sign_in(customer.email, customer.password, route="models")
    portal.type("#upload-name", "my-upload")
    portal.find("#upload-file").send_keys(str(path))
    portal.find("#upload-submit").click()
    portal.text_in("#upload-percent", "Uploaded: my-upload is ready")
    assert portal.find("#upload-progress").get_attribute("value") == "100"
    models = httpx.get(live_server.url + "/v1/models", headers=customer.headers).json()["data"]
    mine = next(m for m in models if m["name"] == "my-upload")
    assert (mine["status"], mine["size_bytes"]) == ("ready", path.stat().st_size)
    row = portal.text_in("#models-list", "my-upload")
    row.find_element("css selector", f"tr[data-model-id='{mine['id']}'] button.secondary").click()
    portal.text_in("#details-panel", "Metadata")
    portal.screenshot("models")
    portal.find(f"tr[data-model-id='{mine['id']}'] button.danger").click()
    portal.find("#confirm-yes").click()
    portal.gone(f"tr[data-model-id='{mine['id']}']")
    assert httpx.get(live_server.url + f"/v1/models/{mine['id']}",
                     headers=customer.headers).status_code == 404


class PieceGate:
    """Holds the server's ``hold``-th resumable upload piece before the real ``open_piece``
    runs (until ``release``), and records where every piece started and how long it was."""

    def __init__(self, hold: int) -> None:
        self.hold = hold
        self.pieces: list[tuple[int, int]] = []
        self.arrived = threading.Event()
        self.release = threading.Event()


@pytest.fixture
def piece_gate(live_server, monkeypatch) -> Iterator[PieceGate]:
    """Hold the 4th piece: the upload is deterministically mid-way while the test interrupts it."""
    from bitnet_sdk.service.registry import resumable

    original = resumable.open_piece
    gate = PieceGate(hold=3)

    def gated(uploads_dir: Path, model_id: str, piece: resumable.ContentRange) -> resumable.Piece:
        gate.pieces.append((piece.first, piece.length))
        if len(gate.pieces) - 1 == gate.hold:
            gate.arrived.set()
            gate.release.wait(60)
        return original(uploads_dir, model_id, piece)

    monkeypatch.setattr(resumable, "open_piece", gated)
    yield gate
    gate.release.set()


def test_a_paused_upload_resumes_after_a_reload_from_the_server_offset(
        portal, customer, live_server, piece_gate, tmp_path) -> None:
    piece = 64 * 1024
    path = tmp_path / "resume.gguf"
    build_model(path, n_layers=2, d_model=256, n_heads=4, n_kv_heads=2, d_ff=512, seed=6)
    data = path.read_bytes()
    assert len(data) > 6 * piece
    portal.sign_in(customer.email, customer.password, route="models")
    portal.driver.execute_script(
        "localStorage.setItem('bitnet.portal.upload-piece-bytes', arguments[0])", str(piece))
    portal.type("#upload-name", "resumed")
    portal.find("#upload-file").send_keys(str(path))
    portal.find("#upload-submit").click()
    assert piece_gate.arrived.wait(60), "the 4th piece never reached the server"
    portal.wait.until(lambda d: int(portal.find("#upload-progress").get_attribute("value")) > 0)
    portal.find("#upload-pause").click()
    portal.text_in("#upload-percent", "Paused")
    assert portal.driver.switch_to.active_element.get_attribute("id") == "upload-resume"
    portal.screenshot("upload-paused")
    model_id = next(m["id"] for m in httpx.get(live_server.url + "/v1/models", headers=customer.headers)
                    .json()["data"] if m["name"] == "resumed")
    # The page is reloaded: it remembers the unfinished upload; the server holds 3 pieces.
    portal.driver.refresh()
    portal.text_in("#upload-unfinished", "resumed: resume.gguf")
    held = httpx.get(live_server.url + f"/v1/models/{model_id}/upload", headers=customer.headers).json()
    assert (held["offset"], held["total_bytes"], held["complete"]) == (3 * piece, len(data), False)
    portal.find("#upload-file").send_keys(str(path))  # the same file again
    portal.text_in("#upload-held", f"holds {3 * piece // 1024}.0 KiB")
    portal.find("#upload-resume").click()
    portal.text_in("#upload-percent", "Uploaded: resumed is ready")
    assert portal.find("#upload-progress").get_attribute("value") == "100"
    portal.gone("#upload-unfinished li")
    # The server holds the whole file; after the pause nothing was sent again from byte 0.
    model = httpx.get(live_server.url + f"/v1/models/{model_id}", headers=customer.headers).json()
    assert (model["status"], model["size_bytes"]) == ("ready", len(data))
    assert model["sha256"] == hashlib.sha256(data).hexdigest()
    first = [(n * piece, piece) for n in range(4)]
    assert piece_gate.pieces[:4] == first  # the 4th was held, then abandoned by the pause
    resumed = piece_gate.pieces[4:]
    assert resumed[0][0] == held["offset"] > 0
    assert sum(length for _, length in resumed) == len(data) - held["offset"]


def test_usage_and_account_pages(portal, customer, live_server) -> None:
    ensure_demo_model(live_server.settings)
    httpx.get(live_server.url + "/v1/models", headers=customer.headers)
    portal.sign_in(customer.email, customer.password, route="usage")
    portal.find("#usage-current svg[aria-label^='Requests by day'] rect")
    portal.find("#rate-remaining")
    portal.screenshot("usage")
    portal.open("account")
    portal.text_in("#acct-tier", "developer")
    portal.screenshot("account")


def _chart_text(portal, panel: str, title: str) -> str:
    """The text alternative (``<title>``) of a usage chart: every label with its value."""
    svg = portal.find(f"#{panel} svg[aria-label^='{title}']")
    return str(svg.find_element("css selector", "title").get_attribute("textContent"))


def test_usage_by_day_and_operation_for_each_month(portal, customer) -> None:
    from datetime import datetime, timedelta, timezone

    from selenium.webdriver.common.keys import Keys

    from bitnet_sdk.service.accounting.usage import OP_INFERENCE, record_usage

    now = datetime.now(timezone.utc)
    last_month = (now.replace(day=1) - timedelta(days=1)).replace(day=3, hour=12)
    record_usage(customer.user_id, OP_INFERENCE, tokens_in=5, tokens_out=40, compute_units=2.5,
                 now=last_month.timestamp())
    record_usage(customer.user_id, OP_INFERENCE, tokens_in=1, tokens_out=2, compute_units=0.25,
                 now=now.timestamp())
    portal.sign_in(customer.email, customer.password, route="usage")
    assert f"{OP_INFERENCE} 3" in _chart_text(portal, "usage-current", "Tokens by operation")
    assert f"{OP_INFERENCE} 0.25" in _chart_text(portal, "usage-current", "Compute units by operation")
    assert f"{now:%m-%d} 3" in _chart_text(portal, "usage-current", "Tokens by day")
    assert not portal.find("#usage-previous").is_displayed()
    # The month tabs work from the keyboard: the arrow key moves to the previous month.
    portal.find("#usage-current-tab").send_keys(Keys.ARROW_RIGHT)
    portal.wait.until(lambda d: portal.find("#usage-previous").is_displayed())
    assert portal.find("#usage-previous-tab").get_attribute("aria-selected") == "true"
    assert not portal.find("#usage-current").is_displayed()
    assert f"{last_month:%m-%d} 45" in _chart_text(portal, "usage-previous", "Tokens by day")
    assert f"{last_month:%m-%d} 2.5" in _chart_text(portal, "usage-previous", "Compute units by day")
    by_operation = _chart_text(portal, "usage-previous", "Requests by operation")
    assert f"{OP_INFERENCE} 0" in by_operation and "getCurrentUser" not in by_operation
    assert "compute units: 2.5" in portal.find("#usage-previous-totals").text
    portal.screenshot("usage-previous-month")


def test_non_admin_is_refused_the_admin_pages(portal, customer) -> None:
    portal.sign_in(customer.email, customer.password, route="admin")
    portal.text_in("#refused", "administrators only")
    for route in ("admin", "users", "upgrades"):
        assert not portal.driver.find_elements("css selector", f"#nav-{route}")
    for route in ("users", "upgrades"):
        portal.open(route)
        portal.driver.refresh()
        portal.text_in("#refused", "administrators only")
        assert not portal.driver.find_elements("css selector", f"#{route}-list")


def test_admin_approves_an_upgrade_the_user_requested(portal, customer, admin) -> None:
    portal.sign_in(customer.email, customer.password, route="account")
    portal.text_in("#acct-tier", "developer")
    portal.find("#upgrade-tier option[value='team']").click()
    portal.type("#upgrade-reason", "nightly evaluations")
    portal.find("#upgrade-submit").click()
    portal.text_in("#upgrade-result", "Requested team")
    portal.sign_out()

    portal.sign_in(admin.email, admin.password, route="upgrades")
    row = portal.text_in("#upgrades-table", customer.email)
    assert "nightly evaluations" in row.text and "developer → team" in row.text
    portal.screenshot("upgrades")
    portal.find("#upgrades-table button.approve").click()
    portal.text_in("#status", "team approved")
    portal.text_in("#upgrades-list", "No upgrade requests.")  # the pending filter is empty now
    portal.sign_out()

    portal.sign_in(customer.email, customer.password, route="account")
    portal.text_in("#acct-tier", "team")
    assert not portal.driver.find_elements("css selector", "#upgrade-pending")


def test_admin_changes_a_tier_and_disables_an_account(portal, customer, admin, live_server) -> None:
    make_account(live_server.settings, "someone.else@example.com")
    portal.sign_in(admin.email, admin.password, route="users")
    portal.text_in("#users-table", "someone.else@example.com")
    portal.type("#users-email", "DEV@")
    portal.find("#users-filter").click()
    portal.wait.until(lambda d: "someone.else" not in portal.find("#users-list").text)
    row = f"tr[data-user-id='{customer.user_id}']"
    portal.find(f"#tier-{customer.user_id} option[value='enterprise']").click()
    portal.find(f"{row} button.secondary").click()
    portal.text_in(f"{row} .user-tier", "enterprise")
    account = httpx.get(live_server.url + "/v1/account", headers=customer.headers).json()
    assert account["tier"] == "enterprise"
    portal.screenshot("users")
    portal.find(f"{row} button.danger").click()
    portal.find("#confirm-yes").click()
    portal.text_in(row, "disabled")
    assert httpx.get(live_server.url + "/v1/account", headers=customer.headers).status_code == 401
    portal.find(f"{row} button[aria-label^='Enable']").click()
    portal.text_in(row, "active")
    assert httpx.get(live_server.url + "/v1/account", headers=customer.headers).status_code == 200


def test_admin_sees_server_status(portal, live_server) -> None:
    admin = make_account(live_server.settings, "root@example.com", admin=True, tier="enterprise")
    portal.sign_in(admin.email, admin.password, route="admin")
    portal.find("#nav-admin")
    portal.text_in("#admin-status", "backends:")
    portal.text_in("#admin-backends", "numpy")
    portal.screenshot("admin")


def test_pages_fit_a_narrow_screen(portal, admin) -> None:
    """At a phone's width no page scrolls sideways (wide tables scroll inside their own box)."""
    size = portal.driver.get_window_size()
    portal.driver.set_window_size(400, 800)
    try:
        portal.sign_in(admin.email, admin.password)
        for route, ready in (("keys", "#keys-list"), ("playground", "#pg-snippet"),
                             ("models", "#models-list"), ("usage", "#rate-remaining"),
                             ("account", "#acct-tier"), ("admin", "#admin-status"),
                             ("users", "#users-table"), ("upgrades", "#upgrades-list")):
            portal.open(route)
            portal.find(ready)
            overflow = portal.driver.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{route} is {overflow}px wider than the screen"
        portal.screenshot("narrow-admin")
    finally:
        portal.driver.set_window_size(size["width"], size["height"])


def test_sign_up_where_the_server_allows_it(driver, tmp_path) -> None:
    """Open sign-up creates the account and signs in; a closed server's refusal is shown."""
    from dataclasses import replace

    from bitnet_sdk.server.app import create_app
    from bitnet_sdk.server.asgi.testing import ServerThread
    from tests.portal.conftest import Portal
    from tests.support.inference import inference_settings

    for open_signup in (False, True):
        settings = replace(inference_settings(tmp_path / str(open_signup)), open_signup=open_signup)
        app = create_app(settings)
        with ServerThread(app) as server:
            portal = Portal(driver, server.url)
            portal.open()
            portal.find("#signup-open").click()
            portal.type("#signup-email", "new@example.com")
            portal.type("#signup-password", "a long enough password")
            portal.find("#signup-submit").click()
            if open_signup:
                portal.text_in("#who-email", "new@example.com")
                portal.find("#keys-list")
            else:
                assert portal.filled("#signup-error")
            driver.get("about:blank")


def test_quantize_a_model_and_follow_its_progress(portal, customer, live_server, tmp_path) -> None:
    from tests.support.jobs import register_source

    source = build_model(tmp_path / "f32.gguf", qtype="f32", n_layers=1)
    source_id = register_source(live_server.settings, source, customer.user_id, "tiny")
    portal.sign_in(customer.email, customer.password, route="models")
    portal.find(f"tr[data-model-id='{source_id}'] button.secondary").click()
    portal.find("#q-start").click()
    portal.text_in("#q-state", "succeeded")
    assert portal.find("#q-progress").get_attribute("value") == "100"
    models = httpx.get(live_server.url + "/v1/models", headers=customer.headers).json()["data"]
    result = next(m for m in models if m["source_model_id"] == source_id)
    assert (result["qtype"], result["status"]) == ("tq2_0", "ready")
    portal.text_in("#models-list", result["name"])
    portal.screenshot("quantize")


@pytest.fixture
def slow_jobs(monkeypatch) -> None:
    """Jobs pause 1 s at every progress checkpoint (the real work still runs), so a running
    job can be watched and cancelled; list it before ``portal`` so the server reads it."""
    monkeypatch.setenv("BITNET_JOB_STEP_DELAY_S", "1.0")


def test_quantize_progress_arrives_live_and_cancel_ends_the_job(
        slow_jobs, portal, customer, live_server, tmp_path) -> None:
    from tests.support.jobs import register_source

    source = build_model(tmp_path / "f32.gguf", qtype="f32", n_layers=2)
    source_id = register_source(live_server.settings, source, customer.user_id, "slow")
    portal.sign_in(customer.email, customer.password, route="models")
    portal.find(f"tr[data-model-id='{source_id}'] button.secondary").click()
    portal.find("#q-start").click()
    portal.text_in("#q-state", "running")
    portal.wait.until(lambda d: 0 < int(portal.find("#q-progress").get_attribute("value")) < 100)
    portal.find("#q-cancel").click()
    portal.text_in("#q-state", "cancelled")
    jobs = httpx.get(live_server.url + "/v1/quantize/jobs", headers=customer.headers).json()["data"]
    assert [j["status"] for j in jobs] == ["cancelled"]
    # The progress came over the WebSocket: the page never polled the job.
    report = httpx.get(live_server.url + "/v1/account/usage", params={"group_by": "operation"},
                       headers=customer.headers).json()
    operations = {b["key"] for b in report["buckets"]}
    assert "cancelQuantizeJob" in operations and "getQuantizeJob" not in operations


def test_an_expired_access_token_is_refreshed_silently(driver, tmp_path, monkeypatch) -> None:
    """Access tokens live 1 s here (and no clock leeway): after expiry the SDK refreshes once
    through /v1/auth/refresh and the page just works, without the sign-in dialog."""
    from dataclasses import replace

    from bitnet_sdk.server.app import create_app
    from bitnet_sdk.server.asgi.testing import ServerThread
    from tests.portal.conftest import Portal
    from tests.support.inference import inference_settings

    monkeypatch.setattr("bitnet_sdk.auth.access.LEEWAY_S", 0)
    settings = replace(inference_settings(tmp_path), access_token_ttl_s=1)
    app = create_app(settings)
    with ServerThread(app) as server:
        user = make_account(settings, "dev@example.com")
        portal = Portal(driver, server.url)
        portal.sign_in(user.email, user.password, route="account")
        first = portal.driver.execute_script("return sessionStorage.getItem('bitnet.portal.tokens')")
        token = {"Authorization": "Bearer " + __import__("json").loads(first)["access"]}
        wait_until(lambda: httpx.get(server.url + "/v1/auth/me", headers=token).status_code == 401,
                   what="the access token expires")
        portal.open("usage")
        portal.find("#rate-remaining")
        assert not portal.driver.find_elements("css selector", "#resignin")
        stored = portal.driver.execute_script("return sessionStorage.getItem('bitnet.portal.tokens')")
        assert stored != first  # the rotated pair was kept for the next reload
        driver.get("about:blank")


def test_usage_changes_after_requests(portal, customer, live_server) -> None:
    portal.sign_in(customer.email, customer.password, route="usage")
    before = portal.filled("#usage-totals")
    for _ in range(3):
        httpx.get(live_server.url + "/v1/models", headers=customer.headers)

    def changed() -> bool:
        portal.driver.refresh()
        return portal.filled("#usage-totals") != before

    wait_until(changed, what="the usage page shows the new requests")
