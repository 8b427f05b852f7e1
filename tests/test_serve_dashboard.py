"""The dashboard as a person sees it: Debian's chromium, headless, driven by selenium.

Nothing is downloaded at run time (the system chromium and chromedriver are named
explicitly, so Selenium Manager is never asked); skipped where they are absent.
"""

from __future__ import annotations

import re
import shutil
import time

import cv2
import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver")

from test_serve_support import running  # noqa: E402

from emotion_estimator import EmotionEstimator  # noqa: E402
from emotion_estimator.serve import ServeConfig, create_app  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="chromium / chromium-driver not installed")
TOKEN = "dash-token"
HAPPY_BGR = np.array([60, 190, 60])  # render.COLORS["happy"]; the timeline draws it too


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--force-device-scale-factor=1",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def dashboard_server(media, landmarker_model):
    from emotion_estimator.live import ReplaySource

    config = ServeConfig(token=TOKEN)
    app = create_app(EmotionEstimator(), ReplaySource(media / "single_face.mp4", loop=True),
                     config)
    with running(app, config) as address:
        yield address


def screenshot(driver) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(driver.get_screenshot_as_png(), np.uint8),
                        cv2.IMREAD_COLOR)


def region(image: np.ndarray, element) -> np.ndarray:
    r = element.rect
    x, y, w, h = (round(r[k]) for k in ("x", "y", "width", "height"))
    return image[y:y + h, x:x + w]


def near(image: np.ndarray, bgr: np.ndarray, tol: int = 35) -> int:
    return int((np.abs(image.astype(int) - bgr).max(axis=2) <= tol).sum())


def test_dashboard_shows_the_face_box_and_a_moving_timeline(browser, dashboard_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"http://{dashboard_server}/?token={TOKEN}")
    assert browser.title == "emotion-estimator"
    wait = WebDriverWait(browser, 30, poll_frequency=0.2)
    wait.until(lambda d: "frame" in d.find_element(By.ID, "status").text)
    video = browser.find_element(By.ID, "video")
    wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", video) > 0)
    wait.until(lambda d: "happy" in d.find_element(By.ID, "faces").text)
    time.sleep(1.0)
    timeline = browser.find_element(By.ID, "timeline")
    deadline = time.monotonic() + 10  # a loaded machine may show a frame before its box,
    while True:  # and a timeline only a few frames long
        first = screenshot(browser)
        picture = region(first, video)
        drawn = near(picture, HAPPY_BGR) > 300 and near(region(first, timeline), HAPPY_BGR) > 100
        if drawn or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert picture.shape[0] > 100 and picture.std() > 20  # a real picture, not a blank box
    assert near(picture, HAPPY_BGR) > 300  # the face box and its label, in happy's colour
    assert near(region(first, timeline), HAPPY_BGR) > 100  # the happy probability line
    time.sleep(1.5)
    second = screenshot(browser)
    moved = np.abs(region(second, timeline).astype(int)
                   - region(first, timeline).astype(int)).max(axis=2) > 30
    assert moved.sum() > 200  # the timeline scrolls with time
    # the picture and the table come from one frame (/v1/frame.jpg and its message header),
    # fetched with the token; a label is shown with its own probability
    assert browser.execute_script(
        "return performance.getEntriesByType('resource').some("
        "e => e.name.includes('/v1/frame.jpg?token=' + arguments[0]))", TOKEN)
    assert re.search(r"#0\s+(happy|sad|unknown) \d+%|#0\s+undecided",
                     browser.find_element(By.ID, "faces").text)
    # the expression column: the seven-expression view where the model has it, else a dash
    has_view = bool(EmotionEstimator().expressions)
    # read in one script: the table is rebuilt every frame, so an element found first may be
    # gone (stale) by the time its text is asked for
    expression = browser.execute_script(
        "const c = document.querySelectorAll('#faces tbody tr td'); "
        "return c.length > 2 ? c[2].innerText.trim() : null")
    if has_view:
        assert re.fullmatch(r"(neutral|happy|sad|angry|surprised|disgusted|fearful) \d+%"
                            r"|undecided", expression)
    else:
        assert expression == "—"
