"""`tagd web` in a real browser: Chromium (Debian's, headless) driven by Selenium through
Debian's chromedriver, against the real `tagd web` on real photos tagged by `tagd scan`;
exiftool reads what the clicks wrote.

The run also makes the README's screenshots: with TAGD_SCREENSHOTS=DIR they are written there
(docs/screenshots holds the committed ones), otherwise into the test's temporary folder.
"""

from __future__ import annotations

import http.server
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from tagd.index.db import Index
from test_refine_wiring import needs_exiftool, subject
from web_harness import environment, make_library, start

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    needs_exiftool,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="Chromium and chromedriver not installed (scripts/test installs chromium and chromium-driver)"),
]


@pytest.fixture(scope="module")
def site(real_photo_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("web-browser")
    env = environment(base / "home")
    index = base / "index.sqlite3"
    root = base / "Pictures"
    make_library(real_photo_dir, root, index, env)
    server = start(env, index, [root])
    yield index, root, server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("TAGD_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(driver, path: Path) -> None:  # noqa: ANN001
    """A small PNG for the README: the viewport, 8-bit palette."""
    from io import BytesIO

    from PIL import Image

    im = Image.open(BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    im = im.resize((im.width * 3 // 4, im.height * 3 // 4), Image.Resampling.LANCZOS)
    im.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def wait_images(driver) -> None:  # noqa: ANN001
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if driver.execute_script("return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"):
            return
        time.sleep(0.1)
    raise AssertionError("images did not load")


def settled_text(driver, selector: str, want: str, by: str = "css selector") -> str:  # noqa: ANN001
    """The text of `selector` once it contains `want`. After a click that navigates, the previous
    page's element can still be found, or go stale in hand while the new page loads (seen once in
    CI): poll until the page that has the expected text is the one in the browser."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + 20
    text = ""
    while time.monotonic() < deadline:
        try:
            text = driver.find_element(by, selector).text
            if want in text:
                return text
        except (NoSuchElementException, StaleElementReferenceException):
            pass
        time.sleep(0.05)
    return text


def test_log_in_search_open_reject_and_undo(site, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    index, root, server = site
    cat = root / "chelsea.jpg"
    assert "cat" in subject(cat)

    browser.get(server.url + "/")
    assert "/login" in browser.current_url  # not logged in: the login page
    browser.find_element(By.ID, "secret").send_keys("wrong")
    browser.find_element(By.ID, "login").click()
    assert "That is not the token or the password." in settled_text(browser, ".error", "That is not")
    browser.find_element(By.ID, "secret").send_keys(server.token)
    browser.find_element(By.ID, "login").click()
    assert settled_text(browser, "#summary", "7 photos").startswith("7 photos")
    wait_images(browser)
    screenshot(browser, shots(tmp_path) / "gallery.png")

    box = browser.find_element(By.CSS_SELECTOR, 'input[type="search"]')
    box.send_keys("cat")
    box.submit()
    assert settled_text(browser, "#summary", "1 photo for cat.") == "1 photo for cat."
    browser.find_element(By.CSS_SELECTOR, "#grid a").click()
    assert settled_text(browser, ".facts h1", "chelsea.jpg") == "chelsea.jpg"
    wait_images(browser)
    screenshot(browser, shots(tmp_path) / "photo.png")

    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-tag="cat"]')
    assert "added by tagd" in row.text
    row.find_element(By.CSS_SELECTOR, "button.reject").click()
    assert "Rejected cat on 1 photo." in settled_text(browser, ".flash", "Rejected cat")
    assert "rejected by you" in settled_text(browser, 'tr[data-tag="cat"]', "rejected by you")
    assert "cat" not in subject(cat)
    with Index(index, readonly=True) as ix:
        assert ("model", "rejected") == next((t.source, t.state) for t in ix.get(cat).tags if t.name == "cat")
        assert ix.count("cat") == 0

    browser.find_element(By.ID, "undo").click()
    assert "Undid: rejected cat on 1 photo." in settled_text(browser, ".flash", "Undid")
    assert "added by tagd" in settled_text(browser, 'tr[data-tag="cat"]', "added by tagd")
    assert "cat" in subject(cat)
    with Index(index, readonly=True) as ix:
        assert ix.count("cat") == 1


def test_a_cross_site_page_cannot_change_a_photo(site, browser, tmp_path: Path) -> None:
    """A page on another origin that posts a review form to tagd, in the browser that is logged
    in to tagd: the session cookie is SameSite=Strict and the form has no CSRF token."""
    index, root, server = site
    cat = root / "chelsea.jpg"
    before = cat.read_bytes()
    with Index(index, readonly=True) as ix:
        pid = ix.read(lambda conn: conn.execute("SELECT id FROM photo WHERE path = ?", (str(cat),)).fetchone()[0])
    browser.get(server.url + "/")
    assert "/login" not in browser.current_url  # logged in (the test above)
    (tmp_path / "evil.html").write_text(
        f'<form id="f" method="post" action="{server.url}/review">'
        f'<input name="ids" value="{pid}"><input name="tag" value="cat"><input name="verdict" value="reject">'
        '</form><script>document.getElementById("f").submit()</script>')

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args) -> None:  # noqa: ANN002
            pass

    evil = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Quiet)  # another origin
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.2:{evil.server_address[1]}/evil.html")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "evil.html" in browser.current_url:
            time.sleep(0.1)
        body = browser.find_element("tag name", "body").text
        assert body in ("log in first", "refused: a cross-site request", "refused: missing or wrong CSRF token (reload the page)")
    finally:
        evil.shutdown()
    assert cat.read_bytes() == before and "cat" in subject(cat)
