"""The profile's budgets, checked against a build's figures."""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.profiles import DeviceProfile
from edgekit.vocab import CheckStatus


@dataclass(frozen=True)
class Check:
    """One budget or compatibility check of a build."""

    name: str
    value: float | None
    limit: float | None
    unit: str
    status: CheckStatus
    detail: str = ""


def _upper(name: str, value: float | None, limit: float, unit: str, detail: str = "") -> Check:
    if value is None:
        return Check(name, None, limit, unit, CheckStatus.NOT_MEASURED, detail)
    return Check(
        name, value, limit, unit, CheckStatus.PASS if value <= limit else CheckStatus.FAIL, detail
    )


def bundle_check(profile: DeviceProfile, bundle_bytes: int) -> tuple[Check, ...]:
    """The whole bundle (artifacts and eval sample) against the board's storage budget."""
    limit = profile.budgets.max_bundle_mb
    if limit is None:
        return ()
    return (_upper("bundle size", bundle_bytes / 2**20, limit, "MB", "artifacts + eval sample"),)


def check_budgets(
    profile: DeviceProfile,
    *,
    accuracy_drop_pt: float | None,
    accuracy_detail: str,
    model_mb: float,
    est_ram_mb: float,
    est_latency_ms: float | None,
    latency_detail: str = "",
    float_ops: tuple[str, ...],
    ops_present: tuple[str, ...],
) -> tuple[Check, ...]:
    """Every budget of ``profile`` plus the op checks, in a fixed order."""
    budgets = profile.budgets
    checks = [
        _upper(
            "accuracy drop", accuracy_drop_pt, budgets.max_accuracy_drop_pt, "pt", accuracy_detail
        ),
        _upper("model size", model_mb, budgets.max_model_mb, "MB"),
        _upper("RAM (estimated)", est_ram_mb, budgets.max_ram_mb, "MB", "weights + largest op"),
        _upper(
            "latency (estimated)",
            est_latency_ms,
            budgets.max_latency_ms,
            "ms",
            latency_detail or profile.name,
        ),
    ]
    if not profile.build.allow_float_fallback:
        checks.append(
            Check(
                "int8-only ops",
                float(len(float_ops)),
                0.0,
                "float ops",
                CheckStatus.FAIL if float_ops else CheckStatus.PASS,
                ", ".join(float_ops),
            )
        )
    if profile.build.unsupported_ops:
        banned = sorted(set(ops_present) & set(profile.build.unsupported_ops))
        checks.append(
            Check(
                "ops the board supports",
                float(len(banned)),
                0.0,
                "unsupported ops",
                CheckStatus.FAIL if banned else CheckStatus.PASS,
                ", ".join(banned),
            )
        )
    return tuple(checks)
