"""The HTML fleet report in headless Chromium: no console errors, every plot drawn, offline."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from report_factory import BUNDLES, make_report

from edgekit.collector import Store
from edgekit.fleet_report import fleet_figures, write_report
from edgekit.vocab import ReportFormat

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


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
        "--window-size=1400,2400",
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


def _fleet_db(path: Path) -> str:
    url = f"sqlite:///{path}"
    with Store(url) as store:
        for d, device in enumerate(("rpi4-lab-01", "rpi4-lab-02", "rpi5-shop-01", "x86-gw-01")):
            bundle = BUNDLES[min(d // 2 + (d == 3), 2)]
            for seq in range(6):
                store.add_report(
                    make_report(
                        device,
                        sequence=seq,
                        bundle=bundle,
                        p50_ms=bundle.est_latency_ms * (1.1 + 0.1 * d),
                        accuracy=bundle.quantized - 0.3 * d,
                    )
                )
            store.add_status(device, "offline" if d == 3 else "online")
        store.add_rejected("edgekit/v1/x/report", b"{", "payload: Invalid JSON")
    return url


def _open(browser, page: Path) -> list[dict]:
    browser.get(page.as_uri())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if browser.execute_script("return document.readyState") == "complete":
            break
        time.sleep(0.1)
    return browser.get_log("browser")


def test_html_report_renders_every_plot_without_errors(browser, tmp_path):
    url = _fleet_db(tmp_path / "fleet.db")
    with Store(url, create=False) as store:
        figures = fleet_figures(store.snapshot())
    page = write_report(figures, tmp_path / "fleet.html", ReportFormat.HTML, source=url)

    logs = _open(browser, page)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        drawn = browser.execute_script(
            "return document.querySelectorAll('.js-plotly-plot .main-svg').length"
        )
        if drawn >= 5:
            break
        time.sleep(0.2)
    browser.save_screenshot(str(tmp_path / "fleet-report.png"))

    errors = [entry for entry in logs + browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    assert browser.execute_script("return typeof Plotly") == "object"
    plots = browser.execute_script(
        "return Array.from(document.querySelectorAll('.js-plotly-plot')).map(p => p.id)"
    )
    assert plots == [
        "plot-latency",
        "plot-accuracy",
        "plot-closed-loop",
        "plot-size",
        "plot-devices",
    ]
    for plot_id in plots:
        bars_or_points = browser.execute_script(
            f"return document.querySelectorAll('#{plot_id} .main-svg .trace').length"
        )
        assert bars_or_points > 0, plot_id
    # Works offline: every resource the page used is the file itself or inline data.
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(r => r.name)"
    )
    assert [r for r in resources if not r.startswith(("file:", "data:", "blob:"))] == []
    rows = browser.execute_script("return document.querySelectorAll('#devices tr').length")
    assert rows == 1 + 4
    assert (tmp_path / "fleet-report.png").stat().st_size > 10_000


def test_empty_report_page_shows_the_message(browser, tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    Store(url).close()
    with Store(url, create=False) as store:
        figures = fleet_figures(store.snapshot())
    page = write_report(figures, tmp_path / "empty.html", ReportFormat.HTML, source=url)
    logs = _open(browser, page)
    browser.save_screenshot(str(tmp_path / "empty-report.png"))
    assert [e for e in logs if e["level"] == "SEVERE"] == []
    text = browser.execute_script("return document.getElementById('empty').innerText")
    assert "No reports yet" in text
    assert browser.execute_script("return document.querySelectorAll('.js-plotly-plot').length") == 0
