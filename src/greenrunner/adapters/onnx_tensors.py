"""Every tensor an ONNX model holds, wherever it sits: one walker for every reader.

Weights are not only in ``graph.initializer``: a ``Constant`` node holds its value in an
attribute (``value``, ``sparse_value``), any node's attribute may hold tensors
(``tensors``, ``sparse_tensors``), the bodies of ``If``/``Loop``/``Scan`` are graphs with
initializers and nodes of their own, local functions have nodes (and default attribute
values), training information has graphs, and sparse tensors are two tensors (values and
indices). Any of them may keep its bytes in an external file. What reads a model for its
files (the prediction cache's key, the size measurement, the upload check) walks it with
:func:`iter_tensors` here, so none of them can miss a place another one knows.

The walk is iterative (a stack of graphs), so a deeply nested model cannot exhaust the
recursion limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

# TensorProto.DataLocation.EXTERNAL (the onnx package is imported only by callers).
_EXTERNAL = 1


def iter_tensors(model: Any) -> Iterator[Any]:
    """Every ``TensorProto`` in an ``onnx.ModelProto``: the main graph's and every subgraph's
    initializers and sparse initializers, the tensors in node attributes (Constant values,
    ``tensors``, sparse tensors), in local functions (their nodes and default attributes)
    and in training information graphs."""
    graphs: list[Any] = [model.graph]
    for info in model.training_info:
        graphs += [info.initialization, info.algorithm]
    attribute_lists: list[Iterable[Any]] = []
    for function in model.functions:
        attribute_lists += [node.attribute for node in function.node]
        attribute_lists.append(function.attribute_proto)
    while graphs or attribute_lists:
        if graphs:
            graph = graphs.pop()
            yield from graph.initializer
            for sparse in graph.sparse_initializer:
                yield from (sparse.values, sparse.indices)
            attribute_lists += [node.attribute for node in graph.node]
            continue
        for attr in attribute_lists.pop():
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield from (attr.sparse_tensor.values, attr.sparse_tensor.indices)
            for sparse in attr.sparse_tensors:
                yield from (sparse.values, sparse.indices)
            if attr.HasField("g"):
                graphs.append(attr.g)
            graphs.extend(attr.graphs)


def is_external(tensor: Any) -> bool:
    """Whether a tensor keeps (or claims to keep) its bytes in an external file."""
    return tensor.data_location == _EXTERNAL or any(
        entry.key == "location" for entry in tensor.external_data
    )


def external_locations(model: Any) -> list[str]:
    """The external-data ``location`` values of every tensor in the model, sorted and each
    once, as written (relative to the model's folder; not resolved or checked here)."""
    return sorted(
        {
            entry.value
            for tensor in iter_tensors(model)
            for entry in tensor.external_data
            if entry.key == "location"
        }
    )
