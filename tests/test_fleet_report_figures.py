"""The fleet report's figures on fleets in a real store: exact aggregates (the same on SQLite
and PostgreSQL) and filters, host checks and health, A/B between two builds with a 95 %
interval, drift against the build's reference."""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta

import pytest
from fleet_fixtures import REFERENCE, START, V2, Board, figures_of, report, store_fleet, summary
from report_factory import BUNDLES

from edgekit.collector import Store
from edgekit.fleet_report import render
from edgekit.fleet_report.compare import Pair, compare, interval, t975
from edgekit.fleet_report.hosts import Health, HostMatch
from edgekit.vocab import ReportFormat


def test_aggregates_are_exact_and_the_same_on_every_database(store_url):
    """Sums over buckets, per device and per bundle equal the plain means of the stored windows;
    SQLite and PostgreSQL bucket time the same way."""
    boards = [Board(f"rpi4-{i}", bundles=(BUNDLES[0], V2[0]), speed=1 + i / 10, windows=25)
              for i in range(3)]  # fmt: skip
    store_fleet(store_url, boards)
    f = figures_of(store_url)
    assert f.report_count == 150
    assert f.axis is not None
    assert f.axis.count == 48
    raw = {
        (b.device_id, bundle.digest): [
            bundle.est_latency_ms * b.speed * (1 + 0.01 * (s % 3)) + (s % 7) * 0.05
            for s in range(k * 25, k * 25 + 25)
        ]
        for b in boards
        for k, bundle in enumerate(b.bundles)
    }
    for row in f.device_bundles:
        values = raw[(row.device_id, row.bundle_digest)]
        assert row.p50_ms == pytest.approx(sum(values) / len(values), rel=1e-12)
        assert row.reports == 25
    for series in f.bundle_series:
        assert sum(series.windows) == 75
        mine = [v for (_, d), vs in raw.items() if d == series.bundle_digest for v in vs]
        weighted = sum(p * n for p, n in zip(series.p50_ms, series.windows, strict=True))
        assert weighted / 75 == pytest.approx(sum(mine) / 75, rel=1e-12)
    history = {d.device_id: d.history for d in f.devices}
    assert [s.windows for s in history["rpi4-0"]] == [25, 25]
    assert history["rpi4-0"][0].bundle_digest == BUNDLES[0].digest


def test_filters_select_exactly_their_reports(store_url):
    store_fleet(store_url, [Board("rpi4-a", windows=10), Board("rpi5-a", bundles=(BUNDLES[1],),
                                                               windows=10)])  # fmt: skip
    assert figures_of(store_url, device="rpi4-a").report_count == 10
    only = figures_of(store_url, profile="rpi5")
    assert [d.device_id for d in only.devices] == ["rpi5-a"]
    assert [b.profile for b in only.bundles] == ["rpi5"]
    since = figures_of(store_url, since=START + timedelta(minutes=6))
    assert since.report_count == 8  # windows 6..9 of both boards
    assert figures_of(store_url, device="nobody").report_count == 0


