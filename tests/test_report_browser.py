"""The run report (report.html) in a real browser: headless Chromium driven by Selenium through Debian's
chromedriver (issue 14, "Tested in a real browser").

The page is opened from file://, as a user opens it by double-click. Checked: it loads with no console error
(browser log level SEVERE) and no network request (Chrome's performance log: no request but the page itself and
data:/blob: URIs); the gallery has one entry per evaluation row (#gallery's data-total); typing in the filter box
(#filter) narrows the rows shown (data-shown); a screenshot is not blank; a synthetic report of 5,000 evaluation
rows renders (its load time is measured by bench/report_load.py, never asserted here).

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them when it can) and the `selenium` package
(the `test` extra): without them every test here skips and says which is missing. The functions above the tests
(find_chromium, start_browser, open_report) are also used by bench/report_screenshot.py and bench/report_load.py.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

# Selenium Manager (which downloads drivers and browsers) is never wanted: the driver is Debian's chromedriver.
os.environ.setdefault("SE_OFFLINE", "true")

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    # Without these Chromium opens connections of its own (updates, sync, field trials), refused on a closed network.
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars",
)
# Requests that are not the page's: the browser's own start page before the first navigation.
BROWSER_OWN = ("chrome://", "chrome-untrusted://", "devtools://", "about:")


def find_chromium() -> tuple[str | None, str | None, str]:
    """(chromium, chromedriver, why not): the two executables, or None and a sentence saying what is missing."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None, None, "selenium is not installed (pip install -e '.[test]')"
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if Path(p).exists()), None)
    if browser is None or driver is None:
        missing = " and ".join(n for n, p in (("chromium", browser), ("chromedriver", driver)) if p is None)
        return None, None, (f"{missing} not found: install Debian's chromium and chromium-driver "
                            "(apt-get install chromium chromium-driver; .ci/run does it when it can)")
    return browser, driver, ""


def start_browser(width: int = 1280, height: int = 1600):
    """A headless Chromium (Selenium WebDriver) with a new empty profile, the browser console and the performance
    (network) log recorded. The caller quits it; its profile folder is removed when it quits."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path, why = find_chromium()
    if browser is None:
        raise RuntimeError(why)
    profile = tempfile.mkdtemp(prefix="vtc-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    quit_ = driver.quit

    def quit_and_clean() -> None:
        try:
            quit_()
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    driver.quit = quit_and_clean
    driver.get("about:blank")
    return driver


def open_report(driver, html: Path, timeout: float = 30.0) -> dict:
    """Open ``html`` from file:// and wait until the page says it finished rendering (window.vtcReportReady).
    Returns the page's URL, the seconds from the navigation's start to ready, the SEVERE console entries and the
    URLs of every request the page made."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")
    driver.get_log("performance")  # drop what came before this page
    url = Path(html).resolve().as_uri()
    started = time.perf_counter()
    driver.get(url)
    WebDriverWait(driver, timeout, poll_frequency=0.02).until(
        lambda d: d.execute_script("return window.vtcReportReady === true"))
    seconds = time.perf_counter() - started
    severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    requests = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            requests.append(message["params"]["request"]["url"])
    return {"url": url, "seconds": seconds, "severe": severe, "requests": requests}


def foreign_requests(loaded: dict) -> list[str]:
    """The requests that are neither the page itself, nor a data:/blob: URI, nor the browser's own pages."""
    return [u for u in loaded["requests"]
            if u != loaded["url"] and not u.startswith(("data:", "blob:", *BROWSER_OWN))]


def gallery_counts(driver) -> tuple[int, int]:
    """#gallery's (data-total, data-shown)."""
    total, shown = driver.execute_script(
        "const g = document.getElementById('gallery'); return [g.dataset.total, g.dataset.shown];")
    return int(total), int(shown)


def type_filter(driver, text: str) -> tuple[int, int]:
    """Type ``text`` into the filter box (replacing what it held), as a person does, and return the counts once
    the page has applied it (data-shown stops changing)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.ID, "filter")
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    if text:
        box.send_keys(text)
    else:
        driver.execute_script("arguments[0].dispatchEvent(new Event('input', {bubbles: true}))", box)
    return settled_counts(driver)


def settled_counts(driver, rounds: int = 100) -> tuple[int, int]:
    """The gallery's counts once they are the same twice in a row 50 ms apart (a filter may be debounced)."""
    last = None
    for _ in range(rounds):
        time.sleep(0.05)
        now = gallery_counts(driver)
        if now == last:
            return now
        last = now
    return last


def pixel_variety(png: Path) -> tuple[int, float]:
    """(distinct colours, share of the most frequent colour) of a screenshot."""
    from PIL import Image

    with Image.open(png) as im:
        rgb = im.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 24)
        return len(colours), max(n for n, _ in colours) / (rgb.width * rgb.height)


# ---------------------------------------------------------------------------------------------------- the tests

BROWSER, DRIVER, WHY = find_chromium()
pytestmark = [pytest.mark.browser, pytest.mark.skipif(BROWSER is None, reason=WHY or "no browser")]


@pytest.fixture(scope="module")
def report_module():
    return pytest.importorskip("vtc.runtime.report", reason="vtc.runtime.report (the run report) is not there yet")


