"""TTGA on a tiny random SAM 2: only the neck moves, restore brings it back, the
augmentation moves image and mask together, and the prototype activation on hand-built
features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refseg_bench.methods.cavsam.settings import TTGASpec
from refseg_bench.methods.cavsam.ttga import NeckTuner, augment, cosine_map, prototype


@pytest.fixture(scope="module")
def sam2():
    from refseg_bench.models.sam2_models import build_sam2

    torch.manual_seed(0)
    model = build_sam2("tiny", "2.0", image_size=64, video=True)
    model.requires_grad_(False)
    return model


def _scene(seed=0, h=40, w=48):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    mask[8:28, 12:36] = True
    image[mask] = rng.integers(150, 255, (int(mask.sum()), 3), dtype=np.uint8)
    return image, mask


def test_ttga_tunes_only_the_neck_and_restore_undoes_it(sam2):
    tuner = NeckTuner(sam2)
    before = {k: v.clone() for k, v in sam2.state_dict().items()}
    image, mask = _scene()
    with torch.no_grad():  # the runner's mode: tune() turns gradients on itself
        report = tuner.tune(image, mask, TTGASpec(steps=3, lr=1e-2),
                            torch.Generator().manual_seed(0))
    after = sam2.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("image_encoder.neck.") for k in changed)
    assert np.isfinite([report.first_loss, report.last_loss]).all()
    assert all(not p.requires_grad for p in sam2.parameters())
    tuner.restore()
    assert all(torch.equal(before[k], v) for k, v in sam2.state_dict().items())


def test_ttga_is_seeded_by_its_generator(sam2):
    tuner = NeckTuner(sam2)
    image, mask = _scene(1)
    runs = []
    for _ in range(2):
        with torch.no_grad():
            tuner.tune(image, mask, TTGASpec(steps=2, lr=1e-2), torch.Generator().manual_seed(5))
        runs.append({k: v.clone() for k, v in tuner.neck.state_dict().items()})
        tuner.restore()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_frame_masks_are_otsu_masks_on_the_feature_grid(sam2):
    tuner = NeckTuner(sam2)
    image, mask = _scene(2)
    masks = tuner.frame_masks(image, mask, [image, _scene(3)[0]], TTGASpec())
    assert [m.shape for m in masks] == [(4, 4), (4, 4)]
    assert all(m.dtype == torch.bool for m in masks)


def test_augmentation_moves_image_and_mask_together():
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:20, 10:24] = 1
    image = mask.repeat(1, 3, 1, 1)
    spec = TTGASpec(color_jitter=0.0, rotation_deg=30, translate=0.2)
    for seed in range(3):
        warped, warped_mask = augment(image, mask, spec, torch.Generator().manual_seed(seed))
        assert torch.allclose(warped[:, :1], warped_mask, atol=1e-6)
        assert not torch.equal(warped_mask, mask)
    jitter = TTGASpec(color_jitter=0.5, rotation_deg=0, scale_range=(1, 1), translate=0)
    photo, same_mask = augment(torch.rand(1, 3, 32, 32), mask, jitter,
                               torch.Generator().manual_seed(0))
    assert torch.allclose(same_mask, mask, atol=1e-5) and photo.min() >= 0 and photo.max() <= 1


def test_prototype_activation_on_hand_built_features():
    feats = torch.zeros(1, 2, 2, 2)
    feats[0, 0, 0, :] = 2.0  # top row: foreground direction
    feats[0, 1, 1, :] = 1.0  # bottom row: orthogonal
    weights = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    proto = prototype(feats, weights)
    assert torch.allclose(proto, torch.tensor([[2.0, 0.0]]))
    assert torch.allclose(cosine_map(feats, proto), torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]]))