def test_simulated_hosts_are_marked_and_left_out_of_the_estimate(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    store_fleet(url, [Board("pi-real", speed=1.2), Board("pi-vm", speed=0.1, machine="x86_64"),
                      Board("x86-gw", bundles=(BUNDLES[2],), machine="x86_64")])  # fmt: skip
    f = figures_of(url)
    hosts = {d.device_id: d.host for d in f.devices}
    assert hosts == {
        "pi-real": HostMatch.MATCH,
        "pi-vm": HostMatch.SIMULATED,
        "x86-gw": HostMatch.MATCH,
    }
    rpi4 = next(b for b in f.bundles if b.profile == "rpi4")
    real = next(r for r in f.device_bundles if r.device_id == "pi-real")
    assert rpi4.board_p50_ms == pytest.approx(real.p50_ms)  # the VM's 10x faster p50 left out
    loop = next(p for p in f.profiles if p.profile == "rpi4")
    assert loop.simulated_reports == 6
    assert "simulated" in render(f, ReportFormat.HTML, source="x")


def test_health_tells_offline_from_silent(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    store_fleet(url, [Board("stopped", status="offline"), Board("quiet", status="online")])
    health = {d.device_id: d.health for d in figures_of(url).devices}
    # Windows from 2025: the online board has not reported for far more than 3 intervals.
    assert health == {"stopped": Health.OFFLINE, "quiet": Health.SILENT}
    assert Health.OFFLINE.value in render(figures_of(url), ReportFormat.MD, source="x")


def test_ab_with_two_boards_says_not_enough_data(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    store_fleet(url, [Board(f"pi-{i}", bundles=(BUNDLES[0], V2[0])) for i in range(2)])
    (c,) = figures_of(url).comparisons
    assert not c.enough
    assert c.latency is None
    assert c.verdict.startswith("not enough data: 2 board(s)")
    assert "faster" not in c.verdict
    assert "slower" not in c.verdict


def test_ab_with_enough_boards_names_the_faster_build_with_an_interval(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    boards = [Board(f"pi-{i}", bundles=(BUNDLES[0], V2[0]), speed=1 + 0.07 * i) for i in range(5)]
    store_fleet(url, boards)
    (c,) = figures_of(url).comparisons
    assert c.enough
    assert c.latency is not None
    assert c.latency.n == 5
    est, low, high = c.change_pct
    assert low < est < high < 0  # v2's estimate is 0.8x; the jitter keeps each board's ratio apart
    assert f"{V2[0].bundle_id} · {V2[0].digest[:7]} is faster" in c.verdict
    assert "95 % CI" in c.verdict


def test_t_interval_and_verdicts_on_known_numbers():
    assert t975(1) == pytest.approx(12.706)
    assert t975(60) == pytest.approx(2.000, abs=2e-3)  # the expansion beyond the table
    i = interval([1.0, 2.0, 3.0, 4.0])
    assert (i.mean, i.low, i.high) == pytest.approx(
        (2.5, 2.5 - 3.182 * 0.6455, 2.5 + 2.054), abs=1e-3
    )
    same = [Pair(f"d{k}", 1.0, 1.0 * (1 + (-1) ** k * 0.02), 5, 5, None, None) for k in range(6)]
    c = compare("rpi4", ("a", "A"), ("b", "B"), same, boards=6)
    assert c.verdict.startswith("no clear latency difference")
    few_windows = [dataclasses.replace(p, windows_b=2) for p in same]
    assert not compare("rpi4", ("a", "A"), ("b", "B"), few_windows, boards=6).enough


def test_drift_flags_a_shifted_board_and_not_a_steady_one(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    steady = summary([2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    shifted = summary([10, 8, 2, 0, 0, 0, 0, 0, 0, 0], mean=0.6)
    with Store(url) as store:
        for seq in range(10):
            for device, watched in (("steady", steady), ("shifted", shifted)):
                drift = {"eval_sample": REFERENCE, "watched": watched, "reference": REFERENCE}
                store.add_report(report(device, seq, drift=drift))
    f = figures_of(url)
    flagged = {(d.device_id, d.source) for d in f.drift if d.flagged}
    assert flagged == {("shifted", "watch")}
    steady_score = next(d for d in f.drift if d.device_id == "steady" and d.source == "watch")
    assert steady_score.samples == 200
    assert steady_score.psi < steady_score.threshold
    shifted_score = next(d for d in f.drift if d.device_id == "shifted" and d.source == "watch")
    assert shifted_score.mean_shift == pytest.approx((0.6 - 0.3) / 0.35, rel=1e-6)
    assert {d.device_id for d in f.devices if d.drifting} == {"shifted"}
    assert "shifted" in render(f, ReportFormat.MD, source="x").split("## Drifting boards")[1]


def test_psi_noise_level_tracks_the_sample_size():
    from edgekit.drift import psi, psi_noise

    small, large = [3, 2, 5], [300, 200, 500]
    assert psi_noise(small, small) > 10 * psi_noise(large, large)
    assert psi(large, large) == 0.0
    assert math.isfinite(psi([10, 0, 0], [0, 0, 10]))