@pytest.fixture(scope="module")
def driver():
    from selenium.common.exceptions import SessionNotCreatedException

    try:
        d = start_browser()
    except SessionNotCreatedException as e:  # installed but cannot start here (a library missing, no /dev/shm)
        pytest.skip(f"headless Chromium did not start: {e.msg}")
    yield d
    d.quit()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, report_module):
    """A tiny finished run (tiny Qwen2.5-VL, 2 steps, 6 evaluation rows) and its report.html."""
    from runtime_helpers import make_plan, make_shapes, write_plan
    from vtc.commands import run_target

    root = tmp_path_factory.mktemp("report-browser")
    train = make_shapes(root / "train", n=8, seed=1)
    val = make_shapes(root / "val", n=6, seed=2)
    plan = make_plan(train, eval_dir=val, steps=2, outputs_dir=root / "runs")
    run = run_target(str(write_plan(plan, root / "plan.json")), allow_changed=True)
    html = run / "report.html"
    if not html.exists():  # `vtc run` writes it; `vtc report` (write_report) makes it for any run folder
        html = Path(report_module.write_report(run))
    rows = [json.loads(line) for line in (run / "predictions.jsonl").open(encoding="utf-8") if line.strip()]
    assert rows, "the tiny run has evaluation rows"
    return run, html, rows


def test_the_checks_see_a_console_error_and_a_request(driver, tmp_path):
    """The two checks below can fail: a page that logs an error and loads an image from an address (loopback, port 9:
    refused at once) is caught by both."""
    page = tmp_path / "bad.html"
    page.write_text('<!doctype html><html><body><img src="http://127.0.0.1:9/x.png">'
                    '<script>console.error("boom"); window.vtcReportReady = true;</script></body></html>',
                    encoding="utf-8")
    loaded = open_report(driver, page)
    assert foreign_requests(loaded) == ["http://127.0.0.1:9/x.png"]
    assert any("boom" in e["message"] for e in loaded["severe"])


@pytest.mark.slow
def test_the_report_of_a_real_run_loads_offline_with_no_console_error(tiny_run, driver):
    run, html, rows = tiny_run
    loaded = open_report(driver, html)
    assert loaded["severe"] == [], loaded["severe"]
    assert foreign_requests(loaded) == [], "the report fetched something: " + ", ".join(foreign_requests(loaded))
    assert loaded["url"] in loaded["requests"]  # the log did record this page's requests
    total, shown = gallery_counts(driver)
    assert total == len(rows)
    assert 0 < shown <= total
    assert driver.find_elements("css selector", "#gallery .row"), "the gallery shows rows"


@pytest.mark.slow
def test_typing_in_the_filter_narrows_the_gallery(tiny_run, driver):
    run, html, rows = tiny_run
    open_report(driver, html)
    total, shown = gallery_counts(driver)
    assert shown == total == len(rows)

    assert type_filter(driver, "zqxj-no-row-has-this") == (total, 0)
    assert not [r for r in driver.find_elements("css selector", "#gallery .row") if r.is_displayed()]

    # An expected answer (a colour): the rows shown all contain it, and at least the rows that expect it are shown.
    expected = [str(r["expected"]) for r in rows]
    word = min(set(expected), key=expected.count)
    matching = sum(word.lower() in json.dumps(r).lower() for r in rows)
    total_after, shown_after = type_filter(driver, word)
    assert total_after == total
    assert expected.count(word) <= shown_after <= matching
    visible = [r for r in driver.find_elements("css selector", "#gallery .row") if r.is_displayed()]
    assert visible and all(word.lower() in r.text.lower() for r in visible)

    assert type_filter(driver, "") == (total, total)


@pytest.mark.slow
def test_a_screenshot_of_the_report_is_not_blank(tiny_run, driver, tmp_path):
    run, html, rows = tiny_run
    open_report(driver, html)
    png = tmp_path / "report.png"
    assert driver.save_screenshot(str(png))
    colours, top_share = pixel_variety(png)
    assert colours > 50, colours  # text, thumbnails, the loss curve: many colours, not one
    assert top_share < 0.97, top_share


@pytest.mark.slow
def test_clicking_a_thumbnail_shows_the_image_larger(tiny_run, driver):
    from selenium.webdriver.common.by import By

    run, html, rows = tiny_run
    open_report(driver, html)
    box = driver.find_element(By.ID, "lightbox")
    assert not box.is_displayed()
    thumb = driver.find_element(By.CSS_SELECTOR, "#gallery .row img")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", thumb)
    thumb.click()
    assert box.is_displayed()
    big = driver.find_element(By.ID, "lightbox-img")
    width = driver.execute_script("return arguments[0].naturalWidth", big)
    assert width > driver.execute_script("return arguments[0].naturalWidth", thumb)  # a larger copy (few rows)
    box.click()
    assert not box.is_displayed()


def test_a_report_of_5000_rows_renders_and_filters(report_module, driver, tmp_path):
    make = getattr(report_module, "synthetic_run", None)
    if make is None:
        pytest.skip("vtc.runtime.report has no synthetic_run(folder, rows) yet")
    # 5,000 rows over 40 images (thumbnails are made once an image): the page's size and speed are the rows'.
    run = Path(make(tmp_path / "run", 5000, distinct_images=40))
    html = Path(report_module.write_report(run))
    loaded = open_report(driver, html, timeout=60)
    assert loaded["severe"] == [], loaded["severe"]
    assert foreign_requests(loaded) == []
    total, shown = gallery_counts(driver)
    assert total == 5000
    assert 0 < shown <= total
    assert type_filter(driver, "zqxj-no-row-has-this") == (5000, 0)
