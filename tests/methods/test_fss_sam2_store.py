"""FSSAM's official checkpoint format: ``{'epoch', 'state_dict', 'optimizer'}`` with keys
``module.sam2.*`` and ``module.dino.*``, loaded strictly (optimizer ignored), and the trust
it earns in run records."""

from __future__ import annotations

import pytest
import torch
from fss_sam2_testing import begin, tiny_method, tiny_net

from refseg_bench.errors import CheckpointError
from refseg_bench.methods.fss_sam2 import store
from refseg_bench.methods.fss_sam2.settings import TrainSettings
from refseg_bench.methods.fss_sam2.trainer import make_optimizer


def official_file(path, net, *, prefix="module.", drop=None, extra=None):
    """A file laid out as FSSAM's train.py saves it, with a real AdamW state after one step
    (what test.py also reads); optionally without key ``drop`` or with ``extra`` keys."""
    opt, _ = make_optimizer(net, TrainSettings(), total_steps=10)
    for p in net.model.learnable_modules()["memory_attention"].parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    state = {prefix + k: v.clone() for k, v in net.model.state_dict().items() if k != drop}
    state.update(extra or {})
    torch.save({"epoch": 42, "state_dict": state, "optimizer": opt.state_dict()}, path)
    return path


def test_official_keys_are_sam2_and_dino_under_module():
    keys = store.official_state_dict(tiny_net().model).keys()
    assert all(k.startswith(("module.sam2.", "module.dino.")) for k in keys)
    assert "module.sam2.memory_attention.layers.0.cross_attn_image.k_proj.weight" in keys
    assert "module.dino.blocks.0.attn.qkv.weight" in keys and "module.dino.mask_token" in keys


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_official_file_loads_strictly_with_or_without_prefix(tmp_path, prefix):
    source, target = tiny_net(seed=1), tiny_net(seed=2)
    path = official_file(tmp_path / "best_1shot.pth", source, prefix=prefix)
    sha = store.load_checkpoint(target.model, path)
    assert len(sha) == 64
    for (name, a), b in zip(source.model.state_dict().items(),
                            target.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_missing_or_unexpected_keys_are_named(tmp_path):
    net = tiny_net()
    path = official_file(tmp_path / "a.pth", net, drop="sam2.no_obj_ptr")
    with pytest.raises(CheckpointError, match="missing keys 1: .sam2.no_obj_ptr"):
        store.load_checkpoint(tiny_net().model, path)
    path = official_file(tmp_path / "b.pth", net, extra={"module.head.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="unexpected keys 1: .head.weight"):
        store.load_checkpoint(tiny_net().model, path)


def test_a_file_without_state_dict_says_what_an_fssam_checkpoint_is(tmp_path):
    torch.save(tiny_net().model.state_dict(), tmp_path / "flat.pth")
    with pytest.raises(CheckpointError, match="'epoch', 'state_dict'"):
        store.load_checkpoint(tiny_net().model, tmp_path / "flat.pth")


def test_checkpoint_option_loads_per_fold_and_records_unverified(tmp_path):
    files = {f: official_file(tmp_path / f"split{f}.pth", tiny_net(seed=10 + f)) for f in (0, 1)}
    method = tiny_method(tmp_path / "ckpt", checkpoint=str(tmp_path / "split{fold}.pth"))
    for fold in (0, 1):
        begin(method, fold)
        expected = torch.load(files[fold], weights_only=True)["state_dict"]
        got = method.net.model.state_dict()
        assert torch.equal(got["sam2.no_obj_ptr"], expected["module.sam2.no_obj_ptr"])
    info = method.describe()
    record = info["fold_weights"]["1"]
    assert record["source"] == "checkpoint" and record["weights"] == "unverified"
    assert info["trained_weights"] == "unverified"
    assert info["weights"] == "random"  # the tiny foundations decide
    assert set(info["checkpoint_sha256"]) == {"0", "1"}
