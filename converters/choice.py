"""Which candidates the bundle ships, and why each other one does not.

A candidate can ship only within the profile's accuracy, size and RAM budgets, with no op the
board cannot run. Where the build host stands for the board (``choose_on = "host"``), the fastest
measured candidate ships, ties (medians within the measurements' spread) going to the smaller.
Elsewhere the estimate ranks them and the best ``ship_candidates`` ship, so that the board
measures them itself. Nothing here trusts that int8 is faster: when what ships is slower on this
host than fp32, a warning says so with both figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgekit.converters.budgets import Check, check_budgets
from edgekit.converters.candidates import Candidate
from edgekit.converters.explore import runs_on_board
from edgekit.converters.plan import Plan
from edgekit.converters.target_checks import TARGET_GATES, with_target
from edgekit.vocab import CheckStatus, Quantization, SelectionSite

# Medians closer than this fraction are a tie whatever the intervals say.
TIE_FRACTION = 0.02
# Checks that judge whether a candidate may ship at all (latency decides among those that may).
_BUDGET_GATES = {"accuracy drop", "model size", "RAM (estimated)", "int8-only ops",
                 "ops the board supports"}  # fmt: skip
_GATES = frozenset(_BUDGET_GATES) | TARGET_GATES


@dataclass(frozen=True)
class Verdict:
    """What the choice made of one candidate."""

    candidate: Candidate
    shipped: bool
    reason: str


@dataclass(frozen=True)
class Choice:
    """The candidates shipped (the preferred one first) and a verdict on every one explored."""

    site: SelectionSite
    shipped: tuple[Candidate, ...]
    verdicts: tuple[Verdict, ...]
    summary: str
    warnings: tuple[str, ...]


def candidate_checks(plan: Plan, candidate: Candidate) -> tuple[Check, ...]:
    """Every budget and op check of ``candidate``, the target tools' included."""
    acc, stats, content = candidate.accuracy, candidate.stats, candidate.content
    estimate = candidate.estimate
    budgets = check_budgets(
        plan.profile,
        accuracy_drop_pt=None if acc is None else acc.drop_pt,
        accuracy_detail="" if acc is None else f"{acc.metric} on {acc.data} ({acc.samples})",
        model_mb=len(content) / 2**20,
        est_ram_mb=est_ram_mb(candidate),
        est_latency_ms=None if estimate is None else estimate.ms,
        latency_detail=_latency_detail(plan, candidate),
        float_ops=stats.float_ops,
        ops_present=tuple(sorted({op.op for op in stats.ops})),
    )
    return with_target(budgets, candidate)


def est_ram_mb(candidate: Candidate) -> float:
    """Weights plus the largest op's working set: a lower bound of what the board needs."""
    return (len(candidate.content) + candidate.stats.arena_bytes) / 2**20


def choose(plan: Plan, candidates: Sequence[Candidate]) -> Choice:
    """The shipped candidates per the profile's ``choose_on``, with a verdict on each."""
    refusals = {c.file_name: _refusal(plan, c) for c in candidates}
    eligible = [c for c in candidates if refusals[c.file_name] is None]
    site = plan.profile.build.choose_on
    host = site is SelectionSite.HOST and bool(eligible) and all(c.host for c in eligible)
    shipped: list[Candidate] = []
    reasons: dict[str, str] = {}
    for group in _groups(plan, candidates):
        mine = [c for c in group if refusals[c.file_name] is None]
        if not mine:  # nothing may ship: the profile's scheme goes, and its checks fail the build
            first = next(c for c in group if c.primary)
            shipped.append(first)
            reasons[first.file_name] = "shipped: no candidate of this format is within budget"
            continue
        if host:
            picked = _fastest(mine)
        elif site is SelectionSite.HOST:  # not measured: the profile's own scheme, as asked
            picked = [next((c for c in mine if c.primary), _by_estimate(mine)[0])]
        else:
            picked = _by_estimate(mine)[: plan.profile.build.ship_candidates]
        shipped.extend(picked)
        reasons.update(_why(picked, mine, host=host))
    verdicts = tuple(
        Verdict(c, c in shipped, reasons.get(c.file_name) or refusals[c.file_name] or "")
        for c in candidates
    )
    return Choice(
        site=SelectionSite.HOST if host or len(shipped) == 1 else SelectionSite.BOARD,
        shipped=tuple(shipped),
        verdicts=verdicts,
        summary=_summary(shipped[0], host=host, site=site),
        warnings=tuple(_slower_than_fp32(shipped, candidates)),
    )


def _groups(plan: Plan, candidates: Sequence[Candidate]) -> list[list[Candidate]]:
    """One group per format with build_all_formats (each ships its own); else one group: the
    best of every format ships."""
    if not plan.profile.build.build_all_formats:
        return [list(candidates)]
    formats = dict.fromkeys(c.format for c in candidates)
    return [[c for c in candidates if c.format is fmt] for fmt in formats]


