"""Opening the explorer in a real, headless Chromium: Debian's ``chromium`` driven by Selenium through
Debian's ``chromium-driver`` (matching versions, no download). Used by the tests and by
``make explorer-check``, which prints how long the demo's pages take to become interactive.

    python tests/browser.py results/digits_p4/explorer/index.html --screenshot shot.png
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import time
from pathlib import Path

# Where Debian installs them (apt install chromium chromium-driver); PATH is searched first.
CHROMIUM = ("chromium", "/usr/bin/chromium")
CHROMEDRIVER = ("chromedriver", "/usr/bin/chromedriver")

READY = (
    "return !!(window.PatchExplorer && PatchExplorer.state.image !== null"
    " && PatchExplorer.payloads[PatchExplorer.state.image]"
    " && Bokeh.documents[0].get_model_by_name('importance_source').data.name[0] !== '')"
)


class BrowserMissing(RuntimeError):
    """Chromium or its driver is not installed."""


def _find(candidates: tuple[str, ...]) -> str:
    for candidate in candidates:
        found = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if found:
            return found
    raise BrowserMissing(f"none of {candidates} found: apt install chromium chromium-driver")


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 1900):
    """A headless Chromium (Selenium WebDriver) that records the console."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _find(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--allow-file-access-from-files",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(_find(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, script: str, timeout: float = 30.0, *args) -> float:
    """Seconds until ``script`` returns true in the page; TimeoutError after ``timeout``."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if driver.execute_script(script, *args):
            return time.perf_counter() - start
        time.sleep(0.02)
    raise TimeoutError(f"the page did not satisfy {script!r} within {timeout} s")


def console_errors(driver) -> list[str]:
    """The console's errors since the last call (and failed loads, which Chromium logs as errors)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def open_explorer(driver, page: Path | str, timeout: float = 30.0) -> float:
    """Open ``page`` from the file system; returns the seconds until it shows its first image's data."""
    start = time.perf_counter()
    driver.get(Path(page).resolve().as_uri())
    wait_for(driver, READY, timeout)
    return time.perf_counter() - start


def select(driver, image_id: int, head: int, patch: int, timeout: float = 30.0) -> None:
    """Pick an image, a head and a patch as a user does (the id box, a click on a head, on a patch)."""
    driver.execute_script("PatchExplorer.pickImage(arguments[0])", image_id)
    wait_for(driver, "return !!PatchExplorer.payloads[arguments[0]]", timeout, image_id)
    driver.execute_script("PatchExplorer.pickHead(arguments[0]); PatchExplorer.pickPatch(arguments[1])", head, patch)
    wait_for(
        driver,
        "return PatchExplorer.state.head === arguments[0] && PatchExplorer.state.patch === arguments[1]",
        timeout,
        head,
        patch,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pages", nargs="+", type=Path, help="explorer index.html files")
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of the (last) page here")
    parser.add_argument(
        "--select",
        nargs=3,
        type=int,
        metavar=("IMAGE_ID", "HEAD", "PATCH"),
        help="pick this image, head (layer-major index) and patch before the screenshot",
    )
    args = parser.parse_args()
    with chromium() as driver:
        for page in args.pages:
            seconds = open_explorer(driver, page)
            size = sum(path.stat().st_size for path in page.parent.rglob("*") if path.is_file())
            errors = console_errors(driver)
            print(
                f"{page}: interactive after {seconds:.2f} s; page {page.stat().st_size / 1e6:.1f} MB, "
                f"folder {size / 1e6:.1f} MB; console errors: {len(errors)}"
            )
            for error in errors:
                print("  ", error)
        if args.select:
            select(driver, *args.select)
        if args.screenshot:
            driver.save_screenshot(str(args.screenshot))
            print(f"screenshot: {args.screenshot}")
        if errors:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
