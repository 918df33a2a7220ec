"""`adaconv app`: a real server (subprocess on 127.0.0.1), a real model, a real headless Chromium driven by Selenium.

Chromium and its driver come from Debian (`apt-get install chromium chromium-driver`, done by .ci/run); nothing
is downloaded at run time. The server runs with a small pixel budget so that a small image can be "too large".
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from io import BytesIO
from pathlib import Path

import gradio_client  # gradio, gradio_client and selenium are in the test extra: no skipping
import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from adaconv.app import PER_SCALE_PATTERNS, ContentCache, check_pixels, megapixels, stylize_request
from adaconv.errors import AdaconvError
from adaconv.inference import Stylizer

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "adaconv" / "assets" / "examples"
MAX_PIXELS = 60_000          # the shipped 224x224 styles fit; a 300x300 content does not
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SERVER_START = 180           # seconds: importing Gradio and torch on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(*options: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    handle = log.open("w")
    server = subprocess.Popen([sys.executable, "-m", "adaconv", "app", "--host", "127.0.0.1", "--port", str(port),
                               "--max-pixels", str(MAX_PIXELS), *options],
                              stdout=handle, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + SERVER_START
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"adaconv app exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return server, url
        except OSError:
            time.sleep(0.5)
    stop_server(server)
    pytest.fail(f"adaconv app did not answer on {url} within {SERVER_START} s:\n{log.read_text()}")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """Small real pictures: a 128x96 content, two 96x96 styles, and a 300x300 content above the pixel budget."""
    folder = tmp_path_factory.mktemp("app_images")
    sources = {"content": EXAMPLES / "content" / "city0.jpg", "style": EXAMPLES / "style" / "hokusai_big_wave.jpg",
               "style2": EXAMPLES / "style" / "monet_windmill.jpg", "huge": EXAMPLES / "content" / "sea0.jpg"}
    sizes = {"content": (128, 96), "style": (96, 96), "style2": (96, 96), "huge": (300, 300)}
    paths = {}
    for name, source in sources.items():
        paths[name] = folder / f"{name}.png"
        Image.open(source).convert("RGB").resize(sizes[name], Image.BICUBIC).save(paths[name])
    return paths


@pytest.fixture(scope="module")
def adain_server(tmp_path_factory):
    log = tmp_path_factory.mktemp("app_server") / "adain.log"
    server, url = start_server("--model", "adain", log=log)
    yield url
    stop_server(server)


@pytest.fixture(scope="module")
def adaconv_server(tmp_path_factory, adaconv_weights):
    log = tmp_path_factory.mktemp("app_server") / "adaconv.log"
    server, url = start_server("--model", "adaconv", "--weights", str(adaconv_weights), log=log)
    yield url
    stop_server(server)


@pytest.fixture
def browser(tmp_path):
    for program in (CHROMIUM, CHROMEDRIVER):
        if not Path(program).exists():
            pytest.fail(f"{program} is missing: apt-get install chromium chromium-driver (.ci/run does this)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1600", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_page(driver, url: str) -> None:
    driver.get(url)
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#content input[type=file]"))


def upload(driver, elem_id: str, path: Path) -> None:
    driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=file]").send_keys(str(path))
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, f"#{elem_id} img"))


def result_image(driver):
    """The result <img> once it has loaded, else None."""
    for image in driver.find_elements(By.CSS_SELECTOR, "#result img"):
        if image.get_attribute("src") and driver.execute_script("return arguments[0].naturalWidth", image) > 0:
            return image
    return None


def test_pixel_budget_message():
    check_pixels((100, 100), "content", 10_000)
    with pytest.raises(AdaconvError, match=r"^content is 9000x9000 = 81 MP; the limit is 4.2 MP$"):
        check_pixels((9000, 9000), "content", 2048 * 2048)
    assert megapixels(60_000) == "60,000 pixels"
    assert len(PER_SCALE_PATTERNS) == 14 and "1122" in PER_SCALE_PATTERNS and "1111" not in PER_SCALE_PATTERNS


def test_a_photo_is_encoded_once_for_many_paintings(images):
    """A visitor trying styles on one photo pays for the encoder once; the picture is the same either way."""
    stylizer = Stylizer.from_pretrained("adain", device="cpu")
    photo, style, style2 = (Image.open(images[name]) for name in ("content", "style", "style2"))

    def request(content, painting, contents, alpha=1.0):
        return stylize_request(stylizer, content, painting, alpha, "none", None, 0.5, "off", max_pixels=MAX_PIXELS,
                               contents=contents)

    # a 128x96 photo's encoding takes ~0.7 MB (pixels, padded batch, relu4_1): a 1 MB budget holds one
    contents = ContentCache(stylizer, budget_mb=1)
    _, first = request(photo, style, contents)
    cached, second = request(photo, style2, contents, alpha=0.8)
    assert "photo already encoded" not in first and "photo already encoded" in second
    fresh, _ = request(photo, style2, None, alpha=0.8)
    assert np.array_equal(np.asarray(cached), np.asarray(fresh))
    assert len(contents) == 1 and 0.5 * 2**20 < contents.bytes <= 2**20

    mirrored = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)  # another photo, the same size
    _, line = request(mirrored, style, contents)
    assert "photo already encoded" not in line and len(contents) == 1  # the first photo made room
    _, line = request(photo, style, contents)
    assert "photo already encoded" not in line

    nothing_kept = ContentCache(stylizer, budget_mb=0)
    request(photo, style, nothing_kept)
    assert "photo already encoded" not in request(photo, style, nothing_kept)[1] and len(nothing_kept) == 0


def test_bad_port_is_one_line_exit_2():
    done = subprocess.run([sys.executable, "-m", "adaconv", "app", "--port", "70000"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "adaconv app: error: argument --port: expected a port in 1-65535, got 70000 (see adaconv app --help)"]


def test_browser_upload_stylise_download(adain_server, images, browser, tmp_path):
    open_page(browser, adain_server)
    upload(browser, "content", images["content"])
    upload(browser, "style", images["style"])
    browser.find_element(By.CSS_SELECTOR, "#run").click()
    image = WebDriverWait(browser, 180).until(result_image)
    timing = WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#timing textarea").get_attribute("value"))
    browser.save_screenshot(str(tmp_path / "app.png"))
    image.screenshot(str(tmp_path / "result.png"))
    assert (tmp_path / "app.png").stat().st_size > 0 and (tmp_path / "result.png").stat().st_size > 0

    size = browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", image)
    assert size == [128, 96]
    assert timing.startswith("128x96 in ") and "(adain; α 1" in timing
    with urllib.request.urlopen(image.get_attribute("src"), timeout=30) as response:  # what "download" saves
        data = response.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    downloaded = Image.open(BytesIO(data))
    assert downloaded.size == (128, 96)
    content = Image.open(images["content"]).convert("RGB")
    assert downloaded.convert("RGB").tobytes() != content.tobytes()  # it was stylised, not echoed

    browser.find_element(By.XPATH, "//*[@id='two-styles']//*[normalize-space(text())='Two styles']").click()
    per_scale = WebDriverWait(browser, 30).until(lambda d: d.find_element(By.CSS_SELECTOR, "#per-scale input"))
    assert per_scale.get_attribute("disabled") is not None  # AdaIN has one style layer: no per-scale mixing
    assert "needs the adaconv model" in browser.find_element(By.CSS_SELECTOR, "#per-scale").text


def test_browser_gallery_pick_and_oversize_error(adain_server, images, browser, tmp_path):
    open_page(browser, adain_server)
    assert not browser.find_elements(By.CSS_SELECTOR, "#style img")
    # The gallery renders after the upload boxes (CI once looked too early and found none): wait for it.
    gallery = "#style-gallery button img, #style-gallery img"
    thumbnails = WebDriverWait(browser, 60).until(
        lambda d: (found := d.find_elements(By.CSS_SELECTOR, gallery)) and len(found) >= 4 and found)
    thumbnails[0].click()
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#style img"))

    upload(browser, "content", images["huge"])
    browser.find_element(By.CSS_SELECTOR, "#run").click()
    message = "content is 300x300 = 90,000 pixels; the limit is 60,000 pixels"
    WebDriverWait(browser, 120).until(lambda d: message in d.find_element(By.TAG_NAME, "body").text)
    browser.save_screenshot(str(tmp_path / "oversize.png"))
    assert result_image(browser) is None


@pytest.fixture(scope="module")
def client_downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("client_downloads")


def call(url: str, downloads: Path, content, style, *, alpha=1.0, preserve_color="none", second_style=None,
         second_weight=0.5, per_scale="off"):
    client = gradio_client.Client(url, verbose=False, download_files=str(downloads), analytics_enabled=False)
    return client.predict(handle_file(str(content)), handle_file(str(style)), alpha, preserve_color,
                          handle_file(str(second_style)) if second_style else None, second_weight, per_scale,
                          api_name="/stylize")


def test_api_blend_and_colour(adain_server, images, client_downloads):
    path, timing = call(adain_server, client_downloads, images["content"], images["style"], alpha=0.7,
                        preserve_color="luminance", second_style=images["style2"], second_weight=0.3)
    result = Image.open(path)
    assert result.format == "PNG" and result.size == (128, 96)
    assert "luminance colour" in timing and "styles blended 70%/30%" in timing and "α 0.7" in timing
    _, timing = call(adain_server, client_downloads, images["content"], images["style2"])  # the same photo again
    assert "photo already encoded" in timing


def test_api_errors_are_one_line(adain_server, images, client_downloads):
    with pytest.raises(gradio_client.exceptions.AppError, match="^per-scale mixing needs the adaconv model; "
                                                                 "this server runs adain$"):
        call(adain_server, client_downloads, images["content"], images["style"], second_style=images["style2"],
             per_scale="1122")
    with pytest.raises(gradio_client.exceptions.AppError, match="^content is 300x300 = 90,000 pixels; the limit is "
                                                                 "60,000 pixels$"):
        call(adain_server, client_downloads, images["huge"], images["style"])
    not_an_image = images["content"].with_name("notes.png")
    not_an_image.write_text("these are words, not pixels\n")
    with pytest.raises(gradio_client.exceptions.AppError, match="^style: not an image Pillow can read"):
        call(adain_server, client_downloads, images["content"], not_an_image)


def test_api_per_scale_on_adaconv(adaconv_server, images, client_downloads):
    path, timing = call(adaconv_server, client_downloads, images["content"], images["style"],
                        second_style=images["style2"], per_scale="1122")
    assert Image.open(path).size == (128, 96)
    assert "(adaconv;" in timing and "per-scale 1122" in timing
    with pytest.raises(gradio_client.exceptions.AppError, match="^per-scale mixing takes two styles"):
        call(adaconv_server, client_downloads, images["content"], images["style"], per_scale="2211")


def test_missing_gradio_is_one_line_exit_2(tmp_path):
    blocker = tmp_path / "gradio.py"
    blocker.write_text("raise ImportError('no gradio here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "adaconv", "app"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == 'adaconv app: error: the web app needs Gradio: pip install "adaconv[app]"'
