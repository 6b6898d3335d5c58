"""Hostile GGUF files: truncated, corrupted and ill-typed headers are a ModelLoadError naming the file.

Hypothesis runs a fixed, derandomized budget of cut points, overwritten header bytes (aimed at the
length, count and type fields, where a bogus value does harm) and metadata values of the wrong
type. Whatever the bytes, reading the header never raises anything else and never allocates more
than a small multiple of the file's size, whatever length a field claims.
"""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path
from typing import Any

import gguf
import pytest
from hypothesis import given
from hypothesis import strategies as st

from factories import llama_config, make_model_dir
from fuzzing import budget
from gguf_factories import Q, Storage, write_gguf
from seekserve import LLM
from seekserve.errors import ModelLoadError
from seekserve.models.gguf import GGUFCheckpoint
from seekserve.models.gguf.config import config_from_gguf, eos_token_ids
from seekserve.models.gguf.reader import GGUFFile

FUZZ = budget(150)
_LARGE = [b"\xff" * 8, struct.pack("<Q", 2**63), struct.pack("<Q", 2**32 + 7), struct.pack("<I", 2**31)]
_SMALL = [b"\x00" * 8, struct.pack("<I", 9), struct.pack("<I", 12), struct.pack("<I", 5)]


class Hostile:
    """A valid tiny GGUF file, the offsets of its length, count and type fields, and a scratch path."""

    def __init__(self, root: Path) -> None:
        self.path = root / "valid.gguf"
        model_dir = make_model_dir(root / "hf", llama_config(num_hidden_layers=1))
        write_gguf(self.path, model_dir, "llama", Storage(Q.Q8_0))
        self.data = self.path.read_bytes()
        self.scratch = root / "hostile.gguf"
        reader = gguf.GGUFReader(self.path)
        self.header_bytes = GGUFFile(self.path).header_bytes
        offsets = {4, 8, 16}  # version, tensor count, metadata count
        for name, field in reader.fields.items():
            if not name.startswith("GGUF."):
                start = field.offset + 8 + len(name.encode())
                offsets |= {field.offset, start, start + 4, start + 8}  # key length, type, value / count
        for tensor in reader.tensors:
            start = tensor.field.offset + 8 + len(tensor.name.encode())
            offsets |= {tensor.field.offset, start, start + 4, start + 4 + 8 * len(tensor.shape)}
        self.fields = sorted(offsets)

    def write(self, data: bytes) -> Path:
        self.scratch.write_bytes(data)
        return self.scratch


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    return Hostile(tmp_path_factory.mktemp("gguf-fuzz"))


def read_bounded(path: Path) -> GGUFCheckpoint | None:
    """The checkpoint of `path`, or None when it is refused with a ModelLoadError naming the file;
    fails when anything else is raised or reading allocates far more than the file holds."""
    tracemalloc.start()
    try:
        checkpoint: GGUFCheckpoint | None = GGUFCheckpoint(path)
        assert checkpoint is not None
        checkpoint.eos_token_ids  # noqa: B018  # reads and checks the end-token ids
    except ModelLoadError as e:
        assert str(path) in str(e), f"the error does not name the file: {e}"
        checkpoint = None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    limit = 4 * path.stat().st_size + (4 << 20)
    assert peak < limit, f"reading {path.stat().st_size} bytes allocated {peak} at peak"
    return checkpoint


@FUZZ
@given(data=st.data())
def test_a_file_cut_anywhere_is_an_error_naming_it(hostile: Hostile, data: st.DataObject) -> None:
    size = len(hostile.data)
    cut = data.draw(
        st.one_of(st.integers(0, hostile.header_bytes + 64), st.integers(0, size - 1)), label="cut"
    )
    assert read_bounded(hostile.write(hostile.data[:cut])) is None


@FUZZ
@given(data=st.data())
def test_overwritten_header_bytes_never_crash_or_allocate_what_a_field_claims(
    hostile: Hostile, data: st.DataObject
) -> None:
    position = data.draw(
        st.one_of(st.sampled_from(hostile.fields), st.integers(0, hostile.header_bytes - 1)), label="at"
    )
    patch = data.draw(
        st.one_of(st.sampled_from(_LARGE + _SMALL), st.binary(min_size=1, max_size=8)), label="bytes"
    )
    corrupt = bytearray(hostile.data)
    corrupt[position : position + len(patch)] = patch
    read_bounded(hostile.write(bytes(corrupt)))


_ODD_VALUES = st.one_of(
    st.text(max_size=8),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.lists(st.integers(-3, 3), max_size=3),
    st.lists(st.text(max_size=3), max_size=3),
    st.booleans(),
)
_KEYS = [
    "llama.attention.head_count",
    "llama.attention.head_count_kv",
    "llama.embedding_length",
    "llama.block_count",
    "llama.context_length",
    "llama.feed_forward_length",
    "llama.attention.layer_norm_rms_epsilon",
    "llama.attention.key_length",
    "llama.rope.freq_base",
    "llama.rope.scaling.type",
    "llama.rope.scaling.factor",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
]


