"""GGUF header reading: the same metadata and tensor table as gguf's reference reader; bad files
are clear errors."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from factories import llama_config, make_model_dir
from gguf_factories import Q, Storage, write_gguf
from seekserve import LLM
from seekserve.errors import ModelLoadError, UnsupportedModelError
from seekserve.models.gguf import GGUFCheckpoint, is_gguf_file
from seekserve.models.gguf.reader import GGUFFile


@pytest.fixture(scope="module")
def llama_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reader")
    model_dir = make_model_dir(root / "hf", llama_config())
    write_gguf(root / "llama.gguf", model_dir, "llama", Storage(Q.Q8_0))
    return root / "llama.gguf"


def test_header_equals_gguf_reader(llama_gguf: Path) -> None:
    ours = GGUFFile(llama_gguf, string_arrays=("tokenizer.ggml.tokens", "tokenizer.ggml.merges"))
    reference = gguf.GGUFReader(llama_gguf)
    for key, field in reference.fields.items():
        if key.startswith("GGUF."):
            continue
        expected = field.contents()
        if isinstance(expected, float):
            assert ours.metadata[key] == pytest.approx(expected), key
        else:
            assert ours.metadata[key] == expected, key
    assert [(t.name, t.ggml_type, t.nbytes) for t in ours.tensors] == [
        (t.name, t.tensor_type, int(t.n_bytes)) for t in reference.tensors
    ]
    assert [t.shape for t in ours.tensors] == [
        tuple(int(d) for d in reversed(t.shape)) for t in reference.tensors
    ]
    for mine, theirs in zip(ours.tensors, reference.tensors, strict=True):
        assert np.array_equal(ours.data(mine), np.asarray(theirs.data).reshape(-1).view(np.uint8))


def test_string_arrays_are_counted_unless_asked_for(llama_gguf: Path) -> None:
    assert GGUFFile(llama_gguf).metadata["tokenizer.ggml.tokens"] == 384


def test_not_a_gguf_file(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04 not gguf at all")
    assert not is_gguf_file(path)
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        GGUFFile(path)
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        LLM(str(path))


def test_truncated_file(tmp_path: Path, llama_gguf: Path) -> None:
    path = tmp_path / "cut.gguf"
    data = llama_gguf.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(ModelLoadError, match=r"truncated: tensor .* ends at byte"):
        GGUFFile(path)
    path.write_bytes(data[:5000])  # cut inside the header
    with pytest.raises(ModelLoadError, match="truncated or corrupt header"):
        GGUFFile(path)


def test_unsupported_architecture(tmp_path: Path) -> None:
    path = tmp_path / "phi.gguf"
    writer = gguf.GGUFWriter(str(path), "phi3")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UnsupportedModelError, match="'phi3' model; seekserve loads GGUF architectures"):
        GGUFCheckpoint(path)
