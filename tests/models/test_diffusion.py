"""Stable Diffusion from a diffusers folder (a tiny random one written in Stable
Diffusion 2.1-base's layout): hashed files, strict keys, a DDIM scheduler from any
scheduler config, provenance; and the tiny random configuration."""

from __future__ import annotations

import json

import pytest
import torch
from model_helpers import make_entry

from refseg_bench.errors import CheckpointError
from refseg_bench.models.checkpoints import CatalogueFile, sha256_file

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

# A scheduler config as Stable Diffusion 2.1-base ships it (a PNDM scheduler's keys).
PNDM_CONFIG = {"_class_name": "PNDMScheduler", "beta_end": 0.012,
               "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
               "num_train_timesteps": 1000, "prediction_type": "epsilon",
               "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
               "trained_betas": None}


@pytest.fixture(scope="module")
def tiny():
    from refseg_bench.models.diffusion import build_stable_diffusion

    return build_stable_diffusion(None, resolution=16, seed=3)


@pytest.fixture(scope="module")
def folder(tiny, tmp_path_factory):
    """The tiny model saved as a diffusers Stable Diffusion folder."""
    from refseg_bench.models.diffusion import write_tiny_tokenizer

    root = tmp_path_factory.mktemp("sd") / "stable-diffusion-2-1-base"
    tiny.unet.save_pretrained(root / "unet", safe_serialization=True)
    tiny.vae.save_pretrained(root / "vae", safe_serialization=True)
    tiny.text_encoder.save_pretrained(root / "text_encoder", safe_serialization=True)
    write_tiny_tokenizer(root / "tokenizer")
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(PNDM_CONFIG))
    return root


def _outputs(sd):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    ids = sd.tokenizer("a cat", padding="max_length", max_length=77,
                       return_tensors="pt").input_ids
    with torch.no_grad():
        text = sd.text_encoder(ids)[0]
        return (sd.unet(x, 10, encoder_hidden_states=text).sample,
                sd.vae.decode(x).sample, text)


def test_folder_loads_the_same_model_and_records_every_hash(tiny, folder):
    from refseg_bench.models.diffusion import SD_FILES, build_stable_diffusion

    sd = build_stable_diffusion(folder, resolution=16)
    for a, b in zip(_outputs(sd), _outputs(tiny), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    # the folder's name is the catalogue's sd21_base: recognised, but no hash is published
    assert sd.info["catalogue_name"] == "sd21_base" and sd.weights == "unverified"
    assert "no published sha256 for 11 of 11 files" in sd.info["note"]
    assert set(sd.info["files_sha256"]) == set(SD_FILES)
    assert type(sd.scheduler).__name__ == "DDIMScheduler"
    assert sd.scheduler.config.steps_offset == 1 and not sd.scheduler.config.set_alpha_to_one
    assert all(not p.requires_grad for p in sd.unet.parameters())
    assert sd.identity != tiny.identity


def test_catalogue_folder_with_published_hashes_is_official(folder, fake_catalogue, tmp_path):
    from refseg_bench.models.diffusion import SD_FILES, build_stable_diffusion

    files = tuple(CatalogueFile(p, sha256_file(folder / p)) for p in SD_FILES)
    fake_catalogue(make_entry("sd_test", folder.name, None, files=files, variant="2.1-base"))
    (tmp_path / "ckpt").symlink_to(folder.parent)
    sd = build_stable_diffusion("sd_test", resolution=16)
    assert sd.weights == "official" and sd.info["model"] == "sd/2.1-base"
    assert sd.info["catalogue_name"] == "sd_test"


def test_a_key_that_does_not_fit_is_a_checkpoint_error(folder, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from refseg_bench.models.diffusion import build_stable_diffusion

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state.pop(sorted(state)[0])
    save_file(state, weights)
    with pytest.raises(CheckpointError, match="unet does not fit its architecture: "
                                              "missing_keys 1"):
        build_stable_diffusion(broken, resolution=16)
    (broken / "vae" / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"lacks 1 of 11 files: \['vae/config.json'\]"):
        build_stable_diffusion(broken, resolution=16)


def test_tiny_configuration_is_seeded_and_checks_its_resolution(tiny):
    from refseg_bench.models.diffusion import build_stable_diffusion

    again = build_stable_diffusion(None, resolution=16, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(_outputs(again), _outputs(tiny), strict=True))
    other = build_stable_diffusion(None, resolution=16, seed=4)
    assert not torch.equal(_outputs(other)[0], _outputs(tiny)[0])
    assert tiny.weights == "random" and tiny.latent_factor == 2 and tiny.resolution == 16
    assert len(tiny.tokenizer) == 514 and tiny.tokenizer.model_max_length == 77
    with pytest.raises(ValueError, match="multiple of the latent factor"):
        build_stable_diffusion(None, resolution=18)


def test_the_tiny_tokenizer_leaves_no_folder_behind(tmp_path, monkeypatch):
    """Each process that builds the tiny model used to leave its tokenizer folder in the
    temporary directory (80 of them after a few test runs)."""
    import tempfile

    from refseg_bench.models.diffusion import tiny_tokenizer

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    tiny_tokenizer.cache_clear()
    try:
        tok = tiny_tokenizer()
        ids = tok("a cat", padding="max_length", max_length=77).input_ids
    finally:
        tiny_tokenizer.cache_clear()
    assert list(tmp_path.iterdir()) == []
    assert len(ids) == 77 and ids[0] == tok.bos_token_id and tok.model_max_length == 77
