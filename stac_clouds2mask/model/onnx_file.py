"""The initializers (weights) of an ONNX file, read from its protobuf encoding without the `onnx` package.

Why not `onnx`: the weights are read once per machine (then cached as a torch state dict, weights.py), and
for that one read `onnx` would add 36 MB (with protobuf and ml_dtypes) to every install. What is read is
small and fixed by the ONNX IR (onnx.proto, unchanged since IR version 3): ModelProto.graph (field 7) ->
GraphProto.initializer (field 5) -> TensorProto dims (1), data_type (2), name (8), raw_data (9),
data_location (14). Tensors stored otherwise (external files, typed value lists) are refused by name;
the ukis-csmask graphs store all 655 weights as raw float16. tests/test_model.py checks every tensor of
the shipped files against `onnx`'s own reading.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

MODEL_GRAPH, GRAPH_INITIALIZER = 7, 5
TENSOR_DIMS, TENSOR_DATA_TYPE, TENSOR_NAME, TENSOR_RAW_DATA, TENSOR_DATA_LOCATION = 1, 2, 8, 9, 14
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_EXTERNAL = 1
# TensorProto.DataType -> little-endian numpy dtype (ONNX stores raw_data little-endian)
DTYPES = {1: "<f4", 2: "u1", 3: "i1", 5: "<i2", 6: "<i4", 7: "<i8", 10: "<f2", 11: "<f8"}


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of one message: an int for varints, the bytes for the other wire types."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            yield field, value
            continue
        if wire == _LEN:
            size, pos = _varint(buf, pos)
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} (field {field})")
        if pos + size > len(buf):
            raise ValueError(f"field {field} runs past the end of its message")
        yield field, buf[pos : pos + size]
        pos += size


def _tensor(buf: memoryview) -> tuple[str, np.ndarray]:
    dims: list[int] = []
    name, data_type, raw, location = "", 0, None, 0
    for field, value in _fields(buf):
        if field == TENSOR_DIMS:
            if isinstance(value, int):
                dims.append(value)
            else:  # packed
                pos = 0
                while pos < len(value):
                    dim, pos = _varint(value, pos)
                    dims.append(dim)
        elif field == TENSOR_DATA_TYPE and isinstance(value, int):
            data_type = value
        elif field == TENSOR_NAME and not isinstance(value, int):
            name = bytes(value).decode("utf-8")
        elif field == TENSOR_RAW_DATA and not isinstance(value, int):
            raw = value
        elif field == TENSOR_DATA_LOCATION and isinstance(value, int):
            location = value
    if location == _EXTERNAL or raw is None:
        raise ValueError(f"initializer {name!r} is not stored as raw data in the file (external or typed values)")
    if data_type not in DTYPES:
        raise ValueError(f"initializer {name!r} has ONNX data type {data_type}, which is not read here")
    array = np.frombuffer(raw, dtype=DTYPES[data_type])
    if array.size != int(np.prod(dims, dtype=np.int64)):
        raise ValueError(f"initializer {name!r}: {array.size} values for dims {dims}")
    return name, array.reshape(dims).astype(array.dtype.newbyteorder("="))  # a native, writable copy


def initializers(path: str | Path) -> dict[str, np.ndarray]:
    """Every initializer of the ONNX model at `path`, by name, as a native-endian array (dtype as stored).

    ValueError naming the file for anything this reader does not take (see the module docstring)."""
    data = memoryview(Path(path).read_bytes())
    try:
        graphs = [value for field, value in _fields(data) if field == MODEL_GRAPH and not isinstance(value, int)]
        if not graphs:
            raise ValueError("no graph")
        out = {}
        for field, value in _fields(graphs[-1]):
            if field == GRAPH_INITIALIZER and not isinstance(value, int):
                name, array = _tensor(value)
                out[name] = array
    except ValueError as exc:
        raise ValueError(f"{path} is not an ONNX model whose weights can be read here: {exc}") from exc
    return out
