"""Headless Chromium for the dashboard's browser tests: Debian's ``chromium`` driven through
its ``chromedriver`` by Selenium, screenshots under ``build/screenshots/``.

`missing()` says why the browser tests cannot run here (then they are skipped with that
reason); `.ci/run` installs the packages in CI.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from tests.support import ROOT

SCREENSHOTS = ROOT / "build" / "screenshots"
WAIT_S = 30.0
LAPTOP = (1280, 900)
PHONE = (390, 844)
T = TypeVar("T")


def missing() -> str:
    """Why headless Chromium cannot be driven here ("" when it can)."""
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[dev]')"
    for binary in ("chromium", "chromedriver"):
        if shutil.which(binary) is None:
            return f"no {binary} on PATH (apt-get install chromium chromium-driver)"
    return ""


class Browser:
    """One headless Chromium window against ``base_url``."""

    def __init__(self, driver: Any, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def type(self, css: str, text: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(text)

    def choose(self, css: str, value: str) -> None:
        """Select the option with ``value`` in the ``<select>`` at ``css``."""
        from selenium.webdriver.support.ui import Select

        Select(self.find(css)).select_by_value(value)

    def click(self, css: str) -> None:
        self.find(css).click()

    def wait(self, condition: Callable[[], T | None], what: str, timeout_s: float = WAIT_S) -> T:
        """Poll ``condition`` under a deadline (WebDriverWait), failing with ``what``."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        def probe(_: Any) -> T | None:
            try:
                return condition()
            except StaleElementReferenceException:  # the table was re-rendered meanwhile
                return None

        waiting = WebDriverWait(self.driver, timeout_s, poll_frequency=0.1)
        return cast(T, waiting.until(probe, message=f"timed out waiting for {what}"))

    def text(self) -> str:
        return str(self.find("main").text)

    def shot(self, name: str, size: tuple[int, int] = LAPTOP) -> Path:
        """Save a full-width screenshot of the current page as ``build/screenshots/<name>.png``."""
        self.driver.set_window_size(*size)
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(size[0], max(size[1], int(height)))
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(*LAPTOP)
        return path


@contextmanager
def chromium(base_url: str) -> Iterator[Browser]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(shutil.which("chromium"))
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
    ):
        options.add_argument(argument)
    service = Service(executable_path=str(shutil.which("chromedriver")))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield Browser(driver, base_url)
    finally:
        driver.quit()
