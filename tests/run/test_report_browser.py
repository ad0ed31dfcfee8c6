"""The HTML report in a real browser: headless Chromium (Debian's ``chromium``) opens the report
of a real run, through the DevTools protocol (aiohttp's websocket client), and the test reads
what a reader would get: no console error and no uncaught exception, every plot image decoded
(``complete`` and a natural width), the load summary and the run's config on the page, and a
full-page PNG screenshot (kept in the test's tmp folder, ``report.png``).

The run directories are real: a short ``soak run --demo``, and a recorded run (written with the
recorder, as tests/analyzer/test_html_report.py builds it) rendered by ``soak-analyze --run-dir
DIR --format html``. Both take more than 5 s: slow."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import servers

pytest.importorskip("aiohttp")
pytest.importorskip("matplotlib")

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--window-size=1280,4000",
)
START_TIMEOUT_SECONDS = 30.0
PAGE_TIMEOUT_SECONDS = 60.0

# What the page says about itself once loaded: every <img>, and the headings of the report.
_PAGE_STATE = """(() => ({
  images: Array.from(document.images).map(i => ({
    alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight})),
  headings: Array.from(document.querySelectorAll('h1, h2, h3')).map(h => h.textContent),
  text: document.body.innerText,
  height: document.documentElement.scrollHeight,
}))()"""


@dataclass
class PageReport:
    """What Chromium saw of one page."""

    images: list[dict[str, Any]]
    headings: list[str]
    text: str
    errors: list[str] = field(default_factory=list)
    screenshot: bytes = b""


def _devtools_port(profile: Path, process: subprocess.Popen[bytes]) -> int:
    """The port Chromium chose (``--remote-debugging-port=0`` writes it to DevToolsActivePort)."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"chromium exited with {process.returncode} before DevTools")
        if marker.exists():
            lines = marker.read_text(encoding="utf-8").splitlines()
            if lines and lines[0].strip().isdigit():
                return int(lines[0])
        time.sleep(0.05)
    raise AssertionError(f"chromium wrote no {marker} within {START_TIMEOUT_SECONDS:g}s")


async def _inspect(port: int, url: str) -> PageReport:
    import aiohttp

    errors: list[str] = []
    async with aiohttp.ClientSession() as http:
        async with http.put(f"http://127.0.0.1:{port}/json/new?about:blank") as reply:
            target = await reply.json()
        async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            ids = iter(range(1, 1_000_000))
            pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
            loaded = asyncio.get_running_loop().create_future()

            async def reader() -> None:
                async for message in ws:
                    data = json.loads(message.data)
                    if "id" in data and data["id"] in pending:
                        pending.pop(data["id"]).set_result(data)
                        continue
                    method, params = data.get("method"), data.get("params", {})
                    if method == "Runtime.exceptionThrown":
                        details = params["exceptionDetails"]
                        errors.append(f"exception: {details.get('text')} {details}")
                    elif method == "Runtime.consoleAPICalled" and params["type"] in (
                        "error",
                        "assert",
                    ):
                        errors.append(f"console.{params['type']}: {params['args']}")
                    elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                        errors.append(f"log: {params['entry']['text']}")
                    elif method == "Page.loadEventFired" and not loaded.done():
                        loaded.set_result(None)

            async def call(method: str, **params: Any) -> dict[str, Any]:
                number = next(ids)
                future = asyncio.get_running_loop().create_future()
                pending[number] = future
                await ws.send_json({"id": number, "method": method, "params": params})
                answer = await asyncio.wait_for(future, PAGE_TIMEOUT_SECONDS)
                assert "error" not in answer, f"{method}: {answer['error']}"
                result: dict[str, Any] = answer.get("result", {})
                return result

            task = asyncio.create_task(reader())
            try:
                for domain in ("Page", "Runtime", "Log"):
                    await call(f"{domain}.enable")
                await call("Page.navigate", url=url)
                await asyncio.wait_for(loaded, PAGE_TIMEOUT_SECONDS)
                state = await call("Runtime.evaluate", expression=_PAGE_STATE, returnByValue=True)
                value = state["result"]["value"]
                shot = await call(
                    "Page.captureScreenshot", format="png", captureBeyondViewport=True
                )
            finally:
                task.cancel()
    page = PageReport(value["images"], value["headings"], value["text"], errors)
    page.screenshot = base64.b64decode(shot["data"])
    return page


