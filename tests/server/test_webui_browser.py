"""The web UI (llama-ui at `/`) in a real headless Chromium against `nexa serve` with tiny scripted models.

One server and one browser page for the module, driven through the states a user goes through, in order;
a screenshot of each state is saved under the test's tmp folder (`screenshots/`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nexa.store import Store
from tests.conftest import ServerProcess, import_tiny
from tests.fixtures.fake_hub import FakeHub, nexa_env
from tests.fixtures.media_samples import image_bytes
from tests.fixtures.tiny_models import make_chat_llm

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
# Debian's chromium, never one Playwright downloads; no network of its own, no sandbox (CI runs as root).
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MODELS = {
    "test/qwen3-text": ["qwen3-script-text.gguf"],
    "test/qwen3-think": ["qwen3-script-think.gguf"],
    "test/vision-gemma3": ["qwen3-script-text.gguf", "mmproj-gemma3.gguf"],
    "test/qwen3-loop": ["qwen3-loop.gguf"],  # "Again and again." until the context is full
}
ANSWER = "Hello from a scripted model."
TIMEOUT_MS = 30_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path, fake_hub: FakeHub) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("webui")
    make_chat_llm(str(tiny_dir / "qwen3-loop.gguf"), "qwen3", script=["Again", " and", " again."], loop=True)
    store = Store(root / "data")
    for name, files in MODELS.items():
        import_tiny(store, tiny_dir, name, files, None)
    env = nexa_env(fake_hub, store.root, root / "hf-home")
    # A long context for the looping model: its answer streams for seconds, time enough to press Stop.
    server = ServerProcess(store.root, "--model-option", "test/qwen3-loop:ctx=32768,parallel=1", env=env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser_page(ui_server: ServerProcess) -> Iterator[tuple]:
    """One page for the module, and the console errors it logged."""
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 900})  # wide: toasts stay clear of the form
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        yield page, errors
        browser.close()


def _ps(server: ServerProcess) -> list[dict]:
    return httpx.get(server.base_url + "/v1/ps", timeout=10).json()["data"]


def _wait(condition, timeout: float = 30.0, what: str = "condition") -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _send(page, text: str) -> None:  # noqa: ANN001
    box = page.get_by_placeholder("Type a message...")
    box.fill(text)
    box.press("Enter")


def _picker(page):  # noqa: ANN001, ANN202
    """The chat form's model picker (the last button with the model icon: the form is below the messages)."""
    return page.locator("button:has(svg.lucide-package)").last


def _new_chat_with(page, base_url: str, model: str) -> None:  # noqa: ANN001
    """Start a new conversation and choose `model` in the picker; wait until it is loaded."""
    page.goto(base_url + "/#/")
    page.get_by_text("Hello there").wait_for()
    _picker(page).click()
    page.get_by_text(model, exact=True).last.click()
    page.get_by_text(f"Model loaded: {model}").last.wait_for()


