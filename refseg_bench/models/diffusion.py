"""Stable Diffusion parts (UNet, VAE, CLIP text encoder and tokenizer, DDIM scheduler)
from a diffusers model folder, or a tiny random configuration for CPU runs and tests.

Real weights come from a catalogue folder entry (``sd21_base``) or a folder path in the
diffusers layout. Every file read is hashed first (:func:`~refseg_bench.models.folders.
verify_folder`); the weights load through the libraries' own ``from_pretrained`` with
``local_files_only`` and safetensors only (nothing is unpickled, nothing is downloaded),
and any missing, unexpected or wrongly shaped key is a :class:`CheckpointError`: the
libraries' own renaming of older key layouts (e.g. the VAE's pre-0.14 attention names) is
the only conversion. The scheduler is a ``DDIMScheduler`` built from the folder's
scheduler config (its betas, offset and prediction type), whatever class that config names.

``diffusers`` and ``transformers`` are imported only inside this module's functions.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from refseg_bench.errors import CheckpointError

# What the loader reads from a diffusers Stable Diffusion folder (relative paths).
SD_FILES = (
    "scheduler/scheduler_config.json",
    "text_encoder/config.json", "text_encoder/model.safetensors",
    "tokenizer/merges.txt", "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
    "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
)

# Stable Diffusion's noise schedule (shared by 1.x and 2.x): used for the tiny preset.
_SD_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
                "beta_schedule": "scaled_linear", "clip_sample": False,
                "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "epsilon"}


@dataclass
class StableDiffusion:
    """The parts DBST uses, on one device, all frozen (``requires_grad`` False).

    ``resolution``: square image side in pixels; ``latent_factor``: image pixels per latent
    cell; ``weights``: a trust kind; ``identity``: a string naming these weights in cache
    keys (folder hashes or the random seed); ``info``: provenance for run records.
    """

    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object
    resolution: int
    weights: str
    identity: str
    info: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def latent_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)


def build_stable_diffusion(checkpoint: str | Path | None, device: str | torch.device = "cpu",
                           *, resolution: int = 512, seed: int = 0,
                           architecture: str = "tiny") -> StableDiffusion:
    """Stable Diffusion from ``checkpoint`` (a catalogue folder name such as ``"sd21_base"``
    or a diffusers folder path), or random weights drawn from ``seed`` when None, of
    ``architecture`` (``tiny``, or ``sd2.1-base`` for speed measurements at the real size).
    ``resolution``: the square image size DBST works at (pixels)."""
    if checkpoint is None:
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown Stable Diffusion architecture {architecture!r}; "
                             f"expected one of {ARCHITECTURES}")
        parts = _random_parts(architecture, seed)
        identity, weights = f"{architecture}-random:seed{seed}", "random"
        info = {"model": f"sd/{architecture}", "weights": "random", "seed": seed}
    else:
        parts, folder = _load_folder(checkpoint)
        identity = "|".join(f"{k}={v}" for k, v in sorted(folder.sha256.items()))
        weights = folder.weights
        info = {"model": "sd/" + (folder.entry.variant if folder.entry else "folder"),
                **folder.to_record()}
    unet, vae, text_encoder, tokenizer, scheduler = parts
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
        module.to(torch.device(device)).eval()
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if resolution % (factor * 2 ** (len(unet.config.block_out_channels) - 1)):
        raise ValueError(f"resolution {resolution} must be a multiple of the latent factor "
                         f"{factor} times the UNet's downsampling")
    return StableDiffusion(unet, vae, text_encoder, tokenizer, scheduler, resolution, weights,
                           identity, {**info, "resolution": resolution})


def _strict(what: str, loaded) -> torch.nn.Module:
    """The model of a ``from_pretrained(..., output_loading_info=True)`` result, or
    CheckpointError when any key did not fit."""
    model, report = loaded
    bad = {k: list(report.get(k) or []) for k in ("missing_keys", "unexpected_keys",
                                                  "mismatched_keys", "error_msgs")}
    bad = {k: v for k, v in bad.items() if v}
    if bad:
        listing = "; ".join(f"{k} {len(v)}: {[str(x) for x in v[:6]]}" for k, v in bad.items())
        raise CheckpointError(f"{what} does not fit its architecture: {listing}. Check that "
                              "the folder holds Stable Diffusion weights in diffusers layout.")
    return model


def _load_folder(checkpoint: str | Path):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from refseg_bench.models.folders import verify_folder

    folder = verify_folder(checkpoint, list(SD_FILES))
    root = str(folder.path)
    common = {"local_files_only": True, "use_safetensors": True, "output_loading_info": True}
    unet = _strict(f"{root}/unet", UNet2DConditionModel.from_pretrained(
        root, subfolder="unet", torch_dtype=torch.float32, **common))
    vae = _strict(f"{root}/vae", AutoencoderKL.from_pretrained(
        root, subfolder="vae", torch_dtype=torch.float32, **common))
    text = _strict(f"{root}/text_encoder", CLIPTextModel.from_pretrained(
        root, subfolder="text_encoder", dtype=torch.float32, **common))
    tokenizer = CLIPTokenizer.from_pretrained(root, subfolder="tokenizer", local_files_only=True)
    config = json.loads((folder.path / "scheduler" / "scheduler_config.json").read_text())
    scheduler = ddim_from_config(config)
    return (unet, vae, text, tokenizer, scheduler), folder


def ddim_from_config(config: dict):
    """A ``DDIMScheduler`` with the noise schedule of ``config`` (any scheduler class's
    config: keys DDIM does not know, like PNDM's ``skip_prk_steps``, are dropped)."""
    import inspect

    from diffusers import DDIMScheduler

    accepted = set(inspect.signature(DDIMScheduler.__init__).parameters) - {"self"}
    return DDIMScheduler(**{k: v for k, v in config.items() if k in accepted})


# --- random weights ------------------------------------------------------------------------

# Model configs of random Stable Diffusions: ``tiny`` for CPU runs and tests, and the values
# of Stable Diffusion 2.1-base's unet/vae/text_encoder config.json files for speed
# measurements at the real size without the download.
_ARCH = {
    "tiny": {
        "unet": {"sample_size": 16, "layers_per_block": 1, "block_out_channels": (32, 64),
                 "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
                 "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
                 "cross_attention_dim": 32, "attention_head_dim": 8, "norm_num_groups": 8},
        "vae": {"latent_channels": 4, "layers_per_block": 1, "block_out_channels": (16, 32),
                "norm_num_groups": 8, "down_block_types": ("DownEncoderBlock2D",) * 2,
                "up_block_types": ("UpDecoderBlock2D",) * 2},
        "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "projection_dim": 32},
    },
    "sd2.1-base": {
        "unet": {"sample_size": 64, "layers_per_block": 2,
                 "block_out_channels": (320, 640, 1280, 1280), "cross_attention_dim": 1024,
                 "attention_head_dim": (5, 10, 20, 20), "use_linear_projection": True},
        "vae": {"latent_channels": 4, "layers_per_block": 2, "sample_size": 768,
                "block_out_channels": (128, 256, 512, 512),
                "down_block_types": ("DownEncoderBlock2D",) * 4,
                "up_block_types": ("UpDecoderBlock2D",) * 4},
        "text": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23,
                 "num_attention_heads": 16, "projection_dim": 512, "hidden_act": "gelu"},
    },
}
ARCHITECTURES = tuple(_ARCH)


