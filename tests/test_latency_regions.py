"""The latency-aware fallback keeps float only slow ops whose neighbours (producers of what they
read, consumers of what they write, through data movement) are kept float too, or that touch the
model's ends: only there do conversions disappear."""

from __future__ import annotations

from onnx import TensorProto, helper

from edgekit.converters.onnx_op_costs import _regions


def _graph(nodes):
    return helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
    )


def test_a_chain_of_slow_ops_is_kept_and_siblings_are_not():
    graph = _graph([
        helper.make_node("Relu", ["x"], ["a"], name="first"),       # touches the input
        helper.make_node("Sigmoid", ["a"], ["s1"], name="sibling1"),  # two readers of a
        helper.make_node("Tanh", ["a"], ["s2"], name="sibling2"),
        helper.make_node("Add", ["s1", "s2"], ["b"], name="join"),
        helper.make_node("Reshape", ["b", "shape"], ["c"], name="move"),
        helper.make_node("HardSigmoid", ["c"], ["d"], name="after_move"),
        helper.make_node("Relu", ["d"], ["e"], name="fast"),
        helper.make_node("Neg", ["e"], ["y"], name="last"),         # touches the output
    ])  # fmt: skip
    # Siblings alone: they share an input, which stays quantized for them both.
    assert _regions(graph, {"sibling1", "sibling2"}) == set()
    # A producer and its consumer through a Reshape: the tensor between them stays float.
    assert _regions(graph, {"join", "after_move"}) == {"join", "after_move"}
    # Next to the model's own input or output: the conversion there goes away.
    assert _regions(graph, {"first", "last"}) == {"first", "last"}
    # Slow ops separated by a fast one are not a region.
    assert _regions(graph, {"after_move", "last", "sibling1"}) == {"last"}
