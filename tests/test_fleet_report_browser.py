"""The HTML fleet report in headless Chromium: every view drawn without a console error, the
drill-down navigable, latency on log axes with readable labels, A/B with its interval, offline.
Screenshots of each view are left in the test's folder."""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import pytest
from fleet_fixtures import REFERENCE, START, V2, Board, report, store_fleet, summary
from report_factory import BUNDLES

from edgekit.collector import Store
from edgekit.collector.rollout_queries import RolloutView, WaveView
from edgekit.collector.snapshot import ReportFilter
from edgekit.fleet_report import fleet_figures, write_report
from edgekit.vocab import ReportFormat

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SELECTION = {
    "chosen": "model.onnx",
    "measured_at": START.isoformat(),
    "candidates": [
        {"artifact": "model.onnx", "variant": "int8 QDQ", "p50_ms": 0.5, "within_budget": True},
        {"artifact": "model.tflite", "p50_ms": 0.9, "within_budget": True, "reason": "slower"},
    ],
}
# The rpi4 boards' first build: slower than its fp32 model on the build host, which the
# overview must warn about.
SLOWER = dataclasses.replace(BUNDLES[0], samples=200, host_p50_ms=2.6, host_p50_fp32_ms=2.2)


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or CHROMIUM
    driver_path = shutil.which("chromedriver") or CHROMEDRIVER
    if not (Path(chromium).exists() and Path(driver_path).exists()):
        pytest.fail("chromium and chromedriver are needed (bash .ci/setup installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1400,2000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager never tries to download a browser or driver.
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _fleet(url: str) -> None:
    """Four rpi4 boards moved to a faster build (enough for a verdict), two rpi5 boards (not
    enough), an x86 gateway that chose among candidates, an 'rpi4' that is an x86_64 VM, one
    board whose watched inputs drift."""
    boards = [Board(f"rpi4-lab-{i:02d}", bundles=(SLOWER, V2[0]), speed=1 + 0.1 * i)
              for i in range(4)]  # fmt: skip
    boards += [Board(f"rpi5-shop-{i:02d}", bundles=(BUNDLES[1], V2[1])) for i in range(2)]
    boards += [Board("rpi4-vm-01", speed=0.05, machine="x86_64", status="offline")]
    store_fleet(url, boards)
    store_fleet(url, [Board("x86-gw-01", bundles=(BUNDLES[2],), machine="x86_64")],
                selection=SELECTION)  # fmt: skip
    steady, shifted = summary([3] * 10), summary([12, 10, 8, 0, 0, 0, 0, 0, 0, 0], mean=0.62)
    with Store(url) as store:
        for seq in range(8):
            for device, watched in (("cam-steady", steady), ("cam-shifted", shifted)):
                drift = {"eval_sample": REFERENCE, "watched": watched, "reference": REFERENCE}
                window = report(device, seq, drift=drift)
                store.add_report(window, received_at=window.finished_at)
        store.add_rejected("edgekit/v1/x/report", b"{", "payload: Invalid JSON")


def _page(tmp_path: Path, name: str, **filters) -> Path:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    if not (tmp_path / "fleet.db").exists():
        _fleet(url)
    with Store(url, create=False) as store:
        snapshot = store.snapshot(filters=ReportFilter(**filters))
    rollout = RolloutView(
        rollout_id="r-0001", bundle_id=V2[0].bundle_id, bundle_digest=V2[0].digest,
        profile="rpi4", selector="rpi4-lab-*", state="completed", reason="", created_at=START,
        finished_at=START, target_states={"healthy": 4}, events=20,
        waves=(WaveView(0, "canary", 1, "passed", START, START, None),),
    )  # fmt: skip
    figures = fleet_figures(dataclasses.replace(snapshot, rollouts=(rollout,)))
    return write_report(figures, tmp_path / f"{name}.html", ReportFormat.HTML, source=url)


class Page:
    """The report open in the browser, with the console log and screenshots kept."""

    def __init__(self, browser, page: Path, folder: Path) -> None:
        self.browser, self.folder = browser, folder
        browser.get(page.as_uri())
        self.wait("return document.readyState === 'complete'")
        self.errors: list[dict] = []

    def js(self, script: str):
        return self.browser.execute_script(script)

    def wait(self, condition: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.js(f"return {condition.removeprefix('return ')}"):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for: {condition}")
            time.sleep(0.1)

    def show(self, view: str, plots: tuple[str, ...] = ()) -> None:
        """Navigate to ``#view``, wait for its plots, save a screenshot, collect the log."""
        self.js(f"location.hash = {view!r}")
        section = view.split("/")[0]
        self.wait(f"document.body.dataset.view === {section!r}")
        for plot in plots:
            self.wait(f"document.querySelectorAll('#{plot} .main-svg').length > 0")
        self.browser.save_screenshot(str(self.folder / f"view-{view.replace('/', '-')}.png"))
        self.errors += [e for e in self.browser.get_log("browser") if e["level"] == "SEVERE"]

    def layout(self, plot: str) -> dict:
        return self.js(f"return document.getElementById('{plot}').layout")

    def traces(self, plot: str) -> list[dict]:
        return self.js(f"return document.getElementById('{plot}').data")

    def text(self, selector: str) -> str:
        return self.js(f"return document.querySelector({selector!r}).innerText")


def test_every_view_draws_and_the_drill_down_navigates(browser, tmp_path):
    page = Page(browser, _page(tmp_path, "fleet"), tmp_path)
    page.show("overview", ("plot-overview-time",))
    assert "Best bundle per profile" in page.text("#view-overview")
    warnings = browser.find_element("id", "fp32-warnings")
    assert warnings.is_displayed()
    assert warnings.text == (
        f"fashion-cnn-rpi4 · {SLOWER.digest[:7]} · rpi4: slower than fp32 on its build host: "
        f"{SLOWER.host_p50_ms:.4g} ms against {SLOWER.host_p50_fp32_ms:.4g} ms"
    )
    assert page.layout("plot-overview-time")["yaxis"]["type"] == "log"

    page.show("latency", ("plot-latency", "plot-latency-boards", "plot-latency-time"))
    assert page.layout("plot-latency")["xaxis"]["type"] == "log"
    assert page.layout("plot-latency-boards")["xaxis"]["type"] == "log"
    assert page.layout("plot-latency-time")["yaxis"]["type"] == "log"
    labels = page.js("return Array.from(document.querySelectorAll('#plot-latency .ytick text'))"
                     ".map(t => t.textContent)")  # fmt: skip
    assert f"fashion-cnn-rpi4 · {BUNDLES[0].digest[:7]} · rpi4" in labels
    assert f"fashion-cnn-rpi4-v2 · {V2[0].digest[:7]} · rpi4" in labels

    page.show("devices")
    assert page.js("return document.querySelectorAll('#devices tbody tr').length") == 10
    assert page.js("return document.querySelectorAll('#devices .host-simulated').length") == 1
    page.js("document.querySelector('#devices a[href=\"#device/rpi4-lab-01\"]').click()")
    device_plots = ("plot-device-latency", "plot-device-accuracy", "plot-device-rss",
                    "plot-device-startup")  # fmt: skip
    page.show("device/rpi4-lab-01", device_plots)
    assert "rpi4-lab-01" in page.text("#device-title")
    assert page.js("return document.querySelectorAll('#device-history tr').length") == 1 + 2
    assert page.layout("plot-device-latency")["yaxis"]["type"] == "log"
    bands = [t.get("fill") for t in page.traces("plot-device-latency")]
    assert bands == [None, "tonexty", "tonexty"] * 2  # p50, p90 and p99 per bundle
    accuracy_range = page.layout("plot-device-accuracy")["yaxis"]["range"]
    assert accuracy_range[1] - accuracy_range[0] >= 5  # a 0.1 pt difference is not a cliff
    page.js("document.getElementById('device-next').click()")
    page.show("device/rpi4-lab-02", device_plots)
    assert "rpi4-lab-02" in page.text("#device-title")
    browser.back()
    page.wait("document.getElementById('device-title').innerText.includes('rpi4-lab-01')")

    page.show(f"bundle/{V2[0].digest}", ("plot-bundle-latency", "plot-bundle-boards"))
    assert "fashion-cnn-rpi4-v2" in page.text("#bundle-title")
    assert "fp32 / quantized (build, sample count unknown" in page.text("#bundle-facts")
    assert page.layout("plot-bundle-latency")["yaxis"]["type"] == "log"

    page.show("drift", ("plot-drift",))
    assert page.js("return document.querySelectorAll('#drift tr.drifting').length") == 1
    assert "cam-shifted" in page.text("#drift tr.drifting")
    page.show("device/cam-shifted", ("plot-device-drift", "plot-device-histograms"))

    page.show("candidates")
    assert page.js("return document.querySelector('#candidates b').innerText") == "model.onnx"
    page.show("rollouts")
    assert "r-0001" in page.text("#view-rollouts")
    page.show("estimates", ("plot-estimates",))
    layout = page.layout("plot-estimates")
    assert (layout["xaxis"]["type"], layout["yaxis"]["type"]) == ("log", "log")
    page.show("data")
    assert "payload: Invalid JSON" in page.text("#rejected")

    assert page.errors == []
    # Works offline: every resource the page used is the file itself or inline data.
    resources = page.js("return performance.getEntriesByType('resource').map(r => r.name)")
    assert [r for r in resources if not r.startswith(("file:", "data:", "blob:"))] == []
    shots = sorted(p.name for p in tmp_path.glob("view-*.png"))
    assert len(shots) == 12
    assert all((tmp_path / s).stat().st_size > 10_000 for s in shots)


def test_ab_shows_an_interval_and_says_when_data_is_too_thin(browser, tmp_path):
    page = Page(browser, _page(tmp_path, "fleet"), tmp_path)
    page.show("ab", ("plot-ab-0",))
    verdicts = page.js("return Array.from(document.querySelectorAll('.verdict'))"
                       ".map(v => [v.className, v.innerText])")  # fmt: skip
    by_profile = {text.split(":")[0]: (cls, text) for cls, text in verdicts}
    rpi4_class, rpi4 = next(v for v in verdicts if "rpi4-v2" in v[1] and "faster" in v[1])
    assert "95 % CI" in rpi4
    assert "insufficient" not in rpi4_class
    thin = [text for cls, text in verdicts if "insufficient" in cls]
    assert len(thin) == 1
    assert thin[0].startswith("not enough data: 2 board(s)")
    assert "faster" not in thin[0]
    interval = page.text(".ab-interval td.ci")
    assert " to " in interval
    error_bar = page.traces("plot-ab-0")[1]["error_x"]
    assert error_bar["array"][0] > 0
    assert error_bar["arrayminus"][0] > 0
    assert by_profile  # every comparison carries a verdict
    assert page.errors == []


def test_filters_make_their_own_pages(browser, tmp_path):
    page = Page(browser, _page(tmp_path, "board", device="rpi4-lab-03"), tmp_path)
    page.wait("document.body.dataset.view === 'device'")
    page.show("device/rpi4-lab-03", ("plot-device-latency",))
    assert page.js("return JSON.parse(document.getElementById('fleet-data').textContent)"
                   ".devices.length") == 1  # fmt: skip
    page = Page(browser, _page(tmp_path, "rpi5", profile="rpi5"), tmp_path)
    page.show("bundles")
    assert page.js("return document.querySelectorAll('#bundles tr').length") == 1 + 2
    page = Page(browser, _page(tmp_path, "recent", since=START.replace(minute=5)), tmp_path)
    page.show("overview", ("plot-overview-time",))
    assert page.errors == []


def test_empty_report_page_shows_the_message(browser, tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    Store(url).close()
    with Store(url, create=False) as store:
        figures = fleet_figures(store.snapshot())
    page = write_report(figures, tmp_path / "empty.html", ReportFormat.HTML, source=url)
    browser.get(page.as_uri())
    browser.save_screenshot(str(tmp_path / "empty-report.png"))
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    text = browser.execute_script("return document.getElementById('empty').innerText")
    assert "No reports yet" in text
    assert browser.execute_script("return document.querySelectorAll('.js-plotly-plot').length") == 0
