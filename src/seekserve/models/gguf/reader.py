"""Read a GGUF file's header: metadata, tensor table, and memory-mapped tensor bytes.

The `gguf` package defines the format's constants (value types, quantization types and their block
sizes), which this module uses. Its `GGUFReader` builds a numpy view per metadata element, which
takes over ten seconds on a 262k-token vocabulary; this reader walks the header with `struct`
instead (a few hundred milliseconds) and leaves every tensor untouched until it is asked for.

File layout (little-endian):

    "GGUF" u32 version | u64 tensor_count | u64 kv_count
    kv_count x  (string key, u32 value_type, value)          string = u64 length + UTF-8 bytes
    tensor_count x (string name, u32 n_dims, u64 dims[n_dims] (fastest first), u32 type, u64 offset)
    padding to `general.alignment` (default 32), then the tensor data; offsets count from there

The file is untrusted: every count and length is checked against the bytes left before anything
of that size is built, so a corrupt or hostile header is a ModelLoadError naming the file, never
an allocation as large as a bogus length field.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from seekserve.errors import ModelLoadError

__all__ = ["GGUFFile", "TensorInfo", "is_gguf_file"]

_MAGIC = b"GGUF"
_VERSIONS = (2, 3)
_MAX_DIMS = 4
"""GGML_MAX_DIMS: llama.cpp's tensors have at most four dimensions."""
_MAX_ALIGNMENT = 1 << 20
_MIN_KV_BYTES = 8 + 4 + 1
"""The smallest metadata entry: an empty key, its value type, a one-byte value."""
_MIN_TENSOR_BYTES = 8 + 4 + 4 + 8
"""The smallest tensor-table entry: an empty name, n_dims 0, the type and the offset."""
_SCALARS: dict[int, tuple[str, int]] = {
    GGUFValueType.UINT8: ("<B", 1),
    GGUFValueType.INT8: ("<b", 1),
    GGUFValueType.UINT16: ("<H", 2),
    GGUFValueType.INT16: ("<h", 2),
    GGUFValueType.UINT32: ("<I", 4),
    GGUFValueType.INT32: ("<i", 4),
    GGUFValueType.FLOAT32: ("<f", 4),
    GGUFValueType.BOOL: ("<?", 1),
    GGUFValueType.UINT64: ("<Q", 8),
    GGUFValueType.INT64: ("<q", 8),
    GGUFValueType.FLOAT64: ("<d", 8),
}
_NUMPY = {
    GGUFValueType.UINT8: np.uint8,
    GGUFValueType.INT8: np.int8,
    GGUFValueType.UINT16: np.uint16,
    GGUFValueType.INT16: np.int16,
    GGUFValueType.UINT32: np.uint32,
    GGUFValueType.INT32: np.int32,
    GGUFValueType.FLOAT32: np.float32,
    GGUFValueType.BOOL: np.bool_,
    GGUFValueType.UINT64: np.uint64,
    GGUFValueType.INT64: np.int64,
    GGUFValueType.FLOAT64: np.float64,
}


