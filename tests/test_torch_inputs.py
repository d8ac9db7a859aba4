"""PyTorch inputs: what edgekit refuses and how it says so, what the PT2E artifact holds, the
missing-quant_config failure caught, an nn.Module built from Python, and pruning with zeros that
survive into the int8 artifact."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("litert_torch")

import torch
from edgekit_testing import assert_one_clear_error, run_edgekit
from torch import nn
from torch_models import ResCNN, nchw_data, top1, train, trained

from edgekit.bundle import verify_bundle
from edgekit.converters.pipeline import BuildRequest, build
from edgekit.converters.source_registry import open_source
from edgekit.converters.torch_api import build_module
from edgekit.converters.torch_pt2e import quantized_graph, quantizer, to_tflite
from edgekit.converters.torch_tflite_edit import check_real_int8, fake_quant_weights
from edgekit.datasets import load_data
from edgekit.errors import ConversionError
from edgekit.profiles import load_profile
from edgekit.progress import SilentProgress
from edgekit.vocab import CalibrationMethod, ModelFormat, PruneKind

WEIGHT_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


@pytest.fixture(scope="module")
def rescnn(request):
    return trained("rescnn", request.config.cache.mkdir("edgekit-torch-models"))


@pytest.fixture(scope="module")
def digits_cnn():
    """A small ResNet-style CNN trained on digits for a few seconds, as a live nn.Module."""
    x_train, y_train, x_test, y_test = nchw_data("digits")
    torch.manual_seed(0)
    module = ResCNN(channels=8)
    train(module, x_train, y_train, epochs=6, lr=3e-3)
    return module, (x_train, y_train, x_test, y_test)


def _cli_build(model, tmp_path, rescnn):
    out = tmp_path / "bundle"
    result = run_edgekit("build", model, "--profile", "rpi4", "--calibration", rescnn.calibration,
                         "--out", out, cwd=tmp_path)  # fmt: skip
    assert not out.exists()
    return result


def test_a_state_dict_or_pickled_module_gets_how_to_make_a_pt2(tmp_path, rescnn):
    module = ResCNN()
    torch.save(module.state_dict(), tmp_path / "weights.pt")
    torch.save(module, tmp_path / "whole.pth")
    for name in ("weights.pt", "whole.pth"):
        result = _cli_build(tmp_path / name, tmp_path, rescnn)
        assert_one_clear_error(result, "checkpoint", "torch.export.export", "torch.export.save")


class _Payload:
    """Unpickling this writes a file: proof that nothing was unpickled when it is absent."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_named_pt2_is_refused_without_being_unpickled(tmp_path, rescnn):
    marker = tmp_path / "unpickled"
    torch.save({"model": _Payload(str(marker))}, tmp_path / "model.pt2")
    result = _cli_build(tmp_path / "model.pt2", tmp_path, rescnn)
    assert_one_clear_error(result, "torch.save", "does not unpickle", "torch.export.save")
    assert not marker.exists()


