"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by Selenium."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.conftest import IN_CI

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)


def require_chromium() -> tuple[str, str]:
    """Chromium and its driver; the test skips without them locally and fails under CI."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    message = (
        "Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
    )
    if IN_CI:
        pytest.fail(f"{message}; CI must install them (see .ci/run)")
    pytest.skip(message)


@contextmanager
def chromium(profile: Path) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a fresh profile in ``profile``, quit after the block."""
    browser, driver = require_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # The driver is named, so Selenium never looks one up or downloads one.
    session = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        yield session
    finally:
        session.quit()


def full_page_screenshot(session: webdriver.Chrome, path: Path) -> None:
    """A screenshot of the whole page: the window grown to the page's height first."""
    height = int(session.execute_script("return document.documentElement.scrollHeight"))
    session.set_window_size(1280, min(max(height + 160, 600), 6000))  # + the window frame
    path.parent.mkdir(parents=True, exist_ok=True)
    assert session.save_screenshot(str(path)), f"no screenshot written to {path}"