@FUZZ
@given(key=st.sampled_from(_KEYS), value=_ODD_VALUES)
def test_metadata_of_the_wrong_type_is_an_error_naming_the_file(
    hostile: Hostile, key: str, value: Any
) -> None:
    file = GGUFFile(hostile.path)
    file.metadata[key] = value
    try:
        config_from_gguf(file)
        eos_token_ids(file)
    except ModelLoadError as e:
        assert str(hostile.path) in str(e)


def test_the_hostile_fields_cover_the_header(hostile: Hostile) -> None:
    """The offsets the fuzzer aims at are the header's structure: every metadata entry and tensor."""
    reader = gguf.GGUFReader(hostile.path)
    assert len(hostile.fields) >= 3 * len(reader.fields) + 3 * len(reader.tensors)
    assert max(hostile.fields) < hostile.header_bytes


def test_a_string_array_claiming_more_items_than_bytes_is_refused(hostile: Hostile) -> None:
    key = "tokenizer.ggml.tokens"
    field = gguf.GGUFReader(hostile.path).fields[key]
    count_at = field.offset + 8 + len(key) + 4 + 4  # after the key, the value type and the item type
    corrupt = bytearray(hostile.data)
    corrupt[count_at : count_at + 8] = struct.pack("<Q", 2**64 - 1)
    with pytest.raises(ModelLoadError, match=r"claims 18446744073709551615 strings of the array tokenizer"):
        GGUFFile(hostile.write(bytes(corrupt)))


def _alignment_file(value_type: gguf.GGUFValueType, value: bytes) -> bytes:
    key = b"general.alignment"
    entry = struct.pack("<Q", len(key)) + key + struct.pack("<I", value_type) + value
    return b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + entry


@pytest.mark.parametrize(
    ("value_type", "value", "shown"),
    [
        (gguf.GGUFValueType.UINT32, struct.pack("<I", 0), "0"),
        (gguf.GGUFValueType.UINT32, struct.pack("<I", 48), "48"),
        (gguf.GGUFValueType.UINT32, struct.pack("<I", 2**31), "2147483648"),
        (gguf.GGUFValueType.FLOAT32, struct.pack("<f", float("nan")), "nan"),
        (gguf.GGUFValueType.STRING, struct.pack("<Q", 2) + b"32", "'32'"),
    ],
    ids=["zero", "48", "2**31", "nan", "a-string"],
)
def test_an_alignment_that_is_not_a_power_of_two_is_refused(
    hostile: Hostile, value_type: gguf.GGUFValueType, value: bytes, shown: str
) -> None:
    path = hostile.write(_alignment_file(value_type, value))
    with pytest.raises(ModelLoadError, match=rf"{path}.*general.alignment={shown} is not a power of two"):
        GGUFFile(path)
    assert (
        GGUFFile(hostile.write(_alignment_file(gguf.GGUFValueType.UINT32, struct.pack("<I", 64)))).data_offset
        == 64
    )


def test_a_tensor_with_more_dimensions_than_ggml_is_refused(hostile: Hostile) -> None:
    tensor = gguf.GGUFReader(hostile.path).tensors[0]
    start = tensor.field.offset + 8 + len(tensor.name.encode())
    corrupt = bytearray(hostile.data)
    corrupt[start : start + 4] = struct.pack("<I", 2**32 - 1)
    with pytest.raises(ModelLoadError, match=r"has 4294967295 dimensions; GGUF tensors have at most 4"):
        GGUFFile(hostile.write(bytes(corrupt)))


@pytest.mark.parametrize(
    ("tensor", "dims", "message"),
    [
        ("output.weight", (384, 64), r"lm_head.weight: shape \(64, 384\) does not fit \(384, 64\)"),
        ("blk.0.attn_k.weight", (64, 1), r"blk.0.attn_k.weight has 1 rows, which the model's 2 heads cannot"),
        ("blk.0.attn_q.weight", (64, 1), r"blk.0.attn_q.weight has 1 rows, which the model's 4 heads cannot"),
    ],
    ids=["transposed", "k-collapsed", "q-collapsed"],
)
def test_a_tensor_table_that_disagrees_with_the_metadata_is_an_error_naming_the_file(
    hostile: Hostile, tensor: str, dims: tuple[int, ...], message: str
) -> None:
    """Shapes that fit the file's bytes but not the model the metadata describes fail the load cleanly."""
    info = next(t for t in gguf.GGUFReader(hostile.path).tensors if t.name == tensor)
    start = info.field.offset + 8 + len(tensor) + 4
    corrupt = bytearray(hostile.data)
    corrupt[start : start + 8 * len(dims)] = struct.pack(f"<{len(dims)}Q", *dims)
    path = hostile.write(bytes(corrupt))
    with pytest.raises(ModelLoadError, match=rf"^{path}: .*{message}"):
        LLM(str(path), dtype="float32", max_model_len=32, block_size=8, num_kv_blocks=8)
