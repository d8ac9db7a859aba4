"""``edgekit build``: load -> prune (-> fine-tune) -> candidates -> measure -> choose -> bundle.

Per format the profile asks for (and the model can become), the source's exporter makes the fp32
baseline and the profile's quantized artifact; both run in the real interpreter on the eval data,
and when int8 misses the accuracy budget the layers that cost most stay float until it fits. Then
the other candidates worth measuring (quantizer variants, fp32, the ops slower in int8 kept
float) are built, all of them timed side by side on this machine, and the fastest within budget
ships (or, where this machine cannot stand for the board, the best few by estimate, for the
board to measure). Where the profile's target has tools of its own (TensorFlow Lite Micro, Arm's
Vela, the Edge TPU compiler), they run on every candidate before the choice. The bundle is
written only when what ships passes every budget, or the user says so.

The steps live in modules named for them: :mod:`~edgekit.converters.plan` (request, formats,
data), :mod:`~edgekit.converters.candidates` and :mod:`~edgekit.converters.selection` (a
candidate, the accuracy fallback, the sparsity search), :mod:`~edgekit.converters.explore` (the
other candidates, host latency, the latency-aware fallback), :mod:`~edgekit.converters.choice`
(what ships and why), :mod:`~edgekit.converters.target_checks` (the target's tools),
:mod:`~edgekit.converters.reporting` (the report) and
:mod:`~edgekit.converters.bundle_output` (eval sample, manifest, signing).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from edgekit.converters.bundle_output import load_signer, write_output
from edgekit.converters.candidates import Baseline
from edgekit.converters.choice import choose
from edgekit.converters.explore import explore, measure
from edgekit.converters.plan import (
    BuildRequest,
    check_request,
    choose_formats,
    load_build_data,
    pin_shapes,
    usable_exporters,
)
from edgekit.converters.report import BuildReport
from edgekit.converters.reporting import assemble_report
from edgekit.converters.sample_output import make_sample
from edgekit.converters.selection import select
from edgekit.converters.source_registry import open_source
from edgekit.converters.target_checks import check_target_tools, run_on_target
from edgekit.converters.validate import Reference
from edgekit.progress import Progress, SilentProgress
from edgekit.vocab import BuildStatus

__all__ = ["BuildRequest", "build"]


def build(request: BuildRequest, *, progress: Progress | None = None) -> BuildReport:
    """Run the pipeline; the bundle is written only if every check passes or is overridden."""
    progress = progress or SilentProgress()
    started = time.perf_counter()
    plan = check_request(request)
    # Loaded (and the target's tools found) before hours of conversion, so a wrong key path or
    # a missing tool fails at once.
    signer = load_signer(request.sign_key)
    check_target_tools(request.profile)
    with tempfile.TemporaryDirectory(prefix="edgekit-build-") as tmp:
        work = Path(tmp)
        source = open_source(request.model, work_dir=work)
        formats, skipped = choose_formats(request.profile, source)
        data = load_build_data(request, source.inputs)
        source = pin_shapes(source, data, request.input_shapes)
        accuracy_data, data_label = data.for_accuracy()
        reference = Reference(accuracy_data, threads=plan.host_threads, progress=progress)
        exporters, refused = usable_exporters(
            request.profile, {fmt: source.exporter(fmt, work_dir=work) for fmt in formats}
        )
        baselines = {fmt: Baseline.of(exporter) for fmt, exporter in exporters.items()}
        selection = select(plan, source, exporters, baselines, data=data, reference=reference,
                           data_label=data_label, work_dir=work, progress=progress)  # fmt: skip
        candidates = explore(
            plan,
            selection.chosen,
            selection.exporters,
            data=data,
            reference=reference,
            data_label=data_label,
            progress=progress,
        )
        candidates = measure(
            plan,
            candidates,
            selection.exporters,
            data=data,
            reference=reference,
            data_label=data_label,
            progress=progress,
        )
        candidates = run_on_target(plan, candidates, reference=reference, progress=progress)
        choice = choose(plan, candidates)
        sample = None
        if reference.data is not None:
            sample = make_sample(choice.shipped, reference, requested=request.eval_sample_size)
        loading = (note for b in baselines.values() for note in b.notes)
        notes = tuple(dict.fromkeys((*skipped, *refused, *loading)))
        report = assemble_report(plan, source, selection, choice, sample, notes=notes,
                                 started=started)  # fmt: skip
        if report.status is not BuildStatus.OVER_BUDGET:
            write_output(plan, source, choice, report, sample, signer=signer)
    return report
