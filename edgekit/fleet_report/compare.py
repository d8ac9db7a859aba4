"""A/B between two builds: the same boards on both, paired differences and a 95 % interval.

Each board that ran both bundles for at least ``MIN_WINDOWS`` windows gives one pair: the ratio of
its mean p50 on B to its mean p50 on A (compared on a log scale, so a 10 % gain counts the same on
a 6 us board as on a 1.3 ms one), and its accuracy difference. Boards differ from each other far
more than one board differs from window to window, which is why the boards, not the windows, are
the samples. With fewer than ``MIN_BOARDS`` pairs there is no interval worth the name, and the
comparison says so instead of naming a winner.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from statistics import NormalDist
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgekit.fleet_report.boards import DeviceBundleFigures
    from edgekit.fleet_report.bundles import BundleFigures

MIN_BOARDS = 3
MIN_WINDOWS = 3
MAX_COMPARISONS = 12
# A p50 change smaller than this is no difference worth a verdict, however narrow its interval.
NEGLIGIBLE_PCT = 1.0
# Student's t, two-sided 95 %, for 1 to 30 degrees of freedom.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Pair:
    """One board on both bundles."""

    device_id: str
    p50_a_ms: float
    p50_b_ms: float
    windows_a: int
    windows_b: int
    accuracy_a: float | None
    accuracy_b: float | None

    @property
    def ratio(self) -> float:
        """B's p50 over A's."""
        return self.p50_b_ms / self.p50_a_ms


@dataclass(frozen=True, slots=True)
class Interval:
    """A mean with its two-sided 95 % confidence interval over ``n`` samples."""

    n: int
    mean: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        """True when the interval lies wholly on one side of zero."""
        return self.low > 0 or self.high < 0


@dataclass(frozen=True, slots=True)
class Comparison:
    """Bundle B against bundle A on the boards that ran both."""

    profile: str
    a: str  # bundle digests
    b: str
    a_label: str
    b_label: str
    boards_both: int  # boards that ran both, enough windows or not
    pairs: tuple[Pair, ...]
    latency: Interval | None  # of ln(p50_B / p50_A)
    accuracy: Interval | None  # of accuracy_B - accuracy_A, in points
    verdict: str
    enough: bool

    @property
    def change_pct(self) -> tuple[float, float, float] | None:
        """B's p50 change against A in percent: (estimate, low, high)."""
        if self.latency is None:
            return None
        i = self.latency
        return tuple(100 * (math.exp(v) - 1) for v in (i.mean, i.low, i.high))  # type: ignore[return-value]


def t975(df: int) -> float:
    """Student's t quantile for a two-sided 95 % interval with ``df`` degrees of freedom."""
    if df < 1:
        return math.inf
    if df <= len(_T975):
        return _T975[df - 1]
    z = NormalDist().inv_cdf(0.975)
    # Cornish-Fisher expansion: within 1e-3 of the exact quantile beyond 30 degrees.
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def interval(values: Sequence[float]) -> Interval | None:
    """The mean of ``values`` with its t interval (None for fewer than two values)."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return Interval(n, mean, mean - half, mean + half)


def compare(
    profile: str, a: tuple[str, str], b: tuple[str, str], pairs: Sequence[Pair], *, boards: int
) -> Comparison:
    """Compare bundle ``b`` with ``a`` ((digest, label) each) from the boards' ``pairs``
    (``boards`` ran both, whether or not they have enough windows)."""
    usable = tuple(p for p in pairs if min(p.windows_a, p.windows_b) >= MIN_WINDOWS)
    enough = len(usable) >= MIN_BOARDS
    latency = interval([math.log(p.ratio) for p in usable]) if enough else None
    diffs = [
        p.accuracy_b - p.accuracy_a
        for p in usable
        if p.accuracy_a is not None and p.accuracy_b is not None
    ]
    accuracy = interval(diffs) if len(diffs) >= MIN_BOARDS else None
    verdict = _verdict(a[1], b[1], latency, accuracy, usable=len(usable), boards=boards)
    return Comparison(profile, a[0], b[0], a[1], b[1], boards, usable, latency, accuracy,
                      verdict, enough)  # fmt: skip


def _verdict(
    a: str,
    b: str,
    latency: Interval | None,
    accuracy: Interval | None,
    *,
    usable: int,
    boards: int,
) -> str:
    if latency is None:
        return (
            f"not enough data: {usable} board(s) ran both with {MIN_WINDOWS}+ windows each "
            f"({boards} ran both at all); a verdict needs {MIN_BOARDS}"
        )
    low, high = (100 * (math.exp(v) - 1) for v in (latency.low, latency.high))
    est = 100 * (math.exp(latency.mean) - 1)
    span = f"{est:+.1f} % p50 (95 % CI {low:+.1f} to {high:+.1f} %)"
    if max(abs(low), abs(high)) < NEGLIGIBLE_PCT:
        text = f"no latency difference beyond {NEGLIGIBLE_PCT:g} %: {span}"
    elif high < 0:
        text = f"{b} is faster than {a}: {span}"
    elif low > 0:
        text = f"{b} is slower than {a}: {span}"
    else:
        text = f"no clear latency difference: {span}"
    if accuracy is not None:
        text += (
            f"; accuracy {accuracy.mean:+.2f} pt "
            f"(95 % CI {accuracy.low:+.2f} to {accuracy.high:+.2f})"
        )
    return text + f"; {latency.n} boards"


def comparisons(
    bundles: Sequence[BundleFigures], pairs: Sequence[DeviceBundleFigures]
) -> tuple[Comparison, ...]:
    """A/B for every two bundles of a profile that some board ran both of (older as A)."""
    by_device: dict[str, dict[str, DeviceBundleFigures]] = {}
    for p in pairs:
        by_device.setdefault(p.device_id, {})[p.bundle_digest] = p
    out = []
    for profile in sorted({b.profile for b in bundles}):
        mine = sorted((b for b in bundles if b.profile == profile and b.reports),
                      key=lambda b: (b.first_seen or datetime.max, b.bundle_id))  # fmt: skip
        for i, a in enumerate(mine):
            for b in mine[i + 1 :]:
                both = [
                    d for d in by_device.values() if a.bundle_digest in d and b.bundle_digest in d
                ]
                if not both:
                    continue
                paired = [_pair(d[a.bundle_digest], d[b.bundle_digest]) for d in both]
                sides = (a.bundle_digest, a.short_label), (b.bundle_digest, b.short_label)
                out.append(compare(profile, *sides, paired, boards=len(both)))
    out.sort(key=lambda c: (-len(c.pairs), c.profile))
    return tuple(out[:MAX_COMPARISONS])


def _pair(a: DeviceBundleFigures, b: DeviceBundleFigures) -> Pair:
    return Pair(a.device_id, a.p50_ms, b.p50_ms, a.reports, b.reports, a.accuracy_on_device,
                b.accuracy_on_device)  # fmt: skip
