"""The rollout's plan and gate as pure functions: waves from shares, the gate's options, and the
verdict on each board (paired with itself) and on each wave."""

from __future__ import annotations

import pytest

from edgekit.errors import DeployError
from edgekit.rollout.gate import BoardEvidence, Window, decide_wave, judge_board
from edgekit.rollout.plan import GatePolicy, plan_waves
from edgekit.rollout.states import Verdict

BOARDS = [f"pi-{i:02d}" for i in range(12)]
POLICY = GatePolicy(windows=3, p50_ratio=1.5, accuracy_drop_pt=1.0)


def test_waves_are_cumulative_shares_in_device_order():
    waves = plan_waves(list(reversed(BOARDS)), canary="10%", waves="25%,50%,100%")
    assert [(w.label, len(w.devices)) for w in waves] == [
        ("canary", 2),
        ("25%", 1),
        ("50%", 3),
        ("100%", 6),
    ]
    assert waves[0].devices == ("pi-00", "pi-01")
    assert sorted(d for w in waves for d in w.devices) == BOARDS  # each board once
    # a canary of any share has at least one board; waves adding nobody are dropped
    small = plan_waves(["a", "b"], canary="1%", waves="10%,50%,100%")
    assert [(w.label, w.devices) for w in small] == [("canary", ("a",)), ("100%", ("b",))]
    assert [w.label for w in plan_waves(BOARDS, canary="0%", waves="100%")] == ["100%"]


@pytest.mark.parametrize(
    ("canary", "waves", "why"),
    [
        ("10%", "25%,50%", "last wave must be 100%"),
        ("10%", "50%,25%,100%", "must grow"),
        ("ten", "100%", "--canary 'ten'"),
        ("10%", "25,100%", "--waves '25'"),
        ("150%", "100%", "between 0% and 100%"),
    ],
)
def test_bad_wave_plans_are_refused(canary, waves, why):
    with pytest.raises(DeployError, match=why):
        plan_waves(BOARDS, canary=canary, waves=waves)


def test_the_gate_option():
    policy = GatePolicy.parse("windows=5,p50-ratio=1.2,accuracy-drop=0.5,failures=1,timeout=90")
    assert (policy.windows, policy.p50_ratio, policy.accuracy_drop_pt) == (5, 1.2, 0.5)
    assert (policy.max_failures, policy.timeout_s) == (1, 90.0)
    assert GatePolicy.parse(None) == GatePolicy()
    assert "3 window(s) per board on each bundle" in GatePolicy().describe()
    with pytest.raises(DeployError, match="expected one of windows="):
        GatePolicy.parse("latency=2")
    with pytest.raises(DeployError, match="--gate p50-ratio: input should be greater"):
        GatePolicy.parse("p50-ratio=0.9")


def _board(
    new_p50=(1.0, 1.0, 1.0),
    previous_p50=(1.0, 1.0, 1.0),
    *,
    accuracy=97.5,
    previous_accuracy=97.5,
    build=97.5,
    **changes,
) -> BoardEvidence:
    fields = dict(
        device_id="pi-00",
        deferred=False,
        failure=None,
        new=[Window(p, accuracy, "top1") for p in new_p50],
        previous=[Window(p, previous_accuracy, "top1") for p in previous_p50],
        build_accuracy=build,
        build_metric="top1",
    )
    return BoardEvidence(**{**fields, **changes})


def test_a_board_as_fast_and_as_accurate_passes_with_its_figures():
    figures = judge_board(
        _board(new_p50=(1.1, 0.9, 1.2), previous_p50=(1.0, 1.0, 0.8)), POLICY, budget_pt=1.0
    )
    assert figures.verdict is Verdict.PASS
    assert (figures.p50_new_ms, figures.p50_previous_ms) == (1.1, 1.0)  # medians
    assert figures.p50_ratio == pytest.approx(1.1)
    assert (figures.windows_new, figures.windows_previous) == (3, 3)


def test_a_slower_board_fails_against_its_own_previous_p50():
    figures = judge_board(_board(new_p50=(7.0, 7.2, 7.1)), POLICY, budget_pt=1.0)
    assert figures.verdict is Verdict.FAIL
    assert figures.reason == "p50 7.1 ms is 7.10x its 1 ms on the previous bundle (at most 1.5x)"
    # the same p50 on a board that was slower before passes: boards are paired with themselves
    slow_board = _board(new_p50=(7.0, 7.2, 7.1), previous_p50=(6.0, 6.0, 6.0))
    assert judge_board(slow_board, POLICY, budget_pt=1.0).verdict is Verdict.PASS


def test_accuracy_is_held_against_the_build_and_the_previous_bundle():
    below_build = judge_board(_board(accuracy=95.0, previous_accuracy=95.0), POLICY, budget_pt=1)
    assert below_build.verdict is Verdict.FAIL
    assert "2.50 pt below the build's 97.50%" in below_build.reason
    below_previous = judge_board(_board(accuracy=96.0, build=96.0), POLICY, budget_pt=1.0)
    assert "below its previous bundle's 97.50%" in below_previous.reason
    within = judge_board(_board(accuracy=96.8), POLICY, budget_pt=1.0)
    assert within.verdict is Verdict.PASS


def test_missing_windows_wait_on_the_new_bundle_and_fail_on_the_previous():
    waiting = judge_board(_board(new_p50=(1.0,)), POLICY, budget_pt=1.0)
    assert (waiting.verdict, waiting.reason) == (
        Verdict.WAITING,
        "1 of 3 window(s) on the new bundle",
    )
    no_baseline = judge_board(_board(previous_p50=(1.0,)), POLICY, budget_pt=1.0)
    assert no_baseline.verdict is Verdict.FAIL
    assert "1 of 3 window(s) on its previous bundle" in no_baseline.reason


def test_refusals_fail_and_offline_boards_are_deferred():
    refused = judge_board(_board(new_p50=(), failure="failed: signature"), POLICY, budget_pt=1.0)
    assert (refused.verdict, refused.reason) == (Verdict.FAIL, "failed: signature")
    away = judge_board(_board(new_p50=(), deferred=True), POLICY, budget_pt=1.0)
    assert away.verdict is Verdict.DEFERRED
    back = judge_board(_board(deferred=True), POLICY, budget_pt=1.0)  # it came back and reported
    assert back.verdict is Verdict.PASS


def test_a_wave_waits_then_decides():
    passed = judge_board(_board(), POLICY, budget_pt=1.0)
    waiting = judge_board(_board(new_p50=(1.0,)), POLICY, budget_pt=1.0)
    failed = judge_board(_board(new_p50=(9.0, 9.0, 9.0)), POLICY, budget_pt=1.0)
    away = judge_board(_board(new_p50=(), deferred=True), POLICY, budget_pt=1.0)
    assert decide_wave([passed, waiting], POLICY, timed_out=False) is None
    late = decide_wave([passed, waiting], POLICY, timed_out=True)
    assert late is not None
    assert late[0] is False
    assert "without enough windows in 600 s" in late[1]
    assert decide_wave([passed, away], POLICY, timed_out=False) == (
        True,
        "1 of 1 board(s) passed; 1 offline board(s) get it when they return",
    )
    assert decide_wave([passed, failed], POLICY, timed_out=False)[0] is False
    lenient = GatePolicy(max_failures=1)
    assert decide_wave([passed, failed], lenient, timed_out=False)[0] is True
    nobody = decide_wave([away], POLICY, timed_out=False)
    assert nobody == (False, "no board of the wave was online to be judged")
