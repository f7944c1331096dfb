"""FSSAM meta-training: the recipe's pieces (Dice, poly schedule, augmentation, which modules
move), that it learns on a fixed batch, the checkpoint it writes and an exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fakes import fit_killed_after_first_checkpoint
from fss_sam2_testing import CPU, ListDataset, tiny_method

from refseg_bench.methods.fss_sam2 import augment as A
from refseg_bench.methods.fss_sam2 import store
from refseg_bench.methods.fss_sam2 import trainer as T
from refseg_bench.methods.fss_sam2.losses import dice_loss
from refseg_bench.methods.fss_sam2.settings import TrainSettings
from refseg_bench.trained import store as tstore
from refseg_bench.trained.data import epoch_specs, iter_batches


def test_dice_loss_matches_the_official_formula():
    logits = torch.tensor([[[[0.0, 2.0], [-2.0, 4.0]]]])
    label = torch.tensor([[[1, 255], [0, 1]]], dtype=torch.uint8)  # void counts as background
    p = torch.sigmoid(logits).flatten()
    t = torch.tensor([1.0, 0.0, 0.0, 1.0])
    expected = 1 - 2 * (p * t).sum() / ((p ** 2).sum() + (t ** 2).sum())
    assert torch.allclose(dice_loss(logits, label), expected)


def test_poly_schedule_sets_lr_before_each_step_from_iteration_one():
    net = tiny_method_net()
    opt, sched = T.make_optimizer(net, TrainSettings(lr=1e-3, power=0.9), total_steps=4)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1e-3 * (1 - i / 4) ** 0.9 for i in range(1, 5)])
    assert len(opt.param_groups) == 3  # decoder, memory encoder, memory attention


def tiny_method_net():
    from fss_sam2_testing import tiny_net

    return tiny_net()


def test_augmentation_keeps_image_and_label_aligned():
    rng = np.random.default_rng(0)
    image = torch.zeros(3, 50, 70)
    label = torch.zeros(50, 70, dtype=torch.uint8)
    image[:, 10:30, 20:40] = 200.0
    label[10:30, 20:40] = 1
    for _ in range(5):
        out, lab = A.augment(image, label, 64, rng)
        assert out.shape == (3, 64, 64) and lab.shape == (64, 64)
        assert set(lab.unique().tolist()) <= {0, 1, 255}
        inside = out[0][lab == 1]
        assert inside.numel() > 0 and inside.mean() > 150  # the object moved with its label
        assert (lab == 255).any()  # padding to 64 is void


def test_rotation_follows_opencv_direction_and_fills_borders():
    image = torch.zeros(3, 22, 22)
    label = torch.zeros(22, 22, dtype=torch.uint8)
    label[11, 16:21] = 1  # a bar right of the centre (11, 11)
    out, lab = A.rotate(image, label, 90.0)  # OpenCV: positive angle = anticlockwise
    assert lab[2:7, 11].eq(1).all() and lab[11, 16:21].eq(0).all()  # now above the centre
    assert torch.allclose(out[:, 0, 0], torch.tensor(A.MEAN_255), atol=1e-4)  # mean border


def test_only_memory_attention_and_decoder_receive_gradients():
    """As FSSAM's forward: features under no_grad, memories under inference mode."""
    from fss_sam2_testing import tiny_net

    from refseg_bench.methods.fss_sam2.inputs import EpisodeTensors

    net = tiny_net()
    g = torch.Generator().manual_seed(0)
    batch = EpisodeTensors(torch.rand(2, 3, 64, 64, generator=g) * 255,
                           torch.rand(2, 1, 3, 64, 64, generator=g) * 255,
                           (torch.rand(2, 1, 64, 64, generator=g) > 0.5).float(), [(64, 64)] * 2)
    dice_loss(net.logits(batch), torch.ones(2, 64, 64, dtype=torch.uint8)).backward()
    grads = {n: p.grad is not None for n, p in net.model.named_parameters()}
    assert grads["sam2.memory_attention.layers.0.cross_attn_image.q_proj.weight"]
    assert grads["sam2.sam_mask_decoder.output_upscaling.0.weight"]
    assert not any(v for k, v in grads.items() if k.startswith("sam2.memory_encoder."))
    assert not grads["sam2.sam_mask_decoder.conv_s0.weight"]
    assert not any(v for k, v in grads.items() if k.startswith(("sam2.image_encoder.", "dino.")))


