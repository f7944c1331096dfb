"""Checkpoint loading: hashes, corrupt files, strict keys, prefixes, catalogue provenance."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from model_helpers import make_entry
from torch import nn

from refseg_bench.errors import CheckpointError
from refseg_bench.models import checkpoints
from refseg_bench.models.checkpoints import (
    catalogue,
    checkpoint_dir,
    load_checkpoint_into,
    load_state_dict,
    load_strict,
    remove_prefixes,
    sha256_file,
)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "net.pth"
    torch.save(_net().state_dict(), path)
    return path


def test_packaged_catalogue_has_the_methods_checkpoints():
    entries = catalogue()
    for name in ("sam_vit_h", "sam2_hiera_s", "sam2.1_hiera_l", "dinov2_vitb14", "dinov2_vitl14",
                 "resnet50_v2", "vgg16_bn"):
        assert name in entries
    for e in entries.values():
        assert e.url.startswith("https://") and e.licence and e.sha256_source
        assert e.sha256 is None or (len(e.sha256) == 64 and int(e.sha256, 16) >= 0)
    assert entries["sam2_hiera_t"].state_dict_key == "model"
    assert not entries["resnet50_v2"].direct_download


def test_checkpoint_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(checkpoints.CHECKPOINTS_ENV, str(tmp_path))
    assert checkpoint_dir() == tmp_path
    monkeypatch.delenv(checkpoints.CHECKPOINTS_ENV)
    assert checkpoint_dir().parts[-2:] == ("refseg-bench", "checkpoints")


def test_load_roundtrip_and_hash(saved):
    sd = load_state_dict(saved, sha256_file(saved))
    assert set(sd) == set(_net().state_dict())


def test_missing_file_names_fetch_command(fake_catalogue, tmp_path):
    fake_catalogue(make_entry("tiny_net", "net.pth", None))
    with pytest.raises(CheckpointError, match="does not exist.*checkpoints fetch tiny_net"):
        load_state_dict(tmp_path / "ckpt" / "net.pth")


def test_truncated_file_is_a_clear_error(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_state_dict(saved)


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_state_dict(path)


def test_wrong_hash_is_checked_before_unpickling(saved):
    with pytest.raises(CheckpointError, match="expected 0{64}"):
        load_state_dict(saved, "0" * 64)


class _NotATensor:
    pass


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "obj.pth"
    torch.save({"w": torch.zeros(1), "obj": _NotATensor()}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_state_dict(path)


def test_nested_key(tmp_path):
    path = tmp_path / "nested.pth"
    torch.save({"model": _net().state_dict(), "epoch": 3}, path)
    assert "0.weight" in load_state_dict(path, key="model")
    with pytest.raises(CheckpointError, match="under key 'state_dict'"):
        load_state_dict(path, key="state_dict")
    with pytest.raises(CheckpointError, match="pass key="):
        load_state_dict(path)  # a dict holding an int is not a state dict


def test_strict_load_names_missing_unexpected_and_shapes():
    sd = _net().state_dict()
    sd.pop("2.weight")
    sd["extra.weight"] = torch.zeros(1)
    sd["0.bias"] = torch.zeros(7)
    with pytest.raises(CheckpointError) as err:
        load_strict(_net(), sd)
    msg = str(err.value)
    assert "missing keys 1: [2.weight]" in msg
    assert "unexpected keys 1: [extra.weight]" in msg
    assert "0.bias (7,) vs (4,)" in msg


def test_strict_load_lists_first_n_and_counts():
    sd = {f"k{i}": torch.zeros(1) for i in range(12)} | dict(_net().state_dict())
    with pytest.raises(CheckpointError, match=r"unexpected keys 12: \[k0, .*\(4 more\)"):
        load_strict(_net(), sd, limit=8)


def test_module_prefix_is_stripped():
    src = _net()
    ddp = {f"module.{k}": v for k, v in src.state_dict().items()}
    dst = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    load_strict(dst, ddp)
    assert torch.equal(dst[0].weight, src[0].weight)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_strict(dst, ddp, strip_prefixes=())


def test_old_batchnorm_files_without_counter_load():
    sd = OrderedDict((k, v) for k, v in _net().state_dict().items()
                     if not k.endswith("num_batches_tracked"))
    load_strict(_net(), sd)


def test_prefix_removal_keeps_version_metadata():
    sd = _net().state_dict()
    prefixed = OrderedDict((f"module.{k}", v) for k, v in sd.items())
    prefixed._metadata = OrderedDict((f"module.{k}", v) for k, v in sd._metadata.items())
    out = remove_prefixes(prefixed, ("module.",))
    assert list(out) == list(sd) and set(out._metadata) == set(sd._metadata)


def test_catalogue_file_with_matching_hash_is_official(fake_catalogue, tmp_path, saved):
    fake_catalogue(make_entry("tiny_net", "net.pth", sha256_file(saved)))
    (tmp_path / "ckpt").mkdir()
    target = tmp_path / "ckpt" / "net.pth"
    target.write_bytes(saved.read_bytes())
    info = load_checkpoint_into(_net(), "tiny_net", model="test/net")
    assert info.weights == "official" and info.catalogue_name == "tiny_net"
    assert info.sha256 == sha256_file(saved) and info.checkpoint == str(target)


def test_catalogue_file_with_wrong_hash_fails(fake_catalogue, saved):
    fake_catalogue(make_entry("tiny_net", "net.pth", "1" * 64))
    with pytest.raises(CheckpointError, match="expected 1{64}"):
        load_checkpoint_into(_net(), saved, model="test/net")  # matched by file name


def test_catalogue_entry_without_hash_records_computed_hash(fake_catalogue, saved):
    fake_catalogue(make_entry("tiny_net", "net.pth", None))
    info = load_checkpoint_into(_net(), saved, model="test/net")
    assert info.weights == "unverified" and "no published sha256" in info.note
    assert info.sha256 == sha256_file(saved)
