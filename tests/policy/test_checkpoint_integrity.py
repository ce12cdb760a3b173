"""Loading refuses damaged weights with an error naming the file and the tensor: corrupted data
under an intact header (non-finite values; or a checksum mismatch for checkpoints we wrote), a
truncated file, a file that is not safetensors at all."""

from __future__ import annotations


import pytest
import torch
from safetensors.torch import load_file, save_file

from vlarl_fast.policy import CorruptCheckpointError, load_pretrained, save_pretrained
from vlarl_fast.policy.checkpoint import CHECKSUM_FILE, SINGLE_FILE


@pytest.fixture
def saved(tmp_path, make_model):
    model = make_model()
    return save_pretrained(model, tmp_path / "ckpt"), model


def _poison(path, name: str, value=float("nan"), count: int = 250):
    tensors = load_file(str(path))
    t = tensors[name].clone()
    t.view(-1)[:count] = value
    tensors[name] = t
    save_file(tensors, str(path), metadata={"format": "pt"})


def test_clean_checkpoint_loads(saved):
    path, model = saved
    assert (path / CHECKSUM_FILE).is_file()
    loaded = load_pretrained(path, dtype=torch.float32)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_changed_data_fails_the_checksum_naming_the_file(saved):
    path, _ = saved
    name = next(k for k in load_file(str(path / SINGLE_FILE)) if "pos_embed" in k)
    _poison(path / SINGLE_FILE, name, 0.5, 3)  # finite values, intact header: only the checksum sees it
    with pytest.raises(CorruptCheckpointError, match=f"{SINGLE_FILE}: its sha256 does not match"):
        load_pretrained(path, dtype=torch.float32)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_with_the_tensor_name(saved, value):
    path, _ = saved
    (path / CHECKSUM_FILE).unlink()  # an official checkpoint has no checksums: the values are checked
    name = next(k for k in load_file(str(path / SINGLE_FILE)) if "pos_embed" in k)
    _poison(path / SINGLE_FILE, name, value)
    with pytest.raises(CorruptCheckpointError) as info:
        load_pretrained(path, dtype=torch.float32)
    message = str(info.value)
    assert SINGLE_FILE in message and name in message and "250 non-finite" in message


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_unreadable_file_is_named(saved, damage):
    path, _ = saved
    (path / CHECKSUM_FILE).unlink()
    data = (path / SINGLE_FILE).read_bytes()
    (path / SINGLE_FILE).write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00" * 64)
    with pytest.raises(CorruptCheckpointError, match=str(path / SINGLE_FILE)):
        load_pretrained(path, dtype=torch.float32)


def test_checksum_file_itself_damaged(saved):
    path, _ = saved
    (path / CHECKSUM_FILE).write_text("{not json")
    with pytest.raises(CorruptCheckpointError, match=CHECKSUM_FILE):
        load_pretrained(path, dtype=torch.float32)