def test_training_steps_reduce_the_loss_on_a_fixed_batch(tmp_path):
    method = tiny_method(tmp_path)
    ds, settings = method.dataset.base_only_training(), method.preset.train
    specs = epoch_specs(ds, 0, shot=1, n=None, seed=settings.seed, epoch=0)[:4]
    episodes, labels = next(iter_batches(ds, specs, "mask", 4))
    batch = T.training_batch(episodes, labels, 64, TrainSettings(augment=False), 0)
    opt, sched = T.make_optimizer(method.net, TrainSettings(lr=2e-3, power=0.0), 10**6)
    losses = [T.train_step(method.net, *batch, opt, sched, 0, i, method.autocast)
              for i in range(15)]
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), losses


def test_fit_writes_official_checkpoint_curve_and_info(tmp_path):
    method = tiny_method(tmp_path)
    report = method.fit(method.dataset, 0, annotation="box", device=CPU, progress=False)
    directory = method.checkpoint_directory(method.dataset, 0)
    assert directory.relative_to(tmp_path).parts == (
        "fss_sam2", "fake", "fold0", "sam2.0-tiny_dino-tiny_1shot_64px")
    for name in (store.WEIGHTS_FILE, tstore.STATE_FILE, tstore.INFO_FILE, tstore.CURVE_FILE):
        assert (directory / name).is_file(), name
    info = json.loads((directory / tstore.INFO_FILE).read_text())
    assert info["complete"] and info["epochs_done"] == 2 and info["steps"] == 4
    assert info["weights_sha256"] == report["sha256"]
    saved = torch.load(directory / store.WEIGHTS_FILE, weights_only=True)
    assert set(saved) == {"epoch", "state_dict", "optimizer"} and saved["epoch"] == 2
    assert saved["optimizer"]["param_groups"] and len(saved["optimizer"]["param_groups"]) == 3
    # the frozen parts are exported unchanged, the memory attention moved
    initial = tiny_method(tmp_path / "other").net.model.state_dict()
    sd = saved["state_dict"]
    assert torch.equal(sd["module.dino.blocks.0.attn.qkv.weight"],
                       initial["dino.blocks.0.attn.qkv.weight"])
    assert torch.equal(sd["module.sam2.memory_encoder.out_proj.weight"],
                       initial["sam2.memory_encoder.out_proj.weight"])
    key = "module.sam2.memory_attention.layers.0.linear1.weight"
    assert not torch.equal(sd[key], initial[key.removeprefix("module.")])


def test_interrupted_training_resumes_exactly(tmp_path, monkeypatch):
    full = tiny_method(tmp_path / "full")
    reference = full.fit(full.dataset, 0, annotation="mask", device=CPU, progress=False)
    method = tiny_method(tmp_path / "killed")
    fit_killed_after_first_checkpoint(method, monkeypatch)
    resumed = tiny_method(tmp_path / "killed")  # a new process: fresh networks
    report = resumed.fit(resumed.dataset, 0, annotation="mask", device=CPU, progress=False)
    assert report["resumed_from_epoch"] == 1 and report["steps"] == 4
    directory = resumed.checkpoint_directory(resumed.dataset, 0)
    ref_dir = full.checkpoint_directory(full.dataset, 0)
    a = torch.load(directory / store.WEIGHTS_FILE, weights_only=True)["state_dict"]
    b = torch.load(ref_dir / store.WEIGHTS_FILE, weights_only=True)["state_dict"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in b)
    assert report["last_epoch_loss"] == pytest.approx(reference["last_epoch_loss"], rel=1e-4)


def test_weights_trained_with_other_settings_are_refused(tmp_path):
    from refseg_bench.errors import CheckpointError
    from refseg_bench.methods.base import Unit

    method = tiny_method(tmp_path)
    method.fit(method.dataset, 0, annotation="mask", device=CPU, progress=False)
    other = tiny_method(tmp_path, imr_iterations=1, train_if_missing=False)
    with pytest.raises(CheckpointError, match="stages"):
        other.begin_unit(Unit(ListDataset(), 0, "val", 1, "mask", 0))
