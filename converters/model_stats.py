"""What an artifact holds, whatever its format: ops and their precision, MACs, weights, memory."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from edgekit.vocab import OpPrecision

# Ops that only move or reshape data; left in float they cost nothing worth reporting.
DATA_MOVEMENT_OPS = frozenset(
    {"RESHAPE", "SHAPE", "STRIDED_SLICE", "PACK", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE",
     "CONCATENATION", "GATHER", "SLICE", "PAD", "QUANTIZE", "DEQUANTIZE",
     "Reshape", "Shape", "Slice", "Squeeze", "Unsqueeze", "Transpose", "Flatten", "Concat",
     "Gather", "Cast", "Identity", "Pad", "Split", "Expand", "Tile", "QuantizeLinear",
     "DequantizeLinear"}
)  # fmt: skip


@dataclass(frozen=True)
class OpInfo:
    """One operator of the graph."""

    op: str
    precision: OpPrecision
    macs: int
    runs_as: str = ""  # the kernel that runs it where the runtime fuses ops (ONNX Runtime)
    node: str = ""  # that kernel's node name
    depthwise: bool = False  # a depthwise convolution (its own throughput in estimates)


@dataclass(frozen=True)
class OpRow:
    """All operators of one type and precision."""

    op: str
    precision: OpPrecision
    count: int
    macs: int


@dataclass(frozen=True)
class WeightInfo:
    """A constant weight tensor of a weighted op (conv, depthwise, fully connected)."""

    op: str
    tensor: str
    size: int
    zeros: int  # elements exactly zero in the stored data (int8: quantized value 0)


@dataclass(frozen=True)
class ModelStats:
    """Figures read from an artifact."""

    ops: tuple[OpInfo, ...]
    params: int
    arena_bytes: int  # largest working set of one op: a lower bound of the activation arena
    weights: tuple[WeightInfo, ...] = ()
    # Ops whose MACs cannot be read from the artifact (loops, subgraphs, custom ops): with any of
    # them, ``macs`` is a lower bound and a latency estimate from it would be a guess.
    uncounted_ops: tuple[str, ...] = ()

    @property
    def weight_sparsity(self) -> float:
        """Fraction of zeros over all kernels of weighted ops (biases not counted)."""
        total = sum(w.size for w in self.weights)
        return sum(w.zeros for w in self.weights) / total if total else 0.0

    @property
    def nonzero_params(self) -> int:
        """Kernel elements that are not zero (biases not counted)."""
        return sum(w.size - w.zeros for w in self.weights)

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    @property
    def int_macs(self) -> int:
        return sum(op.macs for op in self.ops if op.precision.integer)

    @property
    def float_macs(self) -> int:
        return sum(op.macs for op in self.ops if op.precision.floating)

    @property
    def qdq_float_ops(self) -> tuple[str, ...]:
        """Compute ops of a quantized graph that the runtime still runs as float kernels between
        quantize and dequantize ops (no integer kernel fused them)."""
        return tuple(
            sorted(
                {
                    op.op
                    for op in self.ops
                    if op.precision is OpPrecision.FLOAT_QDQ and op.op not in DATA_MOVEMENT_OPS
                }
            )
        )

    @property
    def float_ops(self) -> tuple[str, ...]:
        """Compute ops that run in float (ops that only move data not counted)."""
        return tuple(
            sorted(
                {
                    op.op
                    for op in self.ops
                    if op.precision is OpPrecision.FLOAT and op.op not in DATA_MOVEMENT_OPS
                }
            )
        )

    def table(self) -> tuple[OpRow, ...]:
        """Ops grouped by type and precision, in order of MACs then count."""
        counts: Counter[tuple[str, OpPrecision]] = Counter()
        macs: Counter[tuple[str, OpPrecision]] = Counter()
        for op in self.ops:
            counts[op.op, op.precision] += 1
            macs[op.op, op.precision] += op.macs
        rows = [OpRow(op=k[0], precision=k[1], count=n, macs=macs[k]) for k, n in counts.items()]
        return tuple(sorted(rows, key=lambda r: (-r.macs, -r.count, r.op)))