def _refusal(plan: Plan, candidate: Candidate) -> str | None:
    """Why ``candidate`` may not ship, or None."""
    if not runs_on_board(plan, candidate):
        return "dropped: the board runs int8 only (or its I/O is not float)"
    if candidate.accuracy is None and not candidate.primary:
        return "dropped: accuracy not measured (no --eval or --calibration data)"
    failed = [c for c in candidate_checks(plan, candidate)
              if c.name in _GATES and c.status is CheckStatus.FAIL]  # fmt: skip
    if failed:
        what = "; ".join(f"{c.name} {_shown(c.value)} > {_shown(c.limit)} {c.unit}" for c in failed)
        return f"dropped: {what}"
    return None


def _fastest(pool: Sequence[Candidate]) -> list[Candidate]:
    """The fastest measured candidate; among those tied with it, the smallest."""
    best = min(pool, key=_p50)
    assert best.host is not None
    tied = [c for c in pool if c.host is not None and _p50(c) - _p50(best) <= _tie(best, c)]
    return [min(tied, key=lambda c: (len(c.content), _p50(c)))]


def _tie(a: Candidate, b: Candidate) -> float:
    assert a.host is not None
    assert b.host is not None
    return max(a.host.p50_ci_ms + b.host.p50_ci_ms, TIE_FRACTION * a.host.p50_ms)


def _p50(candidate: Candidate) -> float:
    return candidate.host.p50_ms if candidate.host is not None else float("inf")


def _by_estimate(pool: Sequence[Candidate]) -> list[Candidate]:
    """Known estimates first, fastest first; unknown ones after, in the order explored."""
    known = [c for c in pool if c.estimate is not None and c.estimate.ms is not None]
    # Ties go to the profile's own scheme, then to the smaller.
    known.sort(key=lambda c: (c.estimate.ms if c.estimate and c.estimate.ms else 0.0,
                              not c.primary, len(c.content)))  # fmt: skip
    return known + [c for c in pool if c not in known]


def _why(picked: list[Candidate], pool: list[Candidate], *, host: bool) -> dict[str, str]:
    best = picked[0]
    reasons: dict[str, str] = {}
    for c in pool:
        if c is best and host:
            reasons[c.file_name] = f"shipped (preferred): fastest on this host, {_ms(c)}"
        elif c is best:
            reasons[c.file_name] = f"shipped (preferred): best estimate, {_est(c)}"
        elif c in picked:
            reasons[c.file_name] = f"shipped: the board measures it too (estimate {_est(c)})"
        elif host and _p50(c) - _p50(best) <= _tie(best, c):
            reasons[c.file_name] = f"not shipped: as fast as {best.file_name} ({_ms(c)}), larger"
        elif host:
            reasons[c.file_name] = f"not shipped: slower, {_ms(c)} against {_ms(best)}"
        else:
            reasons[c.file_name] = f"not shipped: estimate {_est(c)}"
    return reasons


def _summary(best: Candidate, *, host: bool, site: SelectionSite) -> str:
    if host:
        return f"chose {best.file_name} ({best.label}): fastest on this host, {_ms(best)}"
    if site is SelectionSite.HOST:
        return (
            f"shipping {best.file_name} ({best.label}), the profile's scheme: host latency "
            "not measured"
        )
    return f"chose {best.file_name} ({best.label}) by estimate ({_est(best)}); the board decides"


def _slower_than_fp32(shipped: Sequence[Candidate], candidates: Sequence[Candidate]) -> list[str]:
    warnings = []
    for c in shipped:
        same = [f for f in candidates if f.format is c.format and f.host is not None]
        fp32 = next((f for f in same if f.artifact.scheme is Quantization.NONE), None)
        if fp32 is None or c is fp32 or c.host is None or fp32.host is None:
            continue
        if _p50(c) > _p50(fp32) + _tie(fp32, c):
            warnings.append(
                f"{c.file_name} ({c.label}) is slower on this host than fp32: "
                f"{c.host.p50_ms:.3g} ms against {fp32.host.p50_ms:.3g} ms"
            )
    return warnings


def _latency_detail(plan: Plan, candidate: Candidate) -> str:
    estimate = candidate.estimate
    if estimate is None:
        return plan.profile.name
    if estimate.ms is None:
        return f"unknown: {estimate.unknown_reason}"
    return f"{plan.profile.name}, {estimate.runtime}"


def _ms(c: Candidate) -> str:
    if c.host is None:
        return "not measured"
    return f"{c.host.p50_ms:.3g} ms (± {_percent(c.host.p50_ci_ms, c.host.p50_ms)})"


def _percent(part: float, whole: float) -> str:
    """``part`` as a share of ``whole``: an interval that reads at any scale."""
    return f"{100 * part / whole:.2g} %" if whole > 0 else "-"


def _est(c: Candidate) -> str:
    if c.estimate is None or c.estimate.ms is None:
        return "unknown"
    return f"{c.estimate.ms:.3g} ms"


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"
