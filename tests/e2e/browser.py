"""Debian's Chromium, headless, driven by Playwright: what a user sees of a page."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

# As root, headless, with nothing reaching out to the network.
BROWSER_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip


@contextmanager
def chromium_page(width: int = 1600, height: int = 1000) -> Iterator[Page]:
    """A page of a new headless Chromium ($CHROMIUM, else Debian's), closed after the block."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 (only browser tests need it)

    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    assert Path(chromium).exists(), f"{chromium}: not installed (apt-get install chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=BROWSER_FLAGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()
