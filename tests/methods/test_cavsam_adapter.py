"""The CAV-SAM adapter on tiny random weights: outputs, weights restored after every
episode (also when one fails), the k-shot rule, weak references, ablation switches and
options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cavsam_testing import fake_episodes, micro_method, packaged_options

from refseg_bench.episodes import EpisodeBatch
from refseg_bench.errors import ConfigError

pytest.importorskip("diffusers")


def _unet_out(method):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 8, 8, generator=g)
    text = torch.randn(1, 77, 32, generator=g)
    with torch.no_grad():
        return method.sd.unet(x, 500, encoder_hidden_states=text).sample


@pytest.fixture(scope="module")
def method():
    return micro_method()


def _predict(method, episodes, annotation="mask"):
    with torch.no_grad():  # the runner's mode for test_time_grad methods
        return method.predict(EpisodeBatch(episodes, annotation))


def test_predicts_a_probability_per_episode_and_restores_the_weights(method):
    neck = {k: v.clone() for k, v in method.tuner.neck.state_dict().items()}
    sam2 = {k: v.clone() for k, v in method.sam2.state_dict().items()}
    base_unet = _unet_out(method)
    episodes = fake_episodes("mask", n=2)
    out = _predict(method, episodes)
    assert [tuple(o.shape) for o in out] == [e.query_size for e in episodes]
    assert all(o.dtype == torch.float32 and 0 <= o.min() and o.max() <= 1 for o in out)
    assert all(torch.equal(neck[k], v) for k, v in method.tuner.neck.state_dict().items())
    assert all(torch.equal(sam2[k], v) for k, v in method.sam2.state_dict().items())
    assert torch.equal(_unet_out(method), base_unet)  # LoRA off after the episode
    assert all(not p.requires_grad for p in method.sam2.parameters())
    t = method.last_timings
    assert set(t) >= {"lora", "inversion", "generation", "ttga", "propagation"}
    assert t["ttga"] > 0 and t["propagation"] > 0 and t["generation"] > 0
    assert method.counts["ttga_runs"] >= 2 and method.dbst.counts["lora_trained"] >= 2
    assert method.counts["frames_prompted"] + method.counts["ttga_empty_frame_masks"] == 2


def test_weights_are_restored_when_an_episode_fails(method, monkeypatch):
    from refseg_bench.methods.cavsam import video

    neck = {k: v.clone() for k, v in method.tuner.neck.state_dict().items()}
    base_unet = _unet_out(method)

    def broken(*_):
        assert any(not torch.equal(neck[k], v)  # TTGA has tuned the neck by now
                   for k, v in method.tuner.neck.state_dict().items())
        raise RuntimeError("propagation failed")

    monkeypatch.setattr(video, "last_frame_probability", broken)
    with pytest.raises(RuntimeError, match="propagation failed"):
        _predict(method, fake_episodes("mask", n=1))
    assert all(torch.equal(neck[k], v) for k, v in method.tuner.neck.state_dict().items())
    assert torch.equal(_unet_out(method), base_unet)


def test_k_shot_averages_one_video_per_support(method, monkeypatch):
    episode = fake_episodes("mask", shot=2, n=1)[0]
    seen = []

    def fake_support(ep, i):
        seen.append(i)
        return torch.full(ep.query_size, 0.2 + 0.4 * i)

    monkeypatch.setattr(method, "predict_support", fake_support)
    out = _predict(method, [episode])[0]
    assert seen == [0, 1] and torch.allclose(out, torch.full(episode.query_size, 0.4))


@pytest.mark.parametrize("annotation", ["box", "point", "scribble"])
def test_weak_references_prompt_frame_zero_with_their_geometry(method, annotation):
    episodes = fake_episodes(annotation, n=1)
    assert episodes[0].support_masks is None
    before = dict(method.counts)
    out = _predict(method, episodes, annotation)
    assert tuple(out[0].shape) == episodes[0].query_size
    assert method.counts["ttga_runs"] == before["ttga_runs"] + 1  # a reference mask was found
    assert method.last_timings["reference"] > 0


def test_reference_mask_falls_back_to_the_raster_when_sam2_finds_nothing(method, monkeypatch):
    from refseg_bench.methods.cavsam import video

    episode = fake_episodes("box", n=1)[0]
    monkeypatch.setattr(video, "reference_mask",
                        lambda predictor, image, ann: np.zeros(image.shape[:2], bool))
    before = method.counts["reference_mask_from_raster"]
    mask = method._reference_mask(episode.support_images[0], episode.annotations[0])
    assert np.array_equal(mask, episode.annotations[0].raster)
    assert method.counts["reference_mask_from_raster"] == before + 1


def test_ablations_two_frame_and_no_dbst():
    two = micro_method(dbst={"enabled": False}, ttga={"enabled": False})
    assert two.sd is None and two.dbst is None
    info = two.describe()
    assert "[two-frame]" in info["model"] and info["frames"] == 2
    assert info["weights"] == "random"
    out = _predict(two, fake_episodes("mask", n=1))
    assert two.last_timings["generation"] == 0 and two.last_timings["ttga"] == 0
    assert out[0].ndim == 2
    no_dbst = micro_method(dbst={"enabled": False})
    assert "[no DBST, TTGA]" in no_dbst.describe()["model"]
    _predict(no_dbst, fake_episodes("mask", n=1))
    assert no_dbst.counts["ttga_runs"] == 1 and no_dbst.counts["frames_prompted"] == 0


def test_mask_prompts_for_the_frames_and_a_box_for_frame_zero():
    method = micro_method(ttga={"prompt": "mask"}, reference_prompt="box")
    episodes = fake_episodes("mask", n=1)
    out = _predict(method, episodes)
    assert tuple(out[0].shape) == episodes[0].query_size
    assert method.counts["frames_prompted"] + method.counts["ttga_empty_frame_masks"] == 1


def test_describe_records_options_variant_and_provenance(method):
    info = method.describe()
    assert info["model"].startswith("cavsam/sam2.0-tiny@64+sd@16 [Nv=4, TTGA]")
    assert info["weights"] == "random" and info["size"] == "tiny"
    assert info["dbst"]["lora_steps"] == 1 and info["ttga"]["steps"] == 1
    assert info["stable_diffusion"]["model"] == "sd/tiny" and "k_shot" in info
    assert method.options["dbst"]["num_frames"] == 4  # the runner records these too


def test_bad_options_are_config_errors():
    from refseg_bench.methods.cavsam.adapter import CAVSAM

    base = {**packaged_options(), "size": "tiny"}
    with pytest.raises(ConfigError, match="did you mean 'num_frames'"):
        CAVSAM.from_config({**base, "dbst": {"num_frame": 5}})
    with pytest.raises(ConfigError, match="num_frames .* must be >= 2"):
        CAVSAM.from_config({**base, "dbst": {"num_frames": 1}})
    with pytest.raises(ConfigError, match="must be one of 'box', 'mask'"):
        CAVSAM.from_config({**base, "ttga": {"prompt": "points"}})
    with pytest.raises(ConfigError, match="k_shot"):
        CAVSAM.from_config({**base, "k_shot": "frames"})


def test_auto_size_takes_tiny_without_the_checkpoints(monkeypatch, tmp_path):
    from refseg_bench.methods.cavsam.adapter import CAVSAM
    from refseg_bench.models import checkpoints

    monkeypatch.setenv(checkpoints.CHECKPOINTS_ENV, str(tmp_path))
    method = CAVSAM.from_config({**packaged_options(), "size": "auto"})
    assert method.size == "tiny"
    assert "stable-diffusion-2-1-base/unet/diffusion_pytorch_model.safetensors" in \
        method.size_reason and "sam2_hiera_tiny.pt" in method.size_reason
