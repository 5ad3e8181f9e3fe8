"""MACs per sample of an ONNX graph, from its operators and inferred shapes.

Counted: Conv and ConvTranspose (any kernel, groups), Gemm and MatMul (with batched
broadcasting). Element-wise operators, normalisation and pooling are not counted, the
same convention as torchvision's published figures. Operators inside control-flow
subgraphs (If, Loop, Scan) are not visited.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

MACS_NOTE = (
    "from the ONNX graph at batch 1: Conv, ConvTranspose, Gemm, MatMul (element-wise, "
    "normalisation and pooling not counted)"
)

Shape = tuple[int, ...]


def _shapes(model: Any, input_shape: Sequence[int] | None) -> dict[str, Shape]:
    """Every tensor's static shape after shape inference at batch 1.

    The image input's symbolic dimensions take ``input_shape`` when given (so a model with
    symbolic H/W is counted at the size it is fed); any other symbolic dimension is 1.
    """
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())  # leave the caller's alone
    init = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in init]
    for i, value in enumerate(inputs):
        dims = value.type.tensor_type.shape.dim
        if i == 0 and input_shape is not None and len(dims) == len(input_shape):
            for dim, size in zip(dims, input_shape, strict=True):
                if not dim.HasField("dim_value"):  # a declared size is the model's own
                    dim.dim_value = int(size)
        for dim in dims:
            if not dim.HasField("dim_value"):
                dim.dim_value = 1
    # A symbolic batch on an output would contradict the fixed batch of 1 just set.
    for value in model.graph.output:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    # data_prop resolves Shape -> Gather -> Reshape chains (torch's x.view(x.size(0), -1)).
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, Shape] = {}
    values = (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output)
    for value in values:
        t = value.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = t.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    for tensor in inferred.graph.initializer:
        shapes[tensor.name] = tuple(tensor.dims)
    return shapes


def _attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _matmul(a: Shape, b: Shape) -> float:
    """numpy.matmul semantics: 1-D operands are promoted, leading dims broadcast."""
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    m, k, n = a2[-2], a2[-1], b2[-1]
    batch_a, batch_b = a2[:-2], b2[:-2]
    rank = max(len(batch_a), len(batch_b))
    batch_a = (1,) * (rank - len(batch_a)) + batch_a
    batch_b = (1,) * (rank - len(batch_b)) + batch_b
    batch = math.prod(max(x, y) for x, y in zip(batch_a, batch_b, strict=True))
    return float(batch * m * k * n)


def _node_macs(node: Any, shapes: dict[str, Shape]) -> float | None:
    """MACs of one node; None when a shape it needs could not be inferred."""
    op = node.op_type
    if op in ("Conv", "ConvTranspose"):
        x, w = shapes.get(node.input[0]), shapes.get(node.input[1])
        out = shapes.get(node.output[0])
        if x is None or w is None or out is None:
            return None
        kernel = math.prod(w[2:])
        if op == "Conv":
            # W is (C_out, C_in / groups, k...): each output element takes that many MACs.
            return float(math.prod(out) * w[1] * kernel)
        # W is (C_in, C_out / groups, k...): each input element is spread over that many.
        return float(math.prod(x) * w[1] * kernel)
    if op == "Gemm":
        a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
        if a is None or b is None or len(a) != 2 or len(b) != 2:
            return None
        m, k = (a[1], a[0]) if _attr(node, "transA", 0) else a
        n = b[0] if _attr(node, "transB", 0) else b[1]
        return float(m * k * n)
    if op == "MatMul":
        a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
        if a is None or b is None:
            return None
        return _matmul(a, b)
    return 0.0


def count_macs(model: Any, input_shape: Sequence[int] | None = None) -> tuple[float, list[str]]:
    """(multiply-accumulates for one sample, names of counted-kind nodes whose shapes
    could not be inferred and so are missing from the total)."""
    shapes = _shapes(model, input_shape)
    total = 0.0
    unknown: list[str] = []
    for node in model.graph.node:
        macs = _node_macs(node, shapes)
        if macs is None:
            unknown.append(node.name or node.op_type)
        else:
            total += macs
    return total, unknown
