"""A real browser for the admin tests: Playwright driving the system's Chromium (never a downloaded one).

Skipped, with the reason, only where Playwright or Chromium is missing; CI installs both.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    """`HORSIES_CHROMIUM`, else Debian's `/usr/bin/chromium`, else `chromium` on the PATH."""
    for candidate in (os.environ.get("HORSIES_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser(django_db_setup: None) -> Iterator[Any]:
    """Chromium for this module's tests; the test database exists before Playwright starts."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the Python package playwright is not installed (pip install playwright)"
    )
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install -y chromium) or in HORSIES_CHROMIUM")
    # Playwright's sync API keeps an event loop running in this thread, so Django takes every ORM
    # call made here (the tests' own, and the database flush between tests) for one made from async
    # code. They are plain synchronous calls; say so, for this module only.
    with pytest.MonkeyPatch.context() as patch, sync_api.sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US", timezone_id="UTC")
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    """Where screenshots go: `HORSIES_SCREENSHOT_DIR` (e.g. docs/img) if set, else a temporary folder."""
    target = Path(os.environ.get("HORSIES_SCREENSHOT_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target