def test_a_module_torch_export_cannot_capture_gets_the_reason_and_line(tmp_path):
    class DataDependent(nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # a branch on data: torch.export cannot capture it
                return x * 2
            return x

    with pytest.raises(ConversionError) as info:
        build_module(DataDependent(), example_inputs=torch.ones(1, 4), profile="x86-64",
                     calibration=np.ones((4, 4), np.float32), out_dir=tmp_path / "b")  # fmt: skip
    message = str(info.value)
    assert message.startswith("torch.export cannot capture the module: ")
    assert "\n" not in message
    assert "test_torch_inputs.py:" in message
    assert "in forward" in message


def test_an_op_litert_lacks_is_named(tmp_path):
    class RunningMax(nn.Module):
        def forward(self, x):
            return torch.cummax(x, dim=1)[0]

    with pytest.raises(ConversionError, match=r"no lowering for op aten\.cummax") as info:
        build_module(RunningMax(), example_inputs=torch.rand(1, 8), profile="rpi4",
                     calibration=np.random.rand(8, 8).astype(np.float32),
                     out_dir=tmp_path / "b")  # fmt: skip
    assert "test_torch_inputs.py:" in str(info.value)
    assert not (tmp_path / "b").exists()


def _tensor_types(content: bytes) -> list[tuple[str, str, bool]]:
    """(op, weight dtype, weight is a constant) for every weighted op of a .tflite."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    graph = model.Subgraphs(0)
    ops = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    rows = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = ops[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        if name in WEIGHT_OPS:
            weight = graph.Tensors(op.Inputs(1))
            constant = model.Buffers(weight.Buffer()).DataLength() > 0
            rows.append((name, types[weight.Type()], constant))
    return rows


def _float_constants(content: bytes) -> list[str]:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    graph = model.Subgraphs(0)
    return [graph.Tensors(i).Name().decode() for i in range(graph.TensorsLength())
            if graph.Tensors(i).Type() == schema.TensorType.FLOAT32
            and model.Buffers(graph.Tensors(i).Buffer()).DataLength() > 0]  # fmt: skip


@pytest.fixture(scope="module")
def rescnn_exporter(rescnn, tmp_path_factory):
    source = open_source(rescnn.pt2, work_dir=tmp_path_factory.mktemp("src"))
    calibration = load_data(rescnn.calibration, role="calibration", specs=source.inputs)
    return source, source.exporter(ModelFormat.TFLITE, work_dir=source.path.parent), calibration


def test_the_pt2e_artifact_holds_int8_weights_only(rescnn_exporter):
    _, exporter, calibration = rescnn_exporter
    build_cfg = load_profile("rpi4").build
    (pt2e, *_) = exporter.variants(build_cfg)
    assert pt2e.key == "pt2e"
    content = exporter.quantize(build_cfg, calibration, variant=pt2e).content
    rows = _tensor_types(content)
    assert {op for op, _, _ in rows} >= {"CONV_2D", "FULLY_CONNECTED"}
    assert all(dtype == "INT8" and constant for _, dtype, constant in rows), rows
    assert _float_constants(content) == []  # no fp32 weight tensor anywhere
    assert fake_quant_weights(content) == []
    assert _float_constants(exporter.float_model())  # while fp32 holds them


def test_a_pt2e_graph_converted_without_quant_config_is_caught(rescnn_exporter):
    _, exporter, calibration = rescnn_exporter
    q = quantizer(per_channel=True, method=CalibrationMethod.MINMAX)
    graph = quantized_graph(exporter.module, exporter.example, calibration.x[:64], q,
                            progress=SilentProgress())  # fmt: skip
    fake = to_tflite(graph, exporter.example, None)  # the documented mistake: no quant_config
    assert len(fake_quant_weights(fake)) >= 4  # every conv and the linear: fp32 in Q/DQ
    assert len(fake) > len(exporter.float_model())  # larger than fp32, as the issue says
    with pytest.raises(ConversionError, match="without its quantization config"):
        check_real_int8(fake)
    check_real_int8(to_tflite(graph, exporter.example, q))  # with it: real int8, no error


def test_an_nn_module_builds_from_python(digits_cnn, tmp_path):
    """Through the public entry point, ``edgekit.build``, as the README shows it."""
    import edgekit

    module, (x_train, _, x_test, y_test) = digits_cnn
    report = edgekit.build(module, example_inputs=torch.from_numpy(x_train[:1]), profile="x86-64",
                           calibration=x_train[:300], eval=(x_test, y_test), name="digits_cnn",
                           out_dir=tmp_path / "bundle", latency_runs=5)  # fmt: skip
    assert report.status == "ok"
    art = report.primary
    assert art.accuracy.fp32 == pytest.approx(top1(module, x_test, y_test), abs=0.25)
    assert art.accuracy.drop_pt <= load_profile("x86-64").budgets.max_accuracy_drop_pt
    manifest = verify_bundle(tmp_path / "bundle")
    assert manifest.source_model.kind == "pytorch"
    assert manifest.source_model.name == "digits_cnn.pt2"


def _pruned(rescnn, tmp_path, **options):
    return build(BuildRequest(model=rescnn.pt2, profile=load_profile("rpi4"),
                              out_dir=tmp_path / "bundle", calibration=rescnn.calibration,
                              eval_data=rescnn.eval, latency_runs=3, **options))  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("fine_tuned", [False, True], ids=["one-shot", "fine-tuned"])
def test_magnitude_pruning_zeros_survive_into_the_int8_artifact(rescnn, tmp_path, fine_tuned):
    extra = {"train_data": rescnn.calibration, "epochs": 2} if fine_tuned else {}
    report = _pruned(rescnn, tmp_path, prune=PruneKind.MAGNITUDE, sparsity=0.5, **extra)
    pruning = report.primary.pruning
    assert pruning is not None
    assert pruning.schedule.startswith("polynomial decay" if fine_tuned else "one-shot")
    assert pruning.kernels
    assert all(k.achieved >= 0.49 for k in pruning.kernels)
    assert pruning.artifact_sparsity >= 0.45  # the zeros are int8 zeros in the artifact


@pytest.mark.slow
def test_structured_pruning_removes_channels_of_a_torch_module(rescnn, tmp_path):
    report = _pruned(rescnn, tmp_path, prune=PruneKind.STRUCTURED, sparsity=0.5,
                     train_data=rescnn.calibration, epochs=1)  # fmt: skip
    pruning = report.primary.pruning
    assert pruning is not None
    removed = [c for c in pruning.channels if c.after < c.before]
    assert removed, pruning.channels
    assert pruning.macs_after < pruning.macs_before
    assert any("residual" in c.skipped or "add" in c.skipped for c in pruning.channels)
    assert report.primary.artifact.quantization == "int8"


def test_a_pt2_source_needs_no_layout_guess(rescnn, tmp_path):
    source = open_source(rescnn.pt2, work_dir=tmp_path)
    (spec,) = source.inputs
    assert (spec.shape, spec.layout) == ((None, 1, 28, 28), "NCHW")
    assert source.kind == "pytorch"


def test_cli_build_of_a_pt2_for_the_tflite_only_mcu(rescnn, tmp_path):
    out = tmp_path / "bundle"
    result = run_edgekit("build", rescnn.pt2, "--profile", "stm32h7", "--calibration",
                         rescnn.calibration, "--eval", rescnn.eval, "--out", out, "-q",
                         cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert [a.format for a in verify_bundle(out).artifacts] == ["tflite"]


def test_a_damaged_pt2_is_one_error_line(tmp_path, rescnn):
    bad = tmp_path / "model.pt2"
    bad.write_bytes(rescnn.pt2.read_bytes()[:2000])
    assert_one_clear_error(_cli_build(bad, tmp_path, rescnn), "model.pt2", "torch.export.save")


def test_pt2e_keeps_the_modules_the_ranking_names_float(rescnn_exporter):
    _, exporter, calibration = rescnn_exporter
    build_cfg = load_profile("rpi4").build
    first = exporter.quantize(build_cfg, calibration)  # the profile's first variant: PT2E
    ranking = exporter.rank_layers(first.content, calibration.take(32))
    modules = {name for name, _ in ResCNN().named_modules() if name}
    named = {node for cost in ranking for node in cost.nodes}
    assert named, ranking
    assert named <= modules  # what PT2E's keep-float takes: module paths
    kept = exporter.quantize(build_cfg, calibration, keep_float=("fc",))
    assert kept.kept_float == ("fc",)
    rows = _tensor_types(kept.content)
    assert ("FULLY_CONNECTED", "FLOAT32", True) in rows  # the head stayed float
    assert {dtype for op, dtype, _ in rows if op == "CONV_2D"} == {"INT8"}


_WITHOUT_ONNXSCRIPT = """
import sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name == "onnxscript" or name.startswith("onnxscript."):
            raise ImportError("onnxscript is blocked in this run")
sys.meta_path.insert(0, _Blocked())
import json
from pathlib import Path
import numpy as np
import onnxruntime as ort
import torch
sys.path.insert(0, "tests")
from torch_models import ResCNN
from edgekit.converters.torch_onnx import export_onnx

torch.manual_seed(0)
module = ResCNN(channels=8).eval()
x = torch.rand(2, 1, 28, 28)
program = torch.export.export(module, (x[:1],))
model = export_onnx(program, (x[:1],), work_dir=Path(sys.argv[1]), name="rescnn")
session = ort.InferenceSession(model.serialized(), providers=["CPUExecutionProvider"])
got = session.run(None, {session.get_inputs()[0].name: x[:1].numpy()})[0]
with torch.no_grad():
    want = module(x[:1]).numpy()
print(json.dumps({"notes": list(model.notes), "max_diff": float(np.abs(got - want).max())}))
"""


def test_where_the_dynamo_exporter_fails_torchscript_exports_and_the_note_says_why(tmp_path):
    """Without onnxscript (which torch.onnx.export(dynamo=True) needs) the TorchScript exporter
    makes the ONNX model, the model computes what the module does, and the note says so."""
    import json
    import subprocess
    import sys

    from edgekit_testing import REPO

    result = subprocess.run([sys.executable, "-c", _WITHOUT_ONNXSCRIPT, str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    (note,) = out["notes"]
    assert note.startswith("onnx: torch.onnx.export(dynamo=True) failed (")
    assert "onnxscript" in note
    assert note.endswith("exported with the TorchScript exporter instead")
    assert out["max_diff"] < 1e-4