class FeedReader(threading.Thread):
    """Collects /models/sse records in the background."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.events: list[dict] = []
        self.ready = threading.Event()

    def run(self) -> None:
        with httpx.stream("GET", self.url, timeout=httpx.Timeout(5, read=60)) as response:
            self.ready.set()
            for line in response.iter_lines():
                if line.startswith("data: "):
                    self.events.append(json.loads(line[len("data: "):]))


def test_the_ui_chats_loads_models_streams_thinks_sees_stops_remembers_and_pulls(ui_server, browser_page, shots):
    page, errors = browser_page
    base = ui_server.base_url
    started = time.monotonic()

    # The page loads with no console errors, in router mode, and lists the pulled models.
    page.goto(base + "/")
    page.get_by_placeholder("Type a message...").wait_for()
    _picker(page).click()
    for name in ("qwen3-text", "qwen3-think", "vision-gemma3", "qwen3-loop"):
        page.get_by_text(name, exact=True).last.wait_for()
    page.screenshot(path=shots / "01-model-list.png")
    assert errors == []

    # Choosing a model loads it: the UI says so when the feed does, and /v1/ps agrees.
    page.get_by_text("qwen3-text", exact=True).last.click()
    page.get_by_text("Model loaded: qwen3-text:F32").last.wait_for()
    assert "test/qwen3-text:F32" in {m["id"] for m in _ps(ui_server)}
    page.screenshot(path=shots / "02-model-loaded.png")

    # A message streams the scripted answer.
    _send(page, "Say hello")
    page.get_by_text(ANSWER).last.wait_for()
    page.screenshot(path=shots / "03-answer.png")

    # A reload keeps the conversation (the UI keeps it in the browser).
    page.reload()
    page.get_by_text(ANSWER).last.wait_for()
    page.get_by_text("Say hello").last.wait_for()
    page.screenshot(path=shots / "04-after-reload.png")

    # A thinking model's reasoning lands in its own block, apart from the answer.
    _new_chat_with(page, base, "qwen3-think")
    _send(page, "Weather in Paris?")
    page.get_by_text("It is sunny in Paris.").last.wait_for()
    page.get_by_text("Reasoning", exact=True).first.click()  # the block folds once the answer begins
    page.locator(".reasoning-content").filter(has_text="The user asks about weather.").wait_for()
    page.screenshot(path=shots / "05-reasoning.png")

    # An image attached for a vision model goes to the server as an image part, and is answered.
    _new_chat_with(page, base, "vision-gemma3")
    page.locator("input[type=file]").first.set_input_files(
        files=[{"name": "red.png", "mimeType": "image/png", "buffer": image_bytes("png", (32, 32))}])
    page.locator("img[src^='data:image'], img[src^='blob:']").first.wait_for()  # the thumbnail
    with page.expect_request(lambda r: r.url.endswith("/v1/chat/completions")) as sent:
        _send(page, "What is in the picture?")
    assert "image_url" in (sent.value.post_data or "")
    page.get_by_text(ANSWER).last.wait_for()
    page.screenshot(path=shots / "06-vision.png")

    # Stop ends a long answer, and the server frees the slot at once.
    _new_chat_with(page, base, "qwen3-loop")
    _send(page, "Go on and on")
    page.get_by_text("Again and again.").first.wait_for()
    # The button is re-rendered with each streamed token; under load it never holds still long enough
    # for a pointer click, so the click event is sent to it straight away.
    page.get_by_role("button", name="Stop", exact=True).dispatch_event("click")
    loop_id = "test/qwen3-loop:F32"
    _wait(lambda: [(m["in_flight"], m["slots_busy"]) for m in _ps(ui_server) if m["id"] == loop_id] == [(0, 0)],
          timeout=10, what="the stopped generation's slot to be freed")
    answer = page.locator("[class*=markdown]").last
    time.sleep(1)  # what had arrived is drawn (the UI draws in batches) ...
    shown = answer.inner_text()
    time.sleep(1)
    assert answer.inner_text() == shown  # ... and nothing more comes
    page.screenshot(path=shots / "07-stopped.png")

    # A pull started from the API reports progress on /models/sse, and the model joins the UI's list.
    feed = FeedReader(base + "/models/sse")
    feed.start()
    assert feed.ready.wait(10)
    assert httpx.post(base + "/models", json={"model": "test-org/Tiny-GGUF"}, timeout=10).json() == {"success": True}
    _wait(lambda: any(e["event"] == "download_finished" for e in feed.events), what="the pull to finish")
    kinds = [e["event"] for e in feed.events if e["model"] == "test-org/Tiny-GGUF"]
    assert "download_progress" in kinds and kinds.index("download_progress") < kinds.index("download_finished")
    _picker(page).click()
    page.get_by_placeholder("Search models...").fill("tiny")
    page.get_by_text("test-org").last.wait_for()
    page.screenshot(path=shots / "08-pulled-model-listed.png")

    assert errors == [], errors
    print(f"browser steps took {time.monotonic() - started:.1f} s; screenshots in {shots}")
