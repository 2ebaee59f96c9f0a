"""Browser fixtures for the portal tests: Debian's Chromium driven by Selenium through
chromedriver (both from apt, see scripts/setup-test-tools.sh; nothing is downloaded),
against the live server on loopback, with the numpy backend.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bitnet_sdk.config import Settings
from tests.support.inference import ModelFiles, inference_settings

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 20.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return inference_settings(tmp_path)


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    return ModelFiles(tmp_path_factory.mktemp("portal-models"))


@pytest.fixture(scope="session")
def driver() -> Iterator[Any]:
    """One headless Chromium for the session (each test's server is a new origin)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra")
    chromium = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    chromedriver = shutil.which("chromedriver") or (CHROMEDRIVER if Path(CHROMEDRIVER).exists() else None)
    if not chromium or not chromedriver:
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/setup-test-tools.sh installs them as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1100,900"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=webdriver.ChromeService(executable_path=chromedriver),
                               options=options)
    browser.set_page_load_timeout(WAIT)
    try:
        yield browser
    finally:
        browser.quit()


class Portal:
    """The portal of one live server in the shared browser, with the steps the tests repeat."""

    def __init__(self, driver: Any, url: str) -> None:
        from selenium.common.exceptions import (
            NoSuchElementException,
            StaleElementReferenceException,
        )
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.url = url
        # Pages re-render parts of themselves: an element replaced mid-wait is looked up again.
        self.wait = WebDriverWait(driver, WAIT, ignored_exceptions=(
            NoSuchElementException, StaleElementReferenceException))

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.wait.until(lambda d: d.find_element(By.CSS_SELECTOR, css))

    def gone(self, css: str) -> None:
        from selenium.webdriver.common.by import By

        self.wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, css))

    def text_in(self, css: str, text: str) -> Any:
        self.wait.until(lambda d: text in self.find(css).text)
        return self.find(css)

    def filled(self, css: str) -> str:
        """Wait until the element has text; return it."""
        self.wait.until(lambda d: self.find(css).text.strip())
        return str(self.find(css).text)

    def type(self, css: str, text: str) -> None:
        box = self.find(css)
        box.clear()
        box.send_keys(text)

    def open(self, route: str = "") -> None:
        self.driver.get(f"{self.url}/#/{route}")

    def sign_in(self, email: str, password: str, route: str = "keys") -> None:
        self.open(route)
        self.type("#signin-email", email)
        self.type("#signin-password", password)
        self.find("#signin-submit").click()
        self.text_in("#who-email", email)

    def sign_out(self) -> None:
        self.find("#sign-out").click()
        self.find("#signin-email")

    def screenshot(self, name: str) -> None:
        """Save docs/portal/<name>.png when PORTAL_SCREENSHOTS is set (to refresh the docs)."""
        import os

        folder = os.environ.get("PORTAL_SCREENSHOTS")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            width, height = self.driver.get_window_size().values()
            page = self.driver.execute_script("return document.documentElement.scrollHeight")
            self.driver.set_window_size(width, min(int(page) + 140, 2400))  # the whole page
            self.driver.save_screenshot(str(Path(folder) / f"{name}.png"))
            self.driver.set_window_size(width, height)


@pytest.fixture
def portal(driver: Any, live_server: Any) -> Iterator[Portal]:
    page = Portal(driver, live_server.url)
    yield page
    driver.get("about:blank")
