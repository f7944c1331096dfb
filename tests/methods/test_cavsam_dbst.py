"""DBST on a tiny random Stable Diffusion: LoRA interpolation endpoints, the UNet back to
its base function after use, LoRA training, DDIM inversion, and the per-image caches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refseg_bench.methods.cavsam.settings import DBSTSpec
from refseg_bench.methods.cavsam.timing import Stopwatch

pytest.importorskip("diffusers")
pytest.importorskip("peft")


@pytest.fixture(scope="module")
def sd():
    from refseg_bench.models.diffusion import build_stable_diffusion

    return build_stable_diffusion(None, resolution=16, seed=0)


@pytest.fixture
def lora(sd):
    from refseg_bench.methods.cavsam.lora import UNetLoRA

    adapters = UNetLoRA(sd.unet, rank=2)  # replaces any earlier test's adapters
    yield adapters
    adapters.off()


def _random_lora(lora, seed):
    """A LoRA with non-zero up matrices (a fresh one changes nothing)."""
    g = torch.Generator().manual_seed(seed)
    state = lora.fresh(g)
    return {k: (v if k.endswith(".A") else torch.randn(v.shape, generator=g)) for k, v in
            state.items()}


def _unet_out(sd):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 8, 8, generator=g)
    text = torch.randn(1, 77, 32, generator=g)
    with torch.no_grad():
        return sd.unet(x, 500, encoder_hidden_states=text).sample


@pytest.mark.parametrize("mode", ["parameters", "deltas"])
def test_lora_interpolation_endpoints_are_each_images_lora(sd, lora, mode):
    base = _unet_out(sd)
    l0, l1 = _random_lora(lora, 0), _random_lora(lora, 1)
    lora.use(l0)
    only0 = _unet_out(sd)
    lora.use(l1)
    only1 = _unet_out(sd)
    assert not torch.allclose(only0, base) and not torch.allclose(only0, only1)
    lora.use_mix(l0, l1, 0.0, mode)
    assert torch.allclose(_unet_out(sd), only0, atol=1e-6)
    lora.use_mix(l0, l1, 1.0, mode)
    assert torch.allclose(_unet_out(sd), only1, atol=1e-6)
    lora.off()
    assert torch.equal(_unet_out(sd), base)


def test_parameter_and_delta_interpolation_differ_in_between(sd, lora):
    l0, l1 = _random_lora(lora, 0), _random_lora(lora, 1)
    lora.use_mix(l0, l1, 0.5, "parameters")
    by_params = _unet_out(sd)
    lora.use_mix(l0, l1, 0.5, "deltas")
    by_deltas = _unet_out(sd)
    assert not torch.allclose(by_params, by_deltas)
    with pytest.raises(ValueError, match="interpolation must be one of"):
        lora.use_mix(l0, l1, 0.5, "average")


def test_lora_training_is_deterministic_and_leaves_the_base_unet(sd, lora):
    from refseg_bench.methods.cavsam.lora import train_lora

    base_weights = {k: v.clone() for k, v in sd.unet.state_dict().items() if "lora" not in k}
    base = _unet_out(sd)
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    text = torch.randn(1, 77, 32)
    kw = {"steps": 3, "lr": 1e-2, "weight_decay": 1e-2, "seed": 0}
    with torch.no_grad():  # the runner's mode for test-time-grad methods
        a = train_lora(lora, sd, image, text, **kw)
        b = train_lora(lora, sd, image, text, **kw)
    lora.off()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.endswith(".B") and v.abs().sum() > 0 for k, v in a.items())  # it learnt
    assert all(not p.requires_grad for p in sd.unet.parameters())
    after = {k: v for k, v in sd.unet.state_dict().items() if "lora" not in k}
    assert all(torch.equal(base_weights[k], after[k]) for k in base_weights)
    assert torch.equal(_unet_out(sd), base)


def test_ddim_inversion_round_trip_with_a_constant_noise_prediction(sd):
    from refseg_bench.methods.cavsam.dbst import ddim_invert, ddim_sample

    g = torch.Generator().manual_seed(2)
    latent = torch.randn(1, 4, 8, 8, generator=g, dtype=torch.float64)
    eps = torch.randn(1, 4, 8, 8, generator=g, dtype=torch.float64)

    def eps_fn(x, t):
        return eps  # the exact inverse pair: inversion then DDIM reproduce the latent

    noise = ddim_invert(eps_fn, latent, sd.scheduler, 5)
    assert not torch.allclose(noise, latent)
    assert torch.allclose(ddim_sample(eps_fn, noise, sd.scheduler, 5), latent, atol=1e-8)


def _dbst(sd, **spec):
    from refseg_bench.methods.cavsam.dbst import DBST

    defaults = {"lora_steps": 2, "lora_rank": 2, "inversion_steps": 2, "num_frames": 4}
    return DBST(sd, DBSTSpec(**{**defaults, **spec}), Stopwatch(), 64 << 20)


def _image(seed, h=20, w=24):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_dbst_frames_are_cached_by_image_content(sd):
    dbst = _dbst(sd)
    ref, tgt = _image(0), _image(1)
    with torch.no_grad():
        first = dbst.frames(ref, tgt, "cat", [0.2, 0.8])
        assert dbst.counts == {"lora_trained": 2, "lora_cached": 0, "inverted": 2,
                               "inversion_cached": 0}
        again = dbst.frames(ref.copy(), tgt.copy(), "cat", [0.2, 0.8])  # same pixels
        assert dbst.counts["lora_trained"] == 2 and dbst.counts["lora_cached"] == 2
        dbst.frames(ref, _image(2), "cat", [0.5])  # the reference reused with a new target
        assert dbst.counts["lora_trained"] == 3 and dbst.counts["inverted"] == 3
        dbst.frames(ref, tgt, "dog", [0.5])  # another prompt is another LoRA
        assert dbst.counts["lora_trained"] == 5
    assert len(first) == 2 and first[0].shape == (16, 16, 3) and first[0].dtype == np.uint8
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], first[1])
    assert dbst.watch.seconds["lora"] > 0 and dbst.watch.seconds["generation"] > 0


def test_dbst_without_lora_and_with_a_non_square_image(sd):
    dbst = _dbst(sd, lora=False, adain=False)
    with torch.no_grad():
        out = dbst.frames(_image(0, 30, 18), _image(1), "cat", [0.5])
    assert out[0].shape == (16, 16, 3) and dbst.counts["lora_trained"] == 0
    short = _dbst(sd, lora_resize="short_side")
    from refseg_bench.methods.cavsam.dbst import image_to_tensor

    assert image_to_tensor(_image(0, 30, 18), 16, "short_side").shape == (1, 3, 27, 16)
    assert image_to_tensor(_image(0, 30, 18), 16, "square").shape == (1, 3, 16, 16)
    with torch.no_grad():
        assert len(short.frames(_image(0, 30, 18), _image(1), "cat", [0.5])) == 1
