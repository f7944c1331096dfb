"""VRP-SAM meta-training: it learns, it resumes exactly, and it never sees a novel class."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fakes import fit_killed_after_first_checkpoint
from vrpsam_testing import ListDataset, tiny_method

from refseg_bench.methods.vrpsam import store
from refseg_bench.methods.vrpsam import trainer as T
from refseg_bench.trained import store as tstore
from refseg_bench.trained.data import epoch_specs, iter_batches

CPU = torch.device("cpu")


def test_training_steps_reduce_the_loss_on_a_fixed_batch(tmp_path):
    method = tiny_method(tmp_path)
    ds, settings = method.dataset.base_only_training(), method.preset.train
    specs = epoch_specs(ds, 0, shot=1, n=None, seed=settings.seed, epoch=0)[:4]
    episodes, labels = next(iter_batches(ds, specs, "mask", 4))
    opt, sched = T.make_optimizer(method.net, settings, total_steps=10**6)
    losses = [T.train_step(method.net, episodes, labels, opt, sched, 0, i) for i in range(12)]
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), losses


def test_fit_writes_official_checkpoint_curve_and_info(tmp_path):
    method = tiny_method(tmp_path)
    report = method.fit(method.dataset, 0, annotation="mask", device=CPU, progress=False)
    directory = method.checkpoint_directory(method.dataset, 0, "mask")
    assert str(directory) == report["directory"]
    assert directory.relative_to(tmp_path).parts == (
        "vrpsam", "fake", "fold0", "resnet_v2_tiny_tiny_mask_1shot_64px")
    for name in (store.ENCODER_FILE, tstore.STATE_FILE, tstore.INFO_FILE, tstore.CURVE_FILE):
        assert (directory / name).is_file(), name
    info = json.loads((directory / tstore.INFO_FILE).read_text())
    assert info["complete"] and info["epochs_done"] == 2 and info["steps"] == 4
    assert info["weights_sha256"] == report["sha256"]
    keys = torch.load(directory / store.ENCODER_FILE, weights_only=True).keys()
    assert all(k.startswith("module.") for k in keys) and "module.layer0.0.weight" in keys
    # Fitting again finds the finished run and trains nothing.
    again = method.fit(method.dataset, 0, annotation="mask", device=CPU, progress=False)
    assert again["resumed_from_epoch"] == 2 and again["sha256"] == report["sha256"]


def test_interrupted_training_resumes_from_the_saved_step(tmp_path, monkeypatch):
    full = tiny_method(tmp_path / "full")
    reference = full.fit(full.dataset, 0, annotation="mask", device=CPU, progress=False)
    ref_losses = torch.load(full.checkpoint_directory(full.dataset, 0, "mask") / tstore.STATE_FILE,
                            weights_only=True)["losses"].tolist()

    method = tiny_method(tmp_path / "killed")
    fit_killed_after_first_checkpoint(method, monkeypatch)
    directory = method.checkpoint_directory(method.dataset, 0, "mask")
    assert not tstore.is_complete(directory, store.ENCODER_FILE)
    saved = torch.load(directory / tstore.STATE_FILE, weights_only=True)
    assert saved["epoch"] == 1 and saved["step"] == 2

    resumed = tiny_method(tmp_path / "killed")  # a new process: fresh networks
    report = resumed.fit(resumed.dataset, 0, annotation="mask", device=CPU, progress=False)
    assert report["resumed_from_epoch"] == 1 and report["steps"] == 4
    losses = torch.load(directory / tstore.STATE_FILE, weights_only=True)["losses"].tolist()
    assert losses == pytest.approx(ref_losses, rel=1e-5)
    assert report["sha256"] == reference["sha256"]


def test_changed_settings_refuse_to_resume(tmp_path):
    method = tiny_method(tmp_path)
    method.fit(method.dataset, 0, annotation="mask", device=CPU, progress=False)
    other = tiny_method(tmp_path, train={"lr": 5e-4})
    from refseg_bench.errors import CheckpointError

    with pytest.raises(CheckpointError, match="settings"):
        other.fit(other.dataset, 0, annotation="mask", device=CPU, progress=False)


class SpyDataset(ListDataset):
    """Records every image and label the trainer reads (in ``log``, shared with the
    base-only view the trainer builds from it)."""

    def __init__(self, log: dict | None = None, **kw):
        super().__init__(**kw)
        self.log = log if log is not None else {"images": [], "masks": []}
        self.images, self.masks = self.log["images"], self.log["masks"]

    def with_options(self, **changes):
        return type(self)(log=self.log, **{**self._init_call[1], **changes})

    def load_image(self, item):
        self.images.append(item)
        return super().load_image(item)

    def load_mask(self, item, class_id):
        self.masks.append((item, class_id))
        return super().load_mask(item, class_id)


@pytest.mark.parametrize("fold", [0, 3])
def test_training_never_uses_a_novel_class_image_or_label(tmp_path, fold):
    ds = SpyDataset()
    novel, base = set(ds.classes(fold, "val")), set(ds.classes(fold, "train"))
    # The fake's train split does hold images showing a novel class (e.g. train/8_0 shows
    # class 1): the base-only filter must keep them out.
    assert any(set(ds._labels[i]) & novel for i in ds._split_items("train"))
    method = tiny_method(tmp_path, dataset=ds, train={"epochs": 3, "episodes_per_epoch": 16})
    seen_targets = []
    from refseg_bench.methods.vrpsam import fit as fit_module

    real_step = fit_module.train_step

    def spy_step(net, episodes, labels, *args):
        seen_targets.extend(zip([e.spec for e in episodes], labels, strict=True))
        return real_step(net, episodes, labels, *args)

    fit_module.train_step = spy_step
    try:
        method.fit(ds, fold, annotation="mask", device=CPU, progress=False)
    finally:
        fit_module.train_step = real_step
    assert ds.images and len(seen_targets) == 48
    for item in ds.images:
        assert item.startswith("train/"), item  # never an image of the novel (val) pool
        assert not set(ds._labels[item]) & novel, f"{item} shows a novel class"
    assert {c for _, c in ds.masks} <= base
    for spec, label in seen_targets:
        truth = ds.label(spec.query)
        assert spec.class_id in base
        assert np.array_equal(label == 1, truth == spec.class_id)


@pytest.mark.gpu
def test_real_size_training_step_on_gpu(tmp_path):
    """SAM ViT-H at 1024 and ResNet-50 v2 at 512 (random weights): one step of batch 2
    trains, and 1-shot and 2-shot predictions come back at the query's size."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from refseg_bench.methods.vrpsam.adapter import VRPSAM

    model = {"sam": "vit_h", "sam_checkpoint": None, "sam_image_size": 1024,
             "backbone": "resnet50_v2", "backbone_checkpoint": None, "image_size": 512}
    method = VRPSAM(size="real", presets={"real": {"model": model, "train": {"batch_size": 2}}},
                    checkpoint_dir=str(tmp_path), untrained=True)
    ds = ListDataset()
    method.setup(torch.device("cuda"), ds)
    specs = epoch_specs(ds.base_only_training(), 0, shot=1, n=2, seed=321, epoch=0)
    episodes, labels = next(iter_batches(ds, specs, "mask", 2))
    opt, sched = T.make_optimizer(method.net, method.preset.train, total_steps=10)
    before = method.net.encoder.merge_1[0].weight.detach().clone()
    loss = T.train_step(method.net, episodes, labels, opt, sched, 0, 0)
    assert np.isfinite(loss) and not torch.equal(before, method.net.encoder.merge_1[0].weight)
    from vrpsam_testing import val_batch

    for shot in (1, 2):
        batch = val_batch(ds, 0, shot, "box", n=2)
        with torch.inference_mode():
            preds = method.predict(batch)
        assert [tuple(p.shape) for p in preds] == [e.query_size for e in batch.episodes]


def test_official_sampler_follows_each_official_loader():
    """``train.sampler: official`` (the real preset) draws COCO-20i episodes class first,
    as VRP-SAM's COCO loader, and makes one pass over the queries elsewhere (its PASCAL
    loader); the harness default stays ``file_order``."""
    settings = T.TrainSettings(sampler="official")
    assert settings.sampler_for("coco20i") == "class_uniform"
    assert settings.sampler_for("pascal5i") == "file_order"
    assert T.TrainSettings().sampler_for("coco20i") == "file_order"
    with pytest.raises(ValueError, match="train.sampler"):
        T.TrainSettings(sampler="random")


def test_class_uniform_training_epochs_draw_classes_evenly():
    ds = ListDataset(per_class=40).base_only_training()
    uniform = epoch_specs(ds, 0, shot=1, n=600, seed=321, epoch=0, sampler="class_uniform")
    counts = np.bincount([s.class_id for s in uniform], minlength=9)[ds.classes(0, "train")]
    assert counts.min() > 0.6 * counts.mean()  # 6 base classes, about 100 each
    once = epoch_specs(ds, 0, shot=1, n=None, seed=321, epoch=0, sampler="file_order")
    assert sorted(s.query for s in once) == sorted(ds.query_items(0, "train"))