def is_gguf_file(path: Path) -> bool:
    """Whether `path` is a file that starts with the GGUF magic bytes."""
    try:
        with path.open("rb") as f:
            return f.read(4) == _MAGIC
    except OSError:
        return False


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the file: its name, storage type, shape (torch order) and bytes in the data section."""

    name: str
    ggml_type: GGMLQuantizationType
    shape: tuple[int, ...]
    offset: int
    """Byte offset from the start of the data section."""
    nbytes: int


class GGUFFile:
    """A GGUF file opened for reading: `metadata`, `tensors`, and `data(info)` for raw tensor bytes.

    String arrays (the vocabulary, the merges) are read only when their key is listed in
    `string_arrays`; otherwise `metadata` holds their length.
    """

    def __init__(self, path: Path, string_arrays: tuple[str, ...] = ()):
        self.path = path
        try:
            self._map = np.memmap(path, mode="r", dtype=np.uint8)
            self._buf = memoryview(self._map.data)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"cannot open GGUF file {path}: {e}") from e
        self._string_arrays = set(string_arrays)
        try:
            self.metadata, pos, num_tensors = self._read_metadata()
            self.tensors, pos = self._read_tensor_table(pos, num_tensors)
        except (struct.error, UnicodeDecodeError, ValueError, IndexError, OverflowError) as e:
            raise ModelLoadError(
                f"{path} is not a readable GGUF file (truncated or corrupt header: {e}); download it again"
            ) from e
        self.header_bytes = pos
        """Bytes of metadata and tensor table; their hash identifies the model's non-tensor content."""
        alignment = self._alignment()
        self.data_offset = -(-pos // alignment) * alignment
        self._check_bounds()

    @property
    def architecture(self) -> str:
        arch = self.metadata.get("general.architecture")
        if not isinstance(arch, str):
            raise ModelLoadError(f"{self.path} has no general.architecture in its metadata")
        return arch

    def tensor(self, name: str) -> TensorInfo | None:
        return next((t for t in self.tensors if t.name == name), None)

    def data(self, info: TensorInfo) -> np.ndarray:
        """The raw bytes of a tensor ([nbytes] uint8), memory-mapped: nothing is read until used."""
        start = self.data_offset + info.offset
        return self._map[start : start + info.nbytes]

    def header_digest(self) -> str:
        """SHA-256 of the header: equal for files with the same metadata and tensor table."""
        return hashlib.sha256(self._map[: self.header_bytes].tobytes()).hexdigest()

    def _read_metadata(self) -> tuple[dict[str, Any], int, int]:
        buf = self._buf
        if bytes(buf[:4]) != _MAGIC:
            raise ModelLoadError(f"{self.path} is not a GGUF file: it does not start with 'GGUF'")
        version, num_tensors, num_kv = struct.unpack_from("<IQQ", buf, 4)
        if version not in _VERSIONS:
            hint = " (a big-endian file?)" if version > 0xFFFF else ""
            raise ModelLoadError(
                f"{self.path} is GGUF version {version}{hint}; seekserve reads little-endian versions "
                f"2 and 3: convert it again with a current llama.cpp"
            )
        pos = 24
        self._check_count(num_kv, _MIN_KV_BYTES, pos, "metadata entries")
        metadata: dict[str, Any] = {}
        for _ in range(num_kv):
            key, pos = self._string(pos)
            (value_type,) = struct.unpack_from("<I", buf, pos)
            metadata[key], pos = self._value(pos + 4, value_type, key)
        return metadata, pos, num_tensors

    def _value(self, pos: int, value_type: int, key: str) -> tuple[Any, int]:
        if value_type in _SCALARS:
            fmt, size = _SCALARS[value_type]
            return struct.unpack_from(fmt, self._buf, pos)[0], pos + size
        if value_type == GGUFValueType.STRING:
            return self._string(pos)
        if value_type != GGUFValueType.ARRAY:
            raise ValueError(f"unknown value type {value_type} for key {key}")
        item_type, count = struct.unpack_from("<IQ", self._buf, pos)
        pos += 12
        if item_type in _NUMPY:
            dtype = np.dtype(_NUMPY[item_type])
            self._check_count(count, dtype.itemsize, pos, f"items of the array {key}")
            values = np.frombuffer(self._buf, dtype=dtype, count=count, offset=pos)
            return values.tolist(), pos + count * dtype.itemsize
        if item_type != GGUFValueType.STRING:
            raise ValueError(f"array of value type {item_type} for key {key} is not supported")
        self._check_count(count, 8, pos, f"strings of the array {key}")
        if key in self._string_arrays:
            strings = []
            for _ in range(count):
                s, pos = self._string(pos)
                strings.append(s)
            return strings, pos
        for _ in range(count):  # variable-length items: walk the lengths
            pos += 8 + struct.unpack_from("<Q", self._buf, pos)[0]
        return count, pos

    def _string(self, pos: int) -> tuple[str, int]:
        (length,) = struct.unpack_from("<Q", self._buf, pos)
        end = pos + 8 + length
        if end > len(self._buf):
            raise ValueError(f"a string at byte {pos} runs past the end of the file")
        return self._buf[pos + 8 : end].tobytes().decode("utf-8"), end

    def _check_count(self, count: int, min_item_bytes: int, pos: int, what: str) -> None:
        """A count read from the file must fit the bytes left, at `min_item_bytes` per item at least."""
        left = len(self._buf) - pos
        if count * min_item_bytes > left:
            raise ValueError(
                f"the header at byte {pos} claims {count} {what}, "
                f"more than the {max(left, 0)} bytes left can hold"
            )

    def _alignment(self) -> int:
        value = self.metadata.get("general.alignment", 32)
        if type(value) is not int or not 0 < value <= _MAX_ALIGNMENT or value & (value - 1):
            raise ModelLoadError(
                f"{self.path} is not a readable GGUF file: general.alignment={value!r} is not a power of two "
                f"from 1 to {_MAX_ALIGNMENT}; download it again"
            )
        return value

    def _read_tensor_table(self, pos: int, num_tensors: int) -> tuple[list[TensorInfo], int]:
        self._check_count(num_tensors, _MIN_TENSOR_BYTES, pos, "tensors")
        tensors = []
        for _ in range(num_tensors):
            name, pos = self._string(pos)
            (n_dims,) = struct.unpack_from("<I", self._buf, pos)
            if n_dims > _MAX_DIMS:
                raise ValueError(
                    f"tensor {name} has {n_dims} dimensions; GGUF tensors have at most {_MAX_DIMS}"
                )
            dims = struct.unpack_from(f"<{n_dims}Q", self._buf, pos + 4)
            pos += 4 + 8 * n_dims
            type_id, offset = struct.unpack_from("<IQ", self._buf, pos)
            pos += 12
            try:
                ggml_type = GGMLQuantizationType(type_id)
            except ValueError:
                raise ModelLoadError(
                    f"{self.path}: tensor {name} has tensor type {type_id}, unknown to the installed gguf "
                    f"package; upgrade it with `pip install -U gguf`"
                ) from None
            shape = tuple(int(d) for d in reversed(dims))
            block_size = GGML_QUANT_SIZES[ggml_type][0]
            if shape and shape[-1] % block_size:
                raise ValueError(
                    f"tensor {name} has rows of {shape[-1]} values, not a multiple of the {block_size}-value "
                    f"blocks of {ggml_type.name}"
                )
            tensors.append(TensorInfo(name, ggml_type, shape, offset, _nbytes(ggml_type, shape)))
        return tensors, pos

    def _check_bounds(self) -> None:
        size = len(self._map)
        for t in self.tensors:
            end = self.data_offset + t.offset + t.nbytes
            if end > size:
                raise ModelLoadError(
                    f"{self.path} is truncated: tensor {t.name} ends at byte {end} but the file has {size} "
                    f"bytes; download it again"
                )


def _nbytes(ggml_type: GGMLQuantizationType, shape: tuple[int, ...]) -> int:
    block_size, type_size = GGML_QUANT_SIZES[ggml_type]
    return math.prod(shape) // block_size * type_size