def _random_parts(architecture: str, seed: int):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    arch = _ARCH[architecture]
    tokenizer = tiny_tokenizer()  # token ids do not change the cost of a forward pass
    # diffusers and transformers initialise from the global RNG: seed a forked copy of it
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**arch["unet"])
        vae = AutoencoderKL(**arch["vae"])
        text = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, **arch["text"]))
    return unet, vae, text, tokenizer, ddim_from_config(_SD_SCHEDULE)


def _byte_alphabet() -> list[str]:
    """GPT-2 / CLIP byte-level alphabet: one printable character per byte value."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def write_tiny_tokenizer(folder: str | Path) -> Path:
    """Write a CLIP tokenizer folder in Stable Diffusion's layout (``vocab.json``,
    ``merges.txt``, ``special_tokens_map.json``, ``tokenizer_config.json``) holding CLIP's
    base vocabulary only: every byte character, with and without the end-of-word mark, and
    the two special tokens (514 ids), with no merges, so words become character tokens."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = _byte_alphabet()
    vocab = {tok: i for i, tok in enumerate(alphabet + [c + "</w>" for c in alphabet]
                                            + ["<|startoftext|>", "<|endoftext|>"])}
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {**special, "model_max_length": 77, "tokenizer_class": "CLIPTokenizer",
         "do_lower_case": True}))
    return folder


@lru_cache(maxsize=1)
def tiny_tokenizer():
    """A real ``CLIPTokenizer`` read from :func:`write_tiny_tokenizer`'s folder (77
    positions, like CLIP's). The folder is temporary: the tokenizer reads it whole at load."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory(prefix="refseg-tiny-clip-tokenizer-") as tmp:
        return CLIPTokenizer.from_pretrained(str(write_tiny_tokenizer(tmp)),
                                             local_files_only=True)