def open_in_chromium(page: Path) -> PageReport:
    """Open ``page`` in a new headless Chromium with an empty profile; what it saw."""
    chromium = servers.require_binary("chromium", "chromium")
    with tempfile.TemporaryDirectory(prefix="soak-chromium-") as profile:
        process = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            port = _devtools_port(Path(profile), process)
            return asyncio.run(_inspect(port, page.resolve().as_uri()))
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stderr is not None:
                process.stderr.close()


def _assert_readable(page: PageReport, screenshot: Path) -> None:
    screenshot.write_bytes(page.screenshot)
    assert page.errors == [], page.errors
    assert page.images, "the report has no plot"
    broken = [i for i in page.images if not (i["complete"] and i["width"] > 0 and i["height"] > 0)]
    assert broken == [], broken
    assert page.screenshot.startswith(b"\x89PNG\r\n\x1a\n")
    assert "Load" in " ".join(page.headings), page.headings
    assert "Run configuration" in " ".join(page.headings), page.headings


def _recording_builders() -> Any:
    """tests/analyzer/test_html_report.py, for its recorded run (error ratio, latency, memory)."""
    path = Path(__file__).parents[1] / "analyzer" / "test_html_report.py"
    spec = importlib.util.spec_from_file_location("soak_html_report_recording", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_soak_analyze_run_dir_html_renders_in_headless_chromium(tmp_path: Path) -> None:
    """A recorded 2 h run (an error ratio that rises, latency that grows) with its load summary
    and config, rendered by the real ``soak-analyze --run-dir DIR --format html``."""
    servers.require_binary("chromium", "chromium")
    builders = _recording_builders()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    builders._write_recording(run_dir)
    summary = builders._load_summary()
    (run_dir / "load-summary.json").write_text(json.dumps(summary), encoding="utf-8")
    (run_dir / "config.json").write_text(json.dumps(builders.CONFIG), encoding="utf-8")
    report = tmp_path / "report.html"
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "soak-analyze"),
            "--run-dir",
            str(run_dir),
            "--format",
            "html",
            "--output",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr  # the error ratio and the latency fail
    page = open_in_chromium(report)
    _assert_readable(page, tmp_path / "report.png")
    alts = {image["alt"] for image in page.images}
    assert "error_ratio scenario=api" in alts and "latency_degradation scenario=api" in alts
    for name in summary["scenarios"]:
        assert name in page.text
    assert "hunter2" not in page.text and "tok-123456" not in page.text


@pytest.mark.slow
def test_the_demo_report_renders_in_headless_chromium_with_its_load_summary(
    tmp_path: Path,
) -> None:
    """A real short demo run (``soak run --demo``), its report.html opened in Chromium."""
    servers.require_binary("chromium", "chromium")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "soak"), "run", "--demo", "--duration", "40s"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode in (0, 1, 3), done.stderr[-4000:]
    reports = sorted(tmp_path.rglob("report.html"))
    assert reports, done.stdout[-4000:] + done.stderr[-4000:]
    report = reports[-1]
    page = open_in_chromium(report)
    _assert_readable(page, tmp_path / "report.png")
    # every scenario of the demo's load appears in the load summary, with its achieved rate
    summary = json.loads((report.parent / "load-summary.json").read_text(encoding="utf-8"))
    for name in summary["scenarios"]:
        assert name in page.text
    assert "p99" in page.text
    assert "not applicable" in page.text or "zero" in page.text
    shutil.copy(report, tmp_path / "demo-report.html")


@pytest.mark.slow
def test_the_browser_check_sees_a_broken_image_an_exception_and_a_console_error(
    tmp_path: Path,
) -> None:
    """The check itself, on a page made to fail it: what it reports is what Chromium saw."""
    page_file = tmp_path / "broken.html"
    page_file.write_text(
        "<!DOCTYPE html><html><body><h1>x</h1>"
        '<img alt="broken" src="data:image/png;base64,AAAA">'
        '<script>console.error("from the page"); throw new Error("boom");</script>'
        "</body></html>",
        encoding="utf-8",
    )
    page = open_in_chromium(page_file)
    assert any("boom" in error for error in page.errors), page.errors
    assert any("from the page" in error for error in page.errors), page.errors
    assert [(image["alt"], image["width"]) for image in page.images] == [("broken", 0)]
    with pytest.raises(AssertionError):
        _assert_readable(page, tmp_path / "broken.png")
