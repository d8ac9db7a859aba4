"""``edgekit build``: load -> prune (-> fine-tune) -> quantize -> export -> validate -> bundle.

Per format the profile asks for (and the model can become), the source's exporter makes the fp32
baseline and a quantized candidate; both run in the real interpreter on the eval data. When int8
misses the accuracy budget, the layers that cost most stay float until it fits. Budgets are
checked per artifact; the bundle is written only when every artifact passes, or the user says so.

The steps live in modules named for them: :mod:`~edgekit.converters.plan` (request, formats,
data), :mod:`~edgekit.converters.candidates` and :mod:`~edgekit.converters.selection` (build,
fallback, sparsity search, host latency), :mod:`~edgekit.converters.reporting` (the report) and
:mod:`~edgekit.converters.bundle_output` (eval sample, manifest, signing).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from edgekit.converters.bundle_output import load_signer, write_output
from edgekit.converters.candidates import Baseline
from edgekit.converters.plan import (
    BuildRequest,
    check_request,
    choose_formats,
    load_build_data,
    pin_shapes,
)
from edgekit.converters.report import BuildReport
from edgekit.converters.reporting import assemble_report
from edgekit.converters.selection import measured_on_host, select
from edgekit.converters.source_registry import open_source
from edgekit.converters.validate import Reference
from edgekit.progress import Progress, SilentProgress
from edgekit.vocab import BuildStatus

__all__ = ["BuildRequest", "build"]


def build(request: BuildRequest, *, progress: Progress | None = None) -> BuildReport:
    """Run the pipeline; the bundle is written only if every check passes or is overridden."""
    progress = progress or SilentProgress()
    started = time.perf_counter()
    plan = check_request(request)
    # Loaded before hours of conversion, so a wrong key path fails at once.
    signer = load_signer(request.sign_key)
    with tempfile.TemporaryDirectory(prefix="edgekit-build-") as tmp:
        work = Path(tmp)
        source = open_source(request.model, work_dir=work)
        formats = choose_formats(request.profile, source)
        data = load_build_data(request, source.inputs)
        source = pin_shapes(source, data, request.input_shapes)
        accuracy_data, data_label = data.for_accuracy()
        reference = Reference(accuracy_data, threads=plan.host_threads, progress=progress)
        exporters = {fmt: source.exporter(fmt, work_dir=work) for fmt in formats}
        baselines = {fmt: Baseline.of(exporter) for fmt, exporter in exporters.items()}
        selection = select(plan, source, exporters, baselines, data=data, reference=reference,
                           data_label=data_label, work_dir=work, progress=progress)  # fmt: skip
        selection = selection.measured(
            lambda c: measured_on_host(c, plan, accuracy_data, progress=progress)
        )
    notes = tuple(dict.fromkeys(note for b in baselines.values() for note in b.notes))
    report = assemble_report(plan, source, selection, notes=notes, started=started)
    if report.status is not BuildStatus.OVER_BUDGET:
        write_output(plan, source, selection.chosen, report, reference, signer=signer)
    return report
