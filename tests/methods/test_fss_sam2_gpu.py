"""FSSAM at its real size on a GPU: SAM 2.0 Hiera-S at 512 and DINOv2 ViT-B/14 at 560
(random weights: the shapes and the bf16 path are what is checked), one evaluation batch
and one training step under bf16 autocast."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

REAL = {"sam2": "hiera_s", "sam2_version": "2.0", "sam2_checkpoint": None, "image_size": 512,
        "dino": "vitb14", "dino_checkpoint": None, "dino_size": 560}


def test_real_size_bf16_predict_and_train_step(tmp_path):
    from fakes import ListDataset
    from fss_sam2_testing import begin, val_batch

    from refseg_bench.methods.fss_sam2 import trainer as T
    from refseg_bench.methods.fss_sam2.adapter import FSSAM
    from refseg_bench.methods.fss_sam2.settings import TrainSettings
    from refseg_bench.trained.data import epoch_specs, iter_batches

    method = FSSAM(size="real", presets={"real": {"model": REAL, "train": {}}},
                   checkpoint_dir=str(tmp_path), untrained=True)
    dataset = ListDataset(size=(375, 500))
    method.setup(torch.device("cuda"), dataset)
    assert method.precision == "bf16"
    begin(method, 0, shot=5)
    batch = val_batch(dataset, 0, 5, "mask", n=2)
    with torch.inference_mode():
        out = method.predict(batch)
    assert [p.shape for p in out] == [e.query_size for e in batch]
    assert all(torch.isfinite(p).all() for p in out)
    ds = dataset.base_only_training()
    specs = epoch_specs(ds, 0, shot=1, n=2, seed=321, epoch=0)
    episodes, labels = next(iter_batches(ds, specs, "mask", 2))
    tensors, target = T.training_batch(episodes, labels, 512, TrainSettings(), 0)
    opt, sched = T.make_optimizer(method.net, TrainSettings(), 10)
    loss = T.train_step(method.net, tensors, target, opt, sched, 0, 0, method.autocast)
    assert np.isfinite(loss)
