"""The results page in a real browser: Debian's headless Chromium, driven by playwright-core
(tests/browser/results_page.mjs), against the gateway in front of a real embedded server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from client.palette import voc_colormap

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
BROWSER_DIR = REPO / "tests" / "browser"
SCRIPT = BROWSER_DIR / "results_page.mjs"
DOCS_SCREENSHOT = REPO / "docs" / "img" / "gateway_page.png"


def _missing_browser() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} missing"
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        return "tests/browser/node_modules/playwright-core missing"
    if shutil.which("node") is None:
        return "node missing"
    return None


pytestmark = pytest.mark.skipif(
    _missing_browser() is not None,
    reason=f"{_missing_browser()}: run `make browser`: installs Debian's chromium and "
    "playwright-core",
)


@pytest.fixture(scope="module")
def gateway_url(start_server):
    """The gateway on a free 127.0.0.1 port (the OS picks it), served by uvicorn in a thread."""
    import uvicorn

    from serving.gateway.app import create_app
    from serving.gateway.settings import GatewaySettings

    model_server = start_server()
    app = create_app(GatewaySettings(targets=(f"127.0.0.1:{model_server.port}",)))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the gateway did not start (see the captured log)")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)


def run_page(url: str, image: Path, screenshot: Path) -> dict:
    """Run the harness; its one line of JSON, or a failure with what it printed."""
    completed = subprocess.run(
        ["node", str(SCRIPT), url, str(image), str(screenshot)],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=BROWSER_DIR,
    )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        pytest.fail(
            f"results_page.mjs exited {completed.returncode}\n"
            f"stdout: {completed.stdout}\nstderr: {completed.stderr[-2000:]}"
        )
    return json.loads(lines[-1])


def classes_present(url: str, image: Path) -> list[dict]:
    """What the API itself says is in ``image`` (the legend must show exactly these)."""
    request = urllib.request.Request(
        f"{url}v1/segment?format=json",
        data=image.read_bytes(),
        headers={"Content-Type": "image/jpeg"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["classes_present"]


def check_summary(summary: dict, image: Path, screenshot: Path, present: list[dict]) -> None:
    with Image.open(image) as opened:
        size = {"width": opened.width, "height": opened.height}
    assert summary["image"] == size
    assert summary["original"] == size
    assert summary["overlay"] == size
    assert summary["model"].startswith("Model deeplabv3, version 1")
    assert summary["legend"] == [c["name"] for c in present]
    colours = [voc_colormap()[c["id"]].tolist() for c in present]
    assert summary["swatches"] == [f"rgb({r}, {g}, {b})" for r, g, b in colours]
    assert "ms round trip" in summary["latency"]
    assert "total" in summary["latency"], "the server's Server-Timing breakdown is missing"
    # A text file named .jpg: refused as not a JPEG/PNG (415) or undecodable (400), detail shown.
    assert re.match(r"(400|415): \S", summary["bad_file_error"]), summary["bad_file_error"]
    assert summary["console_errors"] == []
    assert screenshot.stat().st_size > 10_000


def test_page_segments_a_real_voc_photo(gateway_url, voc_sample, tmp_path):
    image = sorted((voc_sample / "JPEGImages").glob("*.jpg"))[0]
    screenshot = tmp_path / "gateway_page.png"
    summary = run_page(gateway_url, image, screenshot)
    check_summary(summary, image, screenshot, classes_present(gateway_url, image))
    if os.environ.get("UPDATE_DOCS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)


def test_page_segments_a_synthetic_frame(gateway_url, synth_root, tmp_path):
    image = sorted((synth_root / "JPEGImages").glob("*.jpg"))[0]
    screenshot = tmp_path / "gateway_page.png"
    summary = run_page(gateway_url, image, screenshot)
    check_summary(summary, image, screenshot, classes_present(gateway_url, image))
